"""Helpers for the command-line tests: run ``python -m aopay_async`` as a user would.

The CLI runs in a child process (its own loop, its own signal handling) against a sandbox
in the test's own event loop on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _data import CREDENTIALS_ENV as CREDENTIALS

from aopay_async.testing import SandboxServer

REPO = Path(__file__).resolve().parent.parent
#: How long any one CLI run may take before the test gives up on it.
RUN_TIMEOUT = 60.0


@dataclass
class Ran:
    """A finished CLI run."""

    code: int
    stdout: str
    stderr: str


def cli_env(server: SandboxServer | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOPAY_")}
    env.update(CREDENTIALS)
    if server is not None:
        env["AOPAY_BASE_URL"] = server.url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


async def start_cli(*args: str, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aopay_async",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )


async def run_cli(*args: str, env: dict[str, str], cwd: Path, stdin: bytes | None = None) -> Ran:
    """Run ``python -m aopay_async ARGS`` to its end."""
    proc = await start_cli(*args, env=env, cwd=cwd)
    out, err = await asyncio.wait_for(proc.communicate(stdin), RUN_TIMEOUT)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def write_csv(path: Path, ids: list[str], *, order_ids: bool = False) -> Path:
    """A CSV with a header and one row per id (line numbers start at 2)."""
    lines = ["cibil_id,client_order_id" if order_ids else "cibil_id"]
    for i, cid in enumerate(ids):
        lines.append(f"{cid},ord-{i}" if order_ids else cid)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    """Every output line, parsed; fails on a line that is not complete JSON."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "the output ends in a partial line"
    return [json.loads(line) for line in data.splitlines()]


def assert_exactly_once(records: list[dict[str, Any]], lines: range | list[int]) -> None:
    """Every expected input line appears in exactly one output record."""
    counts = Counter(r["line"] for r in records)
    duplicates = {line: n for line, n in counts.items() if n > 1}
    assert not duplicates, f"lines written more than once: {sorted(duplicates)[:10]}"
    assert sorted(counts) == list(lines)


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def make_ids(n: int, prefix: str = "CUST") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def assert_no_customer_data(text: str, ids: list[str]) -> None:
    """None of the cibil ids (or the synthetic names) leaks into human output."""
    leaked = [cid for cid in ids if cid and cid in text]
    assert not leaked, f"cibil ids printed: {leaked[:3]}"
    for word in ("first_name", "mobile_number", "cibil_score", "account_number"):
        assert word not in text
