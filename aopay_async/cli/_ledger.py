# How --resume works, in one file. OUTPUT is the ledger: every finished row is one JSON
# line carrying its input line number, whether it succeeded, and its cibil id. A resumed
# run (1) cuts off a partial last line (a run killed mid-write leaves at most one, since
# each line goes out in a single write), (2) reads OUTPUT back into a Ledger, (3) with
# --retry-failed rewrites OUTPUT without its failed lines (via a temporary file, so a
# kill half-way leaves OUTPUT as it was), then (4) the job skips every input line the
# ledger holds, after checking the row's fingerprint matches (OUTPUT from another INPUT is
# refused, not merged). It must never drop or duplicate a finished row, and never widen
# OUTPUT's permissions. Memory: one byte and one 32-bit word per input line, about 50 MB
# for ten million rows (a set of ten million ints would be ~500 MB).
"""The resume ledger: :func:`load_ledger`, :class:`Ledger`, :func:`cut_partial_line`."""

from __future__ import annotations

import itertools
import os
import zlib
from array import array
from pathlib import Path
from typing import IO, Any, Final

import msgspec

from ._output import STDOUT, json_safe, make_private
from ._status import UsageError

__all__ = ["Ledger", "cut_partial_line", "fingerprint", "load_ledger", "open_ledger"]


class _Record(msgspec.Struct):
    """The part of an output line the ledger reads back."""

    line: int
    ok: bool
    cibil_id: Any = None


_READ_RECORD = msgspec.json.Decoder(_Record)


def fingerprint(value: object) -> int:
    """A short fingerprint of a row's cibil id, to tell that OUTPUT belongs to INPUT."""
    return zlib.crc32(f"{type(value).__name__}:{value}".encode("utf-8", "backslashreplace"))


class Ledger:
    """Which input lines OUTPUT already holds an outcome for (and a fingerprint of each)."""

    ABSENT: Final = 0
    OK: Final = 1
    FAILED: Final = 2

    def __init__(self) -> None:
        self._state = bytearray()
        self._keys = array("I")
        self.ok = 0
        self.failed = 0

    def add(self, line: int, ok: bool, cibil_id: object) -> None:
        if line >= len(self._state):
            grow = max(line + 1 - len(self._state), len(self._state) // 2, 1024)
            self._state.extend(bytes(grow))
            self._keys.extend(itertools.repeat(0, grow))
        if self._state[line] == self.ABSENT:
            if ok:
                self.ok += 1
            else:
                self.failed += 1
        self._state[line] = self.OK if ok else self.FAILED
        self._keys[line] = fingerprint(cibil_id)

    def state(self, line: int) -> int:
        return self._state[line] if line < len(self._state) else self.ABSENT

    def matches(self, line: int, cibil_id: object) -> bool:
        """Whether the row read now is the row OUTPUT holds for *line* (as written there)."""
        return self._keys[line] == fingerprint(json_safe(cibil_id))

    def __len__(self) -> int:
        return self.ok + self.failed


def cut_partial_line(path: Path) -> int:
    """Truncate *path* after its last newline (a run killed mid-write); return bytes cut."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            step = min(end, 64 * 1024)
            f.seek(end - step)
            chunk = f.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                end = end - step + newline + 1
                break
            end -= step
        if end != size:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
        return size - end


def load_ledger(path: Path, *, retry_failed: bool) -> tuple[Ledger, int]:
    """Read OUTPUT back: the ledger of finished lines and the bytes of partial line cut off.

    With *retry_failed*, failed outcomes are removed from OUTPUT first (written to a
    temporary file that then replaces it, so a kill half-way leaves OUTPUT as it was).
    """
    ledger = Ledger()
    if not path.exists():
        return ledger, 0
    cut = cut_partial_line(path)
    keep: IO[bytes] | None = None
    tmp = path.with_name(path.name + ".resume-tmp")
    if retry_failed:
        # The copy replaces OUTPUT: 0600 whatever OUTPUT's mode was (customer data).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        make_private(fd)
        keep = open(fd, "wb")  # noqa: SIM115 - closed below, on every path
    dropped = 0
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    record = _READ_RECORD.decode(raw)
                except msgspec.DecodeError:
                    raise UsageError(
                        f"OUTPUT line {number} is not a bulk result line: is {str(path)!r} "
                        "the output of an earlier `aopay-async bulk` run?"
                    ) from None
                if keep is not None:
                    if not record.ok:
                        dropped += 1
                        continue
                    keep.write(raw)
                ledger.add(record.line, record.ok, record.cibil_id)
        if keep is not None:
            keep.flush()
            os.fsync(keep.fileno())
            keep.close()
            if dropped:
                os.replace(tmp, path)
            else:
                tmp.unlink()
    finally:
        if keep is not None and not keep.closed:
            keep.close()
            tmp.unlink(missing_ok=True)
    return ledger, cut


def open_ledger(
    path: Path, *, resume: bool, retry_failed: bool, overwrite: bool
) -> tuple[Ledger, int]:
    """The ledger a run starts from: OUTPUT's (``resume``) or an empty one.

    Without ``resume`` or ``overwrite``, a non-empty OUTPUT is refused: it may be the only
    copy of an earlier run's results.
    """
    if str(path) == STDOUT:
        return Ledger(), 0  # stdout: nothing to resume from, nothing to overwrite
    if resume:
        try:
            return load_ledger(path, retry_failed=retry_failed)
        except OSError as exc:  # a directory, no permission: a wrong -o, not a crash
            raise UsageError(
                f"cannot resume from OUTPUT {str(path)!r}: {exc.strerror or exc}"
            ) from None
    if not overwrite and path.exists() and path.stat().st_size > 0:
        raise UsageError(
            f"OUTPUT {str(path)!r} already exists and is not empty; pass --resume to "
            "continue that run, or --overwrite to start over"
        )
    return Ledger(), 0
