"""MLflow "model from code" for a registered prompt: `mlflow.pyfunc.load_model("models:/NAME@champion")`.

MLflow copies this file into the logged model and executes it at load time, so no Python object is pickled; the
prompt travels as its two plain files under the model's `artifacts/prompt/`. The backbone is loaded from the id or
path recorded in the prompt (it must be reachable where the model is loaded), and promptfarm must be installed.

Trust: `load_model` executes the copy of this file stored with the version, so it runs whatever code whoever
wrote that version stored; load only versions you trust (or `promptfarm pull --version N --sha256 DIGEST`, which
reads the two data files only). `trust_remote_code` stays off here: the backbone's own hub code never runs.

    model = mlflow.pyfunc.load_model("models:/sst2-llama-2-7b-hf@champion")
    model.predict(pd.DataFrame({"text": ["a gripping, funny film"]}))   # -> ["positive"]
"""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import PythonModel


class PromptModel(PythonModel):
    """Frozen backbone + prompt; predict maps a DataFrame of texts to label words (numbers for regression)."""

    def load_context(self, context) -> None:
        from pipeline.evaluation.predictor import Predictor

        self.predictor = Predictor.load(context.artifacts["prompt"])

    def predict(self, context, model_input, params=None) -> list[str]:
        """`model_input`: DataFrame with a 'text' column (else its first column), or a list of strings."""
        if hasattr(model_input, "columns"):
            col = "text" if "text" in model_input.columns else model_input.columns[0]
            texts = [str(t) for t in model_input[col]]
        else:
            texts = [str(t) for t in model_input]
        field = (params or {}).get("field")
        return self.predictor.predict(texts, field=field)


mlflow.models.set_model(PromptModel())
