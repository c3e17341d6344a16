"""Smoke test of benchmarks/bench_resilience.py: tiny runs of each scenario complete and report.

It asserts correctness figures only (nothing lost, exactly one result per item, client and
server counting the same attempts, fewer sends than max_retries alone), never speed: the
goals are measured by the full runs and reported in the changelog.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the benchmark extras (pip install -e .[bench])")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_tiny_runs_report_every_scenario(tmp_path: Path) -> None:
    """All four scenarios run on tiny settings and write figures and the chart."""
    tiny = [
        "--seconds", "1.5", "--callers", "10", "--adaptive-seconds", "6",
        "--items", "150", "--chaos-items", "150", "--outage", "0.6",
        "--outage-at", "0.2", "--chaos-outage-at", "0.2", "--out", str(tmp_path),
    ]  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_resilience", *tiny],
        cwd=ROOT,
        check=True,
        timeout=300,
        capture_output=True,
    )
    figures = json.loads((tmp_path / "resilience.json").read_text())
    assert (tmp_path / "resilience.png").stat().st_size > 0
    by_variant = {(r["fault"], r["variant"]): r for r in figures["amplification"]}
    alone = by_variant[("503", "max_retries alone")]
    budget = by_variant[("503", "retry budget only")]
    assert alone["sends"] > budget["sends"]
    assert by_variant[("3% random", "defaults (budget + breaker)")]["lost"] == 0
    assert {"fixed rate at the ceiling", "adaptive"} <= set(figures["adaptive"])
    for row in [*figures["bulk"], figures["chaos"]]:
        assert row["exactly_once"]
        assert row["client_attempts"] == row["server_requests"]
    defaults = figures["bulk"][1]
    assert defaults["variant"] == "defaults (budget + breaker)"
    assert defaults["failed"] == 0
