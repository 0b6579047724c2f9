"""Smoke runs of benchmarks/e2e_blog.py and benchmarks/session_patterns.py, so they keep
working."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from .benchmark_modules import load_benchmark_module
from .examples_support import needs_blog_dependencies

pytestmark = needs_blog_dependencies


def load_benchmark() -> ModuleType:
    return load_benchmark_module("e2e_blog")


@pytest.mark.slow
def test_quick_run_prints_table_and_writes_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark = load_benchmark()
    chart, results = tmp_path / "chart.png", tmp_path / "results.json"

    code = benchmark.main(["--quick", "--chart", str(chart), "--json", str(results)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "errors: 0" in out
    rows = {(r["scenario"], r["version"]): r for r in json.loads(results.read_text())["results"]}
    assert len(rows) == 6
    for scenario in benchmark.SCENARIOS:
        assert rows[(scenario.label, "naive")]["queries_per_request"] == 251
        assert rows[(scenario.label, "loaders")]["queries_per_request"] == 5
        assert rows[(scenario.label, "loaders + window")]["queries_per_request"] == 5
        assert all(rows[(scenario.label, v)]["requests"] > 0 for v in benchmark.VARIANTS)
    if importlib.util.find_spec("matplotlib") is not None:
        assert chart.read_bytes().startswith(b"\x89PNG")
    else:
        assert "chart: skipped" in out


def test_session_patterns_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark = load_benchmark_module("session_patterns")

    assert benchmark.main(["--quick"]) == 0

    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(benchmark.PATTERNS)]
    assert len(rows) == len(benchmark.PATTERNS) * len(benchmark.PATHS)
    for row in rows:
        if row.startswith("request session + lock"):
            assert row.endswith("  0"), row  # the example's pattern never fails
