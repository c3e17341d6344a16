"""Mutation testing of the pure core: each module against its own tests, one score table.

    .venv/bin/python scripts/mutation.py [MODULE ...] [--jobs N] [--report-only]

This script owns the project's mutation-testing habit (issue 14): it runs mutmut (3.x) on each
module listed under ``[tool.aopay-mutation.modules]`` in pyproject.toml, against that module's
own test files only, and prints a table (module, mutants, killed or timed out, score) followed
by every survivor not yet listed as equivalent in ``mutation-equivalents.toml``. It must never
touch the source tree (each module runs in a fresh copy under ``.mutation/<module>/``, which is
kept for ``mutmut show`` / ``mutmut browse``) and it is too slow for CI (the five core modules
take about 15 minutes on one loaded core), so CI never runs it.

Why a copy per module: mutmut reads its configuration from the working directory's
pyproject.toml and maps mutants to the tests that cover them over the whole selection; running
each module against only its own tests in its own directory makes a score mean "this module's
tests catch this module's bugs", not "some integration test happens to". The shared settings
live in ``[tool.mutmut]``; the copy adds ``only_mutate`` and the module's test selection.

Exit status: 0 when every module reaches the goal and no unknown survivor is left, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / ".mutation"
KILLED = {"killed", "timeout"}


@dataclass
class Survivor:
    """One surviving mutant: its mutmut name, its change (``old -> new``), and why if known."""

    name: str
    change: str
    why: str | None = None

    @property
    def function(self) -> str:
        """The mutated function's mangled name (the mutant name without its number)."""
        return self.name.rsplit("__mutmut_", 1)[0]


@dataclass
class Score:
    """One module's result."""

    module: str
    statuses: dict[str, str] = field(default_factory=dict)
    survivors: list[Survivor] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many mutants mutmut made."""
        return len(self.statuses)

    @property
    def killed(self) -> int:
        """Mutants a test failed on (or that ran past the time limit)."""
        return sum(status in KILLED for status in self.statuses.values())

    @property
    def score(self) -> float:
        """Killed or timed out, as a percentage of all mutants (no-tests counts as survived)."""
        return 100.0 * self.killed / self.total if self.total else 100.0

    @property
    def equivalent(self) -> int:
        """Survivors listed in the equivalents file."""
        return sum(s.why is not None for s in self.survivors)


def load_config() -> tuple[dict[str, object], dict[str, list[str]], float, Path]:
    """The shared mutmut settings, the module -> tests map, the goal and the equivalents file."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    tool = data["tool"]
    ours = tool["aopay-mutation"]
    return (
        dict(tool.get("mutmut", {})),
        {str(k): list(v) for k, v in ours["modules"].items()},
        float(ours.get("goal", 90.0)),
        ROOT / str(ours.get("equivalents", "mutation-equivalents.toml")),
    )


def load_equivalents(path: Path) -> list[dict[str, str]]:
    """The known equivalent mutants: ``mutant`` name, its ``change``, and ``why``."""
    if not path.exists():
        return []
    return [dict(e) for e in tomllib.loads(path.read_text("utf-8")).get("equivalent", [])]


def _toml_value(value: object) -> str:
    # JSON's strings, numbers, booleans and arrays of them are valid TOML.
    return json.dumps(value, ensure_ascii=False)


def _pyproject_for(module: str, tests: list[str], mutmut: dict[str, object]) -> str:
    """The copy's pyproject.toml: the project's own, with a [tool.mutmut] for this module."""
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    # Drop the shared [tool.mutmut] table (up to the next table header); it is rewritten below.
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[)", "", text + "\n[end]\n")
    text = text[: text.rindex("[end]")]
    settings = {**mutmut, "only_mutate": [module], "pytest_add_cli_args_test_selection": tests}
    lines = [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
    text += "\n[tool.mutmut]\n" + "\n".join(lines) + "\n"
    assert tomllib.loads(text)["tool"]["mutmut"]["only_mutate"] == [module]
    return text


def _mutmut(cwd: Path, *args: str, log: Path | None = None) -> str:
    command = [sys.executable, "-m", "mutmut", *args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if log is None:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"mutmut {' '.join(args)} failed in {cwd}:\n{done.stderr}")
        return done.stdout
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        tail = log.read_text("utf-8", "replace")[-3000:]
        raise SystemExit(f"mutmut {' '.join(args)} failed in {cwd} (log: {log}):\n{tail}")
    return ""


def _change(diff: str) -> str:
    """A mutant's diff on one line, ``old -> new`` (what the equivalents file records)."""
    lines = diff.splitlines()
    removed = [x[1:].strip() for x in lines if x.startswith("-") and not x.startswith("---")]
    added = [x[1:].strip() for x in lines if x.startswith("+") and not x.startswith("+++")]
    return f"{' '.join(removed)} -> {' '.join(added)}"


def run_module(
    module: str,
    tests: list[str],
    mutmut: dict[str, object],
    jobs: int,
    equivalents: list[dict[str, str]],
) -> Score:
    """Run mutmut on *module* against *tests* in a fresh copy; collect statuses and survivors."""
    name = Path(module).stem
    work = RUNS / name
    if jobs:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
        for folder in ("aopay_async", "tests"):
            shutil.copytree(ROOT / folder, work / folder, ignore=ignore)
        (work / "pyproject.toml").write_text(_pyproject_for(module, tests, mutmut), "utf-8")
        print(f"{name}: mutmut with {jobs} children against {', '.join(tests)} ...", flush=True)
        _mutmut(work, "run", "--max-children", str(jobs), log=work / "mutmut-run.log")
    elif not (work / "mutants").is_dir():
        raise SystemExit(f"{name}: no previous run in {work}; run without --report-only")

    score = Score(name)
    dotted = module.removesuffix(".py").replace("/", ".") + "."
    for line in _mutmut(work, "results", "--all", "true").splitlines():
        mutant, sep, status = line.strip().rpartition(": ")
        if sep and mutant.startswith(dotted):
            score.statuses[mutant] = status
    alive = sorted(m for m, status in score.statuses.items() if status not in KILLED)
    diffs = _diffs(work, alive)
    for mutant in alive:
        survivor = Survivor(mutant, _change(diffs[mutant]))
        survivor.why = _known(survivor, equivalents)
        score.survivors.append(survivor)
    return score


# One process for all diffs: ``mutmut show`` per mutant costs a second or two each.
_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name) for name in sys.argv[1:]}))
"""


def _diffs(work: Path, names: list[str]) -> dict[str, str]:
    """Each mutant's diff against the original, by name."""
    if not names:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", _DIFFS, *names],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return dict(json.loads(done.stdout))
    # mutmut moved its internals: fall back to its command line, one mutant at a time.
    return {name: _mutmut(work, "show", name) for name in names}


def _known(survivor: Survivor, equivalents: list[dict[str, str]]) -> str | None:
    """The listed reason when *survivor* is a known equivalent (same function, same change).

    Matching on the change, not the mutant's number, keeps the list valid when an edit
    elsewhere in the function renumbers its mutants.
    """
    for entry in equivalents:
        listed = Survivor(entry["mutant"], entry["change"])
        if listed.function == survivor.function and listed.change == survivor.change:
            return entry["why"]
    return None


def report(scores: list[Score], goal: float, equivalents: list[dict[str, str]]) -> bool:
    """Print the table and the new survivors; True when the run meets the goal."""
    print()
    print("| module | mutants | killed or timed out | equivalent | score |")
    print("|---|--:|--:|--:|--:|")
    for s in scores:
        print(f"| `{s.module}.py` | {s.total} | {s.killed} | {s.equivalent} | {s.score:.1f}% |")
    new = [v for s in scores for v in s.survivors if v.why is None]
    print()
    if new:
        print(f"New survivors ({len(new)}): kill them, or list them in the equivalents file")
        for v in new:
            print(f"  {v.name}: {v.change}")
    else:
        print("New survivors: none")
    seen = {(v.function, v.change) for s in scores for v in s.survivors}
    ran = {s.module for s in scores}
    stale = [
        e
        for e in equivalents
        if e["mutant"].split(".")[1] in ran
        and (Survivor(e["mutant"], e["change"]).function, e["change"]) not in seen
    ]
    for e in stale:
        print(f"  listed as equivalent but no longer surviving: {e['mutant']}: {e['change']}")
    low = [s.module for s in scores if s.score < goal]
    if low:
        print(f"Below the goal of {goal:g}%: {', '.join(low)}")
    return not new and not low


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run each module, print the table."""
    mutmut, modules, goal, equivalents_path = load_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "modules",
        nargs="*",
        metavar="MODULE",
        help=f"module stems (default: all of {[Path(m).stem for m in modules]})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="mutmut child processes (default 2: the machine is shared)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="print the table of the last run (kept in .mutation/) without running mutmut",
    )
    args = parser.parse_args(argv)
    chosen = {Path(m).stem: m for m in modules}
    # "retry" and "_retry" both name aopay_async/_retry.py.
    names = ["_" + m.lstrip("_") if "_" + m.lstrip("_") in chosen else m for m in args.modules]
    unknown = [m for m in names if m not in chosen]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {sorted(chosen)}")
    names = names or list(chosen)
    equivalents = load_equivalents(equivalents_path)
    scores = [
        run_module(
            chosen[n], modules[chosen[n]], mutmut, 0 if args.report_only else args.jobs, equivalents
        )
        for n in names
    ]
    return 0 if report(scores, goal, equivalents) else 1


if __name__ == "__main__":
    sys.exit(main())
