"""Review 1, defect 8: a home path that is not UTF-8, or longer than Linux allows for the files
inside it. ``h\\xff\\xfe`` gave ERR_INTERNAL (UnicodeEncodeError opening the database) and left a
half-made home (CACHEDIR.TAG and cas-v1, no database); a ~4,000-byte path likewise. Now the
database is opened by its bytes (the home works), and a path too long is refused with ERR_STORE
before anything is created."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gc_support import run
from theoryx_testing import REGISTRY, Cli

from theoryx.store.gc import collect as gc
from theoryx.store.handle import open_stores
from theoryx.store.verify import verify


def test_a_home_whose_path_is_not_utf8_works(tmp_path: Path) -> None:
    home = tmp_path / os.fsdecode(b"h\xff\xfe")
    assert run(home).cache == "miss"
    assert run(home).cache == "hit"
    stores = open_stores(home)
    assert verify(stores).clean
    gc.collect(stores, grace_s=0)
    assert os.path.exists(os.fsencode(home) + b"/db-v1/data.mdb")


def test_a_home_path_too_long_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    home = tmp_path / "/".join(["d" * 200] * 20)       # ~4,000 bytes
    res = Cli(home, REGISTRY)("run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1",
                              "--inputs-json", json.dumps({"messages": [{"role": "user", "content": "x"}]}))
    assert res.exit_code == 1
    error = json.loads(res.stdout)["error"]
    assert error["code"] == "ERR_STORE" and "bytes long" in error["message"], error
    assert list(tmp_path.iterdir()) == []
