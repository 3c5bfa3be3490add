"""The methods table comes from the registry and the README shows exactly that table."""

from __future__ import annotations

from pipeline import methods
from pipeline.methods.table import markdown, rows
from tests.conftest import ROOT


def test_one_row_per_registered_method_with_paper_counts():
    table = {r["method"]: r for r in rows()}
    assert sorted(table) == methods.names()
    assert table["pt"]["params T5-Base"] == f"{100 * 768:,}" and table["pt"]["params LLaMA-2-7B"] == f"{100 * 4096:,}"
    assert table["dept"]["params T5-Base"] == "76,800"  # DePT's equal-budget setting m=60, r=30, s=256
    assert all(r["paper"] and "arXiv:" in r["paper"] for r in table.values())


def test_readme_shows_the_current_table():
    assert markdown() in (ROOT / "README.md").read_text(), "README methods table is stale: paste `promptfarm methods`"
