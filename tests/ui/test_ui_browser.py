"""``theoryx ui`` in a real browser: Debian's headless chromium driven by Playwright, against the
real ``theoryx ui`` command serving a home with real runs (issue 14). Screenshots are saved to
``tests/ui/artifacts/``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from ui_testing import NASTY, REF, SECRET, Server, Site, environ, gallery_env, shot, wait_for

from theoryx.budget import plans
from theoryx.store import executions
from theoryx.store.handle import open_stores

pytestmark = [pytest.mark.ui, pytest.mark.slow]


def visit(page: Any, path: str) -> Any:
    response = page.goto(path)
    assert response is not None
    return response


def only_this_server(page: Any, server: Server, *, console: bool = True) -> None:
    """Every request the page made went to this server (nothing from the network); with
    ``console``, no error reached the browser's console."""
    foreign = [u for u in page.requests if not u.startswith(server.url) and not u.startswith("data:")]
    assert not foreign, foreign
    assert not console or not page.console_errors, page.console_errors


def test_every_page_renders_what_the_store_holds(page: Any, cli_server: Server, site: Site) -> None:
    stores = open_stores(site.home)
    db = stores.db
    # Runs
    assert visit(page, "/runs").status == 200
    rows = page.locator("#runs tbody tr")
    assert rows.count() == executions.count(db)
    assert [rows.nth(i).get_attribute("data-id") for i in range(rows.count())] == \
        [r.execution_id for r in executions.latest(db)]
    assert page.locator("#live-state").is_visible()   # the live poll answered
    shot(page, "01-runs")
    # Filters, through the form
    page.select_option("select[name=cache]", "hit")
    page.click("form.filters button")
    page.wait_for_url(re.compile(r".*cache=hit.*"))
    assert page.locator("#runs tbody tr").count() == 1
    assert page.locator("#runs tbody tr").first.get_attribute("data-id") == site.hit
    shot(page, "02-runs-filtered")
    # One run
    assert visit(page, f"/runs/{site.first}").status == 200
    rec = executions.get(db, site.first)
    assert page.locator("h1").inner_text().endswith(site.first)
    summary = page.locator("#summary").inner_text()
    assert rec.memo_key is not None and rec.memo_key in summary and "team-a" in summary
    assert NASTY in page.locator("#inputs pre").first.inner_text()   # shown as text, not as HTML
    assert page.locator("#inputs script, #outputs script, #logs script").count() == 0
    img = page.locator("#outputs img.preview")
    assert img.count() == 1 and page.evaluate("(e) => e.naturalWidth", img.element_handle()) == 96
    assert '"list": [' in page.locator("#outputs pre.json").first.inner_text()
    assert SECRET not in page.content()
    shot(page, "03-run")
    # Plans and one plan
    assert visit(page, "/plans").status == 200
    assert page.locator("#plans tbody tr").count() == len(plans.all_plans(db))
    shot(page, "04-plans")
    assert visit(page, "/plans/team-a").status == 200
    assert page.locator("svg.chart polyline").count() == 2
    assert page.locator("#ledger tbody tr").count() == plans.get(db, "team-a").totals.events
    assert "verified" in page.locator("table.facts").inner_text()
    shot(page, "05-plan")
    # The store
    assert visit(page, "/store").status == 200
    assert page.locator("svg.chart rect.bar").count() >= 1
    assert site.first in page.locator("#pins").inner_text()
    assert "Reclaimed" in page.locator("#last-gc").inner_text()
    shot(page, "06-store")
    # Compare
    assert visit(page, f"/runs/{site.first}/compare?with={site.seeded}").status == 200
    assert "1 ingredient(s) of the memo key differ" in page.locator("main").inner_text()
    shot(page, "07-compare")
    only_this_server(page, cli_server)


def test_links_lead_from_a_run_to_its_outputs_and_back(page: Any, cli_server: Server, site: Site) -> None:
    visit(page, "/runs")
    page.click(f'#runs tr[data-id="{site.first}"] a')
    page.wait_for_url(f"**/runs/{site.first}")
    page.click('#outputs a.path:text("data.json")')
    page.wait_for_url(f"**/runs/{site.first}/outputs/data.json")
    assert '"nested"' in page.locator("pre.preview").inner_text()
    shot(page, "08-output-json")
    page.click("a.back")
    page.wait_for_url(f"**/runs/{site.first}#outputs")
    page.click('#outputs a.path:text("plot.png")')
    page.wait_for_url(f"**/runs/{site.first}/outputs/plot.png")
    assert page.evaluate("() => document.querySelector('img.preview').naturalHeight") == 64
    shot(page, "09-output-image")
    with page.expect_download() as download:
        page.click("text=download")
    saved = Path(download.value.path())
    stores = open_stores(site.home)
    stored = next(o for o in executions.get(stores.db, site.first).outputs if o.path.endswith("plot.png"))
    assert saved.read_bytes() == stores.cas.read(stored.cid)
    page.click("a.back")
    page.wait_for_url(f"**/runs/{site.first}#outputs")
    # The hit's page links the run whose result it reused
    visit(page, f"/runs/{site.hit}")
    page.click(f'#summary a[href="/runs/{site.first}"] >> nth=0')
    page.wait_for_url(f"**/runs/{site.first}")
    only_this_server(page, cli_server)


def test_new_runs_appear_without_a_reload(page: Any, cli_server: Server, site: Site) -> None:
    import theoryx

    visit(page, "/runs")
    before = page.locator("#runs tbody tr").count()
    page.evaluate("() => { window.__same_document = true; }")
    with environ(**gallery_env()), theoryx.Session(site.home, registry=str(site.registry)) as s:
        eid = s.run(REF, inputs={"note": "a live one"}, adapter="mock").record.execution_id
    wait_for(lambda: page.locator(f'#runs tr[data-id="{eid}"]').count() == 1, what="the new run's row")
    assert page.evaluate("() => window.__same_document") is True   # updated in place, not reloaded
    assert page.locator("#runs tbody tr").count() == before + 1
    assert page.locator("#runs tbody tr").first.get_attribute("data-id") == eid
    shot(page, "10-runs-live")
    only_this_server(page, cli_server)


def test_bad_urls_show_error_pages_in_the_browser(page: Any, cli_server: Server, site: Site) -> None:
    for path, status in ((f"/runs/{'0' * 26}", 404), ("/runs/..%2f..%2fetc%2fpasswd", 400),
                         ("/plans/team-a?page=99999999999999999999", 404), ("/runs?limit=99999", 400)):
        response = visit(page, path)
        assert response.status == status, path
        text = page.locator("main").inner_text()
        assert text.startswith(f"{status} ·") and "Traceback" not in text
    shot(page, "11-not-found")
    only_this_server(page, cli_server, console=False)   # the 4xx answers are reported there


@pytest.mark.docker
def test_a_local_docker_run_shows_like_any_other(page: Any, cli_server: Server, site: Site) -> None:
    """The same processor on the local adapter (a real container), in the same home, live."""
    import theoryx

    assert os.environ.get("THEORYX_BASE_IMAGE")
    visit(page, "/runs")
    with environ(**gallery_env()), theoryx.Session(site.home, registry=str(site.registry)) as s:
        result = s.run(REF, inputs={"note": "in a container", "size": 48}, adapter="local")
    eid = result.record.execution_id
    wait_for(lambda: page.locator(f'#runs tr[data-id="{eid}"]').count() == 1, what="the local run's row")
    visit(page, f"/runs/{eid}")
    summary = page.locator("#summary").inner_text()
    assert "local" in summary and "container linux/" in summary
    assert page.evaluate("() => document.querySelector('#outputs img.preview').naturalWidth") == 48
    assert "in a container" in page.locator("#logs").inner_text() and SECRET not in page.content()
    shot(page, "12-run-local")
    only_this_server(page, cli_server)
