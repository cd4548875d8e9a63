"""Step 1 of a run, *prepare*: spec, attachments, rewritten inputs, image identity, memo key.

Preparing reads (the registry, the attachment files, the processor folder) and writes nothing
to the CAS: attachments are hashed here and stored only by a miss, which uses them. The spec
cache in the database may be filled (a parsed spec is not a result).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from theoryx import adapters
from theoryx.core import notices
from theoryx.core.canonical import CanonicalizationError, int_text
from theoryx.errors import InputsError, UsageError
from theoryx.pipeline import attachments, writeprefix
from theoryx.pipeline.action import Action, build
from theoryx.pipeline.attachments import Attachment
from theoryx.pipeline.request import RunRequest, check_depth
from theoryx.spec.context import ContextManifest, env_identity, image_identity
from theoryx.spec.model import ProcessorSpec
from theoryx.spec.refs import Ref
from theoryx.spec.registry import Registry
from theoryx.store.handle import Stores

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class Prepared:
    """A prepared request: the spec, the action (and so the memo key), the attachments the inputs
    reference, the rewritten inputs and the image context manifest. ``sources`` maps each
    referenced attachment's cid to the host file it was hashed from (empty for a replayed action,
    whose attachments are already in the store)."""

    spec: ProcessorSpec
    action: Action
    attachments: tuple[Attachment, ...]
    inputs: Any
    context: ContextManifest
    sources: tuple[tuple[str, Path], ...] = ()

    @property
    def memo_key(self) -> str:
        return self.action.memo_key

    @property
    def write_prefix(self) -> str:
        return str(self.action.body["write_prefix"])

    @property
    def input_cids(self) -> tuple[str, ...]:
        return tuple(sorted({a.cid for a in self.attachments}))


@dataclass(frozen=True)
class Processor:
    """What a ref resolves to for one environment class: its spec, the ``image`` and ``env``
    parts of the action, and the context manifest the image names."""

    spec: ProcessorSpec
    image: dict[str, Any]
    env: dict[str, str]
    context: ContextManifest


def resolve(stores: Stores, registry: str | None, ref: str, env_class: str) -> Processor:
    """Read ``ref``'s spec (through the spec cache) and hash its image context."""
    spec = Registry.from_option(registry).load(Ref.parse(ref), stores.db)
    image, manifest = image_identity(spec, env_class)
    return Processor(spec, image, env_identity(env_class), manifest)


class Resolutions:
    """:func:`resolve` once per (registry, ref, environment class) for as long as this object
    lives: a batch shares one, so its items neither re-read the registry nor re-hash the
    processor's folder for every item. A folder edited during a batch is seen by the next one."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str | None, str, str], Processor] = {}
        import threading  # batches only: a single run never loads it

        self._lock = threading.Lock()

    def get(self, stores: Stores, registry: str | None, ref: str, env_class: str) -> Processor:
        key = (registry, ref, env_class)
        found = self._memo.get(key)
        if found is None:
            with self._lock:
                found = self._memo.get(key)
                if found is None:
                    found = self._memo[key] = resolve(stores, registry, ref, env_class)
        return found


MAX_SEED = 2**53 - 1
"""The largest seed magnitude: a seed is part of the memo key, whose canonical JSON (RFC 8785)
holds only integers that a double represents exactly."""


def check_seed(seed: int) -> None:
    """:class:`~theoryx.errors.UsageError` unless ``seed`` is an integer and
    ``-MAX_SEED <= seed <= MAX_SEED``."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"seed must be an integer, got {type(seed).__name__} {str(seed)[:40]!r}")
    if not -MAX_SEED <= seed <= MAX_SEED:
        raise UsageError(f"seed {int_text(seed)} is out of range: a seed is an integer from -{MAX_SEED} to "
                         f"{MAX_SEED}")


def processor(stores: Stores, req: RunRequest, resolutions: Resolutions | None = None) -> Processor:
    """What every request for ``req``'s ref with ``req``'s settings shares, checked — the adapter,
    the seed, the plan key, the spec, the adapter options against it — and the resolved
    processor. :func:`prepare` runs it for each request; a batch also once before its first item
    (``Session.map``), so that a mistake there fails the batch once, not every item."""
    env_class = adapters.env_class(req.adapter)
    check_seed(req.seed)
    if req.plan is not None:     # the key only: a missing plan is created on first use
        from theoryx.budget.plans import check_key

        check_key(req.plan)
    proc = (resolutions.get(stores, req.registry, req.ref, env_class) if resolutions is not None
            else resolve(stores, req.registry, req.ref, env_class))
    if req.adapter_options:  # checked on hits too, before anything else happens (adapter code loads only then)
        check_depth(dict(req.adapter_options), "adapter_options")
        adapters.check_options(req.adapter, req.adapter_options, proc.spec)
    return proc


def prepare(stores: Stores, req: RunRequest, execution_id: str, resolutions: Resolutions | None = None,
            warn: notices.Warn = notices.each) -> Prepared:
    """Resolve ``req`` into a :class:`Prepared` action. Raises usage, ref, spec, attachment and
    inputs errors; never writes a blob. An attachment the inputs do not reference is a warning
    through ``warn`` (a batch reports it once and counts the rest)."""
    check_depth(req.inputs)
    proc = processor(stores, req, resolutions)
    prefix = writeprefix.expand(req.write_prefix, execution_id)
    spec = proc.spec
    hashed = attachments.hash_files(dict(req.attachments))
    used: set[str] = set()
    inputs = attachments.rewrite(req.inputs, hashed, used)
    for name in sorted(set(hashed) - used):
        warn("attachments not referenced by their inputs",
             f"attachment {name!r} is not referenced by the inputs "
             f'(use {{"$attach": "{name}"}}); it is not passed to the processor')
    try:
        action = build(spec, image=proc.image, env=proc.env, inputs=inputs,
                       write_prefix=prefix, seed=req.seed, salt=req.salt)
    except CanonicalizationError as exc:
        raise InputsError(f"inputs have no canonical JSON form (RFC 8785): {exc}") from None
    referenced = tuple(hashed[n] for n in sorted(used))
    sources = tuple(sorted({(a.cid, req.attachments[a.name]) for a in referenced}))
    return Prepared(spec, action, referenced, inputs, proc.context, sources)
