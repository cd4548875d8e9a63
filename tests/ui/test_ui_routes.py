"""``theoryx ui`` without a browser: every page against the store, strict URLs, read-only
methods, escaping, secrets, headers and verified downloads (issue 14)."""

from __future__ import annotations

import http.client
import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_testing import NASTY, REF, REPO, SECRET, Site, environ, gallery_env, in_process_server, make_registry, request

from theoryx.budget import plans
from theoryx.store import action_cache, executions, pins
from theoryx.store.handle import open_stores
from theoryx.ui import data
from theoryx.ui.routes import App, Response

ID_RE = re.compile(r'<tr data-id="([0-9a-z]{26})">')


@pytest.fixture
def app(site: Site) -> App:
    return App(open_stores(site.home))


def get(app: App, target: str) -> tuple[int, str]:
    r = app.handle(target)
    assert r.cid is None, "a page, not a blob"
    return r.status, r.body.decode()


def no_traceback(text: str) -> None:
    for mark in ("Traceback", 'File "/'):
        assert mark not in text, text[:2000]


# -- the pages, against the store --------------------------------------------------------------


def test_the_runs_page_lists_every_run_newest_first_as_the_store_has_them(app: App, site: Site) -> None:
    status, body = get(app, "/runs")
    assert status == 200
    shown = ID_RE.findall(body)
    stored = [r.execution_id for r in executions.latest(app.stores.db)]
    assert shown == stored and set(site.ids) <= set(shown)
    assert f"{len(stored):,} execution(s)" in body
    assert get(app, "/")[1] == body   # the root is the runs page


@pytest.mark.parametrize(("query", "expect"), [
    ("cache=hit", lambda r: r.cache == "hit"),
    ("cache=miss", lambda r: r.cache == "miss"),
    ("status=error", lambda r: r.status == "error"),
    ("status=success", lambda r: r.status == "success"),
    ("ref=llm/litellm@1", lambda r: r.ref == "llm/litellm@1"),
    ("plan=team-a", lambda r: r.plan == "team-a"),
    ("adapter=mock&cache=hit", lambda r: r.adapter == "mock" and r.cache == "hit"),
    ("adapter=modal", lambda r: r.adapter == "modal"),
])
def test_filters_show_exactly_the_matching_runs(app: App, query: str, expect: object) -> None:
    status, body = get(app, f"/runs?{query}")
    assert status == 200
    want = [r.execution_id for r in executions.latest(app.stores.db) if expect(r)]  # type: ignore[operator]
    assert ID_RE.findall(body) == want, query


def test_pages_of_runs_follow_a_cursor_and_cover_every_run_once(app: App) -> None:
    seen: list[str] = []
    target: str | None = "/runs?limit=2"
    pages_read = 0
    while target is not None:
        status, body = get(app, target)
        assert status == 200
        rows = ID_RE.findall(body)
        assert 1 <= len(rows) <= 2
        seen += rows
        pages_read += 1
        nxt = re.search(r'<a rel="next" href="([^"]+)"', body)
        target = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert seen == [r.execution_id for r in executions.latest(app.stores.db)]
    print(f"{len(seen)} runs over {pages_read} pages of 2")


def test_a_run_page_shows_what_the_store_holds(app: App, site: Site) -> None:
    rec = executions.get(app.stores.db, site.first)
    status, body = get(app, f"/runs/{site.first}")
    assert status == 200
    for text in (rec.memo_key, rec.ref, "team-a", "Memo-key ingredients", "Receipt", "stdout", "$0.25"):
        assert text and text in body, text
    for out in rec.outputs:
        rel = out.path.removeprefix(rec.write_prefix or "")
        assert f'href="/runs/{site.first}/outputs/{rel}"' in body
    assert f'<img class="preview" src="/runs/{site.first}/raw/plot.png"' in body
    assert f'href="/runs/{site.first}/raw/blob.bin?download=1"' in body            # bytes: a download
    assert "&quot;nested&quot;: {\n    &quot;list&quot;" in body                 # JSON pretty-printed
    assert "gallery wrote 4 outputs" in body                                      # the log
    assert '"spec_digest"' not in body and "spec_digest" in body                  # escaped JSON
    assert "yes (gc keeps its blobs)" in body                                     # pinned


def test_a_hit_links_the_execution_it_reused(app: App, site: Site) -> None:
    status, body = get(app, f"/runs/{site.hit}")
    assert status == 200
    assert f'reused the result of <a class="mono" href="/runs/{site.first}"' in body


def test_an_attachment_is_a_link_to_its_bytes(app: App, site: Site) -> None:
    rec = executions.get(app.stores.db, site.attached)
    cid = rec.input_cids[0]
    status, body = get(app, f"/runs/{site.attached}")
    assert status == 200 and f'href="/runs/{site.attached}/inputs/{cid}">notes.csv</a>' in body
    r = app.handle(f"/runs/{site.attached}/inputs/{cid}")
    assert r.status == 200 and r.cid == cid and r.content_type == "text/plain; charset=utf-8"


def test_a_failed_run_shows_its_error(app: App, site: Site) -> None:
    status, body = get(app, f"/runs/{site.failed}")
    assert status == 200 and "ERR_PROCESSOR_FAILED" in body and 'class="badge b-error"' in body


def test_compare_shows_explains_answer_side_by_side(app: App, site: Site) -> None:
    status, body = get(app, f"/runs/{site.first}/compare?with={site.seeded}")
    assert status == 200
    assert "1 ingredient(s) of the memo key differ" in body and "<code>seed</code>" in body
    assert "<pre>0</pre>" in body and "<pre>3</pre>" in body
    assert f"theoryx explain {site.first} {site.seeded}" in body
    status, body = get(app, f"/runs/{site.first}/compare?with={site.hit}")
    assert status == 200 and "Identical memo keys" in body
    status, body = get(app, f"/runs/{site.first}/compare?with={site.failed}")
    assert status == 200 and "<code>/note</code>" in body and "this one fails" in body
    status, body = get(app, f"/runs/{site.first}/compare?with={site.invalid}")
    assert status == 200 and "theoryx explain cannot compare these runs" in body and "has no stored action" in body


def test_the_plans_pages_show_the_ledger_and_its_verification(app: App) -> None:
    db = app.stores.db
    status, body = get(app, "/plans")
    assert status == 200
    for p in plans.all_plans(db):
        assert f'href="/plans/{p.key}"' in body
    assert body.count(">verified<") == len(plans.all_plans(db))
    a = plans.get(db, "team-a")
    status, body = get(app, "/plans/team-a")
    assert status == 200
    assert "$5.00" in body and "$0.50" in body and "$0.25" in body   # limit, spent (2 misses), saved (1 hit)
    assert a.totals.spent_micros == 500_000 and a.totals.saved_micros == 250_000
    assert f"verified: {a.totals.events} events" in body and '<svg class="chart"' in body
    assert body.count("<tr><td class=\"num\">") == a.totals.events    # one row per ledger event


def test_the_store_page_shows_its_figures(app: App, site: Site) -> None:
    db = app.stores.db
    status, body = get(app, "/store")
    assert status == 200
    assert f"<th>Cache entries</th><td>{action_cache.count(db)}</td>" in body
    assert f"<th>Executions recorded</th><td>{executions.count(db)}</td>" in body
    assert f"<th>Pinned executions</th><td>{pins.count(db)}</td>" in body
    assert f'href="/runs/{site.first}"' in body and 'id="last-gc"' in body and "Reclaimed" in body
    recs = list(executions.latest(db))   # other tests of the session may have added runs
    hits = sum(r.status == "success" and r.cache == "hit" for r in recs)
    misses = sum(r.status == "success" and r.cache != "hit" for r in recs)
    rate = f"{hits / (hits + misses):.0%}"
    assert (f"Hit rate {rate} over every execution: {hits} hit(s), {misses} miss(es), "
            f"{len(recs) - hits - misses} failure(s)") in body
    assert hits >= 1 and misses >= 4


# -- safety: escaping, secrets, read-only -----------------------------------------------------------


def every_page(app: App, site: Site) -> Iterator[tuple[str, str]]:
    targets = ["/runs", "/plans", "/plans/team-a", "/plans/team-b", "/store",
               f"/runs/{site.first}/compare?with={site.seeded}"]
    for eid in site.ids:
        targets.append(f"/runs/{eid}")
        for out in executions.get(app.stores.db, eid).outputs:
            targets.append(f"/runs/{eid}/outputs/{out.path.removeprefix('/artifacts/outputs/')}")
    for t in targets:
        status, body = get(app, t)
        assert status == 200, (t, body[:500])
        yield t, body


def test_text_from_runs_is_always_escaped(app: App, site: Site) -> None:
    found = 0
    for target, body in every_page(app, site):
        assert "<script>alert" not in body and "<b>run</b>" not in body, target
        found += "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body
    assert found >= 3, "the note shows (escaped) on the runs' pages"
    assert NASTY  # the note went through inputs, an output, stdout and the receipt's pages


def test_the_secret_never_appears(app: App, site: Site) -> None:
    for target, body in every_page(app, site):
        assert SECRET not in body, target
    for eid in site.ids:
        r = app.handle(f"/runs/{eid}/files/stdout.log")
        if r.status == 200:
            assert r.cid is not None and SECRET.encode() not in app.stores.cas.read(r.cid)


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    """Every file of the home but LMDB's lock file: size and modification time."""
    return {str(f.relative_to(home)): (f.stat().st_size, f.stat().st_mtime_ns)
            for f in sorted(home.rglob("*")) if f.is_file() and f.name != "lock.mdb"}


def test_visiting_every_page_and_download_changes_nothing(app: App, site: Site) -> None:
    """Read-only: the home's files (blobs, database, leases, gc record) are the same after every
    page and every download, including a hit's receipt, which is derived and never written."""
    before = snapshot(site.home)
    pages = list(every_page(app, site))
    downloads = 0
    for eid in site.ids:
        rec = executions.get(app.stores.db, eid)
        targets = [f"/runs/{eid}/raw/{o.path.removeprefix('/artifacts/outputs/')}" for o in rec.outputs]
        targets += [f"/runs/{eid}/files/{n}" for n in ("determinism.json", "outputs.json", "stdout.log")]
        for t in targets:
            r = app.handle(t)
            if r.status == 200:
                downloads += 1
                if r.cid is not None:
                    app.stores.cas.read(r.cid)
    hit = executions.get(app.stores.db, site.hit)
    r = app.handle(f"/runs/{site.hit}/files/determinism.json")
    assert r.status == 200 and json.loads(r.body)["cache_hit"] is True
    assert snapshot(site.home) == before
    print(f"{len(pages)} pages and {downloads} downloads: the home unchanged")
    assert hit.cache == "hit"


def test_every_url_in_every_page_is_relative_to_the_server(app: App, site: Site) -> None:
    urls = 0
    for target, body in every_page(app, site):
        for attr, value in re.findall(r'\b(src|href|action)="([^"]*)"', body):
            urls += 1
            assert value.startswith(("/", "#")) and not value.startswith("//"), (target, attr, value)
    print(f"{urls} URLs checked, all server-relative")


# -- strict URLs ----------------------------------------------------------------------------------

UNKNOWN = "01m8q21xe57ww8cp6ejw82yv2y"   # a well-formed id no store holds


def bad_urls(site: Site) -> list[tuple[str, int]]:
    first = site.first
    cid = "b3:" + "0" * 64
    return [
        (f"/runs/{UNKNOWN}", 404),
        ("/runs/not-an-id", 400),
        (f"/runs/{first.upper()}", 400),
        (f"/runs/{first}/outputs/../../../../etc/passwd", 400),
        (f"/runs/{first}/outputs/%2e%2e/%2e%2e/etc/passwd", 400),
        (f"/runs/{first}/outputs/text%2f..%2f..%2fx", 400),
        (f"/runs/{first}/outputs/..%5c..%5cx", 400),
        (f"/runs/{first}/outputs/%252e%252e/x", 404),       # double-encoded: a name, not a traversal
        (f"/runs/{first}/outputs/a%00b", 400),
        (f"/runs/{first}/outputs/./data.json", 400),
        (f"/runs/{first}/outputs//data.json", 400),
        (f"/runs/{first}/outputs/nope.txt", 404),
        (f"/runs/{first}/raw/nope.txt", 404),
        (f"/runs/{first}/raw/%ff%fe", 400),
        (f"/runs/{first}/files/passwd", 404),
        (f"/runs/{first}/files/..%2f..%2fgc-last.json", 400),
        (f"/runs/{first}/inputs/{cid}", 404),
        (f"/runs/{first}/inputs/not-a-cid", 400),
        (f"/runs/{first}/compare", 400),
        (f"/runs/{first}/compare?with=../x", 400),
        (f"/runs/{first}/compare?with={UNKNOWN}", 404),
        (f"/runs/{first}/elsewhere", 404),
        ("/runs?before=zzz", 400),
        ("/runs?limit=0", 400),
        ("/runs?limit=100000", 400),
        ("/runs?limit=-1", 400),
        ("/runs?adapter=docker", 400),
        ("/runs?cache=maybe", 400),
        ("/runs?ref=%3Cscript%3E", 400),
        ("/runs?color=red", 400),
        ("/runs?ref=a&ref=b", 400),
        ("/runs?ref=%ff", 400),
        ("/plans/team-a?page=0", 400),
        ("/plans/team-a?page=abc", 400),
        ("/plans/team-a?page=-3", 400),
        ("/plans/team-a?page=2", 404),
        ("/plans/team-a?page=999999999999", 404),
        ("/plans/team-a?page=" + "9" * 400, 404),
        ("/plans/no-such-plan", 404),
        ("/plans/bad%20key!", 400),
        ("/store?x=1", 400),
        ("/static/nope.css", 404),
        ("/static/..%2f__init__.py", 400),
        ("/static/../routes.py", 400),
        ("/favicon.ico", 404),
        ("/api/head?x=1", 400),
        ("/" + "a" * 5000, 414),
        ("ftp://evil.example/runs", 400),      # absolute form: http(s) only (their host: the absolute-form test)
        ("/runs/%", 400),
        ("/etc/passwd", 404),
    ]


def test_bad_urls_answer_4xx_pages_never_a_traceback(app: App, site: Site) -> None:
    for target, want in bad_urls(site):
        r = app.handle(target)
        body = r.body.decode()
        assert r.status == want, (target, r.status, body[-600:])
        assert r.content_type.startswith("text/html") and f"<h1>{want} " in body, target
        no_traceback(body)
    print(f"{len(bad_urls(site))} bad URLs answered 400/404/414 pages")


def test_an_unexpected_exception_is_a_500_page_without_details(app: App, site: Site,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from notices_testing import captured_notices, texts

    def boom(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom: a detail only the operator may see")

    monkeypatch.setattr(data, "run_detail", boom)
    with captured_notices() as seen:
        r = app.handle(f"/runs/{site.first}")
    body = r.body.decode()
    assert r.status == 500 and "Internal error" in body and "boom" not in body
    no_traceback(body)
    assert any("boom" in text for text in texts(seen)), texts(seen)


def test_a_store_error_is_a_page_with_its_code(app: App, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.errors import StoreError

    def fail(*args: object, **kwargs: object) -> object:
        raise StoreError("cannot read the database")

    monkeypatch.setattr(data, "store_view", fail)
    r = app.handle("/store")
    assert r.status == 500 and "ERR_STORE: cannot read the database" in r.body.decode()


# -- over HTTP: methods, Host, headers, downloads ---------------------------------------------------


def test_only_get_and_head_are_answered(site: Site) -> None:
    with in_process_server(site.home) as srv:
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "FOO"):
            r = request(srv, f"/runs/{site.first}", method, body=b"x=1" if method != "CONNECT" else None)
            assert r.status == 405 and r.headers["allow"] == "GET, HEAD", (method, r.status)
            assert b"read-only" in r.body
        got = request(srv, f"/runs/{site.first}")
        head = request(srv, f"/runs/{site.first}", "HEAD")
        assert got.status == head.status == 200 and head.body == b""
        assert head.headers["content-length"] == str(len(got.body))


def test_a_host_header_naming_another_server_is_refused(site: Site) -> None:
    with in_process_server(site.home) as srv:
        assert request(srv, "/runs", headers={"Host": "evil.example"}).status == 421
        assert request(srv, "/runs", headers={"Host": f"evil.example:{srv.port}"}).status == 421
        assert request(srv, "/runs", headers={"Host": f"localhost:{srv.port}"}).status == 200
        assert request(srv, "/runs", headers={"Host": f"127.0.0.1:{srv.port}"}).status == 200


def test_pages_and_blobs_carry_safe_headers(site: Site) -> None:
    stores = open_stores(site.home)
    with in_process_server(site.home) as srv:
        page = request(srv, "/runs")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        png = request(srv, f"/runs/{site.first}/raw/plot.png")
        assert png.status == 200 and png.headers["content-type"] == "image/png"
        assert png.headers["content-security-policy"].startswith("sandbox")
        assert png.headers["content-disposition"].startswith("inline")
        rec = executions.get(stores.db, site.first)
        stored = {o.path.rsplit("/", 1)[1]: o.cid for o in rec.outputs}
        assert png.body == stores.cas.read(stored["plot.png"]) and png.body.startswith(b"\x89PNG")
        binary = request(srv, f"/runs/{site.first}/raw/blob.bin")
        assert binary.headers["content-type"] == "application/octet-stream"
        assert binary.headers["content-disposition"].startswith("attachment")
        assert binary.body == stores.cas.read(stored["blob.bin"])
        text = request(srv, f"/runs/{site.first}/raw/text/hello.txt?download=1")
        assert text.headers["content-disposition"].startswith("attachment") and b"Hello from the gallery" in text.body
        head = request(srv, f"/runs/{site.first}/raw/blob.bin", "HEAD")
        assert head.body == b"" and head.headers["content-length"] == "1024"
        live = request(srv, "/api/head")
        assert json.loads(live.body)["newest"] == executions.page(stores.db, limit=1).records[0].execution_id


def test_a_corrupt_blob_is_never_served_whole(tmp_path: Path) -> None:
    """A download is hashed while it streams: bytes that do not match their cid end the
    connection before the body is complete (the client sees a failed download), and the CAS
    quarantines the blob; the run page then says it is corrupt instead of showing it."""
    import theoryx

    registry = make_registry(tmp_path / "registry")
    home = tmp_path / "home"
    with environ(**gallery_env()), theoryx.Session(home, registry=str(registry)) as s:
        eid = s.run(REF, inputs={"note": "x"}, adapter="mock").record.execution_id
    stores = open_stores(home)
    entry = next(o for o in executions.get(stores.db, eid).outputs if o.path.endswith("blob.bin"))
    path = stores.cas.path(entry.cid)
    os.chmod(path, 0o644)
    path.write_bytes(b"\x00" * entry.size)    # same size, other bytes
    with in_process_server(home) as srv:
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
        conn.request("GET", f"/runs/{eid}/raw/blob.bin")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.headers["Content-Length"] == str(entry.size)
        with pytest.raises(http.client.IncompleteRead) as cut:
            resp.read()
        conn.close()
        print(f"corrupt blob: {len(cut.value.partial)} of {entry.size} bytes sent, then the connection closed")
        assert len(cut.value.partial) < entry.size
        assert not stores.cas.exists(entry.cid)   # quarantined
        page = request(srv, f"/runs/{eid}/outputs/blob.bin")
        assert page.status == 200 and b"not in the store" in page.body


def test_the_static_files_ship_as_package_data() -> None:
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["theoryx.ui"]
    static = REPO / "theoryx" / "ui" / "static"
    files = sorted(p.name for p in static.iterdir() if p.is_file())
    assert files and all(any(Path("static", f).match(g) for g in globs) for f in files), (files, globs)
    from theoryx.ui.routes import _load_static

    assert sorted(_load_static()) == files


def test_responses_are_frozen_values() -> None:
    r = Response(200, "text/plain")
    with pytest.raises(AttributeError):
        r.status = 500  # type: ignore[misc]


NAMES_SPEC = """\
ref: ui/names@1
image: {ref: "example.invalid/names@sha256:%s"}
runtime: {timeout: 60}
inputs: {type: object}
outputs:
  - {path: "my file 100%%.bin", mime: application/octet-stream}
  - {path: "notes 100%%.txt", mime: text/plain}
""" % ("0" * 64)
NAMES_MOCK = """\
def run(inputs, outdir, ctx):
    (outdir / "my file 100%.bin").write_bytes(bytes(range(256)))
    (outdir / "notes 100%.txt").write_text("hello")
    return {}
"""


def test_download_links_of_names_that_need_encoding_are_encoded_once(tmp_path: Path) -> None:
    """Outputs named "my file 100%.bin" and "notes 100%.txt": every link to their bytes (the run
    page's downloads, the output pages' downloads and the no-preview download) answers 200 with
    those bytes (the output page's were encoded twice: %2520, %2525, and 404)."""
    import theoryx

    reg = tmp_path / "reg"
    (reg / "processors" / "ui" / "names").mkdir(parents=True)
    (reg / "processors" / "ui" / "names@1.yaml").write_text(NAMES_SPEC)
    (reg / "processors" / "ui" / "names" / "mock.py").write_text(NAMES_MOCK)
    home = tmp_path / "home"
    with theoryx.Session(home, registry=str(reg)) as s:
        eid = s.run("ui/names@1", inputs={}, adapter="mock").record.execution_id
    app = App(open_stores(home))
    pages = [get(app, f"/runs/{eid}")[1]] + [get(app, f"/runs/{eid}/outputs/{n}")[1]
                                            for n in ("my%20file%20100%25.bin", "notes%20100%25.txt")]
    links = {html_unescape(h) for page in pages for h in re.findall(r'(?:href|src)="(/runs/[^"]*/raw/[^"]*)"', page)}
    assert len(links) >= 2 and all("%2520" not in h and "%2525" not in h for h in links), links
    for link in links:
        r = app.handle(link)
        assert r.status == 200, (link, r.status)


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
def test_listening_on_every_interface_still_refuses_other_names(site: Site, bind: str) -> None:
    """DNS rebinding against `--host 0.0.0.0`: a Host header naming another domain is refused
    (it was answered: the check was off for unspecified addresses); IP literals on the port,
    localhost and this machine's names are answered."""
    import socket

    from theoryx.ui.server import allowed_hosts

    app = App(open_stores(site.home), allowed_hosts=allowed_hosts(bind, 8765))
    for host in ("attacker.example:8765", "attacker.example", "1.2.3.4:9999", "localhost.attacker.example:8765",
                 "[::1]x:8765", "[not-an-ip]:8765"):
        assert app.handle("/api/head", host).status == 421, host
    for host in ("192.168.1.5:8765", "[fe80::1]:8765", "0.0.0.0:8765", "LOCALHOST:8765",
                 f"{socket.gethostname()}:8765"):
        assert app.handle("/api/head", host).status == 200, host


def mock_processor(tmp_path: Path, name: str, outputs: str, mock: str) -> tuple[App, str]:
    """A home with one mock run of processor ``ui/<name>@1`` (``outputs``: its spec's output
    list, ``mock``: its mock.py); the app over that home and the run's id."""
    import theoryx

    reg = tmp_path / "reg"
    (reg / "processors" / "ui" / name).mkdir(parents=True)
    (reg / "processors" / "ui" / f"{name}@1.yaml").write_text(
        f'ref: ui/{name}@1\nimage: {{ref: "example.invalid/{name}@sha256:{"0" * 64}"}}\nruntime: {{timeout: 60}}\n'
        f"inputs: {{type: object}}\noutputs:\n{outputs}")
    (reg / "processors" / "ui" / name / "mock.py").write_text(mock)
    home = tmp_path / "home"
    with theoryx.Session(home, registry=str(reg)) as s:
        eid = s.run(f"ui/{name}@1", inputs={}, adapter="mock").record.execution_id
    return App(open_stores(home)), eid


DEEP_MOCK = """\
def run(inputs, outdir, ctx):
    (outdir / "deep.json").write_text("[" * 100000 + "]" * 100000)
    return {}
"""


def test_a_json_output_nested_too_deeply_to_parse_is_shown_as_text(tmp_path: Path) -> None:
    """An output of 100,000 nested JSON arrays (valid JSON, 200 KB): its run page and its output
    page answer 200 and show it as text with a note (json.loads raised RecursionError, which the
    preview did not catch: both pages were 500s)."""
    app, eid = mock_processor(tmp_path, "deep", "  - {path: deep.json, mime: application/json}\n", DEEP_MOCK)
    for target in (f"/runs/{eid}", f"/runs/{eid}/outputs/deep.json"):
        status, body = get(app, target)
        assert status == 200, (target, body[:2000])
        assert "nested too deeply" in body and "[[[[" in body
    assert app.handle(f"/runs/{eid}/raw/deep.json").status == 200


BINARY_LOG_MOCK = """\
def run(inputs, outdir, ctx):
    (outdir / "out.txt").write_text("fine")
    ctx.stream(b"\\xff\\xfe\\x00 not UTF-8")
    return {}
"""


def test_every_link_of_a_run_with_a_log_that_is_not_text_answers(tmp_path: Path) -> None:
    """A stdout that is not UTF-8 has no preview, only a download link: that link names the log's
    bytes and answers 200 with them (it was ``?download=1`` relative to the run page: a 400)."""
    app, eid = mock_processor(tmp_path, "binlog", "  - {path: out.txt, mime: text/plain}\n", BINARY_LOG_MOCK)
    status, body = get(app, f"/runs/{eid}")
    assert status == 200 and "not UTF-8 text" in body
    links = {html_unescape(h) for h in re.findall(r'(?:href|src)="([^"#]+)"', body)}
    assert not [h for h in links if not h.startswith("/")], links
    for link in links:
        assert app.handle(link).status == 200, link
    log = app.handle(f"/runs/{eid}/files/stdout.log?download=1")
    assert log.cid is not None and app.stores.cas.read(log.cid) == b"\xff\xfe\x00 not UTF-8"


@pytest.mark.parametrize("report", [
    {"examined": 5, "reclaimed": [], "kept": "all"},
    {"seconds": "slow", "examined": {"count": "many", "bytes": None}},
    {"seconds": {}, "cache_entries": {"evicted_by_age": "x"}, "executions": {"dropped": 1e400}},
])
def test_an_odd_gc_report_still_shows_the_store_page(tmp_path: Path, report: dict[str, object]) -> None:
    """``gc-last.json`` is a convenience for people, which nothing depends on: a report with
    figures of other types (hand-edited, another version) shows its figures as 0, and the Store
    page answers 200 (it was a 500: AttributeError, ValueError, OverflowError; OSError for a finish
    time localtime cannot convert, now shown as "-")."""
    from theoryx.store.gc import last

    home = tmp_path / "home"
    app = App(open_stores(home))
    last.record(home, report, now_ms=1_700_000_000_000)
    assert last.read(home) is not None
    status, body = get(app, "/store")
    assert status == 200, body[:2000]
    assert 'id="last-gc"' in body
    last.record(home, report, now_ms=10**20)   # a time past what the C library can convert
    assert get(app, "/store")[0] == 200


def raw_status(port: int, data: bytes) -> int:
    """The status code the server on 127.0.0.1:``port`` answers ``data`` (a whole request, sent
    as is) with."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        line = s.makefile("rb").readline()
    return int(line.split()[1])


def test_a_request_must_name_its_host_exactly_once(site: Site) -> None:
    """RFC 9112 3.2: two Host headers, or an HTTP/1.1 request without one, are a 400 (the first
    Host header alone was checked: "Host: 127.0.0.1:port" then "Host: evil.example" was answered,
    and so was a request with none); HTTP/1.0 may omit it."""
    with in_process_server(site.home) as srv:
        good, evil = f"Host: 127.0.0.1:{srv.port}\r\n".encode(), b"Host: evil.example\r\n"
        close = b"Connection: close\r\n\r\n"
        assert raw_status(srv.port, b"GET /runs HTTP/1.1\r\n" + good + close) == 200
        assert raw_status(srv.port, b"GET /runs HTTP/1.1\r\n" + good + evil + close) == 400
        assert raw_status(srv.port, b"GET /runs HTTP/1.1\r\n" + good + good + close) == 400
        assert raw_status(srv.port, b"HEAD /runs HTTP/1.1\r\n" + evil + good + close) == 400
        assert raw_status(srv.port, b"GET /runs HTTP/1.1\r\n" + close) == 400
        assert raw_status(srv.port, b"GET /runs HTTP/1.0\r\n\r\n") == 200


def test_a_request_target_in_absolute_form_is_answered_for_its_own_host(site: Site) -> None:
    """RFC 9112 3.2.2: a server must accept `GET http://host:port/path` (as a proxy sends it)
    and take the host from it, not from the Host header (it was a 400: "the request target must
    be a path"); that host is checked like a Host header's."""
    with in_process_server(site.home) as srv:
        good, close = f"Host: 127.0.0.1:{srv.port}\r\n".encode(), b"Connection: close\r\n\r\n"
        here = f"http://127.0.0.1:{srv.port}".encode()
        assert raw_status(srv.port, b"GET " + here + b"/runs?limit=5 HTTP/1.1\r\n" + good + close) == 200
        assert raw_status(srv.port, b"GET " + b"HTTP://127.0.0.1:" + str(srv.port).encode() + b" HTTP/1.1\r\n" + good
                          + close) == 200     # no path: the root
        assert raw_status(srv.port, b"GET http://evil.example/runs HTTP/1.1\r\n" + good + close) == 421
        assert raw_status(srv.port, b"GET http://[::1/runs HTTP/1.1\r\n" + good + close) == 400
        assert raw_status(srv.port, b"GET " + here + b"/nothing-here HTTP/1.1\r\n" + good + close) == 404


def test_http_0_9_and_unparsable_requests_get_a_status_line_and_headers(site: Site) -> None:
    """A bare `GET /path` (HTTP/0.9) was answered with the body alone: no status line, no
    Content-Type, CSP or nosniff, so a blob could go out unlabelled; requests http.server could
    not parse (`GARBAGE`, `HTTP/2.0`) got our error page without a status line either."""
    import socket

    with in_process_server(site.home) as srv:
        host = f"Host: 127.0.0.1:{srv.port}\r\n".encode()
        for request in (b"GET /runs\r\n" + host + b"\r\n", b"GET /runs\r\n\r\n", b"GARBAGE\r\n\r\n",
                        b"GET /runs HTTP/2.0\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.sendall(request)
                answer = s.makefile("rb").read()
            head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
            assert head.startswith("http/1.1 4") or head.startswith("http/1.1 5"), (request, answer[:200])
            assert "content-security-policy:" in head and "x-content-type-options: nosniff" in head, head
        assert raw_status(srv.port, b"GET /runs HTTP/1.0\r\n\r\n") == 200
