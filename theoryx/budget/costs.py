"""The cost of one execution: the worst-case estimate reserved before it runs, and the actual
cost settled after. Every part is computed as an exact decimal and rounded up to micro-USD.

Estimate (parts):

- ``fixed``: the spec's ``cost.usd``;
- ``per_second``: the spec's ``cost.per_second_usd`` × the timeout (``runtime.timeout``, or the
  adapter's ``timeout`` option when given);
- ``llm`` (spec ``cost.llm: true``): prompt bound × input price + output bound × output price
  (+ images × per-image price), prices from :mod:`theoryx.budget.pricing` (worst tier);
- ``compute`` (the adapter bills compute): (timeout + the adapter's ``billing_margin_s``, the
  most a platform may bill beyond the processor's own timeout) × (cpu cores × core rate + memory
  GiB × GiB rate + GPUs × GPU rate), at the Sandbox rates for an adapter whose
  ``compute_rates`` is ``"sandbox"`` (``sandbox=True``).

Prompt bound, in tokens. The tokenizers behind the supported providers (byte-level BPE as in
tiktoken; SentencePiece with byte fallback) emit tokens that each cover at least one byte of
UTF-8 text, so a text has at most as many tokens as bytes. The bound is the UTF-8 byte count of
the whole inputs object serialised as JSON, which covers every message text and more than covers
the provider's per-message framing (``{"role":"user","content":""}`` alone is 28 bytes against
about 4 framing tokens), where each attachment is replaced by ``""`` and, when it is sent as text,
its size in bytes added. Each image counts :data:`IMAGE_TOKENS`. PDFs, audio and other files
have no byte bound and count the model's ``max_input_tokens``. The total is capped at the
model's ``max_input_tokens``: a longer prompt is refused by the provider, unbilled.

Output bound: the inputs' ``max_tokens``, else the model's ``max_output_tokens``.

A part that cannot be bounded (no price for the model, no output bound, an unknown GPU type) is
listed in :attr:`Estimate.unknown` and estimated as 0: a plan with a limit refuses the run
(``ERR_PRICE_UNKNOWN``), a tracking plan admits it with a note.

Actual cost: the processor's ``cost_usd`` from ``THEORYX_RESULT`` when it reported one;
otherwise, if it ran, ``fixed`` + ``per_second`` × seconds (at most the timeout, as estimated)
and, for an LLM processor, its reported usage × prices. Plus compute seconds (the adapter's
``compute_seconds`` in the outcome's meta, else the execution's duration) × rates where the
adapter bills compute. A run that never started costs 0. What the processor reports is checked
(:func:`~theoryx.budget.money.check_reported`: a finite, non-negative number of at most $10,000;
token counts that are non-negative integers); a refused report is :attr:`Cost.refused` and its
part is left out (the run is then charged its reservation, :mod:`theoryx.budget.charging`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

from theoryx.budget.money import MAX_REPORTED_MICROS, ceil_micros, check_reported, decimal_usd, dollars
from theoryx.budget.pricing import ModelPrice, Rates, model_price
from theoryx.spec.model import ProcessorSpec

# gpt-4o-mini's count for one high-detail image of the largest tile grid (2 x 4 tiles of 512 px
# after scaling to 768 x 2048): 2833 + 8 x 5667. Other providers count fewer tokens per image
# (Anthropic about 1,600, Gemini 258 to 1,120, gpt-4o 1,445).
IMAGE_TOKENS = 48_169
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_FILE_PARTS = frozenset({"file", "input_file", "input_audio", "audio", "document", "video"})


@dataclass(frozen=True)
class Estimate:
    """A worst-case cost. ``unknown`` lists what could not be bounded (counted as 0)."""

    micros: int
    parts: dict[str, int]
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cost:
    """An actual cost and how it was made up (``notes`` say what was missing). ``refused`` says
    why the processor's report (``cost_usd``, or the token ``usage`` it is priced from) was
    refused; its part is then missing from ``parts`` and ``micros``, and the charge is the
    reservation (:meth:`theoryx.budget.charging.Charging.settle`)."""

    micros: int
    parts: dict[str, int]
    notes: tuple[str, ...] = ()
    refused: str | None = None


@dataclass
class _Prompt:
    text_bytes: int = 0
    images: int = 0
    unbounded: list[str] = field(default_factory=list)


def _cost_block(spec: ProcessorSpec) -> dict[str, Any]:
    return spec.cost or {}


def _usd(block: dict[str, Any], key: str) -> Decimal:
    return decimal_usd(block.get(key, 0)) or Decimal(0)


def default_model(spec: ProcessorSpec) -> str | None:
    """The ``model`` input's default in the spec's schema (what the processor uses when none is given)."""
    prop = (spec.inputs_schema.get("properties") or {}).get("model") or {}
    default = prop.get("default") if isinstance(prop, dict) else None
    return default if isinstance(default, str) else None


def model_of(spec: ProcessorSpec, inputs: Any) -> str | None:
    model = inputs.get("model") if isinstance(inputs, dict) else None
    return model if isinstance(model, str) and model else default_model(spec)


def _artifact_kind(artifact: dict[str, Any]) -> str:
    """How the LLM processor sends an attachment: ``image``, ``pdf`` or ``text``."""
    mime = str(artifact.get("mime") or "").split(";")[0].strip().lower()
    suffix = PurePosixPath(str(artifact["$artifact"])).suffix.lower()
    if mime.startswith("image/") or (mime in ("", "application/octet-stream") and suffix in _IMAGE_SUFFIXES):
        return "image"
    if mime == "application/pdf" or (mime in ("", "application/octet-stream") and suffix == ".pdf"):
        return "pdf"
    return "text"


def _media(value: Any, acc: _Prompt) -> Any:
    """``value`` with attachments and media parts replaced by ``""``, counted into ``acc``."""
    if isinstance(value, list):
        return [_media(v, acc) for v in value]
    if not isinstance(value, dict):
        return value
    if isinstance(value.get("$artifact"), str):
        kind, size = _artifact_kind(value), value.get("size")
        if kind == "image":
            acc.images += 1
        elif kind == "text" and isinstance(size, int) and size >= 0:
            acc.text_bytes += size
        else:
            acc.unbounded.append(f"attachment {value['$artifact']} ({kind})")
        return ""
    part = value.get("type")
    if part in _IMAGE_PARTS:
        acc.images += 1
        return ""
    if part in _FILE_PARTS:
        acc.unbounded.append(f"a {part} content part")
        return ""
    return {k: _media(v, acc) for k, v in value.items()}


def prompt_bound(inputs: dict[str, Any], price: ModelPrice) -> tuple[int, int, str | None]:
    """``(tokens, images, problem)``: an upper bound of the prompt's tokens (see the module
    docstring), the number of images in it, and why no bound exists (else None)."""
    acc = _Prompt()
    skeleton = {k: _media(v, acc) if k in ("messages", "attachments") else v for k, v in inputs.items()}
    tokens = len(json.dumps(skeleton, ensure_ascii=False).encode()) + acc.text_bytes
    tokens += acc.images * IMAGE_TOKENS
    cap = price.max_input_tokens
    if acc.unbounded:
        if cap is None:
            return 0, acc.images, f"{acc.unbounded[0]} has no token bound and {price.model} no max_input_tokens"
        return cap, acc.images, None
    return (tokens if cap is None else min(tokens, cap)), acc.images, None


def llm_estimate(spec: ProcessorSpec, inputs: Any, rates: Rates) -> tuple[Decimal, str | None]:
    """The worst case of one LLM call in dollars, or ``(0, why not)``."""
    model = model_of(spec, inputs)
    if model is None:
        return Decimal(0), "no model named in the inputs and none by default"
    price = model_price(model, rates)
    if price is None:
        return Decimal(0), (f"no price for model {model!r} in LiteLLM's cost map (add it under "
                            "'models' in THEORYX_RATES)")
    body = inputs if isinstance(inputs, dict) else {}
    prompt, images, problem = prompt_bound(body, price)
    if problem is not None:
        return Decimal(0), problem
    max_tokens = body.get("max_tokens")
    # Only a positive integer bounds the reply (``true`` is not 1); anything else leaves the
    # model's own maximum as the bound.
    given = isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
    output = max_tokens if given else price.max_output_tokens
    if output is None:
        return Decimal(0), f"no max_tokens in the inputs and no max_output_tokens known for {model!r}"
    return prompt * price.input_per_token + output * price.output_per_token + images * price.per_image, None


def timeout_of(spec: ProcessorSpec, options: Mapping[str, Any]) -> Decimal:
    """The wall-clock limit an adapter enforces: its ``timeout`` option, else ``runtime.timeout``."""
    option = decimal_usd(options.get("timeout"))
    return option if option is not None and option > 0 else Decimal(spec.runtime.timeout)


def estimate(spec: ProcessorSpec, inputs: Any, *, bills_compute: bool, rates: Rates,
             timeout: Decimal | None = None, margin_s: int = 0, sandbox: bool = False) -> Estimate:
    """The worst-case cost of executing ``spec`` on ``inputs`` (see the module docstring).
    ``timeout`` defaults to ``runtime.timeout``; ``margin_s`` is added to billed compute time."""
    block = _cost_block(spec)
    timeout = Decimal(spec.runtime.timeout) if timeout is None else timeout
    parts: dict[str, int] = {}
    unknown: list[str] = []
    if "usd" in block:
        parts["fixed"] = ceil_micros(_usd(block, "usd"))
    if "per_second_usd" in block:
        parts["per_second"] = ceil_micros(_usd(block, "per_second_usd") * timeout)
    if block.get("llm"):
        usd, problem = llm_estimate(spec, inputs, rates)
        parts["llm"] = ceil_micros(usd)
        unknown += [problem] if problem else []
    if bills_compute:
        rate = rates.per_second(spec.runtime.cpu, spec.runtime.memory, spec.runtime.gpu, sandbox=sandbox)
        parts["compute"] = ceil_micros((rate or Decimal(0)) * (timeout + margin_s))
        unknown += [] if rate is not None else [f"no compute rate for GPU {spec.runtime.gpu!r}"]
    return Estimate(sum(parts.values()), parts, tuple(unknown))


def _usage_cost(spec: ProcessorSpec, inputs: Any, usage: Any,
                rates: Rates) -> tuple[Decimal, str | None, str | None]:
    """``(dollars, note, refused)``: the cost of the reported token usage; a note when there is
    none to price; why the usage is refused when its counts are not non-negative integers, its
    completion is longer than the inputs' ``max_tokens`` allowed (no provider bills that), or it
    prices above :data:`~theoryx.budget.money.MAX_REPORTED_MICROS`."""
    tokens = usage if isinstance(usage, dict) else {}
    prompt, completion = tokens.get("prompt_tokens"), tokens.get("completion_tokens")
    if prompt is None or completion is None:
        return Decimal(0), "the processor reported neither cost_usd nor token usage", None
    for name, count in (("prompt_tokens", prompt), ("completion_tokens", completion)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return Decimal(0), None, f"usage.{name} {str(count)[:40]!r} is not a non-negative integer"
    bound = inputs.get("max_tokens") if isinstance(inputs, dict) else None
    if isinstance(bound, int) and not isinstance(bound, bool) and 0 < bound < completion:
        return Decimal(0), None, (f"usage.completion_tokens {completion} is more than the max_tokens {bound} the "
                                  "request allowed")
    model = model_of(spec, inputs)
    price = model_price(model, rates) if model else None
    if price is None:
        return Decimal(0), f"the processor reported no cost_usd and model {model!r} has no price", None
    usd = prompt * price.input_per_token + completion * price.output_per_token
    if usd * 1_000_000 > MAX_REPORTED_MICROS:
        return Decimal(0), None, (f"usage of {prompt} prompt and {completion} completion tokens prices at "
                                  f"more than the {dollars(MAX_REPORTED_MICROS)} one execution may report")
    return usd, None, None


def actual(spec: ProcessorSpec, inputs: Any, result: dict[str, Any], duration_ms: int | None, *,
           bills_compute: bool, rates: Rates, compute_seconds: Any = None, sandbox: bool = False,
           timeout: Decimal | None = None) -> Cost:
    """What the execution cost. ``duration_ms`` None: it never started (cost 0). ``result`` is
    the processor's ``THEORYX_RESULT`` (``cost_usd``, ``usage``), checked
    (:func:`~theoryx.budget.money.check_reported`; a refusal is :attr:`Cost.refused`);
    ``compute_seconds`` what the adapter says it billed (else the duration). ``timeout``, the
    limit the adapter enforced, caps the seconds ``per_second_usd`` is charged for, as it capped
    the estimate: the duration also counts the adapter's own start and stop."""
    if duration_ms is None:
        return Cost(0, {})
    seconds = Decimal(max(duration_ms, 0)) / 1000
    parts: dict[str, int] = {}
    notes: list[str] = []
    refused: str | None = None
    reported = check_reported(result.get("cost_usd"))
    if reported.refused is not None:
        refused = f"cost_usd {reported.refused}"
    elif reported.micros is not None:
        parts["reported"] = reported.micros
    else:
        block = _cost_block(spec)
        if "usd" in block:
            parts["fixed"] = ceil_micros(_usd(block, "usd"))
        if "per_second_usd" in block:
            ran = seconds if timeout is None else min(seconds, timeout)
            parts["per_second"] = ceil_micros(_usd(block, "per_second_usd") * ran)
        if block.get("llm"):
            usd, note, refused = _usage_cost(spec, inputs, result.get("usage"), rates)
            if refused is None:
                parts["llm"] = ceil_micros(usd)
            notes += [note] if note else []
    if bills_compute:
        rate = rates.per_second(spec.runtime.cpu, spec.runtime.memory, spec.runtime.gpu, sandbox=sandbox)
        billed = decimal_usd(compute_seconds)
        parts["compute"] = ceil_micros((rate or Decimal(0)) * (seconds if billed is None else billed))
        notes += [] if rate is not None else [f"no compute rate for GPU {spec.runtime.gpu!r}"]
    return Cost(sum(parts.values()), parts, tuple(notes), refused)
