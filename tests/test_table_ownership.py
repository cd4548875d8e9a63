"""Every LMDB table is named by exactly one module: its owner (``theoryx.store.db.OWNERS``).

The checker parses each module under ``theoryx/`` and reports where a module other than a
table's owner names that table:

- ``<x>.dbs[...]`` (the handle of a named database), with a literal key or a module constant
  (also through a local alias ``dbs[...]``);
- a ``.get/.put/.delete/.items/.count(...)`` call whose first argument is the table's name (a
  string literal or a module-level constant holding one).

A ``<x>.dbs[...]`` whose key it cannot resolve, and a ``db.get/...`` call (a receiver named
``db`` or ending in ``.db``) whose table is not a literal, are reported too: the checker cannot
tell which table they name; so is ``<x>.dbs`` used other than subscripted (an alias hides
the table from the checker). ``theoryx/store/db.py`` implements the tables and is exempt.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from theoryx.store import db as dbmod

ROOT = Path(__file__).resolve().parent.parent / "theoryx"
EXEMPT = {"theoryx.store.db"}
CALLS = {"get", "put", "delete", "items", "count"}
DYNAMIC = "<dynamic>"

PENDING: set[tuple[str, str]] = set()
"""Known violations awaiting their switch; the test fails once one of them is gone, so the
list only shrinks."""


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    table: str
    how: str

    def __str__(self) -> str:
        owner = dbmod.OWNERS.get(self.table, "nobody can tell")
        return f"{self.module}:{self.line}: names table {self.table!r} ({self.how}); owner: {owner}"


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "literal"`` assignments."""
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            out[node.target.id] = node.value.value
    return out


def _table(node: ast.expr, constants: dict[str, str]) -> str | None:
    """The string ``node`` evaluates to, if it is a literal or a module constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _is_db(node: ast.expr) -> bool:
    """``db``, ``self.db``, ``stores.db``...: a receiver that is a Database by naming convention."""
    return (isinstance(node, ast.Name) and node.id == "db") or (isinstance(node, ast.Attribute) and node.attr == "db")


def _is_dbs(node: ast.expr) -> bool:
    """``x.dbs`` or a local ``dbs`` (``dbs = self.db.dbs`` is reported itself, as an alias)."""
    return (isinstance(node, ast.Attribute) and node.attr == "dbs") or (isinstance(node, ast.Name) and node.id == "dbs")


def table_uses(source: str, module: str) -> list[Violation]:
    """Every place in ``source`` that names a table (or a table the checker cannot resolve)."""
    tree = ast.parse(source)
    constants = _constants(tree)
    found: list[Violation] = []
    subscripted = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "dbs" and id(node) not in subscripted:
            found.append(Violation(module, node.lineno, DYNAMIC, "an alias of .dbs"))
        elif isinstance(node, ast.Subscript) and _is_dbs(node.value):
            name = _table(node.slice, constants)
            if name is None:
                found.append(Violation(module, node.lineno, DYNAMIC, "dbs[...]"))
            elif name in dbmod.NAMES:
                found.append(Violation(module, node.lineno, name, "dbs[...]"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in CALLS and node.args):
            name = _table(node.args[0], constants)
            if name in dbmod.NAMES:
                found.append(Violation(module, node.lineno, name, f".{node.func.attr}(...)"))
            elif name is None and _is_db(node.func.value):
                found.append(Violation(module, node.lineno, DYNAMIC, f"db.{node.func.attr}(...)"))
    return found


def violations(source: str, module: str) -> list[Violation]:
    """The uses in ``source`` that ``module`` may not make: tables it does not own."""
    if module in EXEMPT:
        return []
    return [v for v in table_uses(source, module) if dbmod.OWNERS.get(v.table) != module]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def _all_violations() -> list[Violation]:
    return [v for module, path in _modules() for v in violations(path.read_text(), module)]


# -- the tree ------------------------------------------------------------------------------

def test_every_table_has_exactly_one_owner_that_exists() -> None:
    assert set(dbmod.OWNERS) == set(dbmod.NAMES)
    modules = {m for m, _ in _modules()}
    assert set(dbmod.OWNERS.values()) <= modules


def test_the_db_docstring_states_the_owner_of_every_table() -> None:
    doc = dbmod.__doc__ or ""
    for table, owner in dbmod.OWNERS.items():
        rows = [line for line in doc.splitlines() if line.startswith(f"``{table}``")]
        assert len(rows) == 1 and f":mod:`{owner}`" in rows[0], table


def test_only_a_tables_owner_names_it() -> None:
    found = [v for v in _all_violations() if (v.module, v.table) not in PENDING]
    assert not found, "\n".join(map(str, found))


def test_every_pending_exception_is_still_needed() -> None:
    seen = {(v.module, v.table) for v in _all_violations()}
    assert PENDING <= seen, f"fixed, remove from PENDING: {sorted(PENDING - seen)}"


def test_every_owner_names_its_tables() -> None:
    """Guards the checker itself: were it blind (a wrong path, a parse that finds nothing), the
    owners' own uses would vanish too."""
    uses = {(v.module, v.table) for module, path in _modules() for v in table_uses(path.read_text(), module)}
    assert {(owner, table) for table, owner in dbmod.OWNERS.items()} <= uses


# -- the checker ---------------------------------------------------------------------------

def test_a_foreign_dbs_subscript_is_reported() -> None:
    src = 'raw = txn.get(key, db=db.dbs["ac"])\n'
    assert [(v.table, v.line) for v in violations(src, "theoryx.store.gc.collect")] == [("ac", 1)]
    assert violations(src, "theoryx.store.action_cache") == []


def test_an_alias_of_the_handles_is_reported_and_so_is_its_use() -> None:
    src = 'dbs = self.db.dbs\ntxn.delete(key, db=dbs["executions"])\n'
    assert [(v.table, v.line) for v in violations(src, "theoryx.store.executions")] == [(DYNAMIC, 1)]
    assert {v.table for v in violations(src, "theoryx.store.gc.collect")} == {DYNAMIC, "executions"}


def test_a_foreign_database_call_with_a_table_name_is_reported() -> None:
    src = 'n = stores.db.count("pins")\nfor k, v in db.items("executions"):\n    pass\n'
    assert [(v.table, v.how) for v in violations(src, "theoryx.store.stats")] == [
        ("pins", ".count(...)"), ("executions", ".items(...)")]


def test_a_table_named_through_a_module_constant_is_reported() -> None:
    src = 'T = "ledger"\nx = db.get(T, "k")\ny = self.db.dbs[T]\n'
    assert {v.table for v in violations(src, "theoryx.budget.plans")} == {"ledger"}
    assert violations(src, "theoryx.budget.ledger") == []


def test_an_unresolvable_table_name_is_reported_even_in_an_owner() -> None:
    src = "def f(db, name):\n    db.items(name)\n    return db.dbs[name]\n"
    assert [v.table for v in violations(src, "theoryx.store.pins")] == [DYNAMIC, DYNAMIC]


def test_other_uses_of_the_same_words_are_not_reported() -> None:
    src = ('d = {"executions": 1, "pins": 2}\nd.get("cache")\nrec.get("status")\n'
           'cache.get(key)\nreport["ac"] = 3\n')
    assert violations(src, "theoryx.cli.store") == []
