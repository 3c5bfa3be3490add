"""MLflow "model from code" for a registered prompt: `mlflow.pyfunc.load_model("models:/NAME@champion")`.

MLflow copies this file into the logged model and executes it at load time, so no Python object is pickled; the
prompt travels as its two plain files under the model's `artifacts/prompt/`. The backbone is loaded from the id or
path recorded in the prompt (it must be reachable where the model is loaded), and promptfarm must be installed.

Trust: `load_model` executes the copy of this file stored with the version, so it runs whatever code whoever
wrote that version stored; load only versions you trust (or `promptfarm pull --version N --sha256 DIGEST`, which
reads the two data files only). `trust_remote_code` stays off here: the backbone's own hub code never runs.

    model = mlflow.pyfunc.load_model("models:/sst2-llama-2-7b-hf@champion")
    model.predict(pd.DataFrame({"text": ["a gripping, funny film"]}))   # -> ["positive"]
    model.predict(pd.DataFrame({"sentence1": [...], "sentence2": [...]}))  # every template column: as in training

A DataFrame holding every column of the task's template is rendered with it as the trial's evaluation did; else
its 'text' column (or first) fills the template's first column (`params={"field": ...}`: another one).
Predictions are label words (classification), generated texts (generation) or numbers (regression).
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class PromptModel(PythonModel):
    """Frozen backbone + prompt; predict maps a DataFrame of inputs to label words, texts or numbers."""

    def load_context(self, context) -> None:
        from pipeline.evaluation.predictor import Predictor

        self.predictor = Predictor.load(context.artifacts["prompt"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        """`model_input`: DataFrame with the template's columns, or a 'text' column (else its first column), or a
        list of strings. (A DataFrame hint is one MLflow infers no schema from: it validates nothing, lets a list
        through, and is not the 'add type hints' warning every registration printed.)"""
        fields = self.predictor.task.text_fields
        if hasattr(model_input, "columns") and all(f in model_input.columns for f in fields):
            return self.predictor.predict_rows(model_input[list(fields)].astype(str).to_dict("records"))
        if hasattr(model_input, "columns"):
            col = "text" if "text" in model_input.columns else model_input.columns[0]
            texts = [str(t) for t in model_input[col]]
        else:
            texts = [str(t) for t in model_input]
        field = (params or {}).get("field")
        return self.predictor.predict(texts, field=field)


mlflow.models.set_model(PromptModel())
