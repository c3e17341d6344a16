"""A fuzz target for the decoder: run the containment property for as many cases as you like.

Owns nothing but the loop: the strategies and the rule (a CreditHistory or an AOPayError, for
any status, headers and bytes) live in tests/hostile_bodies.py, shared with the CI property
test. It must never touch the network. Usage::

    python -m benchmarks.fuzz_decode --cases 200000        # each strategy gets a third
    python -m benchmarks.fuzz_decode --cases 50000 --strategy nesting

Measured: ``--cases 201000`` ran 201,000 cases (67,000 per strategy) with no escape in 4,111 s
on a 2-core machine shared at load ~10 (about 12 minutes of CPU time).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hostile_bodies import HEADERS, STATUSES, check, deep_nesting, mutated_seeds

STRATEGIES = {
    "bytes": st.binary(max_size=4096),
    "seeds": mutated_seeds(),
    "nesting": deep_nesting(),
}


def run(name: str, cases: int) -> int:
    """Run *cases* examples of one strategy; return how many bodies were decoded."""
    count = 0

    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(STATUSES, HEADERS, STRATEGIES[name])
    def target(status: int, headers: dict[str, str], body: bytes) -> None:
        nonlocal count
        count += 1
        check(status, headers, body)

    target()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30_000, help="total cases (default 30000)")
    parser.add_argument("--strategy", choices=[*STRATEGIES, "all"], default="all")
    args = parser.parse_args(argv)
    names = list(STRATEGIES) if args.strategy == "all" else [args.strategy]
    total = 0
    start = time.perf_counter()
    for name in names:
        done = run(name, max(1, args.cases // len(names)))
        total += done
        print(f"{name}: {done} cases ok", flush=True)
    print(f"total: {total} cases, {time.perf_counter() - start:.0f}s, no escape", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
