"""Every Python snippet of the README runs, against the sandbox, as a reader would run it.

Snippets are the ```python blocks. Each runs in a fresh interpreter with AOPAY_BASE_URL pointing
at a sandbox on 127.0.0.1 (and the sandbox's credentials in the environment), so nothing leaves
the machine. A snippet with top-level ``await`` runs as a coroutine; names it assumes come from
an HTML comment right above it, ``<!-- readme-test: given NAME = ...; ... -->``; a snippet that
defines ``test_*`` functions runs under pytest in an empty directory, as in a new project (no
configuration). Only a snippet marked ``<!-- readme-test: skip REASON -->`` is skipped.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import sys
import textwrap

import pytest

from aopay_async.testing import DEFAULT_COMPANY_CODE, DEFAULT_REGISTRATION_ID, SandboxServer

README = pathlib.Path(__file__).parent.parent / "README.md"
_BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<marker>.*?) -->\n)?```python\n(?P<code>.*?)```", re.DOTALL
)
SNIPPETS = [
    (README.read_text()[: m.start()].count("\n") + 1, m["marker"] or "", m["code"])
    for m in _BLOCK.finditer(README.read_text())
]

_RUNNER = textwrap.dedent(
    """
    import ast, asyncio, sys
    source = sys.stdin.read()
    code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, {"__name__": "__main__"})
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    """
)


async def _run(args: list[str], stdin: str, cwd: pathlib.Path, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=env,
    )
    async with asyncio.timeout(120):
        out, _ = await process.communicate(stdin.encode())
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    return text


def test_the_readme_has_snippets() -> None:
    """The extraction finds the README's Python snippets (a broken pattern would test nothing)."""
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize(
    ("marker", "code"), [s[1:] for s in SNIPPETS], ids=[f"line-{s[0]}" for s in SNIPPETS]
)
async def test_readme_snippet_runs(marker: str, code: str, tmp_path: pathlib.Path) -> None:
    """The snippet runs to the end without an error against the sandbox."""
    if marker.startswith("skip"):
        reason = marker.removeprefix("skip").strip()
        assert reason, "a skipped snippet must say why"
        pytest.skip(reason)
    given = marker.removeprefix("given").strip() if marker.startswith("given") else ""
    source = code if not given else given.replace("; ", "\n") + "\n" + code
    async with SandboxServer() as sandbox:
        env = {
            **os.environ,
            "AOPAY_BASE_URL": sandbox.url,
            "AOPAY_COMPANY_CODE": DEFAULT_COMPANY_CODE,
            "AOPAY_REGISTRATION_ID": DEFAULT_REGISTRATION_ID,
        }
        if re.search(r"^(?:async )?def test_", code, re.MULTILINE):
            (tmp_path / "test_snippet.py").write_text(source)
            out = await _run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "."],
                "",
                tmp_path,
                env,
            )
            assert "passed" in out
            assert "skipped" not in out
        else:
            await _run([sys.executable, "-c", _RUNNER], source, tmp_path, env)
