"""Fixtures of the ``theoryx ui`` tests.

``site`` is one home with real runs (the gallery processor on the mock adapter, plus the shipped
llm/litellm@1), built once per session; tests that change a home build their own. ``browser`` is
Debian's chromium driven by Playwright (``scripts/chromium-up.sh`` installs it): without it the
browser tests skip, or fail under ``THEORYX_REQUIRE_DOCKER=1`` (CI). Screenshots go to
``tests/ui/artifacts/`` (ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_testing import ARTIFACTS, HERE, Server, Site, build_site, make_registry, start_cli_server, stop


@pytest.fixture(scope="session")
def ui_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's registry plus ui/gallery@1."""
    root = tmp_path_factory.mktemp("ui-registry")
    shutil.copytree(HERE.parent.parent / "registry" / "processors", root / "processors",
                    ignore=shutil.ignore_patterns("__pycache__", "vendor"))
    return make_registry(root)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, ui_registry: Path) -> Site:
    base = tmp_path_factory.mktemp("ui-site")
    attachment = base / "notes.csv"
    attachment.write_text("name,value\nalpha,1\nbeta,2\n")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return build_site(base / "home", ui_registry, attachment)


@pytest.fixture(scope="session")
def cli_server(site: Site) -> Iterator[Server]:
    """The real ``theoryx ui`` over the site's home."""
    server = start_cli_server(site.home, site.registry)
    yield server
    err = stop(server)
    assert "Traceback" not in err, err


def _require_browser() -> bool:
    return os.environ.get("THEORYX_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian chromium under Playwright (never Playwright's own browser download)."""
    executable = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        message = "no chromium or playwright: run `bash scripts/chromium-up.sh` and `make install`"
        if _require_browser():
            pytest.fail(f"THEORYX_REQUIRE_DOCKER=1 but {message}")
        pytest.skip(message)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, cli_server: Server) -> Iterator[Any]:
    """A fresh page that records every request it makes and every console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=cli_server.url)
    pg = context.new_page()
    pg.requests = []          # type: ignore[attr-defined]
    pg.console_errors = []    # type: ignore[attr-defined]
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    context.close()

