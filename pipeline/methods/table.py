"""The methods table (README, `promptfarm methods`), computed from the registry at each method's defaults."""

from __future__ import annotations

from pipeline import methods
from pipeline.methods.base import BackboneInfo

# Reference backbones of the papers' tables: T5-Base (d=768) and LLaMA-2-7B (d=4096).
REFERENCE = {
    "T5-Base": BackboneInfo("google-t5/t5-base", None, "t5", True, 768, 32128, 12),
    "LLaMA-2-7B": BackboneInfo("meta-llama/Llama-2-7b-hf", None, "llama", False, 4096, 32000, 32),
}


def rows() -> list[dict[str, str]]:
    """One row per registered method: name, paper, default trainable params per reference backbone, cost."""
    out = []
    for name in methods.names():
        cls = methods.get(name).module_cls
        cfg = methods.config_class(name)()
        row = {"method": name, "paper": cls.paper}
        for label, info in REFERENCE.items():
            row[f"params {label}"] = f"{cls.paper_param_count(cfg, info):,}"
        row["prompt tokens"] = str(cls.num_virtual_tokens(cfg))
        row["extra inference cost"] = cls.inference_cost
        out.append(row)
    return out


def markdown() -> str:
    """The table as GitHub markdown."""
    table = rows()
    head = list(table[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r[h] for h in head) + " |" for r in table]
    return "\n".join(lines)
