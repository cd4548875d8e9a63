"""Packaging: what the wheel holds, and that a wheel install and an editable install both run the
shipped processor from a directory outside the checkout (the installed registry is found through
the import system, not beside a source file).

The installs go into fresh virtual environments created without pip (pip of the test
interpreter installs into them with ``--python``) and with ``--no-deps``: the dependencies come
from the test interpreter's site-packages through a ``.pth`` line. A path line of a ``.pth`` file
is appended to ``sys.path`` *after* the environment's own site-packages, and the ``.pth`` files
found there are not run, so the checkout's editable install of theoryx stays invisible and
theoryx and cas are imported from the fresh install only (each test checks it). Nothing is
downloaded except the build backend, which pip caches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from theoryx_testing import HELLO, REPO

import theoryx

OUTSIDE_ENV_DROP = ("PYTHONPATH", "THEORYX_REGISTRY", "THEORYX_HOME", "VIRTUAL_ENV")
BUILD_INPUTS = ("pyproject.toml", "README.md", "cas", "theoryx", "registry")


def pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=600, check=False, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def fresh_venv(where: Path) -> Path:
    """A new environment without pip whose only extra path is this interpreter's site-packages."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(where)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return where / "bin"


def outside(tmp_path: Path, bindir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``args`` run in an empty directory outside the checkout, with a fresh home."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_ENV_DROP}
    env.update(THEORYX_HOME=str(tmp_path / "home"), PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=120, check=False)


def imported_from(tmp_path: Path, bindir: Path) -> dict[str, str]:
    probe = ("import json, cas, theoryx, theoryx._registry as r; "
             "print(json.dumps({m.__name__: m.__file__ for m in (cas, theoryx, r)}))")
    res = outside(tmp_path, bindir, str(bindir / "python"), "-c", probe)
    assert res.returncode == 0, res.stderr
    found: dict[str, str] = json.loads(res.stdout)
    return found


def assert_runs_the_shipped_processor(tmp_path: Path, bindir: Path) -> None:
    """``theoryx run`` (miss, then hit) and ``theoryx --version`` through the console script."""
    run = [str(bindir / "theoryx"), "run", "--adapter", "mock", "--ref", "llm/litellm@1",
           "--inputs-json", json.dumps(HELLO)]
    first = outside(tmp_path, bindir, *run)
    assert (first.returncode, first.stderr) == (0, ""), first.stderr
    assert "Cache: miss" in first.stdout and "Mock response to 1 messages" in first.stdout
    again = outside(tmp_path, bindir, *run, "--json")
    assert (again.returncode, again.stderr) == (0, ""), again.stderr
    body = json.loads(again.stdout)
    assert (body["status"], body["cache"]) == ("success", "hit")
    version = outside(tmp_path, bindir, str(bindir / "theoryx"), "--version")
    assert (version.returncode, version.stdout, version.stderr) == (0, f"theoryx, version {theoryx.__version__}\n", "")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A wheel built from a copy of the build inputs (no build/ or egg-info left in the
    checkout), and pip's verbose output, which carries the build backend's warnings."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "vendor")
    src.mkdir()
    for name in BUILD_INPUTS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=ignore)
        else:
            shutil.copy2(source, src / name)
    out = pip("wheel", "--no-deps", "-v", "-w", str(tmp_path / "dist"), str(src))
    return next((tmp_path / "dist").glob("theoryx-*.whl")), out.stdout + out.stderr


# -- fast checks of the configuration ---------------------------------------------------------


def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_on_disk_is_listed_for_setuptools() -> None:
    listed = set(pyproject()["tool"]["setuptools"]["packages"])  # type: ignore[index]
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for top in ("cas", "theoryx") for p in (REPO / top).rglob("__init__.py")}
    assert listed == on_disk | {"theoryx._registry"}


def test_modal_and_litellm_are_extras_and_the_version_has_one_home() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    deps = " ".join(project["dependencies"])
    assert "modal" not in deps and "litellm" not in deps and "rfc8785" not in deps
    extras = project["optional-dependencies"]
    assert extras["modal"] == ["modal>=1.5"] and extras["llm"] == ["litellm>=1.40"]
    assert extras["remote"] == ["obstore>=0.12,<0.13"] and "obstore" not in deps
    assert extras["all"] == ["theoryx[modal,llm,remote]"] and "theoryx[all]" in extras["test"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert project["license"] == "Apache-2.0"


# -- wheel --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_holds_every_module_the_registry_and_the_cost_map(built: tuple[Path, str]) -> None:
    wheel, log = built
    assert "SetuptoolsDeprecationWarning" not in log and "BuildBackendWarning" not in log, log[-4000:]
    zf = zipfile.ZipFile(wheel)
    names = set(zf.namelist())
    sources = {str(p.relative_to(REPO)) for top in ("cas", "theoryx") for p in (REPO / top).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert sources <= names, sorted(sources - names)
    for required in ("theoryx/_registry/processors/llm/litellm@1.yaml",
                     "theoryx/_registry/processors/llm/litellm/mock.py",
                     "theoryx/_registry/processors/llm/litellm/Dockerfile",
                     "theoryx/_registry/processors/data/textstats@1.yaml",
                     "theoryx/_registry/processors/data/textstats/run.py",
                     "theoryx/budget/data/litellm_cost_map.json",
                     "theoryx/budget/data/LICENSE-litellm.txt", "cas/py.typed"):
        assert required in names, required
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "theoryx = theoryx.cli.main:main" in zf.read(entry).decode()
    meta = Parser().parsestr(zf.read(next(n for n in names if n.endswith("/METADATA"))).decode())
    assert meta["Version"] == theoryx.__version__ and meta["License-Expression"] == "Apache-2.0"
    requires = meta.get_all("Requires-Dist") or []
    unconditional = [r for r in requires if "extra ==" not in r]
    assert not any(r.startswith(("modal", "litellm", "rfc8785")) for r in unconditional), unconditional
    assert 'modal>=1.5; extra == "modal"' in requires and 'litellm>=1.40; extra == "llm"' in requires


@pytest.mark.slow
def test_a_wheel_install_runs_the_shipped_processor_from_any_directory(
        tmp_path: Path, built: tuple[Path, str]) -> None:
    wheel, _ = built
    bindir = fresh_venv(tmp_path / "venv")
    pip("--python", str(bindir / "python"), "install", "--no-deps", "-q", str(wheel))
    site = str(tmp_path / "venv")
    assert all(f.startswith(site) for f in imported_from(tmp_path, bindir).values())
    assert_runs_the_shipped_processor(tmp_path, bindir)


@pytest.mark.slow
def test_an_editable_install_runs_the_shipped_processor_from_any_directory(tmp_path: Path) -> None:
    bindir = fresh_venv(tmp_path / "venv")
    pip("--python", str(bindir / "python"), "install", "--no-deps", "-q", "-e", str(REPO))
    files = imported_from(tmp_path, bindir)
    assert files["theoryx._registry"] == str(REPO / "registry" / "__init__.py")
    assert files["theoryx"] == str(REPO / "theoryx" / "__init__.py")
    assert_runs_the_shipped_processor(tmp_path, bindir)
