"""Rules about the code itself (issue 13), read from the source as text: the README's Tour
names every module of the package and only paths that exist; a ``# type: ignore`` names its
error code and says why; a name with one meaning has one definition (``DAY_MS``, and no alias
``coverage.LEVELS`` of ``models.COVERAGE_LEVELS``). ``mypy gridsync`` itself runs in CI
(``.ci/run``), not here: it takes longer than the whole file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gridsync import coverage

ROOT = Path(__file__).resolve().parent.parent


def tour_paths() -> list[Path]:
    """The paths of the Tour's table. A cell names a path in full (``gridsync/sync/push.py``),
    then names beside it in the same folder (``pull.py``)."""
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## Tour\n") : readme.index("### How a request flows")]
    paths = []
    for line in tour.splitlines():
        cells = line.split("|")
        if len(cells) < 4 or cells[2].strip() in ("path", "---"):
            continue
        folder = ROOT
        for name in re.findall(r"`([^`]+)`", cells[2]):
            if "/" in name.rstrip("/") or name.startswith("."):  # a path from the top
                path = ROOT / name
                folder = path.parent
            else:  # a name beside the previous path (or a folder of the top: `bench/`)
                path = folder / name
            paths.append(path)
    return paths


def test_the_tour_names_every_module_and_only_paths_that_exist():
    paths = tour_paths()
    assert [p for p in paths if not p.exists()] == []
    named = {p.resolve() for p in paths}
    modules = sorted((ROOT / "gridsync").rglob("*.py"))
    assert [str(m.relative_to(ROOT)) for m in modules if m.resolve() not in named] == []


IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[a-z-, ]+\])?(?P<rest>.*)$")


def test_every_type_ignore_names_its_code_and_a_reason():
    found = []
    for path in sorted((ROOT / "gridsync").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = IGNORE.search(line)
            if match is None:
                continue
            where = f"{path.relative_to(ROOT)}:{number}"
            found.append(where)
            reason = match["rest"].strip()
            if not reason:  # the reason may stand on the line above
                reason = path.read_text().splitlines()[number - 2].strip()
                reason = reason if reason.startswith("#") else ""
            assert match["codes"], f"{where}: an ignore without an error code"
            assert reason.startswith("#") and len(reason) > 10, f"{where}: an ignore without why"
    assert len(found) <= 5, found  # ignores stay rare: give values their real types


def definitions(folder: str, name: str) -> list[str]:
    """Where ``folder`` assigns ``name`` at a module's top level."""
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                out.append(str(path.relative_to(ROOT)))
    return out


def test_day_ms_has_one_definition_that_the_package_and_the_benchmarks_import():
    assert definitions("gridsync", "DAY_MS") == ["gridsync/clock.py"]
    assert definitions("bench", "DAY_MS") == []


def test_coverage_levels_have_one_name():
    assert not hasattr(coverage, "LEVELS")
    assert definitions("gridsync", "LEVELS") == []
