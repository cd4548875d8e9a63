"""The package's public surface, its error tree and its independence from theoryx."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import cas
from cas import BlobNotFound, CasError, CorruptBlob, InvalidCid

CAS_DIR = Path(cas.__file__).parent


def test_public_surface_is_exactly_the_documented_names() -> None:
    assert sorted(cas.__all__) == sorted(
        [
            "Blob",
            "BlobNotFound",
            "CasError",
            "CorruptBlob",
            "InvalidCid",
            "Store",
            "cid_of_bytes",
            "hash_file",
            "is_cid",
        ]
    )
    for name in cas.__all__:
        assert getattr(cas, name) is not None


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", sorted(CAS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_cas_imports_only_stdlib_blake3_and_itself(module: Path) -> None:
    foreign = _top_level_imports(module) - set(sys.stdlib_module_names) - {"blake3", "cas", "__future__"}
    assert foreign == set(), f"{module.name} imports {foreign}"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CasError, "ERR_CAS"),
        (BlobNotFound, "ERR_BLOB_NOT_FOUND"),
        (CorruptBlob, "ERR_CORRUPT_BLOB"),
        (InvalidCid, "ERR_INVALID_CID"),
    ],
)
def test_every_error_has_a_stable_code_and_derives_from_cas_error(error: type[CasError], code: str) -> None:
    assert error.code == code
    assert issubclass(error, CasError)


def test_errors_carry_the_offending_values() -> None:
    cid = "b3:" + "0" * 64
    assert BlobNotFound(cid).cid == cid
    assert cid in str(BlobNotFound(cid))
    corrupt = CorruptBlob(cid, "b3:" + "1" * 64)
    assert (corrupt.cid, corrupt.actual) == (cid, "b3:" + "1" * 64)
    assert InvalidCid("nope").value == "nope"
    assert InvalidCid("nope").code == "ERR_INVALID_CID"


def test_error_tree_in_docstring_names_every_error() -> None:
    from cas import errors

    doc = errors.__doc__ or ""
    for name in ("CasError", "BlobNotFound", "CorruptBlob", "InvalidCid"):
        assert name in doc
        assert getattr(errors, name).code in doc
