"""Evaluation: scoring a PromptedModel on a task (score.py), label-word scores for rank classification
(label_scores.py), the Predictor that loads a stored prompt with its recorded encoding (predictor.py), and evaluation
runs logged to MLflow (runs.py)."""
