"""Smoke test of the benchmark suite: ``python -m benchmarks --tiny`` runs and reports.

It never asserts speed (timing claims live in benchmarks/RESULTS.md, measured as ratios in
one run); it checks that every benchmark produced figures and that RESULTS.md and the chart
were written, so the suite cannot rot. It needs no nginx: without it the suite falls back
to the sandbox (or a minimal aiohttp.web server), and one case forces that fallback.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _data import COMPANY, REGISTRATION

for _module in ("matplotlib", "httpx", "pydantic", "orjson", "aiometer", "psutil"):
    pytest.importorskip(_module, reason="the benchmark extras (pip install -e .[bench])")

ROOT = Path(__file__).resolve().parent.parent
#: What a default run measures: ours on both transports, the alternatives, and the optional
#: Rust-backed peers (pyreqwest, rnet) when they are installed here.
IMPLS = {"aopay", "aopay_aiohttp", "aopay_bulk", "raw_json", "raw_msgspec", "httpx_pydantic"} | {
    peer for peer in ("pyreqwest", "rnet") if importlib.util.find_spec(peer) is not None
}


def _run_suite(out: Path, *extra: str) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--no-install", "--out", str(out), *extra],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


def test_tiny_run_writes_every_figure_and_both_files(tmp_path: Path) -> None:
    """The default server (nginx if installed, else the sandbox) gives a complete report."""
    results = _run_suite(tmp_path)

    throughput = results["throughput"]
    assert {r["impl"] for r in throughput} == IMPLS
    assert {r["accounts"] for r in throughput} == {3, 100}
    for record in throughput:
        assert record["errors"] == 0, record
        assert record["rps"]["median"] > 0
        assert record["cpu_per_10k"]["median"] > 0
        assert "rps_ratio" in record
    decoders = {(r["decoder"], r["accounts"]) for r in results["decode"]}
    assert ("aopay", 3) in decoders
    assert ("pydantic", 100) in decoders
    assert all(r["us"]["median"] > 0 for r in results["decode"])
    limiters = {r["limiter"]: r for r in results["limiter"]["alone"]}
    assert set(limiters) == {"aopay", "aiolimiter(r,1)", "aiolimiter(1,1/r)", "aiometer"}
    assert all(r["starts"] == results["limiter"]["waiters"] for r in limiters.values())
    memory = results["memory"]
    assert memory
    assert memory[0]["done"] == memory[0]["items"]
    assert memory[0]["peak_rss_mb"] > 0

    report = (tmp_path / "RESULTS.md").read_text()
    for heading in ("## Machine", "## Server", "## Goals", "## Throughput", "## Decoding"):
        assert heading in report
    assert "![benchmark chart](results.png)" in report
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")

    (tmp_path / "RESULTS.md").unlink()
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--report-only", "--out", str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert "## Goals" in (tmp_path / "RESULTS.md").read_text()


def test_fallback_server_without_nginx(tmp_path: Path) -> None:
    """Forced off nginx, the suite measures against a server in a child process and says so."""
    results = _run_suite(tmp_path, "--server", "minimal", "--only", "throughput")

    assert results["server"]["kind"] == "minimal"
    assert "child process" in results["server"]["describe"]
    assert {r["impl"] for r in results["throughput"]} == IMPLS
    assert all(r["errors"] == 0 for r in results["throughput"])
    assert "## Decoding" not in (tmp_path / "RESULTS.md").read_text()


def test_benchmarks_send_the_sandbox_default_credentials() -> None:
    """``benchmarks._bodies`` writes the credentials out; they are the sandbox's defaults."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from benchmarks._bodies import COMPANY as c, REGISTRATION as r; print(c, r)",
        ],
        cwd=ROOT,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert done.stdout.split() == [COMPANY, REGISTRATION]


def test_committed_report_is_what_results_json_renders_to(tmp_path: Path) -> None:
    """``--report-only`` rewrites benchmarks/RESULTS.md from results.json byte for byte.

    RESULTS.md is generated: a hand edit, or a change to ``_report.py`` that changes its output
    without regenerating (``python -m benchmarks --report-only``), fails here.
    """
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from benchmarks._report import write_markdown\n"
        "results = json.loads(Path('benchmarks/results.json').read_text())\n"
        "write_markdown(results, Path(sys.argv[1]), chart=Path('results.png'))\n"
    )
    out = tmp_path / "RESULTS.md"
    command = [sys.executable, "-c", code, str(out)]
    subprocess.run(command, cwd=ROOT, check=True, timeout=60, capture_output=True)
    assert out.read_text() == (ROOT / "benchmarks" / "RESULTS.md").read_text()


@pytest.mark.parametrize("mode", ["single", "bulk", "single_held"])
def test_bulk_cost_children_run_every_mode(mode: str) -> None:
    """Each mode of ``bench_bulk_cost`` (run under callgrind by hand) completes its items.

    Without valgrind: the child alone, so the modes it compares cannot rot unnoticed.
    """
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_bulk_cost", "--child", mode, "--accounts", "3",
         "--items", "200", "--concurrency", "16"],
        cwd=ROOT,
        check=False,
        timeout=120,
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
