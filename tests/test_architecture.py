"""The architecture's import rules (ARCHITECTURE.md, "Packages and what they may import").

Every module of ``cas/`` and ``theoryx/`` is parsed, never imported, and each of its imports of a
cas or theoryx module — at module level, inside functions, under ``TYPE_CHECKING`` — is checked
against the layering: a package may import its own modules and the packages below it. The few
module-to-module exceptions are listed with their reason in :data:`EXCEPTIONS`; both tables must
be exactly the ones ARCHITECTURE.md shows. Separately, each module of the cache-hit path is
imported in a fresh interpreter, which must not load any heavy library.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from theoryx_testing import REPO

# Lowest first. A package may import itself and every package before it in this tuple;
# subpackages (theoryx.store.gc, theoryx.adapters.local, ...) belong to their parent.
LAYERS: tuple[str, ...] = (
    "cas",
    "theoryx.errors",
    "theoryx.core",
    "theoryx.store",
    "theoryx.spec",
    "theoryx.budget",
    "theoryx.adapters",
    "theoryx.pipeline",
    "theoryx.provenance",
    "theoryx.remote",
    "theoryx.ui",
    "theoryx.cli",
)
ROOT = "theoryx"
"""The face (``theoryx/__init__.py``, ``theoryx/__main__.py``): above every layer."""
ROOT_MODULES = frozenset({"theoryx", "theoryx.__main__"})
VERSION = "theoryx.__version__"
"""``from theoryx import __version__``: allowed everywhere but in cas. The root module imports
nothing at import time, so reading its version adds no dependency on the layers above."""

# (importing module, imported module) -> why the layering gives way there. Per module, never
# per package; a cas module can never have one. An entry that no longer matches an import fails.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("theoryx.budget.charging", "theoryx.adapters.base"):
        "type-only (TYPE_CHECKING): settlement reads the adapter's billed compute from its Outcome",
    ("theoryx.pipeline.session", "theoryx.remote.cache"):
        "a local miss asks the team cache and a miss publishes to it (imported only then, never on a hit)",
}

# The modules a cache hit of `theoryx run` goes through, and what none of them may load at import.
HIT_PATH: tuple[str, ...] = (
    "theoryx.cli.main",
    "theoryx.cli.fastpath",
    "theoryx.cli.runcore",
    "theoryx.cli.messages",
    "theoryx.cli.notices",
    "theoryx.pipeline.session",
    "theoryx.pipeline.prepare",
    "theoryx.pipeline.lookup",
    "theoryx.pipeline.hit",
    "theoryx.pipeline.record",
)
HEAVY: tuple[str, ...] = ("docker", "modal", "litellm", "jsonschema", "yaml", "rich", "requests", "click")
HIT_PATH_THIRD_PARTY = frozenset({"blake3", "lmdb", "msgpack"})
"""The only third-party libraries the hit path may load (besides Cython's runtime modules,
``cython_runtime`` and ``_cython_<version>``, which Cython extensions such as msgpack register)."""


@dataclass(frozen=True)
class Import:
    """``importer`` (a module) imports ``target`` (a module, or :data:`VERSION`) at ``line``."""

    importer: str
    target: str
    line: int


# -- collecting imports -------------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = REPO) -> dict[str, Path]:
    """Every module of the ``cas`` and ``theoryx`` packages of the checkout, by dotted name."""
    found: dict[str, Path] = {}
    for top in ("cas", "theoryx"):
        for path in sorted((root / top).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def collect_imports(module: str, source: str, *, is_package: bool, known: Iterable[str]) -> list[Import]:
    """The cas/theoryx modules that ``source`` imports anywhere: module level, functions, classes,
    ``if TYPE_CHECKING:`` blocks. ``from pkg import name`` counts as importing ``pkg.name`` when
    that is a module in ``known``, else as importing ``pkg``; relative imports are resolved."""
    modules = set(known)
    out: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend(Import(module, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                if origin == ROOT and alias.name == "__version__":
                    out.append(Import(module, VERSION, node.lineno))
                    continue
                sub = f"{origin}.{alias.name}"
                out.append(Import(module, sub if sub in modules else origin, node.lineno))
    return [i for i in out if i.target.split(".")[0] in ("cas", ROOT)]


def project_imports(root: Path = REPO) -> list[Import]:
    modules = project_modules(root)
    out: list[Import] = []
    for name, path in modules.items():
        out.extend(collect_imports(name, path.read_text(), is_package=path.name == "__init__.py", known=modules))
    return out


# -- checking them ------------------------------------------------------------------------------


def package_of(module: str, layers: tuple[str, ...] = LAYERS) -> str | None:
    """The package of the table that ``module`` belongs to; None if it belongs to none."""
    if module in ROOT_MODULES:
        return ROOT
    owners = [p for p in layers if module == p or module.startswith(p + ".")]
    return max(owners, key=len) if owners else None


def rank(package: str, layers: tuple[str, ...] = LAYERS) -> int:
    return len(layers) if package == ROOT else layers.index(package)


def may_import(layers: tuple[str, ...] = LAYERS) -> dict[str, list[str]]:
    """The table ARCHITECTURE.md shows: each package (highest first) -> the packages below it."""
    table = {ROOT: list(reversed(layers))}
    for i, pkg in reversed(list(enumerate(layers))):
        table[pkg] = list(reversed(layers[:i]))
    return table


def check(imports: Iterable[Import], layers: tuple[str, ...] = LAYERS,
          exceptions: Mapping[tuple[str, str], str] = EXCEPTIONS) -> list[str]:
    """Every import that breaks the layering and is not an exception, every module outside the
    table's packages, every exception given to cas and every exception no import uses."""
    problems: list[str] = []
    used: set[tuple[str, str]] = set()
    for imp in imports:
        src = package_of(imp.importer, layers)
        if src is None:
            problems.append(f"{imp.importer} belongs to no package of the table: add it (and to ARCHITECTURE.md)")
            continue
        if imp.target == VERSION and src != "cas":
            continue
        dst = package_of(imp.target, layers)
        if dst is None:
            problems.append(f"{imp.importer}:{imp.line} imports {imp.target}, which belongs to no package")
            continue
        if src == dst or (src != "cas" and rank(dst, layers) < rank(src, layers)):
            continue
        key = (imp.importer, imp.target)
        if key in exceptions and src != "cas":
            used.add(key)
            continue
        problems.append(f"{imp.importer}:{imp.line} imports {imp.target}: {src} may not import {dst}")
    for importer, target in exceptions:
        if package_of(importer, layers) == "cas":
            problems.append(f"cas never imports theoryx: no exception for {importer} -> {target}")
        elif (importer, target) not in used:
            problems.append(f"exception {importer} -> {target} is no longer needed: remove it")
    return sorted(set(problems))


# -- the checker itself, on small fake graphs ---------------------------------------------------


def test_checker_accepts_imports_down_the_layers_and_within_a_package() -> None:
    graph = [
        Import("theoryx.cli.run", "theoryx.pipeline.session", 1),
        Import("theoryx.pipeline.session", "theoryx.store.handle", 2),
        Import("theoryx.store.gc.collect", "theoryx.store.liveness", 3),
        Import("theoryx.store.handle", "cas", 4),
        Import("theoryx", "theoryx.pipeline.session", 5),
        Import("theoryx.store.receipts", VERSION, 6),
    ]
    assert check(graph, exceptions={}) == []


def test_checker_rejects_an_import_up_the_layers() -> None:
    graph = [Import("theoryx.store.verify", "theoryx.pipeline.miss", 7)]
    assert check(graph, exceptions={}) == [
        "theoryx.store.verify:7 imports theoryx.pipeline.miss: theoryx.store may not import theoryx.pipeline"]


def test_checker_rejects_importing_the_face_from_below() -> None:
    graph = [Import("theoryx.pipeline.hit", "theoryx", 3), Import("theoryx.cli.app", "theoryx.__main__", 4)]
    assert len(check(graph, exceptions={})) == 2


def test_checker_lets_an_exception_through_for_its_module_only() -> None:
    exceptions = {("theoryx.store.worldpaths", "theoryx.provenance.intoto"): "why"}
    allowed = [Import("theoryx.store.worldpaths", "theoryx.provenance.intoto", 1)]
    assert check(allowed, exceptions=exceptions) == []
    sibling = [*allowed, Import("theoryx.store.stats", "theoryx.provenance.intoto", 2)]
    assert check(sibling, exceptions=exceptions) == [
        "theoryx.store.stats:2 imports theoryx.provenance.intoto: theoryx.store may not import theoryx.provenance"]


def test_checker_never_lets_cas_import_theoryx() -> None:
    exceptions = {("cas.store", "theoryx.errors"): "no"}
    problems = check([Import("cas.store", "theoryx.errors", 9), Import("cas.blob", VERSION, 1)],
                     exceptions=exceptions)
    assert problems == [
        "cas never imports theoryx: no exception for cas.store -> theoryx.errors",
        "cas.blob:1 imports theoryx.__version__, which belongs to no package",
        "cas.store:9 imports theoryx.errors: cas may not import theoryx.errors",
    ]


def test_checker_reports_an_exception_no_import_uses() -> None:
    exceptions = {("theoryx.spec.registry", "theoryx.store.db"): "the spec cache"}
    assert check([], exceptions=exceptions) == [
        "exception theoryx.spec.registry -> theoryx.store.db is no longer needed: remove it"]


def test_checker_rejects_a_module_outside_every_package() -> None:
    problems = check([Import("theoryx.run.steps", "theoryx.errors", 1)], exceptions={})
    assert problems == ["theoryx.run.steps belongs to no package of the table: add it (and to ARCHITECTURE.md)"]


def test_collector_finds_imports_in_functions_type_checking_blocks_and_relative_forms() -> None:
    source = """
from typing import TYPE_CHECKING
import json
from cas import Store
from theoryx import adapters, __version__
from . import attachments
from ..store.db import Database
if TYPE_CHECKING:
    from theoryx.adapters.base import Outcome

def miss() -> None:
    import theoryx.budget.plans as plans
    from .ingest import ingest
"""
    known = {"theoryx.adapters", "theoryx.pipeline.attachments", "theoryx.pipeline.ingest", "theoryx.store.db"}
    found = collect_imports("theoryx.pipeline.executor", source, is_package=False, known=known)
    assert sorted((i.target, i.line) for i in found) == [
        ("cas", 4), ("theoryx.__version__", 5), ("theoryx.adapters", 5), ("theoryx.adapters.base", 9),
        ("theoryx.budget.plans", 12), ("theoryx.pipeline.attachments", 6), ("theoryx.pipeline.ingest", 13),
        ("theoryx.store.db", 7),
    ]


def test_collector_resolves_relative_imports_of_a_package_init() -> None:
    found = collect_imports("theoryx.store.gc", "from . import collect\nfrom .. import db\n",
                            is_package=True, known={"theoryx.store.gc.collect", "theoryx.store.db"})
    assert [i.target for i in found] == ["theoryx.store.gc.collect", "theoryx.store.db"]


# -- the real tree ------------------------------------------------------------------------------


def test_every_module_imports_only_what_its_package_may_import() -> None:
    imports = project_imports()
    assert len({i.importer for i in imports}) > 50, "the collector found too few modules"
    problems = check(imports)
    assert problems == [], "\n".join(problems)


def _markdown_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table below ``heading``, cells stripped."""
    section = text.split(heading, 1)[1]
    rows: list[list[str]] = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows and not line.startswith("|"):
            break
    return rows[1:]  # the header row


def _backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_architecture_md_shows_the_tables_this_test_enforces() -> None:
    text = (REPO / "ARCHITECTURE.md").read_text()
    rows = _markdown_rows(text, "### What each package may import")
    shown = {_backticked(r[0])[0]: _backticked(r[1]) for r in rows}
    assert shown == may_import()
    assert list(shown) == list(may_import()), "highest first, as the layers stack"
    rows = _markdown_rows(text, "### Exceptions")
    shown_exceptions = {(_backticked(r[0])[0], _backticked(r[1])[0]) for r in rows}
    assert shown_exceptions == set(EXCEPTIONS)


def test_every_package_is_in_the_package_map_of_architecture_md() -> None:
    text = (REPO / "ARCHITECTURE.md").read_text()
    mapped = {_backticked(r[0])[0].rstrip("/").replace("/", ".") for r in _markdown_rows(text, "### Package map")}
    packages = {module_name(p, REPO) for top in ("cas", ROOT) for p in (REPO / top).rglob("__init__.py")}
    assert packages <= mapped, f"missing from the package map: {sorted(packages - mapped)}"


PROBE = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
assert "typing" not in sys.modules, "the interpreter loads typing at start: the probe could not see it"
before = set(sys.modules)
importlib.import_module(sys.argv[2])
print(json.dumps(sorted(set(sys.modules) - before)))
"""


@pytest.mark.parametrize("module", HIT_PATH)
def test_a_hit_path_module_loads_no_heavy_library_at_import(module: str) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(REPO), module], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    loaded: list[str] = json.loads(proc.stdout)
    assert module in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == [], f"{module} loads {heavy} at import"
    # typing costs ~5 ms of a ~85 ms hit: annotations only, under ``if TYPE_CHECKING:``
    assert "typing" not in loaded, f"{module} imports typing at run time"
    # threading (~1.5 ms) is for batches and team caches; a single hit takes _thread locks
    assert "threading" not in loaded, f"{module} imports threading at run time"
    tops = {m.split(".")[0] for m in loaded}
    third_party = {t for t in tops - set(sys.stdlib_module_names) - {"cas", ROOT}
                   if t != "cython_runtime" and not t.startswith("_cython_")}
    assert third_party <= HIT_PATH_THIRD_PARTY, f"{module} loads {sorted(third_party)} at import"
