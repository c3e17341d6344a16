"""Memory and time a row of the CLI's duplicate-``client_order_id`` check.

``python -m benchmarks.bench_order_ids [--items N]`` fills, for N ids of two shapes (short
``ORD-0000001`` and 36-character UUIDs), the map bulk keeps from each id to its first input
line: the ``dict[str, int]`` it used to be and :class:`aopay_async.cli._seen.FirstLines`.
It prints tracemalloc's bytes a row (the ids' strings count when the map keeps them alive,
as the dict did) and the CPU seconds a row (process time: steadier than the wall clock on a
shared machine), one line per case. Standalone: not part of
``python -m benchmarks``. Times are of this machine; the bytes are what matters.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator

from aopay_async.cli._seen import FirstLines

__all__ = ["measure"]


def _ids(shape: str, n: int) -> Iterator[str]:
    if shape == "uuid":
        rnd = random.Random(1)
        for _ in range(n):
            yield str(uuid.UUID(int=rnd.getrandbits(128), version=4))
    else:
        for i in range(n):
            yield f"ORD-{i:07d}"


def _fill(kind: str, shape: str, n: int) -> tuple[object, float]:
    """The map *kind* filled with *n* ids of *shape*, and the seconds it took."""
    setdefault: Callable[[str, int], int | None]
    table: object
    if kind == "dict":
        plain: dict[str, int] = {}
        table, setdefault = plain, plain.setdefault
    else:
        lines = FirstLines()
        table, setdefault = lines, lines.setdefault
    start = time.process_time()
    for line, order_id in enumerate(_ids(shape, n), start=2):
        setdefault(order_id, line)
    return table, time.process_time() - start


def measure(kind: str, shape: str, n: int) -> tuple[float, float, float]:
    """(bytes a row, seconds a row, of which making the ids) for *n* ids of *shape* in the
    map *kind*; bytes under tracemalloc, seconds in a second fill without it (tracemalloc
    slows every allocation several times over)."""
    gc.collect()
    tracemalloc.start()
    table, _ = _fill(kind, shape, n)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del table
    gc.collect()
    table, elapsed = _fill(kind, shape, n)
    del table
    start = time.process_time()
    for _ in _ids(shape, n):
        pass
    making = time.process_time() - start
    return used / n, elapsed / n, making / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    n = parser.parse_args().items
    for shape in ("short", "uuid"):
        for kind in ("dict", "FirstLines"):
            per_row, seconds, making = measure(kind, shape, n)
            print(
                f"{kind:<10} {shape:<5} ids, n={n}: {per_row:6.1f} B/row, "
                f"{(seconds - making) * 1e6:5.2f} us/row (making the ids: "
                f"{making * 1e6:.2f} us/row more)"
            )


if __name__ == "__main__":
    main()
