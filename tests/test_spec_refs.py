"""Ref grammar bounds: a part longer than 100 characters is ``ERR_REF`` before any file is looked
up (a 300-character name or version failed ``run``, ``registry show`` and ``image build`` with
ENAMETOOLONG as ``ERR_INTERNAL``); a registry root whose path cannot be looked up is "not found"."""

from __future__ import annotations

from pathlib import Path

import pytest
from theoryx_testing import REGISTRY, Cli

from theoryx.errors import ProcessorNotFound, RefError
from theoryx.spec.refs import MAX_PART, Ref
from theoryx.spec.registry import Registry

LONG = "a" * 300


@pytest.mark.parametrize("text", [f"llm/{LONG}@1", f"llm/litellm@{LONG}", f"{LONG}/litellm@1"],
                         ids=["name", "version", "namespace"])
def test_a_part_over_100_characters_is_a_ref_error(text: str) -> None:
    with pytest.raises(RefError) as info:
        Ref.parse(text)
    assert f"at most {MAX_PART} characters" in info.value.message


def test_parts_of_exactly_100_characters_parse_and_are_simply_not_found(tmp_path: Path) -> None:
    ref = Ref.parse(f"{'n' * 100}/{'m' * 100}@{'v' * 100}")
    assert str(ref).count("@") == 1
    (tmp_path / "processors" / ("n" * 100)).mkdir(parents=True)   # the lookup reaches the file name
    with pytest.raises(ProcessorNotFound):
        Registry((tmp_path,)).locate(ref)


def test_a_root_whose_path_is_too_long_is_not_found_there(tmp_path: Path) -> None:
    ref = Ref.parse("llm/litellm@1")
    with pytest.raises(ProcessorNotFound):
        Registry((tmp_path / ("x" * 300),)).locate(ref)
    assert Registry((tmp_path / ("x" * 300), REGISTRY)).locate(ref).is_file()   # the next root answers


@pytest.mark.parametrize("args", [
    ["run", "--json", "--adapter", "mock", "--ref", f"llm/{LONG}@1", "--inputs-json", "{}"],
    ["registry", "show", f"llm/{LONG}@1"],
    ["registry", "show", f"llm/litellm@{LONG}"],
    ["image", "build", f"llm/{LONG}@1"],
], ids=["run", "show-name", "show-version", "image-build"])
def test_the_commands_answer_err_ref_not_an_internal_error(tmp_path: Path, args: list[str]) -> None:
    out = Cli(tmp_path / "home", REGISTRY)(*args)
    assert out.exit_code != 0
    assert "ERR_INTERNAL" not in out.output and "internal error" not in out.output
    assert "invalid processor ref" in out.output and "at most 100 characters" in out.output
    if args[0] == "run":
        assert '"code": "ERR_REF"' in out.stdout
