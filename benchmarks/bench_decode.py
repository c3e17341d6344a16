"""Decoding cost: µs per response body, our decoder against the usual alternatives.

- ``aopay``: ``aopay_async._decode.decode_response`` — classification and every conversion
  (numeric strings to int/float/Decimal, "1"/"0" to bool, "0000-00-00" to None, an aware
  Asia/Kolkata datetime, the credit age in months) into the frozen public Structs;
- ``json.loads``, ``orjson.loads``, ``msgspec.json.decode`` into plain dicts (no conversions);
- ``msgspec_structs``: plain msgspec Structs of the wire shape, strings left as strings;
- ``pydantic``: pydantic v2 models with the same conversions as ours (``model_validate_json``).

For each body (3 and 100 accounts) and each repeat, every decoder runs the same number of
times back to back; the figure is the mean µs per body of that batch, and the ratio against
pydantic is taken within the repeat.

Run alone: ``python -m benchmarks.bench_decode [--repeats 5] [--seconds 0.3]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from ._alternatives import PydanticCreditHistory, WireCreditHistory
from ._bodies import body_for
from ._stats import summarize

__all__ = ["DECODERS", "run"]


def _decoders() -> dict[str, Callable[[bytes], object]]:
    from aopay_async._decode import decode_response

    headers: dict[str, str] = {}
    plain = msgspec.json.Decoder()
    wire = msgspec.json.Decoder(WireCreditHistory)
    return {
        "aopay": lambda body: decode_response(200, headers, body),
        "json.loads": json.loads,
        "orjson.loads": orjson.loads,
        "msgspec_dicts": plain.decode,
        "msgspec_structs": wire.decode,
        "pydantic": PydanticCreditHistory.model_validate_json,
    }


DECODERS = (
        "aopay", "json.loads", "orjson.loads", "msgspec_dicts", "msgspec_structs", "pydantic"
)  # fmt: skip


def _time(fn: Callable[[bytes], object], body: bytes, loops: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(loops):
        fn(body)
    return (time.perf_counter() - start) / loops * 1e6


def run(
    *, sizes: tuple[int, ...] = (3, 100), repeats: int = 5, seconds: float = 0.3
) -> list[dict[str, Any]]:
    """One record per (decoder, size): µs per body over *repeats* batches of ~*seconds*."""
    decoders = _decoders()
    records: list[dict[str, Any]] = []
    for accounts in sizes:
        body = body_for(accounts)
        loops: dict[str, int] = {}
        for name, fn in decoders.items():
            fn(body)  # warm up, and fail early if a decoder cannot read the body
            probe = max(_time(fn, body, 50), 0.05)
            loops[name] = max(10, min(1_000_000, int(seconds * 1e6 / probe)))
        runs: dict[str, list[float]] = {name: [] for name in decoders}
        for _ in range(repeats):
            for name, fn in decoders.items():
                runs[name].append(_time(fn, body, loops[name]))
        for name in decoders:
            ratio = [p / mine for p, mine in zip(runs["pydantic"], runs[name], strict=True)]
            records.append(
                {
                    "decoder": name,
                    "accounts": accounts,
                    "bytes": len(body),
                    "loops": loops[name],
                    "us": summarize(runs[name]),
                    "pydantic_over_this": summarize(ratio),
                    "runs": runs[name],
                }
            )
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="per batch, roughly")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    records = run(repeats=args.repeats, seconds=args.seconds)
    if args.json:
        print(json.dumps(records))
        return
    for r in records:
        us = r["us"]
        print(
            f"{r['accounts']:>3} accts  {r['decoder']:<16} {us['median']:8.2f} µs "
            f"(min {us['min']:.2f}, max {us['max']:.2f})  "
            f"pydantic/this {r['pydantic_over_this']['median']:.2f}x"
        )


if __name__ == "__main__":
    main()
