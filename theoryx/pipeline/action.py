"""The Action: the canonical description of one unit of work, and its memo key.

``memo_key = "b3:" + hex(BLAKE3(RFC8785(action)))``. The action holds everything that can change
the outputs (key version, salt, the spec's execution fields and their digest, image identity,
environment class, rewritten inputs, expanded write prefix, seed) and nothing that cannot (no
secret values, plan, host paths, timestamps or adapter options).
"""

from __future__ import annotations

from dataclasses import dataclass

from theoryx.core.canonical import Encoded, canonical_bytes, digest
from theoryx.spec.model import ProcessorSpec

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

KEY_VERSION = 1


@dataclass(frozen=True)
class Action:
    """An action's JSON body, its canonical bytes (the pre-image) and memo key."""

    body: dict[str, Any]
    data: bytes
    memo_key: str

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Action:
        data = canonical_bytes(body)
        return cls(body, data, digest(data))

    @property
    def spec_digest(self) -> str:
        return str(self.body["spec_digest"])


def build(
    spec: ProcessorSpec,
    *,
    image: dict[str, Any],
    env: dict[str, str],
    inputs: Any,
    write_prefix: str,
    seed: int,
    salt: str = "",
) -> Action:
    """Assemble the action for one run (see the module docstring for what goes in)."""
    fields, encoded, spec_digest = _spec_part(spec)
    shared = _shared_part(image, env)
    body = {
        "v": KEY_VERSION,
        "salt": salt,
        "ref": str(spec.ref),
        "spec": fields,
        "spec_digest": spec_digest,
        "image": image,
        "env": env,
        "inputs": inputs,
        "write_prefix": write_prefix,
        "seed": seed,
    }
    # The same bytes as encoding ``body`` whole (tests check it): the parts a batch's items share
    # (spec, image, env) are encoded once.
    data = canonical_bytes({**body, "spec": encoded, "image": shared[0], "env": shared[1]})
    return Action(body, data, digest(data))


_SHARED_PARTS: dict[tuple[int, int], tuple[dict[str, Any], dict[str, str], Encoded, Encoded]] = {}


def _shared_part(image: dict[str, Any], env: dict[str, str]) -> tuple[Encoded, Encoded]:
    """The canonical forms of ``image`` and ``env``, computed once per pair of objects (a
    batch's items share a resolved processor's; the identity check makes a reused ``id``
    harmless). The values must not be mutated after use, as for every action part."""
    key = (id(image), id(env))
    found = _SHARED_PARTS.get(key)
    if found is not None and found[0] is image and found[1] is env:
        return found[2], found[3]
    part = (image, env, Encoded.of(image), Encoded.of(env))
    if len(_SHARED_PARTS) >= 64:
        _SHARED_PARTS.clear()
    _SHARED_PARTS[key] = part
    return part[2], part[3]


_SPEC_PARTS: dict[int, tuple[ProcessorSpec, dict[str, Any], Encoded, str]] = {}


def _spec_part(spec: ProcessorSpec) -> tuple[dict[str, Any], Encoded, str]:
    """The spec's execution fields, their canonical form and digest, computed once per spec
    object (a batch's items share one; the identity check makes a reused ``id`` harmless)."""
    found = _SPEC_PARTS.get(id(spec))
    if found is not None and found[0] is spec:
        return found[1], found[2], found[3]
    fields = spec.execution_fields()
    encoded = Encoded.of(fields)
    part = (spec, fields, encoded, digest(encoded.text.encode("utf-8")))
    if len(_SPEC_PARTS) >= 64:
        _SPEC_PARTS.clear()
    _SPEC_PARTS[id(spec)] = part
    return fields, encoded, part[3]
