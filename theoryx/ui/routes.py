"""URL -> handler for :mod:`theoryx.ui`, with strict validation of everything a URL carries.

Contract of :meth:`App.handle` (it never raises):

- the request target must be a path (``/...``), or an ``http(s)://`` URL in absolute form whose
  host then stands for the ``Host`` header's, of at most :data:`MAX_TARGET` characters; it is
  split on ``/`` *before* percent-decoding, and every decoded segment must be non-empty UTF-8
  without ``/``, ``\\``, control characters, and must not be ``.`` or ``..``: a traversal
  attempt, plain or encoded, is a 400 and never reaches a handler. No handler opens a file by a
  name from the URL: runs, outputs and blobs are looked up in the store's records, static files
  in a table built when the app starts;
- the query may hold only the parameters the route knows, each at most once, each validated
  (execution ids, cids, plan keys, enums, positive page numbers): anything else is a 400; an id
  or page that is well formed but absent is a 404;
- any :class:`~theoryx.errors.TheoryxError` becomes a page with its code and message; any other
  exception a 500 page without details (the details go to a warning notice for whoever runs
  the server).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import parse_qs, quote, unquote

import lmdb

from cas import is_cid
from theoryx.budget import plans
from theoryx.core import notices
from theoryx.core.ids import is_execution_id
from theoryx.errors import NotFound, PlanKeyError, PlanNotFound, TheoryxError
from theoryx.store.handle import Stores
from theoryx.ui import data, pages
from theoryx.ui.data import Memo, RunFilter

MAX_TARGET = 4096
MAX_PAGE_DIGITS = 12
"""A page number with more digits is past the last page of any store (a 404, not a parse)."""
FILE_NAMES = ("determinism.json", "outputs.json", "stdout.log", "stderr.log", "action.json")
_FILTER_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,199}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}

PAGE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)
BLOB_HEADERS: tuple[tuple[str, str], ...] = (
    # Bytes a processor wrote are never a page of this origin: no script, no plugin, no frame.
    ("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "private, max-age=3600"),   # a cid's bytes never change
)


@dataclass(frozen=True)
class Response:
    """What to send: a status, headers, and either ``body`` or the blob ``cid`` of ``length``
    bytes (streamed by the server through :meth:`cas.Store.open_verified`)."""

    status: int
    content_type: str
    body: bytes = b""
    cid: str | None = None
    length: int | None = None
    headers: tuple[tuple[str, str], ...] = field(default=PAGE_HEADERS)


class HttpError(Exception):
    """A 4xx answer: its status, a short title and a message for the page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def bad(message: str) -> HttpError:
    return HttpError(400, "Bad request", message)


@dataclass(frozen=True)
class Query:
    """The validated query string: each parameter at most once, only the ones a route names."""

    values: dict[str, str]

    def only(self, *allowed: str) -> Query:
        unknown = sorted(set(self.values) - set(allowed))
        if unknown:
            raise bad(f"unknown parameter {unknown[0]!r} (this page takes: {', '.join(allowed) or 'none'})")
        return self

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else None


def parse_query(raw: str) -> Query:
    if not raw:
        return Query({})
    try:
        pairs = parse_qs(raw, keep_blank_values=True, strict_parsing=True, max_num_fields=16,
                         encoding="utf-8", errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise bad("malformed query string") from None
    values: dict[str, str] = {}
    for key, vals in pairs.items():
        if len(vals) != 1:
            raise bad(f"parameter {key!r} given {len(vals)} times")
        if _CONTROL.search(key) or _CONTROL.search(vals[0]) or len(vals[0]) > 512:
            raise bad(f"parameter {key!r} has control characters or is too long")
        values[key] = vals[0]
    return Query(values)


def split_path(raw: str) -> list[str]:
    """The decoded segments of ``raw`` (a path starting with ``/``); :class:`HttpError` 400 for an
    empty, ``.`` or ``..`` segment, an encoded ``/`` or ``\\``, a control character or bad UTF-8."""
    if raw == "/":
        return []
    body = raw[1:-1] if raw.endswith("/") else raw[1:]
    segments = []
    for part in body.split("/"):
        try:
            seg = unquote(part, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise bad("the path is not UTF-8") from None
        if seg in ("", ".", "..") or "/" in seg or "\\" in seg or _CONTROL.search(seg):
            raise bad("path segments may not be empty, '.' or '..', nor hold '/', '\\' or control "
                      "characters (plain or percent-encoded)")
        segments.append(seg)
    return segments


def execution_id(value: str, what: str = "execution id") -> str:
    if not is_execution_id(value):
        raise bad(f"{what} {value[:80]!r} is not an execution id (26 characters of lowercase Crockford base32)")
    return value


def page_number(value: str | None) -> int:
    """A page number: 1 when absent; digits only (400 otherwise); beyond :data:`MAX_PAGE_DIGITS`
    digits a 404, since no store has that many pages."""
    if value is None:
        return 1
    if not value.isascii() or not value.isdigit() or int(value[:MAX_PAGE_DIGITS] or "0") == 0:
        raise bad(f"page must be a positive whole number, not {value[:40]!r}")
    if len(value) > MAX_PAGE_DIGITS:
        raise HttpError(404, "No such page", f"there is no page {value[:24]}...")
    return int(value)


def limit_number(value: str | None) -> int:
    if value is None:
        return data.PAGE_SIZE
    if not value.isascii() or not value.isdigit() or len(value) > 4 or not 1 <= int(value) <= data.MAX_PAGE_SIZE:
        raise bad(f"limit must be a whole number from 1 to {data.MAX_PAGE_SIZE}, not {value[:40]!r}")
    return int(value)


def choice(query: Query, name: str, allowed: tuple[str, ...]) -> str | None:
    value = query.get(name)
    if value is not None and value not in allowed:
        raise bad(f"{name} must be one of {', '.join(allowed)}, not {value[:40]!r}")
    return value


def filter_text(query: Query, name: str) -> str | None:
    value = query.get(name)
    if value is not None and not _FILTER_TEXT.match(value):
        raise bad(f"{name} {value[:80]!r} is not a valid {name}")
    return value


def disposition(kind: str, filename: str) -> str:
    """``inline`` or ``attachment``, with the file name in RFC 6266 / 5987 form."""
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[:100] or "blob"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename[:200], safe='')}"


def blob_type(name: str, mime: str) -> tuple[str, bool]:
    """The Content-Type to send a blob with, and whether it may be shown inline."""
    kind = data._kind(name, mime)
    if kind == "image":
        return mime.split(";", 1)[0].strip().lower(), True
    if kind == "json":
        return "application/json", True
    if kind == "text":
        return "text/plain; charset=utf-8", True   # never text/html: the bytes are not a page
    return "application/octet-stream", False


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` header is one of ``allowed`` (``theoryx.ui.server.allowed_hosts``:
    ``name:port`` values, and ``*:port`` for any IP address literal on that port)."""
    host = host.lower()
    if host in allowed:
        return True
    name, sep, port = host.rpartition(":")
    if not sep or f"*:{port}" not in allowed:
        return False
    import ipaddress

    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
    except ValueError:
        return False
    return True


def origin_form(target: str, host: str | None) -> tuple[str, str | None]:
    """A request target in absolute form (``http://host:port/path?query``, which an HTTP/1.1
    server must accept: RFC 9112, 3.2.2) as its path and query, with the host it names in place
    of the ``Host`` header's; any other target as it is."""
    if not target[:8].lower().startswith(("http://", "https://")):
        return target, host
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(target)
    except ValueError:      # a malformed authority ([::1 unclosed)
        raise bad("the request target is not a URL") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return path, parts.netloc.rpartition("@")[2] or host


class App:
    """The read-only web app over one home: :meth:`handle` answers one request target."""

    def __init__(self, stores: Stores, *, allowed_hosts: frozenset[str] = frozenset()) -> None:
        self.stores = stores
        self.memo = Memo()
        self.allowed_hosts = allowed_hosts
        self.static = _load_static()

    # -- entry --------------------------------------------------------------------------------

    def handle(self, target: str, host: str | None = None) -> Response:
        """The response to a GET of ``target``; never raises."""
        try:
            target, host = origin_form(target, host)
            if host is not None and self.allowed_hosts and not host_allowed(host, self.allowed_hosts):
                raise HttpError(421, "Misdirected request",
                                "this server answers only requests addressed to the host it listens on")
            if len(target) > MAX_TARGET:
                raise HttpError(414, "URL too long", f"URLs are at most {MAX_TARGET} characters here")
            if not target.startswith("/"):
                raise bad("the request target must be a path")
            path, _, raw_query = target.partition("?")
            segments, query = split_path(path), parse_query(raw_query.partition("#")[0])
            return self._with_retry(lambda: self.route(segments, query))
        except HttpError as exc:
            return self.error(exc.status, exc.title, exc.message)
        except (NotFound, PlanNotFound) as exc:
            return self.error(404, "Not found", exc.message)
        except PlanKeyError as exc:
            return self.error(400, "Bad request", exc.message)
        except TheoryxError as exc:
            return self.error(500, "The store could not be read", f"{exc.code}: {exc.message}")
        except Exception as exc:   # never a traceback on the page
            notices.warning(f"theoryx ui: internal error answering {target[:200]!r}: {exc!r}")
            return self.error(500, "Internal error", "the server could not answer this request; "
                                                     "the details were reported where it runs")

    def error(self, status: int, title: str, message: str) -> Response:
        return Response(status, "text/html; charset=utf-8", pages.error_page(status, title, message).encode())

    def _with_retry(self, fn: Callable[[], Response]) -> Response:
        """``fn()``; once more after adopting a map another process grew (LMDB's MapResizedError)."""
        try:
            return fn()
        except lmdb.MapResizedError:
            self.stores.db.env.set_mapsize(0)
            return fn()

    # -- routing ------------------------------------------------------------------------------

    def route(self, segs: list[str], query: Query) -> Response:
        n = len(segs)
        if n == 0 or segs == ["runs"]:
            return self.runs(query)
        head = segs[0]
        if head == "runs" and n >= 2:
            eid = execution_id(segs[1])
            if n == 2:
                query.only()
                return self.html(pages.run_page(data.run_detail(self.stores, eid)))
            if n == 3 and segs[2] == "compare":
                return self.compare(eid, query)
            if segs[2] == "outputs" and n >= 4:
                return self.output_page(eid, "/".join(segs[3:]), query)
            if segs[2] == "raw" and n >= 4:
                return self.output_raw(eid, "/".join(segs[3:]), query)
            if segs[2] == "files" and n == 4:
                return self.file_raw(eid, segs[3], query)
            if segs[2] == "inputs" and n == 4:
                return self.input_raw(eid, segs[3], query)
        elif head == "plans" and n == 1:
            query.only()
            return self.html(pages.plans_page(data.plan_rows(self.stores, self.memo)))
        elif head == "plans" and n == 2:
            key = plans.check_key(segs[1])
            page = page_number(query.only("page").get("page"))
            return self.html(pages.plan_page(data.plan_detail(self.stores, self.memo, key, page)))
        elif head == "store" and n == 1:
            query.only()
            return self.html(pages.store_page(data.store_view(self.stores, self.memo)))
        elif head == "static" and n == 2:
            return self.static_file(segs[1], query)
        elif segs == ["api", "head"]:
            query.only()
            body = json.dumps(data.head(self.stores).to_dict()).encode()
            return Response(200, "application/json", body)
        raise HttpError(404, "Not found", "there is no page at this address")

    def html(self, markup: str) -> Response:
        return Response(200, "text/html; charset=utf-8", markup.encode())

    def runs(self, query: Query) -> Response:
        query.only("ref", "plan", "adapter", "status", "cache", "before", "limit")
        flt = RunFilter(ref=filter_text(query, "ref"), plan=filter_text(query, "plan"),
                        adapter=choice(query, "adapter", data.ADAPTERS), status=choice(query, "status", data.STATUSES),
                        cache=choice(query, "cache", data.CACHES))
        before = query.get("before")
        got = data.runs_page(self.stores, flt, before=execution_id(before, "before") if before else None,
                             limit=limit_number(query.get("limit")))
        return self.html(pages.runs_page(got, data.in_flight(self.stores)))

    def compare(self, eid: str, query: Query) -> Response:
        other = query.only("with").get("with")
        if other is None:
            raise bad("compare needs ?with=<execution id>")
        return self.html(pages.compare_page(data.compare(self.stores, eid, execution_id(other.strip(), "with"))))

    def output_page(self, eid: str, rel: str, query: Query) -> Response:
        query.only()
        rec = data.record(self.stores, eid)
        entry = data.output(rec, rel)
        view = data.OutputView(entry, rel, data.preview(self.stores, entry.cid, entry.path, entry.mime))
        return self.html(pages.output_page(rec, view))

    def blob(self, cid: str, name: str, mime: str, query: Query) -> Response:
        download = query.only("download").get("download")
        if download not in (None, "1"):
            raise bad("download takes the value 1")
        stat = self.stores.cas.stat(cid)
        if stat is None:
            raise NotFound(f"blob {cid} ({name}) is not in the store (removed by gc?)")
        ctype, inline = blob_type(name, mime)
        kind = "inline" if inline and download is None else "attachment"
        return Response(200, ctype, cid=cid, length=stat.size,
                        headers=(*BLOB_HEADERS, ("Content-Disposition", disposition(kind, name))))

    def output_raw(self, eid: str, rel: str, query: Query) -> Response:
        entry = data.output(data.record(self.stores, eid), rel)
        return self.blob(entry.cid, rel.rsplit("/", 1)[-1], entry.mime, query)

    def file_raw(self, eid: str, name: str, query: Query) -> Response:
        if name not in FILE_NAMES:
            raise HttpError(404, "Not found", f"an execution's files are {', '.join(FILE_NAMES)}")
        rec = data.record(self.stores, eid)
        mime = "application/json" if name.endswith(".json") else "text/plain"
        derived = data.derived_file(rec, name)
        if derived is not None:   # a hit's receipt or index: computed from its record, nothing written
            download = query.only("download").get("download")
            if download not in (None, "1"):
                raise bad("download takes the value 1")
            kind = "inline" if download is None else "attachment"
            return Response(200, blob_type(name, mime)[0], derived,
                            headers=(*BLOB_HEADERS, ("Content-Disposition", disposition(kind, name))))
        return self.blob(data.execution_file(rec, name), name, mime, query)

    def input_raw(self, eid: str, cid: str, query: Query) -> Response:
        if not is_cid(cid):
            raise bad(f"{cid[:80]!r} is not a cid (b3: and 64 lowercase hex digits)")
        att = data.input_blob(self.stores, data.record(self.stores, eid), cid)
        return self.blob(att.cid, att.name, att.mime, query)

    def static_file(self, name: str, query: Query) -> Response:
        query.only("v")
        found = self.static.get(name)
        if found is None:
            raise HttpError(404, "Not found", "no such static file")
        body, ctype = found
        return Response(200, ctype, body, headers=(*PAGE_HEADERS[:-1], ("Cache-Control", "max-age=300")))


def _load_static() -> dict[str, tuple[bytes, str]]:
    """Every file of the package's ``static/`` folder, read once: the URL picks a key of this
    table and nothing else (no path from a URL ever reaches the filesystem)."""
    out: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("theoryx.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in STATIC_TYPES:
            out[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return out
