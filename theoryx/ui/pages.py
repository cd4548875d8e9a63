"""The HTML of every page of :mod:`theoryx.ui`, built only with :mod:`theoryx.ui.markup`.

Each function takes a read model of :mod:`theoryx.ui.data` and returns a whole document. Every
URL in a page is relative to the server (``/runs/...``, ``/static/...``): a page loads nothing
from anywhere else, and ``tests/ui`` checks that of every page.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

from theoryx import __version__
from theoryx.budget.money import MICROS_PER_USD
from theoryx.core.durations import human_bytes
from theoryx.core.ids import timestamp_ms
from theoryx.core.jsondiff import ABSENT
from theoryx.store import receipts
from theoryx.store.executions import ExecutionRecord
from theoryx.ui import charts, data
from theoryx.ui.markup import Markup, escape, html, join, url

NAV = (("runs", "/runs", "Runs"), ("plans", "/plans", "Plans"), ("store", "/store", "Store"))
STATIC_VERSION = __version__


# -- formatting -----------------------------------------------------------------------------------


def money(micros: int | None) -> str:
    """Micro-USD as dollars without trailing zeros beyond the cents: ``$5.25``, ``$0.000212``."""
    if not micros:
        return "$0"
    sign, m = ("-" if micros < 0 else ""), abs(micros)
    whole, frac = divmod(m, MICROS_PER_USD)
    digits = f"{frac:06d}".rstrip("0")
    return f"{sign}${whole:,}.{digits.ljust(2, '0')}"


def when(ms: int | None) -> str:
    if not ms:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
    except (OverflowError, OSError, ValueError):   # a time the C library cannot convert
        return "-"


def duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000} min {ms % 60_000 // 1000} s"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def started(rec: ExecutionRecord) -> int:
    return rec.started_ms or timestamp_ms(rec.execution_id)


def badge(text: str | None, kind: str | None = None) -> Markup:
    value = text or "-"
    return html('<span class="badge b-{k}">{t}</span>', k=kind or value, t=value)


def status_badge(rec: ExecutionRecord) -> Markup:
    if rec.status == "success":
        return badge("success")
    code = (rec.error or {}).get("code", "")
    return html('<span class="badge b-error" title="{c}">error</span>', c=code)


def run_link(execution_id: str, *, short: bool = False) -> Markup:
    text = execution_id[:10] + "…" if short else execution_id
    return html('<a class="mono" href="{u}" title="{id}">{t}</a>', u=url(f"/runs/{execution_id}"),
                id=execution_id, t=text)


def plan_link(plan: str | None) -> Markup:
    if not plan:
        return escape("-")
    return html('<a href="{u}">{p}</a>', u=url(f"/plans/{plan}"), p=plan)


def cid_text(cid: str | None) -> Markup:
    if not cid:
        return escape("-")
    return html('<code class="cid" title="{c}">{s}</code>', c=cid, s=cid[:15] + "…" + cid[-6:])


def rows(pairs: Iterable[tuple[str, object]]) -> Markup:
    return join(html("<tr><th>{k}</th><td>{v}</td></tr>", k=k, v=v) for k, v in pairs)


# -- layout ---------------------------------------------------------------------------------------


def layout(title: str, active: str, body: Markup, *, live: bool = False) -> str:
    nav = join(html('<a href="{u}" class="{c}">{t}</a>', u=u, c="active" if key == active else "", t=t)
               for key, u, t in NAV)
    return html(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>{title} · theoryx</title>'
        '<link rel="stylesheet" href="/static/style.css?v={v}">'
        '<link rel="icon" href="/static/favicon.svg?v={v}" type="image/svg+xml">'
        '<script src="/static/live.js?v={v}" defer></script></head>'
        '<body data-live="{live}"><header class="top"><a class="brand" href="/">theoryx</a>'
        '<nav>{nav}</nav><span class="ro" title="nothing on these pages can change the store">read-only</span>'
        '</header><main>{body}</main>'
        '<footer>theoryx {v} · a read-only view of this home, served on this machine only</footer>'
        '</body></html>\n',
        title=title, v=STATIC_VERSION, live="1" if live else "", nav=nav, body=body)


def error_page(status: int, title: str, message: str) -> str:
    body = html('<section class="error"><h1>{s} · {t}</h1><p>{m}</p><p><a href="/">Back to the runs</a></p>'
                '</section>', s=status, t=title, m=message)
    return layout(f"{status} {title}", "", body)


# -- runs -----------------------------------------------------------------------------------------


def _options(name: str, values: tuple[str, ...], current: str | None) -> Markup:
    opts = [html('<option value="">any {n}</option>', n=name)]
    opts += [html('<option value="{v}"{s}>{v}</option>', v=v, s=Markup(" selected") if v == current else "")
             for v in values]
    return html('<select name="{n}" aria-label="{n}">{o}</select>', n=name, o=join(opts))


def filter_form(page: data.RunsPage) -> Markup:
    f = page.filter
    return html(
        '<form class="filters" method="get" action="/runs">'
        '<input name="ref" placeholder="ref, e.g. llm/litellm@1" value="{ref}" aria-label="ref">'
        '<input name="plan" placeholder="plan" value="{plan}" aria-label="plan">'
        '{adapter}{status}{cache}'
        '<button type="submit">Filter</button><a class="clear" href="/runs">clear</a></form>',
        ref=f.ref or "", plan=f.plan or "", adapter=_options("adapter", data.ADAPTERS, f.adapter),
        status=_options("status", data.STATUSES, f.status), cache=_options("cache", data.CACHES, f.cache))


def runs_table(records: Iterable[ExecutionRecord]) -> Markup:
    body = join(html(
        '<tr data-id="{id}"><td>{link}</td><td class="nowrap">{when}</td><td>{ref}</td><td>{adapter}</td>'
        '<td>{status}</td><td>{cache}</td><td>{plan}</td><td class="num">{dur}</td><td class="num">{cost}</td>'
        '<td class="num">{saved}</td></tr>',
        id=r.execution_id, link=run_link(r.execution_id, short=True), when=when(started(r)), ref=r.ref,
        adapter=r.adapter, status=status_badge(r), cache=badge(r.cache or "none"), plan=plan_link(r.plan),
        dur=duration(r.duration_ms), cost=money(r.cost_micros), saved=money(r.saved_micros))
        for r in records)
    return html('<table class="list" id="runs"><thead><tr><th>Execution</th><th>Started</th><th>Ref</th>'
                '<th>Adapter</th><th>Status</th><th>Cache</th><th>Plan</th><th class="num">Duration</th>'
                '<th class="num">Cost</th><th class="num">Saved</th></tr></thead><tbody>{b}</tbody></table>', b=body)


def runs_page(page: data.RunsPage, flying: tuple[data.InFlight, ...]) -> str:
    query = {**page.filter.query(), "limit": page.limit if page.limit != data.PAGE_SIZE else None}
    nav: list[Markup] = []
    if page.before is not None:
        nav.append(html('<a href="{u}">« newest</a>', u=url("/runs", query)))
    if page.next_before is not None:
        nav.append(html('<a rel="next" href="{u}">older »</a>', u=url("/runs", {**query, "before": page.next_before})))
    if page.records:
        listing = runs_table(page.records)
    elif page.total == 0:
        listing = html('<p class="empty">No executions in this home yet. Run one, e.g. '
                       '<code>theoryx run --adapter mock --ref llm/litellm@1 --inputs-json …</code>, '
                       'and it appears here.</p>')
    else:
        listing = html('<p class="empty">No execution on this page matches the filters.</p>')
    scanned = ""
    if page.filter.active:
        scanned = html('<p class="note">Looked through {n} execution(s) for this page{more}.</p>',
                       n=f"{page.scanned:,}", more=", and there are older ones: see the next page"
                       if page.next_before and len(page.records) < page.limit else "")
    inflight = ""
    if flying:
        inflight = html('<p class="inflight">In flight now: {ids}</p>', ids=join(
            (html('<span class="mono" title="started {w}">{i}…</span>', i=f.execution_id[:10], w=when(f.started_ms))
             for f in flying), " "))
    body = html(
        '<div class="titlebar"><h1>Runs</h1><span class="live" id="live-state" hidden>live</span></div>'
        '<p class="summary">{total} execution(s) in this home, newest first.</p>{form}'
        '<div id="live-region">{inflight}{listing}{scanned}</div><nav class="pager">{nav}</nav>',
        total=f"{page.total:,}", form=filter_form(page), inflight=inflight, listing=listing, scanned=scanned,
        nav=join(nav, " "))
    return layout("Runs", "runs", body, live=page.before is None)


# -- one run ----------------------------------------------------------------------------------------


def preview_block(p: data.Preview, raw_path: str, name: str) -> Markup:
    """The preview of an output; ``raw_path`` is the (not yet encoded) path its bytes are
    served at, encoded here once."""
    note = html('<p class="note">{n}</p>', n=p.note) if p.note else ""
    if p.kind in ("text", "json"):
        return html('<pre class="preview {k}">{t}</pre>{n}', k=p.kind, t=p.text, n=note)
    if p.kind == "image":
        return html('<img class="preview" src="{u}" alt="{a}">', u=url(raw_path), a=name)
    if p.kind == "download":
        return html('<p class="note">No preview for this type{n}: <a href="{u}">download</a>.</p>',
                    u=url(raw_path, {"download": 1}), n=f" ({p.note})" if p.note else "")
    if p.kind == "absent":
        return html('<p class="note">{n}</p>', n=p.note)
    return html('<p class="warn">{n}</p>', n=p.note or p.kind)


def facts(detail: data.RunDetail) -> Markup:
    r = detail.record
    if r.cache == "hit":
        reused = (html("reused the result of {l}", l=run_link(r.source_execution)) if r.source_execution
                  else escape("reused a cached result"))
        cache = html("{b} {r}{remote}", b=badge("hit"), r=reused,
                     remote=html(" (fetched from the team cache {u})", u=r.remote_url) if r.remote_url else "")
    elif r.cache in ("miss", "bypass"):
        cache = html("{b} executed on {a}", b=badge(r.cache), a=r.adapter)
    else:
        cache = badge("none")
    pairs: list[tuple[str, object]] = [
        ("Status", html("{b}{e}", b=status_badge(r), e=html(' <code>{c}</code> {m}', c=r.error.get("code", ""),
                                                             m=r.error.get("message", "")) if r.error else "")),
        ("Ref", r.ref), ("Adapter", r.adapter), ("Cache", cache), ("Plan", plan_link(r.plan)),
        ("Started", when(started(r))), ("Duration", duration(r.duration_ms)),
        ("Cost", money(r.cost_micros)), ("Saved", money(r.saved_micros)),
        ("Exit code", "-" if r.exit_code is None else r.exit_code),
        ("Memo key", html("<code>{k}</code>", k=r.memo_key or "-")),
        ("Action pre-image", cid_text(r.action_cid)), ("Spec digest", cid_text(r.spec_digest)),
        ("Environment", r.env_fingerprint or "-"), ("Seed", r.seed), ("Write prefix", r.write_prefix or "-"),
        ("Pinned", "yes (gc keeps its blobs)" if detail.pinned else "no"),
    ]
    if r.usage:
        pairs.append(("Usage", html("<code>{u}</code>", u=json.dumps(r.usage, sort_keys=True))))
    if r.log_truncated:
        pairs.append(("Logs cut", ", ".join(f"{k}: {v:,} bytes dropped" for k, v in sorted(r.log_truncated.items()))))
    if detail.source is not None:
        pairs.append(("Producer", html("{l} ({a}, {d}, cost {c})", l=run_link(detail.source.execution_id),
                                       a=detail.source.adapter, d=duration(detail.source.duration_ms),
                                       c=money(detail.source.cost_micros))))
    return html('<table class="facts">{r}</table>', r=rows(pairs))


def inputs_section(detail: data.RunDetail) -> Markup:
    eid = detail.record.execution_id
    action = detail.action.value if isinstance(detail.action.value, dict) else None
    if action is None:
        return html('<p class="warn">The action pre-image is not available: {n}.</p>', n=detail.action.note)
    atts = join(html('<tr><td><code>{p}</code></td><td><a href="{u}">{n}</a></td><td>{m}</td><td class="num">{s}</td>'
                     '<td>{c}</td></tr>', p=a.pointer, u=url(f"/runs/{eid}/inputs/{a.cid}"), n=a.name, m=a.mime,
                     s="-" if a.size is None else human_bytes(a.size), c=cid_text(a.cid))
                for a in detail.attachments)
    table = html('<table class="list"><thead><tr><th>Pointer</th><th>Attachment</th><th>Type</th>'
                 '<th class="num">Size</th><th>Cid</th></tr></thead><tbody>{b}</tbody></table>', b=atts) if atts else ""
    return html('<pre class="preview json">{j}</pre>{t}', j=pretty(action.get("inputs")), t=table)


def outputs_section(detail: data.RunDetail) -> Markup:
    eid = detail.record.execution_id
    if not detail.outputs:
        return html('<p class="note">No outputs.</p>')
    items = []
    for o in detail.outputs:
        page_url, raw_path = url(f"/runs/{eid}/outputs/{o.rel}"), f"/runs/{eid}/raw/{o.rel}"
        items.append(html(
            '<article class="output"><header><a class="path" href="{pu}">{rel}</a>'
            '<span class="meta">{size} · {mime} · {cid} · <a href="{du}">download</a></span></header>{pv}</article>',
            pu=page_url, rel=o.rel, size=human_bytes(o.entry.size), mime=o.entry.mime, cid=cid_text(o.entry.cid),
            du=url(raw_path, {"download": 1}), pv=preview_block(o.preview, raw_path, o.rel)))
    return join(items)


def logs_section(detail: data.RunDetail) -> Markup:
    eid = detail.record.execution_id
    parts = []
    for name, cid, p in detail.logs:
        raw_path = f"/runs/{eid}/files/{name}.log"
        link = html(' · <a href="{u}">download</a>', u=url(raw_path, {"download": 1})) if cid else ""
        empty = p.kind == "text" and not p.text
        body = html('<p class="note">(empty)</p>') if empty else preview_block(p, raw_path, name)
        parts.append(html('<article class="output"><header><span class="path">{n}</span>'
                          '<span class="meta">{c}{l}</span></header>{b}</article>',
                          n=name, c=cid_text(cid), l=link, b=body))
    return join(parts)


def receipt_section(detail: data.RunDetail) -> Markup:
    eid = detail.record.execution_id
    if detail.receipt.value is None:
        return html('<p class="warn">No receipt: {n}.</p>', n=detail.receipt.note)
    links = join((html('<a href="{u}">{n}</a>', u=url(f"/runs/{eid}/files/{n}"), n=n)
                  for n in sorted(detail.files)), " · ")
    how = ("The execution's files (this hit's receipt and output index are derived from its record, "
           "not stored)" if receipts.derived(detail.record) else "Stored as blobs")
    return html('<p class="note">{h}: {l}.</p><pre class="preview json">{j}</pre>',
                h=how, l=links, j=pretty(detail.receipt.value))


INGREDIENTS = (
    ("v", "key format version"), ("salt", "salt (--salt / THEORYX_SALT)"), ("ref", "processor ref"),
    ("spec", "the spec's execution fields"), ("spec_digest", "digest of the spec fields"),
    ("image", "image identity"), ("env", "environment class and platform"),
    ("inputs", "inputs, attachments as cids"), ("write_prefix", "write prefix"), ("seed", "seed"),
)


def ingredients_section(detail: data.RunDetail) -> Markup:
    action = detail.action.value if isinstance(detail.action.value, dict) else None
    if action is None:
        return html('<p class="warn">The action pre-image is not available: {n}.</p>', n=detail.action.note)
    known = dict(INGREDIENTS)
    keys = [k for k, _ in INGREDIENTS if k in action] + sorted(set(action) - set(known))
    body = []
    for k in keys:
        v = action[k]
        rendered = (html('<details><summary>{s}</summary><pre class="preview json">{j}</pre></details>',
                         s=_summary(v), j=pretty(v)) if isinstance(v, (dict, list))
                    else html("<code>{v}</code>", v=json.dumps(v, ensure_ascii=False)))
        body.append(html('<tr><th><code>{k}</code><div class="note">{d}</div></th><td>{v}</td></tr>',
                         k=k, d=known.get(k, "field this version does not know"), v=rendered))
    return html('<p class="note">The memo key is <code>b3:</code> + BLAKE3 of these fields in RFC 8785 form '
                '(the stored pre-image {c}).</p><table class="facts ingredients">{b}</table>',
                c=cid_text(detail.record.action_cid), b=join(body))


def _summary(value: Any) -> str:
    if isinstance(value, dict):
        return f"{len(value)} field(s): " + ", ".join(list(map(str, value))[:8]) + (" …" if len(value) > 8 else "")
    return f"{len(value)} item(s)"


def compare_form(detail: data.RunDetail) -> Markup:
    eid = detail.record.execution_id
    options = join(html('<option value="{i}">{r} · {w} · {c}</option>', i=c.execution_id, r=c.ref,
                        w=when(started(c)), c=c.cache or c.status) for c in detail.candidates)
    return html('<form class="compare" method="get" action="{a}"><label>Compare with '
                '<input name="with" list="candidates" placeholder="an execution id" required '
                'pattern="[0-9a-hjkmnp-tv-z]{{26}}" size="30"></label><datalist id="candidates">{o}</datalist>'
                '<button type="submit">Explain the difference</button></form>{hint}',
                a=url(f"/runs/{eid}/compare"), o=options,
                hint=html('<p class="note">Recent runs of {r}: {l}</p>', r=detail.record.ref,
                          l=join((html('<a href="{u}">{i}</a>', u=url(f"/runs/{eid}/compare", {"with": c.execution_id}),
                                       i=c.execution_id[:10] + "…") for c in detail.candidates[:8]), " · "))
                if detail.candidates else "")


def audits_section(detail: data.RunDetail) -> Markup:
    if not detail.audits:
        return html('<p class="note">Not audited (<code>theoryx audit {i}</code>).</p>', i=detail.record.execution_id)
    return html("<ul>{i}</ul>", i=join(html("<li>{w} · {b} {s}</li>", w=when(a.created_ms), b=badge(a.verdict),
                                            s=a.summary()) for a in detail.audits))


def run_page(detail: data.RunDetail) -> str:
    r = detail.record
    sections = (
        ("summary", "Summary", facts(detail)),
        ("inputs", "Inputs", inputs_section(detail)),
        ("outputs", "Outputs", outputs_section(detail)),
        ("logs", "Logs", logs_section(detail)),
        ("receipt", "Receipt", receipt_section(detail)),
        ("ingredients", "Memo-key ingredients", ingredients_section(detail)),
        ("compare", "Compare with…", compare_form(detail)),
        ("audits", "Audits", audits_section(detail)),
    )
    toc = join(html('<a href="#{a}">{t}</a>', a=a, t=t) for a, t, _ in sections)
    body = html('<p class="crumbs"><a href="/runs">Runs</a> › <span class="mono">{i}</span></p>'
                '<div class="titlebar"><h1>Run <span class="mono">{i}</span></h1>{s} {c}</div>'
                '<nav class="toc">{toc}</nav>{secs}',
                i=r.execution_id, s=status_badge(r), c=badge(r.cache or "none"), toc=toc,
                secs=join(html('<section id="{a}"><h2>{t}</h2>{b}</section>', a=a, t=t, b=b) for a, t, b in sections))
    return layout(f"Run {r.execution_id}", "runs", body)


def output_page(rec: ExecutionRecord, view: data.OutputView) -> str:
    eid = rec.execution_id
    raw = f"/runs/{eid}/raw/{view.rel}"
    pairs = [("World path", html("<code>{p}</code>", p=view.entry.path)),
             ("Cid", html("<code>{c}</code>", c=view.entry.cid)),
             ("Size", f"{human_bytes(view.entry.size)} ({view.entry.size:,} bytes)"), ("Type", view.entry.mime),
             ("Produced by", run_link(eid))]
    body = html('<p class="crumbs"><a href="/runs">Runs</a> › {run} › outputs › <span class="mono">{rel}</span></p>'
                '<h1 class="path">{rel}</h1><table class="facts">{facts}</table>'
                '<p><a href="{dl}">download</a> · <a class="back" href="{back}">back to the run</a></p>{pv}',
                run=run_link(eid, short=True), rel=view.rel, facts=rows(pairs), dl=url(raw, {"download": 1}),
                back=url(f"/runs/{eid}") + "#outputs", pv=preview_block(view.preview, raw, view.rel))
    return layout(view.rel, "runs", body)


def _value(v: Any) -> str:
    if v is ABSENT:
        return "(absent)"
    if isinstance(v, dict) and "cid" in v:
        name = str(v.get("$artifact", "")).rsplit("/", 1)[-1]
        size = v.get("size")
        return " ".join(x for x in (name, str(v["cid"]), f"({size} bytes)" if size is not None else "") if x)
    return json.dumps(v, sort_keys=True, ensure_ascii=False, indent=1 if isinstance(v, (dict, list)) else None)


def compare_page(cmp: data.Comparison) -> str:
    def side(label: str, r: ExecutionRecord) -> Markup:
        return html('<div class="side"><h2>{l}: {link}</h2><table class="facts">{rows}</table></div>', l=label,
                    link=run_link(r.execution_id),
                    rows=rows([("Ref", r.ref), ("Started", when(started(r))), ("Adapter", r.adapter),
                               ("Status", status_badge(r)), ("Cache", badge(r.cache or "none")),
                               ("Memo key", html("<code>{k}</code>", k=r.memo_key or "-"))]))

    e = cmp.explanation
    if e is None:
        verdict = html('<p class="warn">theoryx explain cannot compare these runs: {p}</p>', p=cmp.problem)
    elif e.identical:
        verdict = html('<p class="ok">Identical memo keys: the two actions are the same; their results are '
                       'interchangeable.</p>')
    elif not e.changes:
        verdict = html('<p class="warn">The keys differ but the stored pre-images show no difference (run '
                       '<code>theoryx verify</code>).</p>')
    else:
        trs = join(html('<tr><td><span class="badge b-kind">{k}</span> <code>{w}</code></td><td><pre>{a}</pre></td>'
                        '<td><pre>{b}</pre></td><td>{n}</td></tr>', k=c.kind, w=c.where, a=_value(c.old),
                        b=_value(c.new), n=c.note) for c in e.changes)
        verdict = html('<p>{n} ingredient(s) of the memo key differ:</p><table class="list diff"><thead><tr>'
                       '<th>Ingredient</th><th>A</th><th>B</th><th>Note</th></tr></thead><tbody>{t}</tbody></table>',
                       n=len(e.changes), t=trs)
    cli = html('<details><summary>As <code>theoryx explain {a} {b}</code> prints it</summary>'
               '<pre class="preview">{t}</pre></details>', a=cmp.a.execution_id, b=cmp.b.execution_id,
               t="\n".join(e.lines())) if e is not None else ""
    body = html('<p class="crumbs"><a href="/runs">Runs</a> › {a} › compare</p><h1>Why the memo keys differ</h1>'
                '<div class="sides">{sa}{sb}</div>{v}{cli}',
                a=run_link(cmp.a.execution_id, short=True), sa=side("A", cmp.a), sb=side("B", cmp.b),
                v=verdict, cli=cli)
    return layout("Compare", "runs", body)


# -- plans ----------------------------------------------------------------------------------------


def status_cell(s: data.LedgerStatus) -> Markup:
    return html('<span class="badge b-{k}" title="{t}">{w}</span>', k="success" if s.ok else "error",
                t=s.text, w="verified" if s.ok else "corrupt")


def plans_page(rows_: tuple[data.PlanRow, ...]) -> str:
    if not rows_:
        listing = html('<p class="empty">No plans yet (<code>theoryx plan create KEY --limit-usd 5</code>, or '
                       '<code>--plan KEY</code> on a run).</p>')
    else:
        listing = html('<table class="list" id="plans"><thead><tr><th>Plan</th><th class="num">Limit</th>'
                       '<th class="num">Spent</th><th class="num">Reserved</th><th class="num">Remaining</th>'
                       '<th class="num">Saved</th><th class="num">Runs</th><th class="num">Hits</th><th>Ledger</th>'
                       '</tr></thead><tbody>{b}</tbody></table>', b=join(html(
                           '<tr><td>{link}</td><td class="num">{lim}</td><td class="num">{sp}</td>'
                           '<td class="num">{res}</td><td class="num">{rem}</td><td class="num">{sv}</td>'
                           '<td class="num">{n}</td><td class="num">{h}</td><td>{st}</td></tr>',
                           link=plan_link(p.plan.key),
                           lim="no limit" if p.plan.limit_micros is None else money(p.plan.limit_micros),
                           sp=money(p.plan.totals.spent_micros), res=money(p.plan.totals.reserved_micros),
                           rem="-" if p.plan.remaining_micros is None else money(p.plan.remaining_micros),
                           sv=money(p.plan.totals.saved_micros), n=f"{p.plan.totals.executions:,}",
                           h=f"{p.plan.totals.hits:,}", st=status_cell(p.status)) for p in rows_))
    body = html('<h1>Plans</h1><p class="summary">Budgets that admission control never overshoots; money '
                'spent by executions and saved by cache hits.</p>{l}', l=listing)
    return layout("Plans", "plans", body)


EVENT_FIELDS = ("execution_id", "amount_micros", "released_micros", "saved_micros", "limit_micros", "status", "ref")


def plan_page(d: data.PlanDetail) -> str:
    p, t = d.plan, d.plan.totals
    pairs = [("Limit", "no limit" if p.limit_micros is None else money(p.limit_micros)),
             ("Spent", money(t.spent_micros)),
             ("Reserved", money(t.reserved_micros)),
             ("Remaining", "-" if p.remaining_micros is None else money(p.remaining_micros)),
             ("Saved by cache hits", money(t.saved_micros)), ("Executions admitted", f"{t.executions:,}"),
             ("Cache hits", f"{t.hits:,}"), ("Created", when(p.created_ms)),
             ("Ledger", html("{b} {t}", b=status_cell(d.status), t=d.status.text))]
    chart = charts.step_chart(f"Spend and savings of plan {p.key} over time",
                              [charts.Series("spent", d.spent), charts.Series("saved", d.saved)],
                              lambda v: money(int(v)), empty="no money spent or saved yet")

    def event_row(ev: dict[str, Any]) -> Markup:
        detail = []
        for k in EVENT_FIELDS:
            if ev.get(k) is None:
                continue
            v = ev[k]
            if k == "execution_id":
                detail.append(html("run {l}", l=run_link(str(v), short=True)))
            elif k.endswith("_micros"):
                detail.append(escape(f"{k.removesuffix('_micros')} {money(int(v))}"))
            else:
                detail.append(escape(f"{k} {v}"))
        return html('<tr><td class="num">{s}</td><td class="nowrap">{w}</td><td>{k}</td><td>{d}</td>'
                    '<td>{h}</td></tr>', s=ev.get("seq", ""), w=when(ev.get("at_ms")), k=badge(str(ev.get("kind"))),
                    d=join(detail, " · "), h=cid_text(ev.get("hash")))

    pager = []
    if d.page > 1:
        newer = {"page": d.page - 1 if d.page > 2 else None}
        pager.append(html('<a href="{u}">« newer</a>', u=url(f"/plans/{p.key}", newer)))
    if d.page < d.pages:
        pager.append(html('<a rel="next" href="{u}">older »</a>', u=url(f"/plans/{p.key}", {"page": d.page + 1})))
    body = html('<p class="crumbs"><a href="/plans">Plans</a> › {k}</p><h1>Plan {k}</h1>'
                '<table class="facts">{facts}</table><h2>Spend and savings over time</h2>{chart}'
                '<h2>Ledger <span class="note">page {pg} of {pgs}, newest first</span></h2>'
                '<table class="list" id="ledger"><thead><tr><th class="num">Seq</th><th>At</th><th>Event</th>'
                '<th>Detail</th><th>Hash</th></tr></thead><tbody>{ev}</tbody></table><nav class="pager">{pager}</nav>',
                k=p.key, facts=rows(pairs), chart=chart, pg=d.page, pgs=d.pages,
                ev=join(event_row(e) for e in d.events), pager=join(pager, " "))
    return layout(f"Plan {p.key}", "plans", body)


# -- the store ------------------------------------------------------------------------------------


def _part(report: dict[str, Any], name: str) -> dict[str, Any]:
    """A sub-object of the gc report, or {} (the file is for people: it may be older or odd)."""
    value = report[name] if name in report else None
    return value if isinstance(value, dict) else {}


def _figure(part: dict[str, Any], name: str) -> float:
    """A figure of the gc report, or 0 if it is not a finite number (the file may be odd)."""
    value = part.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return float(value)


def _count(part: dict[str, Any], name: str) -> int:
    return int(_figure(part, name))


def store_page(v: data.StoreView) -> str:
    u = v.usage
    hr = v.hit_rate
    rate = "-" if hr.rate is None else f"{hr.rate:.0%}"
    pairs = [("Home", html("<code>{h}</code>", h=v.home)),
             ("Size on disk", f"{human_bytes(u.total_bytes)} ({u.total_bytes:,} bytes)"),
             ("Blobs", f"{u.blobs.count:,} ({human_bytes(u.blobs.bytes)})"),
             ("Database", human_bytes(u.database_bytes)),
             ("Cache entries", f"{v.cache_entries:,}"), ("Executions recorded", f"{v.executions:,}"),
             ("Pinned executions", f"{v.pins:,}")]
    extra = [(name, tally) for name, tally in (
        ("Temp files", u.temp_files), ("Withdrawn by an interrupted gc", u.withdrawn),
        ("Quarantined (corrupt)", u.quarantined), ("Workspaces of killed runs", u.abandoned_workspaces)) if tally.count]
    pairs += [(name, f"{t.count:,} ({human_bytes(t.bytes)})") for name, t in extra]
    bars = [charts.Bar(b.start_ms, b.end_ms, b.hits / (b.hits + b.misses) if b.hits + b.misses else 0.0,
                       f"{charts.when(b.start_ms)}: {b.hits} hit(s), {b.misses} miss(es), {b.failures} failure(s)")
            for b in hr.buckets]
    chart = charts.bar_chart("Cache hit rate over time", bars, lambda x: f"{x:.0%}", empty="no runs yet")
    window = (f"over the newest {hr.window:,} executions" if hr.window < v.executions else "over every execution")
    hits = html('<p class="summary">Hit rate {r} {w}: {h} hit(s), {m} miss(es), {f} failure(s); '
                '{sv} saved by hits, {sp} spent by executions.</p>',
                r=rate, w=window, h=f"{hr.hits:,}", m=f"{hr.misses:,}", f=f"{hr.failures:,}",
                sv=money(hr.saved_micros), sp=money(hr.spent_micros))
    if v.pinned:
        pinned = html('<table class="list" id="pins"><thead><tr><th>Execution</th><th>Ref</th><th>Pinned</th>'
                      '<th>Note</th></tr></thead><tbody>{b}</tbody></table>', b=join(html(
                          '<tr><td>{l}</td><td>{r}</td><td>{w}</td><td>{n}</td></tr>', l=run_link(p.execution_id),
                          r=rec.ref if rec else "(record dropped)", w=when(p.pinned_ms), n=p.note)
                          for p, rec in v.pinned))
    else:
        pinned = html('<p class="note">No pinned runs (<code>theoryx pin EXEC</code>).</p>')
    if v.last_gc is None:
        gc = html('<p class="note" id="last-gc">No gc recorded in this home (<code>theoryx gc</code>).</p>')
    else:
        r = v.last_gc.report

        def tally(name: str) -> str:
            t = _part(r, name)
            return f"{_count(t, 'count'):,} blob(s), {human_bytes(_count(t, 'bytes'))}"

        ce, ex = _part(r, "cache_entries"), _part(r, "executions")
        gc = html('<table class="facts" id="last-gc">{r}</table>', r=rows([
            ("Finished", when(v.last_gc.finished_ms)), ("Took", f"{_figure(r, 'seconds'):.2f} s"),
            ("Examined", tally("examined")), ("Reclaimed", tally("reclaimed")), ("Kept", tally("kept")),
            ("Cache entries evicted", f"{_count(ce, 'evicted_by_age') + _count(ce, 'evicted_by_size'):,}"),
            ("Execution records dropped", f"{_count(ex, 'dropped'):,}")]))
    flying = (html('<p class="inflight">In flight now: {i}</p>', i=join(
        (html('<span class="mono" title="started {w}">{i}…</span>', i=f.execution_id[:10], w=when(f.started_ms))
         for f in v.in_flight), " ")) if v.in_flight else "")
    body = html('<h1>Store</h1>{fl}<table class="facts" id="store-facts">{facts}</table>'
                '<h2>Cache hit rate over time</h2>{hits}{chart}<h2>Pinned runs</h2>{pinned}<h2>The last gc</h2>{gc}',
                fl=flying, facts=rows(pairs), hits=hits, chart=chart, pinned=pinned, gc=gc)
    return layout("Store", "store", body)
