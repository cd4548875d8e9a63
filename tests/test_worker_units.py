"""Units of the local adapter's persistent workers (theoryx/adapters/local/workers.py) that need no
engine: splitting a worker's output into answers and per-request stderr, and claiming a request's
directory without following anything the worker may have put there."""

from __future__ import annotations

import collections
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from theoryx.adapters.local import workers
from theoryx.adapters.local.workers import Worker


class FakeAttached:
    def __init__(self, frames: list[tuple[str, bytes]]) -> None:
        self._frames = frames

    def frames(self) -> Iterator[tuple[str, bytes]]:
        yield from self._frames


class FakeCapture:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        self.data[stream] += data


def worker(tmp_path: Path, frames: list[tuple[str, bytes]] = ()) -> Worker:  # type: ignore[assignment]
    pool = SimpleNamespace(id="pool", root=tmp_path / "pool")
    w = Worker(pool, "key", 1, 10)  # type: ignore[arg-type]
    w._attached = FakeAttached(list(frames))  # type: ignore[assignment]
    return w


def answers(w: Worker) -> list[Any]:
    out = []
    while not w.answers.empty():
        a = w.answers.get()
        out.append(a.body if a.kind == "response" else (a.kind, a.detail[:40]))
    return out


def test_stdout_lines_are_answers_split_across_frames_and_stderr_goes_to_the_request(tmp_path: Path) -> None:
    w = worker(tmp_path, [("stderr", b"before any request\n"), ("stdout", b'{"id": 1, "exit'),
                          ("stdout", b'_code": 0}\n\n{"id": 2, "exit_code": 3}\n'), ("stderr", b"late\n")])
    w._read()
    assert answers(w) == [{"id": 1, "exit_code": 0}, {"id": 2, "exit_code": 3}, ("eof", "")]
    assert bytes(w._pending) == b"before any request\nlate\n"       # kept for the next request
    capture = FakeCapture()
    w2 = worker(tmp_path, [("stderr", b"in flight\n")])
    w2._capture = capture  # type: ignore[assignment]
    w2._read()
    assert capture.data["stderr"] == b"in flight\n" and not w2._pending


@pytest.mark.parametrize(("frames", "says"), [
    ([("stdout", b"hello\n")], "a stdout line that is not JSON"),
    ([("stdout", b"[1, 2]\n")], "a stdout line that is not a JSON obj"),
    ([("stdout", b'{"id": 1')], "an unterminated stdout line"),
    ([("stdout", b"x" * (workers.LINE_LIMIT + 1))], "a stdout line longer than"),
])
def test_anything_else_on_stdout_is_a_protocol_error(tmp_path: Path, frames: list[tuple[str, bytes]],
                                                     says: str) -> None:
    w = worker(tmp_path, frames)
    w._read()
    got = answers(w)
    assert got[0][0] == "protocol" and got[0][1].startswith(says[:40]) and got[-1] == ("eof", ""), got


def test_pending_stderr_between_requests_is_bounded(tmp_path: Path) -> None:
    w = worker(tmp_path, [("stderr", b"x" * (workers.PENDING_LIMIT * 3))])
    w._read()
    assert len(w._pending) == workers.PENDING_LIMIT


def request_dir(root: Path) -> Path:
    here = root / "requests" / "tok"
    for d in ("outputs", "result"):
        (here / d).mkdir(parents=True)
    return here


def workspace(root: Path) -> Any:
    ws = SimpleNamespace(outputs=root / "ws" / "outputs", result_dir=root / "ws" / "result")
    ws.outputs.mkdir(parents=True)
    ws.result_dir.mkdir()
    return ws


def test_claim_moves_the_request_directory_out_and_makes_its_outputs_the_runs(tmp_path: Path) -> None:
    w = worker(tmp_path)
    w.done.mkdir(parents=True)
    here = request_dir(w.root)
    (here / "outputs" / "a.txt").write_text("a")
    (here / "result" / "result.json").write_text("{}")
    ws = workspace(tmp_path)
    w._claim(here, "tok", ws)
    assert (ws.outputs / "a.txt").read_text() == "a" and (ws.result_dir / "result.json").exists()
    assert not here.exists()


def test_claim_follows_no_link_the_worker_put_in_place_of_a_directory(tmp_path: Path) -> None:
    secret = tmp_path / "host" / "outputs"
    secret.mkdir(parents=True)
    (secret / "private.key").write_text("host secret")
    w = worker(tmp_path)
    w.done.mkdir(parents=True)
    here = request_dir(w.root)
    os.rmdir(here / "outputs")
    os.symlink(secret, here / "outputs")                     # outputs -> a host directory
    ws = workspace(tmp_path)
    w._claim(here, "tok", ws)
    assert list(ws.outputs.iterdir()) == [] and (secret / "private.key").exists()
    # The whole request directory replaced by a link: nothing is claimed, the target untouched.
    other = worker(tmp_path / "second")
    other.done.mkdir(parents=True)
    (other.requests).mkdir(parents=True)
    os.symlink(secret.parent, other.requests / "tok")
    ws2 = workspace(tmp_path / "second")
    other._claim(other.requests / "tok", "tok", ws2)
    assert list(ws2.outputs.iterdir()) == [] and (secret / "private.key").exists()


def test_a_log_is_read_only_as_a_regular_file_and_only_up_to_its_size(tmp_path: Path) -> None:
    capture = FakeCapture()
    log = tmp_path / "stdout.log"
    log.write_bytes(b"printed\n")
    workers._copy_log(log, capture, "stdout")  # type: ignore[arg-type]
    os.symlink(tmp_path / "stdout.log", tmp_path / "stderr.log")
    workers._copy_log(tmp_path / "stderr.log", capture, "stderr")  # type: ignore[arg-type]
    os.mkfifo(tmp_path / "fifo.log")
    workers._copy_log(tmp_path / "fifo.log", capture, "stderr")  # type: ignore[arg-type]
    assert capture.data == {"stdout": b"printed\n", "stderr": b""}


@pytest.mark.skipif(os.geteuid() != 0, reason="sealing hands files back to root")
def test_seal_takes_the_worker_s_write_access_before_listing_each_directory(tmp_path: Path) -> None:
    top = tmp_path / "req"
    (top / "outputs" / "deep").mkdir(parents=True)
    (top / "outputs" / "deep" / "f.txt").write_text("x")
    setid = top / "outputs" / "setuid"
    setid.write_text("x")
    for p in (top, top / "outputs", top / "outputs" / "deep", top / "outputs" / "deep" / "f.txt", setid):
        os.chown(p, 10001, 10001)
    os.chmod(top / "outputs" / "deep", 0o777)
    os.chmod(setid, 0o4755)
    workers._seal(top)
    for d in (top, top / "outputs", top / "outputs" / "deep"):
        st = d.stat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, (d, oct(st.st_mode))
    assert (top / "outputs" / "deep" / "f.txt").stat().st_uid == 0
    assert setid.stat().st_uid == 10001 and setid.stat().st_mode & stat.S_ISUID   # ingest must see it


@pytest.mark.skipif(os.geteuid() != 0, reason="sealing hands files back to root")
def test_seal_reaches_past_path_max_and_never_follows_a_link_out(tmp_path: Path) -> None:
    """A worker's tree 20 levels of 250-byte names deep (~5,000 bytes of path) is sealed to the
    bottom (whole paths failed with ENAMETOOLONG, which failed the request as 'could not hand over
    request'); a link to a directory outside changes nothing there."""
    from theoryx.core import trees

    outside = tmp_path / "outside"
    outside.mkdir(mode=0o777)
    os.chmod(outside, 0o777)
    os.chown(outside, 10001, 10001)
    top = tmp_path / "req"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(20):
            os.mkdir("w" * 250, 0o777, dir_fd=fd)
            os.chown("w" * 250, 10001, 10001, dir_fd=fd)
            child = os.open("w" * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.fchmod(fd, 0o777)
        os.symlink(str(outside), "out", dir_fd=fd)
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o666, dir_fd=fd))
        os.chown("f", 10001, 10001, dir_fd=fd)
    finally:
        os.close(fd)
    workers._seal(top)
    seen: list[tuple[str, int, int]] = []
    trees.visit(top, lambda fd, name, st: seen.append((name, st.st_uid, stat.S_IMODE(st.st_mode))))
    dirs = [(uid, mode) for name, uid, mode in seen if name == "w" * 250]
    assert len(dirs) == 20 and all(uid == 0 and not mode & 0o022 for uid, mode in dirs), dirs
    assert [uid for name, uid, _ in seen if name == "f"] == [0]
    st = outside.stat()
    assert st.st_uid == 10001 and stat.S_IMODE(st.st_mode) == 0o777     # the link's target untouched
    trees.remove(top)           # not left to pytest's clean-up, which uses whole paths



def test_waiting_requests_get_workers_in_the_order_they_asked(tmp_path: Path) -> None:
    """With every worker busy, requests queue for the next one given back: first come, first
    served (a batch's early items must not wait behind later ones: its output is in order)."""
    import threading
    import time

    from theoryx.store.home import Home

    pool = workers.WorkerPool(Home(tmp_path / "home"), jobs=1)
    key = "k"
    pool._live[key] = 1                      # the one worker of this key is busy
    got: list[tuple[int, object]] = []

    def take(n: int) -> None:
        got.append((n, pool._take(key, None, None, "image", None)))  # type: ignore[arg-type]

    threads = []
    for n in range(4):
        t = threading.Thread(target=take, args=(n,), daemon=True)
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while len(pool._queues.get(key, ())) < n + 1:      # n+1 requests queued, in this order
            assert time.monotonic() < deadline
            time.sleep(0.005)
    for n in range(4):
        w = SimpleNamespace(key=key, dead=False, interrupted=False, served=0, max_requests=10, number=n)
        pool._give_back(w)  # type: ignore[arg-type]
        deadline = time.monotonic() + 5
        while len(got) < n + 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)                     # no second request may take it meanwhile
        assert [who for who, _ in got] == list(range(n + 1))
        assert got[n][1] is w
    for t in threads:
        t.join(5)
    assert pool._queues[key] == collections.deque()


SECRET = "sk-live-0123456789abcdefghijklmnop"


@pytest.mark.parametrize("frames", [
    [("stdout", b"debug " + b"x" * 100 + SECRET.encode() + b"\n")],            # the cut falls inside it
    [("stdout", b"[" + b"1," * 55 + b'"' + SECRET.encode() + b'"]\n')],
    [("stdout", b"x" * 110 + SECRET.encode())],                                 # unterminated
])
def test_a_protocol_error_never_shows_part_of_a_secret(tmp_path: Path, frames: list[tuple[str, bytes]]) -> None:
    w = worker(tmp_path, frames)
    w.secrets = (SECRET,)
    w._read()
    detail = w.answers.get().detail
    assert SECRET[:4] not in detail and "[REDAC" in detail, detail


@pytest.mark.parametrize("body", [
    {"id": "i" * 30 + SECRET, "exit_code": 0},
    {"id": 1, "exit_code": "code " + "y" * 28 + SECRET},
    {"id": 1, "exit_code": 2, "error": "e" * 1990 + SECRET},
    {"id": 1, "exit_code": "bad key " + SECRET.replace("-", "\\")},             # repr doubles a backslash
])
def test_an_answer_s_values_in_the_request_s_stderr_never_show_part_of_a_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]) -> None:
    """The note names what the worker answered, cut: scrubbed before the cut and before quoting
    (a cut value, or one whose backslashes repr doubled, no longer matches the log's scrubber)."""
    w = worker(tmp_path)
    secret = SECRET.replace("-", "\\") if "bad key" in str(body["exit_code"]) else SECRET
    w.secrets = (secret,)
    monkeypatch.setattr(w, "stop", lambda: None)
    w.answers.put(workers.Answer("response", body))
    served = w._await(1, 5.0, None)
    assert served.note and secret[:4] not in served.note and "[REDAC" in served.note, served.note


@pytest.mark.parametrize("answer_id", [True, "1", None, 2])
def test_only_the_request_s_own_id_answers_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer_id: Any) -> None:
    """``{"id": true}`` is no answer to request 1 (it was taken as one: true == 1 in Python)."""
    w = worker(tmp_path)
    monkeypatch.setattr(w, "stop", lambda: None)
    w.answers.put(workers.Answer("response", {"id": answer_id, "exit_code": 0}))
    served = w._await(1, 5.0, None)
    assert served.exit_code == 1 and "protocol error: an answer with id" in served.note, served
