"""Where theoryx keeps its state: the layout of ``$THEORYX_HOME`` (see BUILD.md, "Store layout").

A home theoryx creates is private (``0700``) whatever the umask: its blobs are outputs and
attachments, and a directory others can write into lets them replace a blob. Directories created
inside it take the home's group bits and set-group-id bit, never any for others
(:func:`cas.staging.inherit_mode`), so a home an administrator made group-shared on purpose
(``chmod 2770``, owned by the sharing group) stays shared with that group.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cas.staging import inherit_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from theoryx.errors import StoreError

HOME_MODE = 0o700

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by theoryx.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


PATH_MAX_BYTES = 4096 - 256
"""The longest home path accepted, in bytes: what theoryx keeps inside takes up to ~110 more
(``cas-v1/quarantine/<64 hex>.<ns>``), workspaces more, and Linux refuses paths past 4,096."""

FIXED_DIRS = ("cas-v1", "cas-v1/blobs", "cas-v1/tmp", "cas-v1/trash", "cas-v1/quarantine", "db-v1",
              "leases", "work-v1", "flight-v2", "flight-v1", "vendor-v1")
"""The folders of a home, relative to its root: each is a real directory (or absent). theoryx
never follows a symbolic link in their place: gc and ``verify --repair`` delete files in some of
them, and a link there would make them delete files outside the home."""


def default_home() -> Path:
    """``$THEORYX_HOME``, else ``$XDG_CACHE_HOME/theoryx``, else ``~/.cache/theoryx``."""
    env = os.environ.get("THEORYX_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "theoryx"


@dataclass(frozen=True)
class Home:
    """The versioned directories below one theoryx home. Creating them is idempotent."""

    root: Path

    @property
    def cas(self) -> Path:
        return self.root / "cas-v1"

    @property
    def db(self) -> Path:
        return self.root / "db-v1"

    @property
    def leases(self) -> Path:
        return self.root / "leases"

    @property
    def work(self) -> Path:
        """Per-run workspaces; on the CAS's filesystem so outputs can be renamed into it."""
        return self.root / "work-v1"

    @property
    def vendor(self) -> Path:
        """Host-installed Python requirements for image build contexts, by requirements digest."""
        return self.root / "vendor-v1"

    def exists(self) -> bool:
        """Whether the root is a home already: theoryx tagged it (``CACHEDIR.TAG``) and made its
        database folder when it created it. A tag alone is not enough: other tools tag their
        cache folders too, and a command that only reads must not fill such a folder in."""
        return (self.root / "CACHEDIR.TAG").is_file() and (self.root / "db-v1").is_dir()

    def check(self) -> None:
        """Raise :class:`~theoryx.errors.StoreError` (``ERR_STORE``) naming the first of
        :data:`FIXED_DIRS` that is a symbolic link or not a directory; absent ones are fine (they
        are created when needed). One ``lstat`` each: cheap enough for every command."""
        from theoryx.errors import StoreError

        for name in FIXED_DIRS:
            path = self.root / name
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise StoreError(f"cannot use {path} in the theoryx home: {exc.strerror or exc}") from None
            if stat.S_ISLNK(st.st_mode):
                raise StoreError(f"{path} is a symbolic link; theoryx does not follow links inside a home "
                                 f"(replace it with a directory, or point THEORYX_HOME at a home on the "
                                 "other filesystem)")
            if not stat.S_ISDIR(st.st_mode):
                raise StoreError(f"{path} is not a directory: the theoryx home is damaged "
                                 "(move it away; theoryx recreates the folder)")

    def ensure(self) -> Home:
        """Create the root (mode ``0700`` if theoryx creates it; an existing directory keeps its
        mode), its tag and the directories every run needs (modes inherited from the root).
        Raises :class:`~theoryx.errors.StoreError` (``ERR_STORE``) naming the home when it cannot
        be one (a file on its path, no permission, a read-only or virtual filesystem), or naming
        a folder of it that is a symbolic link or no directory (:meth:`check`)."""
        length = len(os.fsencode(self.root.absolute()))
        if length > PATH_MAX_BYTES:
            from theoryx.errors import StoreError

            raise StoreError(f"the theoryx home path is {length} bytes long; at most {PATH_MAX_BYTES} are "
                             "accepted (the files inside need room under the system's 4,096); nothing was "
                             "created: choose a shorter --home or THEORYX_HOME")
        self.check()   # before anything is created: a link is never written through
        try:
            self._ensure()
        except OSError as exc:
            from theoryx.errors import StoreError

            where = f" ({exc.filename})" if exc.filename and os.fspath(exc.filename) != os.fspath(self.root) else ""
            raise StoreError(f"cannot use {self.root} as the theoryx home: {exc.strerror or exc}{where}; "
                             "choose another with --home or THEORYX_HOME") from None
        return self

    def _ensure(self) -> Home:
        if not (self.root / "CACHEDIR.TAG").exists():
            self.root.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.root, HOME_MODE)
            except FileExistsError:
                pass
            else:
                os.chmod(self.root, HOME_MODE)  # mkdir's mode passed through the umask
            tag = self.root / "CACHEDIR.TAG"
            tmp = self.root / f".CACHEDIR.TAG.{os.getpid()}"
            tmp.write_text(CACHEDIR_TAG)
            os.replace(tmp, tag)
        for d in (self.db, self.leases, self.work):
            make_dir(d)
        return self


def make_dir(path: Path) -> None:
    """Create directory ``path`` inside a home (no-op if it exists) with the home's sharing:
    ``0700`` plus the parent's group bits and set-group-id, never anything for others, whatever
    the umask (:func:`cas.staging.inherit_mode`)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    inherit_mode(path)


_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ELOOP,
                      errno.ENXIO, errno.ESPIPE, errno.EINVAL})


def home_error(exc: BaseException, root: Path, *, anywhere: bool = False) -> StoreError | None:
    """The :class:`~theoryx.errors.StoreError` (``ERR_STORE``) for a filesystem refusal inside the
    home at ``root`` — no permission, a read-only filesystem, an immutable file, a file or FIFO
    where a folder belongs or a folder where a file does — naming the path; None for anything
    else. Only an error whose file is inside the home counts, unless ``anywhere`` (gc and verify
    touch nothing else: an error naming no file is theirs too)."""
    from theoryx.errors import StoreError, StoreFull

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) and anywhere:
        where = os.fsdecode(exc.filename) if exc.filename is not None else str(root)
        try:
            free = f" ({os.statvfs(root).f_bavail * os.statvfs(root).f_frsize} bytes free)"
        except OSError:
            free = ""
        return StoreFull(f"no space left on the device holding {where}{free}: free space, then run again")
    if not isinstance(exc, OSError) or exc.errno not in _REFUSED:
        return None
    name = os.fsdecode(exc.filename) if exc.filename is not None else None
    if name is None:
        if not anywhere:
            return None
    else:
        try:
            inside = os.path.commonpath([os.path.abspath(name), os.path.abspath(root)]) == os.path.abspath(root)
        except ValueError:
            inside = False
        if not inside and not anywhere:
            return None
    where = name or str(root)
    return StoreError(f"cannot use {where} in the theoryx home {root}: {exc.strerror or exc} (check its "
                      "permissions and type: a folder must be a writable directory, a lock a regular file)")
