"""``.dockerignore`` is read as Docker reads it (moby's ``ignorefile`` and ``patternmatcher``):
patterns match the path from the context root with Go's ``filepath.Match`` rules plus ``**``, the
last matching line wins, ``!`` re-includes, and the Dockerfile and ``.dockerignore`` are always
sent. Before, ``!`` was unsupported (the allowlist ``*``, ``!Dockerfile``, ``!run.py`` gave an
empty context and the build failed "Cannot locate specified Dockerfile") and a bare name such as
``config.json`` also dropped ``app/config.json``, which Docker keeps. The shipped processors'
contexts are unchanged (tests/test_spec_context.py pins their cids)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from theoryx.errors import SpecError
from theoryx.spec.context import _excluded, context_manifest, image_identity, parse_dockerignore
from theoryx.spec.registry import load_file

FILES = ("Dockerfile", "run.py", "config.json", "app/config.json", "app/main.py", "docs/a.md",
         "docs/keep.md", "docs/sub/b.md", "README.md", "notes.md", "logs/x/1.log", "temp.txt",
         "a/temporary.txt", "a/b/temp.txt", "x*y")


def folder_with(tmp_path: Path, dockerignore: str, files: tuple[str, ...] = FILES) -> Path:
    folder = tmp_path / "proc"
    for rel in files:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(rel)
    (folder / ".dockerignore").write_text(dockerignore)
    return folder


def manifest(tmp_path: Path, dockerignore: str) -> set[str]:
    return set(context_manifest(folder_with(tmp_path, dockerignore)).files) - {".dockerignore"}


def test_the_allowlist_idiom_keeps_the_named_files(tmp_path: Path) -> None:
    assert manifest(tmp_path, "*\n!Dockerfile\n!run.py\n") == {"Dockerfile", "run.py"}


def test_a_bare_name_is_the_top_level_path_only(tmp_path: Path) -> None:
    kept = manifest(tmp_path, "config.json\n")
    assert "config.json" not in kept and "app/config.json" in kept
    assert {"config.json", "app/config.json"}.isdisjoint(manifest(tmp_path / "2", "**/config.json\n"))


def test_the_last_matching_line_wins(tmp_path: Path) -> None:
    kept = manifest(tmp_path, "*.md\n!README.md\n")
    assert "README.md" in kept and "notes.md" not in kept
    assert "README.md" not in manifest(tmp_path / "2", "*.md\n!README.md\nREADME*\n")


def test_an_exception_reincludes_a_file_of_an_excluded_directory(tmp_path: Path) -> None:
    kept = manifest(tmp_path, "docs\n!docs/keep.md\n")
    assert "docs/keep.md" in kept and not {"docs/a.md", "docs/sub/b.md"} & kept
    kept = manifest(tmp_path / "2", "docs/\n!docs/sub\n")           # a trailing / is cleaned away
    assert "docs/sub/b.md" in kept and "docs/a.md" not in kept


def test_a_leading_slash_and_dot_are_cleaned_and_comments_skipped(tmp_path: Path) -> None:
    kept = manifest(tmp_path, "# notes.md\n\n  /config.json  \n./notes.md\napp/../temp.txt\n #README.md\n")
    assert not {"config.json", "notes.md", "temp.txt"} & kept
    assert "README.md" in kept          # " #README.md" is a pattern (no file is called that), not a comment


def test_star_and_question_mark_stay_within_one_directory(tmp_path: Path) -> None:
    kept = manifest(tmp_path, "*/temp*\n")
    assert "a/temporary.txt" not in kept and {"a/b/temp.txt", "temp.txt"} <= kept
    assert "temp.txt" not in manifest(tmp_path / "2", "te?p.txt\n")


def test_double_star_matches_any_number_of_directories(tmp_path: Path) -> None:
    kept = manifest(tmp_path, "**/temp*.txt\nlogs/**\n")
    assert not {"temp.txt", "a/temporary.txt", "a/b/temp.txt", "logs/x/1.log"} & kept


def test_escapes_and_classes(tmp_path: Path) -> None:
    kept = manifest(tmp_path, "x\\*y\n[n-o]otes.md\n")
    assert not {"x*y", "notes.md"} & kept and "README.md" in kept


def test_the_dockerfile_and_dockerignore_are_always_sent(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, "*\n")
    assert set(context_manifest(folder).files) == {"Dockerfile", ".dockerignore"}


SPEC = """\
ref: t/echo@1
image:
  dockerfile: echo/{name}
inputs: {{type: object}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""


def test_a_custom_named_dockerfile_excluded_by_dockerignore_is_a_spec_error(tmp_path: Path) -> None:
    ns = tmp_path / "processors" / "t"
    (ns / "echo").mkdir(parents=True)
    (ns / "echo" / "Build.dockerfile").write_text("FROM scratch\n")
    (ns / "echo" / ".dockerignore").write_text("*\n")
    (ns / "echo@1.yaml").write_text(SPEC.format(name="Build.dockerfile"))
    spec = load_file(ns / "echo@1.yaml")
    with pytest.raises(SpecError, match=r"add the line '!Build\.dockerfile'"):
        image_identity(spec, "container")
    assert image_identity(spec, "mock")[1].files            # the mock does not build anything
    (ns / "echo" / ".dockerignore").write_text("*\n!Build.dockerfile\n")
    assert set(image_identity(spec, "container")[1].files) == {".dockerignore", "Build.dockerfile"}


@pytest.mark.parametrize("line, words", [
    ("[", "malformed"), ("a[", "malformed"), ("[^bc", "malformed"), ("[]a]", "malformed"),
    ("[x-]", "malformed"), ("[a-b-c]", "malformed"), ("abc\\", "malformed"), ("!", "'!' alone"),
    ("  !  ", "'!' alone"),
])
def test_a_pattern_docker_refuses_is_a_spec_error_naming_the_line(tmp_path: Path, line: str, words: str) -> None:
    folder = folder_with(tmp_path, f"ok\n{line}\n", files=("Dockerfile",))
    with pytest.raises(SpecError) as info:
        context_manifest(folder)
    assert f"{folder / '.dockerignore'}: line 2" in info.value.message and words in info.value.message


def test_a_dockerignore_that_is_a_link_or_a_fifo_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, "x\n", files=("Dockerfile",))
    (folder / ".dockerignore").unlink()
    (tmp_path / "elsewhere").write_text("*\n")
    (folder / ".dockerignore").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SpecError, match="is a symbolic link"):
        context_manifest(folder)
    (folder / ".dockerignore").unlink()
    os.mkfifo(folder / ".dockerignore")
    with pytest.raises(SpecError, match="is a FIFO"):
        context_manifest(folder)


def test_the_mock_ignores_dockerignore(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, "*\n")
    assert set(context_manifest(folder, dockerignore=False).files) == {*FILES, ".dockerignore"}


# Docker's own cases (moby/patternmatcher's TestMatches and TestMatch tables): one pattern, a
# path, and whether MatchesOrParentMatches says the path is excluded.
SINGLE = [
    ("**", "file", True), ("**/", "file", True), ("**", "dir/file", True), ("**/", "dir/file", True),
    ("**/**", "dir/file", True), ("dir/**", "dir/file", True), ("dir/**", "dir/dir2/file", True),
    ("**/dir", "dir", True), ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True), ("**file", "file", True), ("**file", "dir/file", True),
    ("**/file", "dir/file", True), ("**file", "dir/dir/file", True), ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True), ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True), ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True), ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False), ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True), ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True), ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True), ("a/*.txt**", "a/file.txt", True), ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True), (".*", ".foo", True),
    (".*", "foo", False), ("abc.def", "abcdef", False), ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False), ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True), ("abc/**", "abc", False), ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True), ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True), ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True), ("a\\*b", "a*b", True),
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True), ("a*", "abc", True),
    ("a*", "ab/c", True), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False), ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False), ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True), ("a\\*b", "ab", False), ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False), ("a[^a][^a][^a]b", "a☺b", False), ("[a-ζ]*", "α", True), ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False), ("a*b", "a/b", False), ("[\\]a]", "]", True), ("[\\-]", "-", True),
    ("[x\\-]", "x", True), ("[x\\-]", "-", True), ("[x\\-]", "z", False), ("[\\-x]", "x", True),
    ("[\\-x]", "-", True), ("[\\-x]", "a", False), ("*x", "xxx", True),
]
MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
]


@pytest.mark.parametrize("pattern, path, excluded", SINGLE)
def test_dockers_single_pattern_cases(pattern: str, path: str, excluded: bool) -> None:
    assert _excluded(path, parse_dockerignore(pattern.encode(), ".dockerignore")) is excluded


@pytest.mark.parametrize("patterns, path, excluded", MULTI)
def test_dockers_multi_pattern_cases(patterns: list[str], path: str, excluded: bool) -> None:
    assert _excluded(path, parse_dockerignore("\n".join(patterns).encode(), ".dockerignore")) is excluded
