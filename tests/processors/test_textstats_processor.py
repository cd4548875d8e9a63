"""data/textstats@1: the pure ``compute``, ``run.py`` under the contract, and ``mock.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.contract import HostContract, load_script

FOLDER = Path(__file__).resolve().parents[2] / "registry" / "processors" / "data" / "textstats"
RUN_PY = FOLDER / "run.py"
stats = load_script(FOLDER / "stats.py", "theoryx_test_textstats_stats")
mock = load_script(FOLDER / "mock.py", "theoryx_test_textstats_mock")

TEXT = "The cat sat.\nThe dog sat too!\r\nDon't panic: the end"
CSV = (b"name,age,score,note\n"
       b"ada,36,9.5,\n"
       b"bob,41,-2,\"quoted, comma\"\n"
       b"cy,,1e3,x\n"
       b"dee,nan,abc,y,extra\n")


class Ctx:
    """The mock adapter's ctx: resolve world paths to host paths, collect the stream."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self.streamed: list[str] = []
        self.seed, self.execution_id, self.ref = 0, "test", "data/textstats@1"

    def resolve(self, world_path: str) -> Path:
        return self.paths[world_path]

    def stream(self, text: str) -> None:
        self.streamed.append(text)


# -- compute --------------------------------------------------------------------------------

def test_text_counts() -> None:
    result = stats.compute(TEXT.encode(), "text", 3)
    assert result["bytes"] == len(TEXT.encode())
    assert result["chars"] == len(TEXT)
    assert result["lines"] == 3                    # the last line has no terminator
    assert result["words"] == 11
    assert result["longest_line"] == len("Don't panic: the end")
    assert result["unique_words"] == 8
    assert result["top_words"] == [{"word": "the", "count": 3}, {"word": "sat", "count": 2},
                                   {"word": "cat", "count": 1}]
    assert result["invalid_utf8_bytes"] == 0 and "csv" not in result


def test_top_words_ties_sort_by_word_and_top_zero_is_empty() -> None:
    result = stats.compute(b"b a c b a c", "text", 2)
    assert result["top_words"] == [{"word": "a", "count": 2}, {"word": "b", "count": 2}]
    assert stats.compute(b"b a", "text", 0)["top_words"] == []


def test_empty_input() -> None:
    result = stats.compute(b"", "csv", 10)
    assert (result["bytes"], result["lines"], result["words"], result["longest_line"]) == (0, 0, 0, 0)
    assert result["csv"] == {"rows": 0, "ragged_rows": 0, "columns": []}


def test_invalid_utf8_bytes_are_counted_and_replaced() -> None:
    result = stats.compute(b"\xef\xbb\xbfok \xff\xfe end\n", "text", 5)
    assert result["invalid_utf8_bytes"] == 2
    assert result["chars"] == len("ok \ufffd\ufffd end\n")     # the BOM is dropped
    assert result["words"] == 3


def test_csv_summary() -> None:
    summary = stats.compute(CSV, "csv", 5)["csv"]
    assert summary["rows"] == 4 and summary["ragged_rows"] == 1
    name, age, score, note, extra = summary["columns"]
    assert name == {"index": 0, "name": "name", "count": 4, "empty": 0, "distinct": 4, "numeric": 0}
    # "nan" is not a number here: only finite decimal numbers count
    assert age == {"index": 1, "name": "age", "count": 3, "empty": 1, "distinct": 3, "numeric": 2,
                   "min": "36", "max": "41", "mean": "38.5"}
    assert score == {"index": 2, "name": "score", "count": 4, "empty": 0, "distinct": 4,
                     "numeric": 3, "min": "-2", "max": "1000", "mean": "335.833333333"}
    assert note["count"] == 3 and note["numeric"] == 0
    assert extra == {"index": 4, "name": "", "count": 1, "empty": 3, "distinct": 1, "numeric": 0}


def test_malformed_csv_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="malformed CSV"):
        stats.compute(b'a\n"' + b"x" * 200_000 + b'"\n', "csv", 1)


@pytest.mark.parametrize(("fmt", "top"), [("auto", 1), ("xml", 1), ("text", -1), ("text", 1001),
                                          ("text", True)])
def test_compute_refuses_bad_arguments(fmt: str, top: Any) -> None:
    with pytest.raises(ValueError):
        stats.compute(b"x", fmt, top)


@pytest.mark.parametrize(("requested", "name", "mime", "chosen"), [
    ("auto", "data.CSV", None, "csv"),
    ("auto", "data.txt", "text/csv; charset=utf-8", "csv"),
    ("auto", "data.txt", "text/plain", "text"),
    ("text", "data.csv", "text/csv", "text"),
    ("csv", "notes.txt", None, "csv"),
])
def test_choose_format(requested: str, name: str, mime: str | None, chosen: str) -> None:
    assert stats.choose_format(requested, name, mime) == chosen


def test_render_is_sorted_indented_and_newline_terminated() -> None:
    body = stats.render({"b": 1, "a": [{"z": "é", "y": 2}]})
    assert body == '{\n  "a": [\n    {\n      "y": 2,\n      "z": "é"\n    }\n  ],\n  "b": 1\n}\n'.encode()


# -- run.py under the contract ------------------------------------------------------------

def test_two_runs_are_byte_identical(tmp_path: Path) -> None:
    first = HostContract(tmp_path / "a", RUN_PY)
    second = HostContract(tmp_path / "b", RUN_PY)
    runs = [host.run({"file": host.attach("t.txt", TEXT.encode()), "top": 5}, seed=n)
            for n, host in enumerate((first, second))]
    assert [r.exit_code for r in runs] == [0, 0], runs[0].stderr
    assert set(runs[0].outputs) == {"stats.json"}
    assert runs[0].outputs["stats.json"] == runs[1].outputs["stats.json"]
    assert runs[0].json("stats.json") == stats.compute(TEXT.encode(), "text", 5)


def test_csv_is_detected_and_summarized(tmp_path: Path) -> None:
    host = HostContract(tmp_path, RUN_PY)
    run = host.run({"file": host.attach("people.csv", CSV, mime="text/csv")})
    assert run.exit_code == 0, run.stderr
    body = run.json("stats.json")
    assert body["format"] == "csv" and body["csv"]["rows"] == 4
    assert len(body["top_words"]) == 10              # the default top
    assert run.result == {"usage": {}, "cost_usd": 0.0, "meta": {"format": "csv", "bytes": len(CSV)}}
    assert run.stdout == b"csv: 88 bytes, 5 lines, 6 words, 4 rows x 5 columns\n"


@pytest.mark.parametrize(("inputs", "message"), [
    ({"file": "a.txt"}, "bad inputs: 'file' must be an $artifact object"),
    ({"file": {"$artifact": "/nonexistent/x.txt", "cid": "b3:0"}},
     "bad inputs: cannot read /nonexistent/x.txt: No such file or directory"),
    ({"file": {"$artifact": "/x.txt", "cid": "b3:0"}, "top": 5000},
     "bad inputs: 'top' must be an integer from 0 to 1000, got 5000"),
    ({"file": {"$artifact": "/x.txt", "cid": "b3:0"}, "format": "xml"},
     "bad inputs: format must be one of auto, text, csv, got 'xml'"),
])
def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, inputs: dict[str, Any], message: str) -> None:
    run = HostContract(tmp_path, RUN_PY).run(inputs)
    assert run.exit_code == 2
    assert run.stderr.strip().splitlines() == [message]
    assert run.outputs == {} and run.result is None


def test_mock_writes_the_same_stats_json_as_run_py(tmp_path: Path) -> None:
    host = HostContract(tmp_path / "host", RUN_PY)
    file = host.attach("people.csv", CSV, mime="text/csv")
    real = host.run({"file": file, "top": 3})
    world = {**file, "$artifact": f"/artifacts/inputs/{file['cid']}/people.csv"}
    ctx = Ctx({world["$artifact"]: Path(file["$artifact"])})
    outdir = tmp_path / "mock-out"
    outdir.mkdir()
    result = mock.run({"file": world, "top": 3}, outdir, ctx)
    assert (outdir / "stats.json").read_bytes() == real.outputs["stats.json"]
    assert result == real.result
    assert "".join(ctx.streamed).encode() == real.stdout
    assert json.loads((outdir / "stats.json").read_text())["csv"]["rows"] == 4
