"""Benchmarks of the prompt methods against the frozen backbone alone and HF PEFT's PromptTuning.

    python -m jobs.benchmark jobs/configs/bench-tiny.yaml          # bench.md + bench.json in out_dir

config.py  BenchConfig (YAML + overrides)   measure.py  timing and memory protocol
rows.py    what each row runs               report.py   ratios, targets, markdown, JSON
run.py     orchestration, outputs, MLflow   peer.py     PEFT's PromptTuning on the same batches
trials.py  trial start-up clock (bench-trials)   scoring.py  sum or mean rank-classification scoring, measured
"""
