"""What the code imports is declared in pyproject.toml: a package that arrives only through
another one (httpx and anyio came with Litestar) disappears the day that one drops it.

``gridsync/`` may import the runtime ``dependencies`` only; ``tests/`` and ``bench/`` may also
import the ``test`` extra. Imports are read from the source (every ``import`` statement, those
inside functions included) and mapped to their distributions by the installed metadata."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN = {"gridsync", "bench", "tests"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a requirement's name, before any version


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalize(m[0]) for r in requirements if (m := NAME.match(r))}


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return (
        requirement_names(project["dependencies"]),
        requirement_names(project["optional-dependencies"]["test"]),
    )


def imported(folder: str) -> dict[str, set[str]]:
    """Top-level module -> the files of ``folder`` that import it (third-party modules only)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN | {"__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def undeclared(folders: list[str], allowed: set[str]) -> dict[str, str]:
    distributions = packages_distributions()
    out = {}
    for folder in folders:
        for module, files in imported(folder).items():
            dists = {normalize(d) for d in distributions.get(module, [])}
            if not dists & allowed:
                out[module] = f"{sorted(dists) or 'not installed'}, imported by {sorted(files)}"
    return out


def test_the_package_imports_only_its_runtime_dependencies():
    runtime, _ = declared()
    assert undeclared(["gridsync"], runtime) == {}


def test_tests_and_benchmarks_import_only_declared_packages():
    runtime, test = declared()
    assert undeclared(["tests", "bench"], runtime | test) == {}


def test_the_scan_sees_imports_inside_functions_and_maps_them_to_distributions():
    """The scan itself: uvicorn is imported only inside ``gridsync serve``, and its module
    name maps to its distribution; a module no distribution provides is reported."""
    assert "gridsync/cli/core.py" in imported("gridsync")["uvicorn"]
    assert undeclared(["gridsync"], set()).keys() >= {"uvicorn", "httpx", "anyio", "msgspec"}
    assert "uuid_utils" in undeclared(["gridsync"], set())  # module and distribution names differ
