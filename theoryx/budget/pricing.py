"""What things cost: LLM token prices and compute rates, as exact decimals of dollars.

LLM prices come from LiteLLM's bundled cost map, the JSON file
``model_prices_and_context_window_backup.json`` inside the installed ``litellm`` package. It is
located with ``importlib.util.find_spec`` and read with ``json`` (litellm itself is never imported
by theoryx: that takes seconds), once per process and only when a miss needs a price.

``litellm`` is optional on the host (the ``theoryx[llm]`` extra: the processor has its own copy
in its image). Without it the prices come from a copy vendored into this package,
``theoryx/budget/data/litellm_cost_map.json``: LiteLLM's map (MIT licence, notice beside it in
``LICENSE-litellm.txt``) trimmed by :func:`trim_cost_map` to the entries and keys read here, so
every price is the one the full map of that LiteLLM version gives. ``scripts/vendor_cost_map.py``
refreshes it from the installed litellm.

Compute rates default to Modal's published prices (modal.com/pricing): per physical CPU core
and per GiB of memory per second, and per GPU second by type. Sandboxes (the ``modal`` adapter)
have their own CPU and memory rates, three times the Functions' (Modal's pricing lists them apart;
GPU seconds cost the same). They, and the price of models the cost map lacks, can be overridden
by ``$THEORYX_HOME/rates.json`` and then by the environment variable ``THEORYX_RATES`` (JSON
text), both of the form::

    {"cpu_core_second_usd": "0.0000131", "memory_gib_second_usd": "0.00000222",
     "sandbox_cpu_core_second_usd": "0.00003942", "sandbox_memory_gib_second_usd": "0.00000672",
     "gpu_second_usd": {"H100": "0.001097"},
     "models": {"my-local-model": {"input_cost_per_token": 0, "output_cost_per_token": 0,
                                   "max_output_tokens": 4096}}}
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from theoryx.budget.money import decimal_usd
from theoryx.errors import RatesError

COST_MAP = "model_prices_and_context_window_backup.json"
VENDORED_COST_MAP = "data/litellm_cost_map.json"     # below this package; see the module docstring
RATES_ENV = "THEORYX_RATES"
RATES_FILE = "rates.json"

MODAL_CPU_CORE_SECOND = Decimal("0.0000131")
MODAL_MEMORY_GIB_SECOND = Decimal("0.00000222")
# Sandboxes: the CPU and memory rates of modal.com/pricing's Sandbox line (3x the Functions').
MODAL_SANDBOX_CPU_CORE_SECOND = Decimal("0.00003942")
MODAL_SANDBOX_MEMORY_GIB_SECOND = Decimal("0.00000672")
MODAL_SANDBOX_RATES_SOURCE = (
    "third-party pages quoting modal.com/pricing (not read by theoryx: no network where it was written), "
    "recorded 2026-11-30: CPU $0.00003942/core/s (e.g. https://www.beam.cloud/blog/modal-pricing-explained, "
    "'verified June 27, 2026'); memory $0.00000672/GiB/s ('verified 2026-06-18'), where other pages quote "
    "$0.00000667 (checked 2026-09-13): the higher is kept, so estimates stay worst cases. Override with "
    "sandbox_cpu_core_second_usd / sandbox_memory_gib_second_usd in rates.json or THEORYX_RATES")
"""Where the Sandbox rates above come from, and when they were taken (BUILD.md section 9, modal)."""
MODAL_GPU_SECOND = {
    "B200": Decimal("0.001736"), "H200": Decimal("0.001261"), "H100": Decimal("0.001097"),
    "A100-80GB": Decimal("0.000694"), "A100-40GB": Decimal("0.000583"), "A100": Decimal("0.000583"),
    "L40S": Decimal("0.000542"), "A10G": Decimal("0.000306"), "A10": Decimal("0.000306"),
    "L4": Decimal("0.000222"), "T4": Decimal("0.000164"),
}

# Every per-token input price a chat request can be billed at without asking for a special
# service tier (batch, flex and priority tiers need a request option the processor never sends).
_INPUT_KEYS = ("input_cost_per_token", "cache_creation_input_token_cost", "input_cost_per_image_token")
_OUTPUT_KEYS = ("output_cost_per_token", "output_cost_per_reasoning_token", "output_cost_per_image_token")
_TIER_SUFFIXES = ("_batches", "_flex", "_priority")
# The other keys of an entry read here: the image price, the token limits and, for the
# "provider/model" lookup, the provider.
_ENTRY_KEYS = ("input_cost_per_image", "max_input_tokens", "max_output_tokens", "max_tokens", "litellm_provider")

_cost_map: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelPrice:
    """Worst-case prices of one model: the highest per-token input and output prices of any
    tier a plain request may hit (e.g. "above 200k tokens", cache writes, reasoning tokens)."""

    model: str
    input_per_token: Decimal
    output_per_token: Decimal
    per_image: Decimal = Decimal(0)
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None

    @classmethod
    def from_entry(cls, model: str, entry: dict[str, Any]) -> ModelPrice | None:
        """A price from a cost-map entry; None when it lacks per-token input or output prices."""
        base_in = decimal_usd(entry.get("input_cost_per_token"))
        base_out = decimal_usd(entry.get("output_cost_per_token"))
        if base_in is None or base_out is None:
            return None
        return cls(
            model=model, input_per_token=_worst(entry, _INPUT_KEYS),
            output_per_token=_worst(entry, _OUTPUT_KEYS),
            per_image=decimal_usd(entry.get("input_cost_per_image")) or Decimal(0),
            max_input_tokens=_count(entry.get("max_input_tokens")),
            max_output_tokens=_count(entry.get("max_output_tokens")) or _count(entry.get("max_tokens")),
        )


def _worst(entry: dict[str, Any], prefixes: tuple[str, ...]) -> Decimal:
    prices = [decimal_usd(v) for k, v in entry.items()
              if k.startswith(prefixes) and not k.endswith(_TIER_SUFFIXES)]
    return max((p for p in prices if p is not None), default=Decimal(0))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


@dataclass(frozen=True)
class Rates:
    """Compute rates (dollars per second) and model price overrides."""

    cpu_core_second: Decimal = MODAL_CPU_CORE_SECOND
    memory_gib_second: Decimal = MODAL_MEMORY_GIB_SECOND
    gpu_second: dict[str, Decimal] = field(default_factory=lambda: dict(MODAL_GPU_SECOND))
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    sandbox_cpu_core_second: Decimal = MODAL_SANDBOX_CPU_CORE_SECOND
    sandbox_memory_gib_second: Decimal = MODAL_SANDBOX_MEMORY_GIB_SECOND

    def gpu(self, spec: str | None) -> tuple[int, Decimal] | None:
        """``(count, rate per GPU second)`` for a spec's ``runtime.gpu`` (``"H100"``, ``"a10g:2"``,
        ``"2"``, ``"any"``; None = no GPU). A bare count or ``any`` takes the dearest type (the
        platform may pick it). None for an unknown type."""
        if spec is None:
            return 0, Decimal(0)
        name, _, count = spec.strip().upper().partition(":")
        name = name.rstrip("!+")    # Modal's "H100!" (never upgraded) and "B200+" bill as H100 and B200
        if name.isdigit() and not count:
            name, count = "ANY", name
        n = int(count) if count.isdigit() else 1
        if name == "ANY":
            return n, max(self.gpu_second.values())
        rate = self.gpu_second.get(name)
        return None if rate is None else (n, rate)

    def per_second(self, cpu: float, memory_mib: int, gpu: str | None, *, sandbox: bool = False) -> Decimal | None:
        """Dollars per second of a container with these resources (a Sandbox's with ``sandbox``);
        None for an unknown GPU."""
        g = self.gpu(gpu)
        if g is None:
            return None
        core = self.sandbox_cpu_core_second if sandbox else self.cpu_core_second
        gib = self.sandbox_memory_gib_second if sandbox else self.memory_gib_second
        return Decimal(repr(cpu)) * core + Decimal(memory_mib) / 1024 * gib + g[0] * g[1]


def _decimal(value: Any, where: str) -> Decimal:
    d = decimal_usd(value)
    if d is None:
        raise RatesError(f"{where}: must be a non-negative number of dollars, got {value!r}")
    return d


def _apply(rates: Rates, raw: Any, source: str) -> Rates:
    if not isinstance(raw, dict):
        raise RatesError(f"{source}: must be a JSON object")
    known = {"cpu_core_second_usd", "memory_gib_second_usd", "gpu_second_usd", "models",
             "sandbox_cpu_core_second_usd", "sandbox_memory_gib_second_usd"}
    extra = sorted(set(raw) - known)
    if extra:
        raise RatesError(f"{source}: unknown key {extra[0]!r} (known: {', '.join(sorted(known))})")
    gpus = raw.get("gpu_second_usd", {})
    models = raw.get("models", {})
    if not isinstance(gpus, dict) or not isinstance(models, dict):
        raise RatesError(f"{source}: gpu_second_usd and models must be objects")
    for name, entry in models.items():
        if not isinstance(entry, dict) or ModelPrice.from_entry(name, entry) is None:
            raise RatesError(f"{source}: models.{name} needs input_cost_per_token and output_cost_per_token")
    return Rates(
        cpu_core_second=_decimal(raw["cpu_core_second_usd"], f"{source}: cpu_core_second_usd")
        if "cpu_core_second_usd" in raw else rates.cpu_core_second,
        memory_gib_second=_decimal(raw["memory_gib_second_usd"], f"{source}: memory_gib_second_usd")
        if "memory_gib_second_usd" in raw else rates.memory_gib_second,
        gpu_second={**rates.gpu_second,
                    **{k.upper(): _decimal(v, f"{source}: gpu_second_usd.{k}") for k, v in gpus.items()}},
        models={**rates.models, **models},
        sandbox_cpu_core_second=_decimal(raw["sandbox_cpu_core_second_usd"], f"{source}: sandbox_cpu_core_second_usd")
        if "sandbox_cpu_core_second_usd" in raw else rates.sandbox_cpu_core_second,
        sandbox_memory_gib_second=_decimal(raw["sandbox_memory_gib_second_usd"],
                                           f"{source}: sandbox_memory_gib_second_usd")
        if "sandbox_memory_gib_second_usd" in raw else rates.sandbox_memory_gib_second,
    )


def load_rates(home: Path | None = None) -> Rates:
    """Defaults, then ``<home>/rates.json``, then ``$THEORYX_RATES``; :class:`RatesError` names
    the source of a malformed override."""
    rates = Rates()
    if home is not None and (home / RATES_FILE).is_file():
        path = home / RATES_FILE
        try:
            rates = _apply(rates, json.loads(path.read_text()), str(path))
        except ValueError as exc:
            if isinstance(exc, RatesError):
                raise
            raise RatesError(f"{path}: not valid JSON: {exc}") from None
    text = os.environ.get(RATES_ENV)
    if text:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise RatesError(f"{RATES_ENV}: not valid JSON: {exc}") from None
        rates = _apply(rates, raw, RATES_ENV)
    return rates


def cost_map_path() -> Path | None:
    """The cost map shipped with the installed litellm, without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / COST_MAP
    return path if path.is_file() else None


def vendored_cost_map() -> dict[str, Any]:
    """The trimmed copy of LiteLLM's cost map shipped with theoryx (its ``models`` object)."""
    import importlib.resources  # only on this path: litellm is usually installed

    raw = json.loads(importlib.resources.files(__package__).joinpath(VENDORED_COST_MAP).read_bytes())
    models = raw.get("models") if isinstance(raw, dict) else None
    return models if isinstance(models, dict) else {}


def cost_map() -> dict[str, Any]:
    """LiteLLM's bundled cost map (read once per process); when litellm is not installed, the
    trimmed copy vendored into theoryx (:func:`vendored_cost_map`)."""
    global _cost_map
    if _cost_map is None:
        path = cost_map_path()
        loaded = json.loads(path.read_bytes()) if path is not None else vendored_cost_map()
        _cost_map = loaded if isinstance(loaded, dict) else {}
    return _cost_map


def trim_cost_map(full: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The part of a LiteLLM cost map that :func:`model_price` reads: every entry (an unpriced
    one still stops the ``provider/model`` fallback), each with the price keys of plain requests
    and :data:`_ENTRY_KEYS` only. For every model name, :func:`model_price` gives the same answer
    from the trimmed map as from ``full`` (tests check it on the installed map)."""
    return {model: {k: v for k, v in entry.items()
                    if k in _ENTRY_KEYS
                    or (k.startswith(_INPUT_KEYS + _OUTPUT_KEYS) and not k.endswith(_TIER_SUFFIXES))}
            for model, entry in full.items() if isinstance(entry, dict)}


def model_price(model: str, rates: Rates) -> ModelPrice | None:
    """The price of ``model``: an override in ``rates.models``, else the cost map's entry for
    the name, else for the name without its provider prefix when the entry is that provider's
    (``openai/gpt-4o`` -> ``gpt-4o``). None when unknown or not priced per token."""
    if model in rates.models:
        return ModelPrice.from_entry(model, rates.models[model])
    table = cost_map()
    entry = table.get(model) if model != "sample_spec" else None   # the map's documentation entry
    if entry is None and "/" in model:
        provider, rest = model.split("/", 1)
        candidate = table.get(rest)
        if isinstance(candidate, dict) and candidate.get("litellm_provider") == provider:
            entry = candidate
    return ModelPrice.from_entry(model, entry) if isinstance(entry, dict) else None
