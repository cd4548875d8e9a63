"""What a processor folder may hold, and what of it the key covers (theoryx.spec.context).

- special files: a FIFO made every run hang forever (``registry validate`` passed), a socket
  failed with ENXIO and a name that is not UTF-8 with a CanonicalizationError, both
  ``ERR_INTERNAL``: now ``ERR_SPEC`` naming the path, in ``registry validate`` and ``run``;
- size: a 1 GiB file made every hit read it whole into memory; files are now hashed 1 MiB at a time;
- links: a processor folder that is a link (or a directory above it, or the Dockerfile) pulled
  files from outside the registry into the key and the image; a ``mock.py`` link was hashed as
  its target text while the mock adapter ran the target: both ``ERR_SPEC`` now;
- ``vendor/``: left out of the mock's key, though ``mock.py`` may read it (a stale hit after an
  edit): the mock hashes it now; images still leave out the top-level one (the build adds its own).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from theoryx_testing import REPO, Cli, subprocess_env

from theoryx.errors import SpecError
from theoryx.spec import context
from theoryx.spec.context import context_manifest, image_identity
from theoryx.spec.registry import load_file

SPEC = """\
ref: t/echo@1
image:
  dockerfile: {dockerfile}
inputs: {{type: object}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""
REF_SPEC = SPEC.replace("  dockerfile: {dockerfile}\n", f"  ref: example.invalid/e@sha256:{'0' * 64}\n").format()
MOCK = """\
from pathlib import Path


def run(inputs, outdir, ctx):
    here = Path(__file__).parent
    table = here / "vendor" / "table.txt"
    text = table.read_text() if table.exists() else "no table"
    Path(outdir, "out.txt").write_text(text)
"""


def make(root: Path, dockerfile: str = "echo/Dockerfile") -> Path:
    """A registry at ``root`` with t/echo@1 whose folder holds a Dockerfile and a mock.py; returns
    the spec file."""
    spec = root / "processors" / "t" / "echo@1.yaml"
    folder = (spec.parent / dockerfile).parent
    folder.mkdir(parents=True, exist_ok=True)
    (spec.parent / dockerfile).write_text("FROM scratch\n")
    (folder / "mock.py").write_text(MOCK)
    spec.write_text(SPEC.format(dockerfile=dockerfile))
    return spec


def run(home: Path, registry: Path) -> dict[str, object]:
    return Cli(home, registry).run_json("--adapter", "mock", "--ref", "t/echo@1", "--inputs-json", "{}")


def validate(home: Path, registry: Path) -> str:
    out = Cli(home, registry)("registry", "validate")
    assert out.exit_code == 1, out.output
    return str(out.stdout)


def cli_in_subprocess(home: Path, registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A FIFO would block the process reading it: the CLI runs in a subprocess with a deadline."""
    code = "import sys; from theoryx.cli.main import main; sys.argv[0] = 'theoryx'; main()"
    return subprocess.run([sys.executable, "-c", code, "--registry", str(registry), *args],
                          env=subprocess_env(home), cwd=REPO, capture_output=True, text=True, timeout=60)


# -- special files, names, sizes -------------------------------------------------------------------


def test_a_fifo_is_refused_by_validate_and_run_instead_of_hanging(home: Path, tmp_path: Path) -> None:
    spec = make(tmp_path / "reg")
    fifo = spec.parent / "echo" / "pipe"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    out = cli_in_subprocess(home, tmp_path / "reg", "registry", "validate")
    assert out.returncode == 1 and f"INVALID  t/echo@1: {fifo}: is a FIFO (named pipe)" in out.stdout, out
    out = cli_in_subprocess(home, tmp_path / "reg", "run", "--json", "--adapter", "mock", "--ref", "t/echo@1",
                            "--inputs-json", "{}")
    body = json.loads(out.stdout)
    assert body["error"]["code"] == "ERR_SPEC" and str(fifo) in body["error"]["message"], body
    assert time.monotonic() - t0 < 30


def test_a_file_that_became_a_fifo_after_listing_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(SpecError, match="is a FIFO"):
        context._hash_file(str(tmp_path / "pipe"))       # opened O_NONBLOCK, checked on the descriptor


def test_a_socket_is_refused(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make(tmp_path / "reg")
    monkeypatch.chdir(spec.parent / "echo")               # a socket's path has at most 107 bytes
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("control.sock")
        assert "is a socket" in validate(home, tmp_path / "reg")
        body = run(home, tmp_path / "reg")
        assert body["error"]["code"] == "ERR_SPEC"          # type: ignore[index]
        assert "control.sock: is a socket" in body["error"]["message"]   # type: ignore[index]


def test_a_special_file_that_dockerignore_excludes_is_never_opened_for_the_image(tmp_path: Path) -> None:
    spec = make(tmp_path / "reg")
    folder = spec.parent / "echo"
    os.mkfifo(folder / "pipe")
    (folder / ".dockerignore").write_text("pipe\n")
    assert "pipe" not in context_manifest(folder).files
    with pytest.raises(SpecError, match="is a FIFO"):       # the mock hashes the whole folder
        context_manifest(folder, dockerignore=False)


def test_a_name_that_is_not_utf8_is_refused_naming_it(home: Path, tmp_path: Path) -> None:
    spec = make(tmp_path / "reg")
    with open(os.fsencode(spec.parent / "echo") + b"/bad\xff.txt", "wb") as f:
        f.write(b"x")
    assert "bad\\xff.txt: the name is not valid UTF-8" in validate(home, tmp_path / "reg")
    body = run(home, tmp_path / "reg")
    assert body["error"]["code"] == "ERR_SPEC" and "bad\\xff.txt" in body["error"]["message"]  # type: ignore[index]


def test_a_link_whose_target_is_not_utf8_is_hashed_by_its_bytes(tmp_path: Path) -> None:
    spec = make(tmp_path / "reg")
    os.symlink(b"target\xff", os.fsencode(spec.parent / "echo" / "link"))
    entry = context_manifest(spec.parent / "echo").files["link"]
    assert entry["size"] == len(b"symlink:target\xff")


def test_an_unreadable_file_is_a_spec_error(tmp_path: Path) -> None:
    folder = make(tmp_path / "reg").parent / "echo"
    (folder / "secret").write_text("x")
    os.chmod(folder / "secret", 0)
    try:
        if os.access(folder / "secret", os.R_OK):
            pytest.skip("running as root: permissions do not stop reading")
        with pytest.raises(SpecError, match="cannot read this file"):
            context_manifest(folder)
    finally:
        os.chmod(folder / "secret", 0o644)


PROBE = """
import json, sys, time
from pathlib import Path
from theoryx.spec.context import context_manifest
folder = Path(sys.argv[1])
t0 = time.monotonic()
files = context_manifest(folder).files
took = time.monotonic() - t0
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"size": files["weights.bin"]["size"], "cid": files["weights.bin"]["cid"],
                  "seconds": took, "peak_mib": int(hwm.split()[1]) / 1024}))
"""


def test_a_large_file_is_hashed_in_bounded_memory(tmp_path: Path) -> None:
    import blake3

    folder = make(tmp_path / "reg").parent / "echo"
    size = 512 << 20
    with open(folder / "weights.bin", "wb") as f:            # sparse: no disk used, reads as zeros
        f.truncate(size)
    proc = subprocess.run([sys.executable, "-c", PROBE, str(folder)], env=subprocess_env(tmp_path / "h"),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    print(f"512 MiB file hashed in {out['seconds']:.2f} s, peak resident set {out['peak_mib']:.0f} MiB")
    hasher = blake3.blake3()
    for _ in range(size >> 20):
        hasher.update(bytes(1 << 20))
    assert out["size"] == size and out["cid"] == "b3:" + hasher.hexdigest()
    assert out["peak_mib"] < 120, out        # was the whole file: over 512 MiB


def test_the_manifest_of_normal_folders_is_unchanged() -> None:
    """The shipped processors' context cids as they were before these checks (keys unchanged)."""
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    reg = Registry((REPO / "registry",))
    want = {
        ("data/textstats@1", "mock"): "b3:61a457a26194aa6ac8cacd3283cf94d6af143d2777d15e8ea9c6fe761ff2dbcd",
        ("data/textstats@1", "container"): "b3:035fbd58eaa960524cd6baa5dc0277edb265a72647eb7ceda81d61e237dc2b39",
        ("llm/litellm@1", "mock"): "b3:4ccd3c24d4bec2a0be6b02f52baae3419029862f6ff446881852f20c314ef182",
        ("llm/litellm@1", "container"): "b3:bc804c3ca6225cf9e812e655076a795a44ca0ec727c5fef712b8e0f5a8ca6393",
    }
    for (ref, env_class), cid in want.items():
        assert image_identity(reg.load(Ref.parse(ref)), env_class)[0]["context"] == cid, (ref, env_class)


# -- links -----------------------------------------------------------------------------------------


def outside_dir(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (outside / "private.key").write_text("not registry content\n")
    return outside


@pytest.mark.parametrize("layout", ["folder", "dockerfile-dir", "middle-dir", "dockerfile", "namespace"])
def test_a_link_on_the_way_to_the_folder_is_refused(home: Path, tmp_path: Path, layout: str) -> None:
    outside = outside_dir(tmp_path)
    reg = tmp_path / "reg"
    ns = reg / "processors" / "t"
    if layout == "folder":                      # REG/processors/t/echo -> outside (folder by ref name)
        ns.mkdir(parents=True)
        (ns / "echo@1.yaml").write_text(REF_SPEC)
        (ns / "echo").symlink_to(outside, target_is_directory=True)
        link = ns / "echo"
    elif layout == "dockerfile-dir":            # image: {dockerfile: x/Dockerfile}, x -> outside
        ns.mkdir(parents=True)
        (ns / "echo@1.yaml").write_text(SPEC.format(dockerfile="x/Dockerfile"))
        (ns / "x").symlink_to(outside, target_is_directory=True)
        link = ns / "x"
    elif layout == "middle-dir":                # a/b/Dockerfile, a -> outside (which holds b/)
        (outside / "b").mkdir()
        (outside / "b" / "Dockerfile").write_text("FROM scratch\n")
        ns.mkdir(parents=True)
        (ns / "echo@1.yaml").write_text(SPEC.format(dockerfile="a/b/Dockerfile"))
        (ns / "a").symlink_to(outside, target_is_directory=True)
        link = ns / "a"
    elif layout == "dockerfile":                # the Dockerfile itself
        make(reg)
        (ns / "echo" / "Dockerfile").unlink()
        (ns / "echo" / "Dockerfile").symlink_to(outside / "Dockerfile")
        link = ns / "echo" / "Dockerfile"
    else:                                       # REG/processors/t -> a namespace outside
        make(outside / "reg")
        (reg / "processors").mkdir(parents=True)
        ns.symlink_to(outside / "reg" / "processors" / "t", target_is_directory=True)
        link = ns
    message = validate(home, reg)
    assert f"{link} is a symbolic link" in message, message
    body = run(home, reg)
    assert body["error"]["code"] == "ERR_SPEC" and f"{link} is a symbolic link" in body["error"]["message"]  # type: ignore[index]


def test_context_manifest_refuses_a_linked_top_folder(tmp_path: Path) -> None:
    outside = outside_dir(tmp_path)
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SpecError, match="the processor folder is a symbolic link"):
        context_manifest(tmp_path / "link")


def test_links_inside_the_folder_are_hashed_as_their_text_never_followed(tmp_path: Path) -> None:
    outside = outside_dir(tmp_path)
    folder = make(tmp_path / "reg").parent / "echo"
    (folder / "data").symlink_to(outside, target_is_directory=True)   # a link to a directory: listed
    (folder / "key").symlink_to(outside / "private.key")
    files = context_manifest(folder).files
    assert {"data", "key"} <= set(files) and not any(rel.startswith("data/") for rel in files)
    before = files["key"]["cid"]
    (outside / "private.key").write_text("changed\n")
    assert context_manifest(folder).files["key"]["cid"] == before


def test_a_mock_py_link_is_refused_for_the_mock(home: Path, tmp_path: Path) -> None:
    spec = make(tmp_path / "reg")
    folder = spec.parent / "echo"
    (tmp_path / "real_mock.py").write_text(MOCK)
    (folder / "mock.py").unlink()
    (folder / "mock.py").symlink_to(tmp_path / "real_mock.py")
    assert "mock.py is a symbolic link" in validate(home, tmp_path / "reg")
    body = run(home, tmp_path / "reg")
    assert body["error"]["code"] == "ERR_SPEC" and "mock.py is a symbolic link" in body["error"]["message"]  # type: ignore[index]
    assert "mock.py" in context_manifest(folder).files           # an image never runs it: a link is fine


# -- what the mock's key covers ---------------------------------------------------------------------


def test_the_mock_key_covers_vendor_which_its_mock_py_reads(home: Path, tmp_path: Path) -> None:
    spec = make(tmp_path / "reg")
    table = spec.parent / "echo" / "vendor" / "table.txt"
    table.parent.mkdir()
    table.write_text("v1\n")
    first = run(home, tmp_path / "reg")
    table.write_text("v2\n")
    second = run(home, tmp_path / "reg")
    assert first["memo_key"] != second["memo_key"] and second["cache"] == "miss", second
    out = second["outputs"][0]                                           # type: ignore[index]
    assert Cli(home, tmp_path / "reg")("cat", out["path"]).stdout == "v2\n"


def test_images_leave_out_only_the_top_level_vendor(tmp_path: Path) -> None:
    folder = make(tmp_path / "reg").parent / "echo"
    for rel in ("vendor/table.txt", "pkg/vendor/lib.py", "pkg/__pycache__/m.pyc", ".git/HEAD", "pkg/m.pyc"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(rel)
    image = set(context_manifest(folder).files)
    mock = set(context_manifest(folder, dockerignore=False).files)
    assert image == {"Dockerfile", "mock.py", "pkg/vendor/lib.py"}
    assert mock == image | {"vendor/table.txt"}


def test_the_exec_bit_is_the_mode_the_image_gets(tmp_path: Path) -> None:
    folder = make(tmp_path / "reg").parent / "echo"
    (folder / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(folder / "run.sh", 0o755)
    files = context_manifest(folder).files
    assert files["run.sh"]["exec"] is True and files["mock.py"]["exec"] is False


def test_a_spec_whose_folder_does_not_exist_has_an_empty_context(tmp_path: Path) -> None:
    root = tmp_path / "reg" / "processors" / "t"
    root.mkdir(parents=True)
    (root / "echo@1.yaml").write_text(REF_SPEC)
    spec = load_file(root / "echo@1.yaml")
    assert image_identity(spec, "mock")[1].files == {}


@pytest.mark.parametrize("how", ["a link", "excluded by .dockerignore"])
def test_a_requirements_file_the_key_would_not_hold_is_refused(tmp_path: Path, how: str) -> None:
    """The image installs requirements.txt (vendor/): a link was keyed as its target's name but
    the build then refused it (validate said ok, every run failed), and one .dockerignore
    excluded was left out of the key and the image alike (an image without its packages)."""
    spec_file = make(tmp_path)
    folder = spec_file.parent / "echo"
    if how == "a link":
        (tmp_path / "shared.txt").write_text("requests\n")
        (folder / "requirements.txt").symlink_to(tmp_path / "shared.txt")
        said = "is a symbolic link"
    else:
        (folder / "requirements.txt").write_text("requests\n")
        (folder / ".dockerignore").write_text("requirements.txt\n")
        said = "is excluded by"
    spec = load_file(spec_file, None)
    image_identity(spec, "mock")                    # the mock installs nothing: fine
    with pytest.raises(SpecError, match=said):
        image_identity(spec, "container")
    with pytest.raises(SpecError, match=said):
        context.check(spec)                         # registry validate
