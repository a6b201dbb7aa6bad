"""Figures are data: docs/performance.md and the README's speed table are what benchmarks/results/ renders, and
every row carries what is needed to trust or redo it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ROW_KEYS = {"date", "benchmark", "commit", "host", "versions", "command", "settings", "figures"}


def _renderer():  # the script lives in benchmarks/, which is not a package
    spec = importlib.util.spec_from_file_location("render_performance", ROOT / "benchmarks" / "render_performance.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_committed_page_and_readme_table_are_what_the_rows_render() -> None:
    render = _renderer()
    assert (ROOT / "docs" / "performance.md").read_text(encoding="utf-8") == render.render_page(), (
        "docs/performance.md is stale: python benchmarks/render_performance.py")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render.replace_readme_table(readme, render.render_readme_table()) == readme, (
        "README.md's speed table is stale: python benchmarks/render_performance.py")


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.jsonl")), ids=lambda p: p.name)
def test_every_row_says_when_where_what_and_how(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert rows
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["commit"] and row["host"]["cpu"] and row["versions"]["torch"] and row["versions"]["res2net"]
        assert row["command"].startswith(("python benchmarks/", "res2net "))
        assert row["figures"]


def test_a_new_row_changes_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page follows the newest row of each kind: a newer run of the same benchmark replaces the older one."""
    from res2net.speed.results import append_row, make_row

    render = _renderer()
    monkeypatch.setattr(render, "RESULTS", tmp_path)
    older = make_row("cpu_training", {"32px_b64_fp32": {"plain": {"img_per_s": 1.0, "over_plain": 1.0}}})
    append_row(tmp_path / "cpu_training.jsonl", older)
    assert "1.00 (1.00x)" in render.render_page()
    newer = make_row("cpu_training", {"32px_b64_fp32": {"plain": {"img_per_s": 2.5, "over_plain": 1.0}}})
    append_row(tmp_path / "cpu_training.jsonl", newer)
    page = render.render_page()
    assert "2.50 (1.00x)" in page and "1.00 (1.00x)" not in page
