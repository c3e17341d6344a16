"""CI and the README agree: the test command users are told to run is the one CI runs, and CI
tests every Python the package claims (pyproject's classifiers)."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / ".ci" / "run"


def _ci_assignment(name: str) -> str:
    """The right-hand side of ``NAME=...`` in .ci/run, as bash would read it."""
    found = re.search(rf"^{name}=(.+)$", CI.read_text(encoding="utf-8"), re.MULTILINE)
    assert found, f"{name}= is missing from .ci/run"
    return found.group(1)


def _readme_test_command() -> str:
    readme = ROOT.joinpath("README.md").read_text(encoding="utf-8")
    found = re.search(r"Run the tests[^\n]*\n\n```bash\n(.+?)\n```", readme)
    assert found, "the README's 'Run the tests' block is missing"
    return found.group(1)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """``TEST_CMD`` in .ci/run is, character for character, the README's test command."""
    (command,) = shlex.split(_ci_assignment("TEST_CMD"))
    assert command == _readme_test_command()
    assert command.endswith("-m pytest")


def test_ci_tests_every_python_the_package_claims() -> None:
    """python3 (3.11, the floor) plus ``OTHER_PYTHONS`` are exactly pyproject's 3.x classifiers."""
    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text(encoding="utf-8"))["project"]
    claimed = {
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    others = _ci_assignment("OTHER_PYTHONS").strip("()").split()
    assert project["requires-python"] == ">=3.11"
    assert {"3.11", *others} == claimed
    assert len(others) == len(set(others)) == 2


def test_ci_script_parses() -> None:
    """``bash -n`` accepts .ci/run (a syntax error would otherwise show only on the CI machine)."""
    done = subprocess.run(
        ["bash", "-n", str(CI)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
