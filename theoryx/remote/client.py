"""The one remote store: obstore (Rust's ``object_store``) behind a small, bounded interface.

Schemes: ``http(s)://`` (WebDAV-style GET/HEAD/PUT, e.g. nginx with ``dav_methods``), ``s3://``,
``gs://``, ``az://`` (credentials from each service's usual environment variables, read by
obstore itself), ``file://``. For HTTP, ``THEORYX_REMOTE_TOKEN`` (a bearer token) or
``THEORYX_REMOTE_USER`` + ``THEORYX_REMOTE_PASSWORD`` (basic auth) become an ``Authorization``
header of the client and nothing else: never printed, logged, stored, nor left in an error
message (:func:`scrub` removes every credential value from obstore's error text).

Every request is bounded (:class:`theoryx.remote.config.Timeouts`): small objects on one client
(``connect_s``, ``request_s`` per request and for all its retries together), large blobs on
another (``connect_s``, ``stall_s`` without a byte, ``transfer_s`` at most), opened only when a
large blob is transferred: opening a client costs ~6 ms (it parses the system's CA bundle), a
remote hit of small blobs needs one. A blob of at most :data:`SMALL_BLOB` bytes is one GET on
the small client, checked against its cid in memory before anyone stores it
(:meth:`RemoteStore.get_blob`); a larger one streams into the local CAS, hashed once while it is
written and published only if it hashes to its cid (:meth:`RemoteStore.download`, through
``cas.Store.put_chunks``), while a second thread keeps reading the network. An upload reads the
blob's file in the store (multipart for object stores; over HTTP, whose ``object_store`` client
has no streaming PUT, from a read-only memory map of the file, so its bytes are never copied
into the process's memory).

obstore is imported when a :class:`RemoteStore` is opened, threads and ``mmap`` only by the
transfers that use them: a remote miss (one 404) loads little beyond obstore.
"""

from __future__ import annotations

import _thread
import os

from cas import Blob, Store, cid_of_bytes
from cas.errors import CasError, CorruptBlob
from theoryx.errors import RemoteConfigError, RemoteError, RemoteRejected
from theoryx.remote.config import CREDENTIAL_ENV, ENV_PASSWORD, ENV_TOKEN, ENV_USER, RemoteConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    import queue
    import threading
    from collections.abc import Iterator, Mapping
    from datetime import timedelta
    from typing import Any

    from obstore.store import ClientConfig, ObjectStore, RetryConfig

SMALL_BLOB = 1 << 20
"""Blobs up to this size are fetched in one GET on the small client and held in memory; larger
ones stream to disk on the bulk client. Bounded by ``request_s`` like an entry (which may be up
to 4 MiB), so a slow link still moves one within the default 10 s."""
TRANSFER_CHUNK = 1 << 20
"""Bytes per chunk a blob download yields. Measured on loopback (1 GiB, 2 busy cores, with the
reader thread): 1 MiB chunks best (1.47-2.0 s), 4-8 MiB ones up to 1.5x slower, obstore's own
small chunks (no minimum) about 2x slower."""
QUEUE_CHUNKS = 16
"""Downloaded chunks that may wait between the network and the disk (memory: 16 x 1 MiB)."""
UPLOAD_PART = 8 << 20
"""Bytes per part of a multipart upload (object stores)."""


def scrub(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` without any credential value of any scheme (replaced by ``***``), and without
    the basic-auth header that carries ``THEORYX_REMOTE_USER``/``PASSWORD``."""
    env = os.environ if env is None else env
    secrets = {env[n] for names in CREDENTIAL_ENV.values() for n in names if len(env.get(n, "")) >= 3}
    header = _basic(env)
    if header:
        secrets.add(header.split(" ", 1)[1])
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def describe(exc: BaseException, env: Mapping[str, str] | None = None) -> str:
    """One scrubbed line for an obstore (or OS) error: its first line, without the debug dump."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return scrub(first, env)[:300]     # scrubbed whole: a secret cut in two would not match


def _basic(env: Mapping[str, str]) -> str | None:
    user, password = env.get(ENV_USER), env.get(ENV_PASSWORD)
    if user and password:
        import base64

        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def _seconds(s: float) -> timedelta:
    from datetime import timedelta

    return timedelta(seconds=s)


class RemoteStore:
    """The remote of one :class:`RemoteConfig`. Thread-safe (obstore stores are). Methods raise
    :class:`RemoteError` (unreachable, timed out, refused) with a scrubbed message, or
    :class:`RemoteRejected` (bytes that do not match their cid); a missing object is ``None`` or
    ``False``, not an error."""

    def __init__(self, config: RemoteConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._env = dict(os.environ if env is None else env)
        t = config.timeouts
        self._small = self._open(client={"connect_timeout": _seconds(t.connect_s), "timeout": _seconds(t.request_s)})
        self._bulk_store: ObjectStore | None = None
        self._bulk_lock = _thread.allocate_lock()

    def __repr__(self) -> str:  # never the client options: they hold the Authorization header
        return f"RemoteStore({self.config.url!r})"

    @property
    def url(self) -> str:
        return self.config.url

    # -- opening -----------------------------------------------------------------------------

    @property
    def _bulk(self) -> ObjectStore:
        """The client for large transfers, opened on first use."""
        with self._bulk_lock:
            if self._bulk_store is None:
                t = self.config.timeouts
                self._bulk_store = self._open(client={
                    "connect_timeout": _seconds(t.connect_s), "read_timeout": _seconds(t.stall_s),
                    "timeout": _seconds(t.transfer_s)})
            return self._bulk_store

    def _open(self, client: dict[str, Any]) -> ObjectStore:
        try:
            from obstore.store import AzureStore, GCSStore, HTTPStore, LocalStore, S3Store
        except ImportError:
            raise RemoteConfigError("the team cache needs obstore: pip install 'theoryx[remote]'") from None
        t = self.config.timeouts
        retry: RetryConfig = {"max_retries": t.retries, "retry_timeout": _seconds(t.request_s),
                              "backoff": {"init_backoff": _seconds(0.1), "max_backoff": _seconds(1), "base": 2}}
        url, scheme = self.config.url, self.config.scheme
        options: ClientConfig = dict(client)  # type: ignore[assignment]
        try:
            if scheme in ("http", "https"):
                options["allow_http"] = scheme == "http"
                auth = self._http_auth()
                if auth:
                    options["default_headers"] = {"authorization": auth}
                return HTTPStore.from_url(url, client_options=options, retry_config=retry)
            if scheme == "s3":
                endpoint = self._env.get("AWS_ENDPOINT_URL_S3") or self._env.get("AWS_ENDPOINT_URL") or ""
                options["allow_http"] = endpoint.startswith("http://")
                return S3Store.from_url(url, client_options=options, retry_config=retry)
            if scheme == "gs":
                return GCSStore.from_url(url, client_options=options, retry_config=retry)
            if scheme == "az":
                return AzureStore.from_url(url, client_options=options, retry_config=retry)
            if scheme == "file":     # like a bucket, the directory must exist: theoryx never creates it
                directory = _file_directory(url)
                if not os.path.isdir(directory):
                    raise RemoteError(f"the remote directory {directory} does not exist (create it first)")
                return LocalStore.from_url(url + "/", mkdir=False)
        except RemoteError:
            raise
        except Exception as exc:  # obstore's configuration errors: unknown bucket syntax and the like
            raise RemoteConfigError(f"cannot open the remote {url}: {describe(exc, self._env)}") from None
        raise RemoteConfigError(f"unsupported remote scheme {scheme!r}")

    def _http_auth(self) -> str | None:
        token = self._env.get(ENV_TOKEN)
        return f"Bearer {token}" if token else _basic(self._env)

    def _error(self, what: str, path: str, exc: BaseException) -> RemoteError:
        return RemoteError(f"remote {self.url}: {what} {path} failed: {describe(exc, self._env)}")

    # -- small objects -----------------------------------------------------------------------

    def get_small(self, path: str, max_bytes: int) -> bytes | None:
        """The object at ``path`` (at most ``max_bytes``), or None if there is none."""
        import obstore

        try:
            result = obstore.get(self._small, path)
            if result.meta["size"] > max_bytes:
                raise RemoteRejected(f"remote {self.url}: {path} is {result.meta['size']} bytes, "
                                     f"more than the {max_bytes} an entry may have")
            return bytes(result.bytes())
        except FileNotFoundError:
            return None
        except RemoteError:
            raise
        except Exception as exc:
            raise self._error("GET", path, exc) from None

    def size(self, path: str) -> int | None:
        """The size of the object at ``path`` (a HEAD), or None if there is none."""
        import obstore

        try:
            return int(obstore.head(self._small, path)["size"])
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._error("HEAD", path, exc) from None

    def put_small(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` in one request (replacing what was there)."""
        import obstore

        try:
            obstore.put(self._small, path, data, use_multipart=False)
        except Exception as exc:
            raise self._error("PUT", path, exc) from None

    # -- blobs -------------------------------------------------------------------------------

    def get_blob(self, path: str, cid: str, size: int | None = None, *, limit: int | None = None) -> bytes | None:
        """The bytes of blob ``cid`` at ``path`` if it has at most :data:`SMALL_BLOB` of them:
        one GET, the bytes checked against ``cid`` (and ``size`` when given) before they are
        returned, :class:`RemoteRejected` if they do not match or the server announces more
        than ``limit`` bytes (the bound of a blob whose size the entry does not state). None for
        a larger blob (stated by ``size``, or announced by the server, whose answer is then
        dropped unread): stream it with :meth:`download`."""
        if size is not None and size > SMALL_BLOB:
            return None
        import obstore

        try:
            result = obstore.get(self._small, path)
            announced = int(result.meta["size"])
            _check_size(cid, announced, size, limit)
            if announced > SMALL_BLOB:
                return None  # the unread answer is dropped (its connection closed)
            data = bytes(result.bytes())
        except FileNotFoundError:
            raise RemoteRejected(f"remote blob {cid} is missing (the entry names it)") from None
        except RemoteError:
            raise
        except Exception as exc:
            raise self._error("GET", path, exc) from None
        actual = cid_of_bytes(data)
        if len(data) != announced or actual != cid:
            raise RemoteRejected(f"remote blob {cid} does not match its cid (got {len(data)} bytes "
                                 f"hashing to {actual}): rejected")
        return data

    def download(self, path: str, cid: str, cas: Store, size: int | None = None, *, limit: int | None = None,
                 cancel: threading.Event | None = None) -> Blob:
        """Stream the blob at ``path`` into ``cas``, hashing while it is written; publish it
        only if its bytes hash to ``cid`` (and are ``size`` long when given, at most ``limit``
        otherwise). Otherwise :class:`RemoteRejected`, and nothing of it stays in the store (the
        temp file goes). Setting ``cancel`` ends the transfer within ~0.1 s, as a
        :class:`RemoteError`, with nothing left in the store either."""
        import obstore

        try:
            result = obstore.get(self._bulk, path)
            announced = int(result.meta["size"])
            _check_size(cid, announced, size, limit)
            with _Prefetch(iter(result.stream(min_chunk_size=TRANSFER_CHUNK)), cancel) as chunks:
                return cas.put_chunks(iter(chunks), Blob(cid, announced))
        except FileNotFoundError:
            raise RemoteRejected(f"remote blob {cid} is missing (the entry names it)") from None
        except CorruptBlob as exc:  # the bytes are not the blob: cas kept nothing of them
            raise RemoteRejected(f"remote blob {cid} does not match its cid ({exc}): rejected") from None
        except (RemoteError, CasError):  # a local store fault is not the remote's: reported as it is
            raise
        except Cancelled:
            raise RemoteError(f"remote {self.url}: GET {path} cancelled") from None
        except Exception as exc:
            raise self._error("GET", path, exc) from None

    def upload(self, path: str, cas: Store, cid: str) -> int:
        """Upload blob ``cid`` from ``cas`` to ``path``, streaming from its file; the byte count."""
        import obstore

        try:
            with cas.open(cid) as f:
                size = os.fstat(f.fileno()).st_size
                if self.config.scheme in ("http", "https"):
                    # object_store's HTTP client has no streaming PUT: hand it a read-only map of
                    # the file, which it sends without copying it into memory.
                    if size == 0:
                        obstore.put(self._small, path, b"", use_multipart=False)
                    else:
                        import mmap

                        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                        try:
                            obstore.put(self._bulk, path, mapped, use_multipart=False)
                        finally:
                            _release(mapped)
                else:
                    obstore.put(self._bulk, path, f, chunk_size=UPLOAD_PART, max_concurrency=4)
            return size
        except Exception as exc:
            raise self._error("PUT", path, exc) from None


def _check_size(cid: str, announced: int, size: int | None, limit: int | None) -> None:
    """:class:`RemoteRejected` unless the ``announced`` length is the ``size`` the entry states,
    or, where it states none, at most ``limit`` (checked before a byte of the body is read)."""
    if size is not None and announced != size:
        raise RemoteRejected(f"remote blob {cid} is {announced} bytes, the entry says {size}")
    if size is None and limit is not None and announced > limit:
        raise RemoteRejected(f"remote blob {cid} is {announced} bytes, more than the {limit} it may have: "
                             "not downloaded")


class Cancelled(Exception):
    """A transfer ended because its caller was interrupted (see :meth:`RemoteStore.download`)."""


def _release(mapped: Any) -> None:
    """Close ``mapped`` unless obstore still holds it (a request it gave up on, after a timeout,
    can keep its buffer a while): then it is unmapped when that reference goes, and the error
    being raised, if any, stays the one reported (not ``BufferError``)."""
    try:
        mapped.close()
    except BufferError:
        pass


_NOTHING = object()


class _Prefetch:
    """The chunks of a download, read from the network by a thread of their own into a bounded
    queue (at most :data:`QUEUE_CHUNKS`), so the connection keeps flowing while the consumer
    hashes and writes the previous chunks: without it the sender stalls whenever the disk does.

    Iterate it; an error of the network side is raised by the iteration. Leaving its ``with``
    block (also early, when the consumer rejects the bytes) stops and joins the reader."""

    def __init__(self, chunks: Iterator[Any], cancel: threading.Event | None = None) -> None:
        import queue
        import threading

        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._cancel = cancel
        self._thread: threading.Thread = threading.Thread(target=self._produce, args=(chunks,),
                                                          name="theoryx-remote-get", daemon=True)
        self._thread.start()

    def _produce(self, chunks: Iterator[Any]) -> None:
        try:
            for chunk in chunks:
                if not self._offer(chunk):
                    return
            self._offer(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._offer(exc)

    def _offer(self, item: Any) -> bool:
        """Queue ``item``, waiting for room; False once the consumer has left."""
        from queue import Full

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        from queue import Empty

        while True:
            if self._cancel is None:
                item = self._queue.get()
            else:       # a stalled sender must not hold a cancelled consumer: look again every 0.1 s
                try:
                    item = self._queue.get(timeout=0.1)
                except Empty:
                    item = _NOTHING
                if self._cancel.is_set():
                    raise Cancelled("the transfer was cancelled")
                if item is _NOTHING:
                    continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def _file_directory(url: str) -> str:
    """The local directory of a ``file://`` URL (checked by :func:`theoryx.remote.config.check_url`)."""
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path)
