"""The import surface: exactly the public names, sorted; a version; typing shipped; a pure core."""

from __future__ import annotations

import ast
import importlib
import importlib.resources
import pickle
import re
import subprocess
import sys
import traceback
import types
from pathlib import Path

import pytest

import aopay_async

PACKAGE_DIR = Path(aopay_async.__file__).parent

#: The import surface: exactly the names the README documents.
PUBLIC = {
    "AOPayClient",
    "CreditHistory",
    "UserInfo",
    "Account",
    "CreditAge",
    "CreditMix",
    "CreditUtilization",
    "CreditHistoryRequest",
    "BulkResult",
    "AOPayError",
    "InvalidRequestError",
    "APIConnectionError",
    "APITimeoutError",
    "APIStatusError",
    "AuthenticationError",
    "RateLimitError",
    "ServerError",
    "APIResponseError",
    "ResponseDecodeError",
    "RateLimiterError",
    "RedisLimiter",
    "CircuitOpenError",
    "RetryBudget",
    "CircuitBreaker",
}


def test_all_is_sorted() -> None:
    """``__all__`` is kept sorted, so a diff of a new name is one obvious line."""
    assert aopay_async.__all__ == sorted(aopay_async.__all__)


def test_all_is_exactly_the_public_names() -> None:
    """``__all__`` lists the contract's names, no more, no fewer, no repeats."""
    assert len(aopay_async.__all__) == len(set(aopay_async.__all__))
    assert set(aopay_async.__all__) == PUBLIC


def test_every_public_attribute_is_in_all() -> None:
    """Nothing public leaks out of the package namespace besides ``__all__`` and submodules."""
    public = {
        name
        for name, value in vars(aopay_async).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(aopay_async.__all__)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_exported_members_claim_the_package(name: str) -> None:
    """Each public name says it lives in ``aopay_async`` itself: tracebacks show no private path."""
    member = getattr(aopay_async, name)
    assert member.__module__ == "aopay_async"
    assert f"{member.__module__}.{member.__qualname__}" == f"aopay_async.{name}"
    assert member.__doc__, f"{name} has no docstring"


def test_a_raised_error_names_the_package_in_its_traceback() -> None:
    """The last line of a traceback reads ``aopay_async.RateLimitError: …``."""
    try:
        raise aopay_async.RateLimitError("slow down", status_code=429)
    except aopay_async.RateLimitError as error:
        last = traceback.format_exception(error)[-1]
    assert last == "aopay_async.RateLimitError: slow down\n"


def test_annotations_still_resolve_in_a_fresh_interpreter() -> None:
    """With the module claimed, type hints and msgspec's type info still resolve for every name.

    Both evaluate string annotations in the module a class names as its own; a fresh interpreter
    proves no earlier decoder had them cached.
    """
    code = (
        "import typing, msgspec, aopay_async\n"
        "names = [getattr(aopay_async, n) for n in aopay_async.__all__]\n"
        "for member in names: typing.get_type_hints(member)\n"
        "structs = [m for m in names if issubclass(m, msgspec.Struct)]\n"
        "msgspec.inspect.multi_type_info(structs)\n"
        "request = msgspec.json.decode(\n"
        '    b\'{"cibil_id": "1"}\', type=aopay_async.CreditHistoryRequest\n'
        ")\n"
        "print(len(structs), request.cibil_id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["8", "1"]  # BulkResult is a Struct too


@pytest.mark.parametrize(
    "value",
    [
        aopay_async.InvalidRequestError("bad cibil_id", attempts=0),
        aopay_async.CreditHistoryRequest(cibil_id="123", client_order_id="ord-1"),
        aopay_async.CreditAge(text="1 Years 2 Months", months=14),
    ],
    ids=["error", "request", "model"],
)
def test_public_values_pickle_through_the_package_path(value: object) -> None:
    """Pickle finds a claimed class at ``aopay_async.<name>`` and restores an equal value."""
    data = pickle.dumps(value)
    assert b"aopay_async._" not in data
    restored = pickle.loads(data)
    assert type(restored) is type(value)
    assert repr(restored) == repr(value)


def test_version_is_a_release_string() -> None:
    """``__version__`` exists and looks like a PEP 440 release such as ``0.1.0``."""
    version = aopay_async.__version__
    assert isinstance(version, str)
    parts = version.split(".")
    assert len(parts) >= 2
    assert all(part.isdigit() for part in parts[:2])


def test_version_matches_installed_metadata() -> None:
    """The installed distribution reports the same version as the module."""
    from importlib.metadata import version

    assert version("aopay-async") == aopay_async.__version__


def test_version_module_imports_nothing() -> None:
    """``__version__.py`` imports nothing, so any module may read it without a cycle."""
    tree = ast.parse(PACKAGE_DIR.joinpath("__version__.py").read_text(encoding="utf-8"))
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    # ``import aopay_async.__version__ as m`` would bind the string the package re-exports.
    module = importlib.import_module("aopay_async.__version__")
    assert isinstance(module, types.ModuleType)
    assert aopay_async.__version__ == module.__version__


def _imports_of_package_init(path: Path) -> list[str]:
    """The ``from . import x`` / ``from aopay_async import x`` statements in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            (node.level == 1 and node.module is None)
            or (node.level == 0 and node.module == "aopay_async")
        ):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_core_modules_never_import_back_up_from_the_package() -> None:
    """No core module reads a name from the package ``__init__`` (it imports them, not back)."""
    modules = sorted(p for p in PACKAGE_DIR.glob("*.py") if p.name != "__init__.py")
    assert len(modules) >= 10
    assert [hit for path in modules for hit in _imports_of_package_init(path)] == []


def test_the_finder_sees_an_import_back_up(tmp_path: Path) -> None:
    """The check above can fail: both spellings of an import from the package are caught."""
    module = tmp_path / "_bad.py"
    module.write_text("from . import __version__\nfrom aopay_async import AOPayClient\n")
    assert _imports_of_package_init(module) == ["_bad.py:1", "_bad.py:2"]


#: A path outside the repository (and the wheel): docs cite the README, which users do see.
_UNSHIPPED_SPEC = re.compile(r"shared/spec|spec/(?:api|design|style)\.md")


def test_no_source_cites_a_spec_outside_the_repository() -> None:
    """Package, tests and benchmarks cite the README, never ``../shared/spec/*.md``."""
    root = Path(__file__).resolve().parent.parent
    sources = [
        path
        for folder in ("aopay_async", "tests", "benchmarks")
        for path in sorted((root / folder).rglob("*.py"))
        if path != Path(__file__).resolve()
    ]
    assert len(sources) > 20
    cited = [
        f"{path.relative_to(root)}:{number}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _UNSHIPPED_SPEC.search(line)
    ]
    assert cited == []
    assert _UNSHIPPED_SPEC.search("Rules (see ../shared/spec/api.md):")


def test_py_typed_is_shipped() -> None:
    """``py.typed`` sits in the package, so type checkers read our annotations."""
    marker = importlib.resources.files("aopay_async").joinpath("py.typed")
    assert marker.is_file()


PURE_MODULES = [
    "aopay_async._decode",
    "aopay_async._headers",
    "aopay_async._retry",
    "aopay_async._errors",
    "aopay_async._models",
    "aopay_async._limiter",
    "aopay_async._redis",
    "aopay_async._gcra",
    "aopay_async._budget",
    "aopay_async._breaker",
    "aopay_async._adaptive",
    "aopay_async._window",
    "aopay_async._policy",
    "aopay_async._config",
]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_core_does_not_import_aiohttp(module: str) -> None:
    """Importing a core module in a fresh interpreter leaves aiohttp out of ``sys.modules``."""
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        "leaked = sorted(m for m in sys.modules if m == 'aiohttp' or m.startswith('aiohttp.'))\n"
        "print(','.join(leaked))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_all_pure_modules_together_do_not_import_aiohttp() -> None:
    """Even all the core modules imported together pull in no aiohttp."""
    code = (
        "import sys, importlib\n"
        f"for m in {PURE_MODULES!r}: importlib.import_module(m)\n"
        "print('aiohttp' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _imports(module: str) -> set[str]:
    """What one core module imports: sibling modules as ``_name``, others by top-level name."""
    tree = ast.parse(PACKAGE_DIR.joinpath(f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return {name.split(".")[0] for name in found}


def _reach(module: str) -> set[str]:
    """Everything *module* imports, directly or through the core modules it imports."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in _imports(todo.pop()) - seen:
            seen.add(name)
            if PACKAGE_DIR.joinpath(f"{name}.py").is_file():
                todo.append(name)
    return seen


#: (module, what it must never reach): the imports that run one way.
NEVER_REACHES = [
    ("_decode", "_retry"),  # classification must not depend on the retry loop...
    ("_decode", "tenacity"),  # ...nor load tenacity with it
    ("_decode", "aiohttp"),
    ("_transport", "_decode"),  # the transport raises errors; it does not decode
    ("_fastpath", "_decode"),  # nor does the fast transport
    ("_errors", "_models"),
]


@pytest.mark.parametrize(("module", "forbidden"), NEVER_REACHES)
def test_imports_run_one_way(module: str, forbidden: str) -> None:
    """Following its imports through the core modules, *module* never reaches *forbidden*."""
    reached = _reach(module)
    assert reached, f"{module} imports nothing?"
    assert forbidden not in reached


def test_reach_follows_imports_through_modules() -> None:
    """The walk above is transitive: ``_client`` reaches tenacity through ``_retry``."""
    assert {"_retry", "tenacity", "_errors"} <= _reach("_client")


def test_headers_module_uses_only_the_standard_library() -> None:
    """``_headers`` imports nothing but the standard library, so every module may import it."""
    assert _imports("_headers") <= {"__future__", "email", "math", "time"}


def test_retry_still_offers_parse_retry_after() -> None:
    """``_retry.parse_retry_after`` stays importable: the same function ``_headers`` defines."""
    headers = importlib.import_module("aopay_async._headers")
    retry = importlib.import_module("aopay_async._retry")
    assert retry.parse_retry_after is headers.parse_retry_after
    assert retry.RETRY_AFTER_STATUSES is headers.RETRY_AFTER_STATUSES
