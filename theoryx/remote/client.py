"""The one remote store: obstore (Rust's ``object_store``) behind a small, bounded interface.

Schemes: ``http(s)://`` (WebDAV-style GET/HEAD/PUT, e.g. nginx with ``dav_methods``), ``s3://``,
``gs://``, ``az://`` (credentials from each service's usual environment variables, read by
obstore itself), ``file://``. For HTTP, ``THEORYX_REMOTE_TOKEN`` (a bearer token) or
``THEORYX_REMOTE_USER`` + ``THEORYX_REMOTE_PASSWORD`` (basic auth) become an ``Authorization``
header of the client and nothing else: never printed, logged, stored, nor left in an error
message (:func:`scrub` removes every credential value from obstore's error text).

Every request is bounded (:class:`theoryx.remote.config.Timeouts`): small objects on one client
(``connect_s``, ``request_s`` per request and for all its retries together), blobs on another
(``connect_s``, ``stall_s`` without a byte, ``transfer_s`` at most). Blobs stream both ways: a
download is hashed while it is written into the local CAS (``cas.Store.put_stream``) and is
published there only if its bytes hash to the cid it was asked for; an upload reads the blob's
file in the store (multipart for object stores; over HTTP, whose ``object_store`` client has no
streaming PUT, from a read-only memory map of the file, so its bytes are never copied into the
process's memory).
"""

from __future__ import annotations

import base64
import io
import mmap
import os
import queue
import threading
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cas import Blob, Store, cid_of_bytes
from cas.hashing import CHUNK_SIZE
from theoryx.errors import RemoteConfigError, RemoteError, RemoteRejected
from theoryx.remote.config import CREDENTIAL_ENV, ENV_PASSWORD, ENV_TOKEN, ENV_USER, RemoteConfig

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig

TRANSFER_CHUNK = 8 << 20
"""Bytes per chunk a blob download yields (and per part of a multipart upload)."""
QUEUE_CHUNKS = 4
"""Downloaded chunks that may wait between the network and the disk (memory: 4 x 8 MiB)."""


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
    return scrub(first[:300], env)


def _basic(env: Mapping[str, str]) -> str | None:
    user, password = env.get(ENV_USER), env.get(ENV_PASSWORD)
    if user and password:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def _seconds(s: float) -> timedelta:
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
        self._bulk = self._open(client={"connect_timeout": _seconds(t.connect_s), "read_timeout": _seconds(t.stall_s),
                                        "timeout": _seconds(t.transfer_s)})

    def __repr__(self) -> str:  # never the client options: they hold the Authorization header
        return f"RemoteStore({self.config.url!r})"

    @property
    def url(self) -> str:
        return self.config.url

    # -- opening -----------------------------------------------------------------------------

    def _open(self, client: dict[str, Any]) -> ObjectStore:
        try:
            from obstore.store import AzureStore, GCSStore, HTTPStore, LocalStore, S3Store
        except ImportError:
            raise RemoteConfigError("the team cache needs obstore: pip install 'theoryx[remote]'") from None
        t = self.config.timeouts
        retry: RetryConfig = {"max_retries": t.retries, "retry_timeout": _seconds(t.request_s),
                              "backoff": {"init_backoff": timedelta(milliseconds=100),
                                          "max_backoff": timedelta(seconds=1), "base": 2}}
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
            if scheme == "file":
                return LocalStore.from_url(url + "/", mkdir=True)
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

    def download(self, path: str, cid: str, cas: Store, size: int | None = None) -> Blob:
        """Stream the blob at ``path`` into ``cas``, hashing while it is written; publish it
        only if its bytes hash to ``cid`` (and are ``size`` long when given). Otherwise
        :class:`RemoteRejected`, and nothing of it stays in the store (the temp file goes)."""
        import obstore

        try:
            result = obstore.get(self._bulk, path)
            announced = int(result.meta["size"])
            if size is not None and announced != size:
                raise RemoteRejected(f"remote blob {cid} is {announced} bytes, the entry says {size}")
            if announced <= TRANSFER_CHUNK:  # small: one buffer, checked before it is written
                data = bytes(result.bytes())
                actual = cid_of_bytes(data)
                if len(data) != announced or actual != cid:
                    raise RemoteRejected(f"remote blob {cid} does not match its cid (got {len(data)} bytes "
                                         f"hashing to {actual}): rejected")
                return cas.put_bytes(data)
            with _Checked(iter(result.stream(min_chunk_size=TRANSFER_CHUNK)), cid, announced) as reader:
                return cas.put_stream(io.BufferedReader(reader, CHUNK_SIZE))
        except FileNotFoundError:
            raise RemoteRejected(f"remote blob {cid} is missing (the entry names it)") from None
        except RemoteError:
            raise
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
                        obstore.put(self._bulk, path, b"", use_multipart=False)
                    else:
                        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                            obstore.put(self._bulk, path, mapped, use_multipart=False)
                else:
                    obstore.put(self._bulk, path, f, chunk_size=TRANSFER_CHUNK, max_concurrency=4)
            return size
        except Exception as exc:
            raise self._error("PUT", path, exc) from None


class _Checked(io.RawIOBase):
    """A raw stream over a download that refuses to end unless the bytes hash to ``cid`` and add
    up to ``size``: the store's ``put_stream`` then removes its temp file instead of publishing.

    A producer thread pulls the chunks from obstore and hashes them while the consumer (the
    store, which hashes again as it writes) drains a bounded queue: the two hashes run on two
    cores and at most :data:`QUEUE_CHUNKS` chunks wait in memory. More bytes than announced stop
    the download at once. Use as a context manager: leaving it stops and joins the producer.
    """

    def __init__(self, chunks: Iterator[bytes], cid: str, size: int) -> None:
        self._cid = cid
        self._size = size
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(chunks,), name="theoryx-remote-get",
                                        daemon=True)
        self._thread.start()

    def _produce(self, chunks: Iterator[bytes]) -> None:
        from cas.hashing import new_hasher

        hasher = new_hasher(threads=False)
        seen = 0
        try:
            for chunk in chunks:
                seen += len(chunk)
                if seen > self._size:
                    raise RemoteRejected(f"remote blob {self._cid} is longer than the {self._size} bytes announced")
                hasher.update(chunk)
                if not self._offer(chunk):
                    return
            actual = "b3:" + hasher.hexdigest()
            if seen != self._size or actual != self._cid:
                raise RemoteRejected(f"remote blob {self._cid} does not match its cid "
                                     f"(got {seen} bytes hashing to {actual}): rejected")
            self._offer(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._offer(exc)

    def _offer(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            if self._done:
                return 0
            item = self._queue.get()
            if item is None:
                self._done = True
                return 0
            if isinstance(item, BaseException):
                self._done = True
                raise item
            self._buf = memoryview(item)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        super().close()
