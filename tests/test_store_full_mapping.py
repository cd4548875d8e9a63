"""Review 1, defects 5 and 6: how a full disk reads. LMDB reports a short write at commit as
``mdb_txn_commit: Input/output error``, which gave ERR_INTERNAL: now, where the database's
filesystem has (almost) no space left, ``ERR_STORE_FULL``; otherwise ``ERR_STORE`` naming the
database. And ``ERR_STORE_FULL`` for an error that names no file reported the free space of the
working directory: now the home's."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import lmdb
import pytest
from theoryx_testing import REGISTRY

import theoryx
from theoryx.errors import StoreError, StoreFull
from theoryx.pipeline import session as session_mod
from theoryx.store import db as dbmod


class _FailingTxn:
    def __init__(self, error: str) -> None:
        self.error = error

    def put(self, *args: Any, **kw: Any) -> bool:
        return True

    def commit(self) -> None:
        raise lmdb.Error(self.error)

    def abort(self) -> None:
        pass


class _FailingEnv:
    def __init__(self, error: str) -> None:
        self.error = error

    def begin(self, **kw: Any) -> _FailingTxn:
        return _FailingTxn(self.error)


@pytest.fixture
def failing_db(tmp_path: Path) -> Any:
    db = dbmod.Database(tmp_path / "db")
    real = db._env
    db._env = _FailingEnv("mdb_txn_commit: Input/output error")  # type: ignore[assignment]
    yield db
    real.close()


def test_an_io_error_at_commit_on_a_full_disk_is_store_full(failing_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmod, "free_bytes", lambda path: 4096)
    with pytest.raises(StoreFull) as raised:
        failing_db.put("pins", "a", {"n": 1})
    assert raised.value.code == "ERR_STORE_FULL"
    assert str(failing_db.path) in raised.value.message and "4096 bytes free" in raised.value.message


def test_an_io_error_at_commit_with_space_left_is_a_store_error_naming_the_database(
        failing_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmod, "free_bytes", lambda path: 10 << 30)
    with pytest.raises(StoreError) as raised:
        failing_db.write(lambda txn: None)
    assert type(raised.value) is StoreError and raised.value.code == "ERR_STORE"
    assert str(failing_db.path) in raised.value.message and "Input/output error" in raised.value.message


def test_a_full_disk_error_naming_no_file_reports_the_homes_free_space(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    def full(*args: Any, **kw: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))    # no filename, as LMDB's or a pipe's

    monkeypatch.setattr(session_mod, "prepare", full)
    with theoryx.Session(home, registry=str(REGISTRY)) as session, pytest.raises(StoreFull) as raised:
        session.run("llm/litellm@1", adapter="mock", inputs={"messages": [{"role": "user", "content": "x"}]})
    message = raised.value.message
    assert f"the device holding {home}" in message and "bytes free" in message, message
    assert str(elsewhere) not in message
