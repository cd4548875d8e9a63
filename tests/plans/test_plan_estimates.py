"""Worst-case estimates and actual costs (theoryx.budget.costs, theoryx.budget.pricing)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import REGISTRY

from theoryx.budget import costs, pricing
from theoryx.budget.money import MAX_MICROS
from theoryx.errors import RatesError
from theoryx.spec.model import ProcessorSpec, Runtime
from theoryx.spec.refs import Ref
from theoryx.spec.registry import Registry


@pytest.fixture(scope="module")
def llm() -> ProcessorSpec:
    return Registry.from_option(str(REGISTRY)).load(Ref.parse("llm/litellm@1"))


def mini() -> dict[str, Any]:
    entry: dict[str, Any] = pricing.cost_map()["gpt-4o-mini"]
    return entry


def micros_per_token(key: str) -> Decimal:
    return Decimal(repr(mini()[key])) * 1_000_000


def estimate(spec: ProcessorSpec, inputs: Any, bills_compute: bool = False, **rates: Any) -> costs.Estimate:
    return costs.estimate(spec, inputs, bills_compute=bills_compute, rates=pricing.Rates(**rates))


def test_the_price_table_is_litellms_bundled_map_read_without_importing_litellm() -> None:
    path = pricing.cost_map_path()
    assert path is not None and path.name == "model_prices_and_context_window_backup.json"
    assert "gpt-4o-mini" in pricing.cost_map()
    probe = "import sys; from theoryx.budget import pricing; pricing.cost_map(); print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
    price = pricing.model_price("gpt-4o-mini", pricing.Rates())
    assert price is not None and price.max_output_tokens == mini()["max_output_tokens"]
    assert pricing.model_price("openai/gpt-4o-mini", pricing.Rates()) == replace(price, model="openai/gpt-4o-mini")
    assert pricing.model_price("no-such-model", pricing.Rates()) is None
    assert pricing.model_price("sample_spec", pricing.Rates()) is None


def test_estimate_uses_max_tokens_and_a_byte_bound_of_the_prompt(llm: ProcessorSpec) -> None:
    inputs = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "héllo wörld"}], "max_tokens": 100}
    prompt_bytes = len(json.dumps(inputs, ensure_ascii=False).encode())
    expected = math.ceil(prompt_bytes * micros_per_token("input_cost_per_token")
                         + 100 * micros_per_token("output_cost_per_token"))
    est = estimate(llm, inputs)
    assert est.micros == est.parts["llm"] == expected and est.unknown == ()
    more = estimate(llm, {**inputs, "max_tokens": 1100})
    assert more.micros - est.micros == pytest.approx(1000 * float(micros_per_token("output_cost_per_token")), abs=1)


def test_without_max_tokens_the_models_maximum_output_is_assumed(llm: ProcessorSpec) -> None:
    inputs = {"messages": [{"role": "user", "content": "hi"}]}          # model: the schema's default
    est = estimate(llm, inputs)
    out = mini()["max_output_tokens"] * micros_per_token("output_cost_per_token")
    assert est.micros >= out and est.micros - out < 100


def test_text_attachments_count_their_bytes_and_images_a_fixed_bound(llm: ProcessorSpec) -> None:
    price = pricing.model_price("gpt-4o-mini", pricing.Rates())
    assert price is not None
    base = {"messages": [{"role": "user", "content": "look"}]}
    text = {"$artifact": "/artifacts/inputs/b3:x/notes.txt", "cid": "b3:x", "mime": "text/plain", "size": 50_000}
    image = {"$artifact": "/artifacts/inputs/b3:y/p.png", "cid": "b3:y", "mime": "image/png", "size": 9_000_000}
    plain, _, _ = costs.prompt_bound(base, price)
    with_text, _, _ = costs.prompt_bound({**base, "attachments": [text]}, price)
    assert with_text - plain == 50_000 + len('"attachments": [""]') + 2
    with_image, images, _ = costs.prompt_bound({**base, "attachments": [image]}, price)
    assert images == 1 and with_image - plain < costs.IMAGE_TOKENS + 30      # not the 9 MB of pixels
    three, images, _ = costs.prompt_bound({**base, "attachments": [image] * 3}, price)
    assert images == 3 and three == price.max_input_tokens                    # capped: longer is refused
    pdf = {**text, "$artifact": "/artifacts/inputs/b3:z/a.pdf", "mime": "application/pdf"}
    assert costs.prompt_bound({**base, "attachments": [pdf]}, price)[0] == price.max_input_tokens
    inline = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x" * 10**6}}]}]}
    assert costs.prompt_bound(inline, price)[0] < costs.IMAGE_TOKENS + 100


def test_unknown_models_and_unbounded_prompts_are_listed_not_zeroed_silently(llm: ProcessorSpec) -> None:
    est = estimate(llm, {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})
    assert est.micros == 0 and "no price for model 'no-such-model'" in est.unknown[0]
    custom = {"models": {"no-such-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}}
    priced = estimate(llm, {"model": "no-such-model", "messages": [], "max_tokens": 10}, **custom)
    assert priced.unknown == () and priced.micros == math.ceil(len('{"model": "no-such-model", "messages": [], '
                                                                   '"max_tokens": 10}') * 1 + 10 * 2)
    no_max = estimate(llm, {"model": "no-such-model", "messages": []}, **custom)
    assert "no max_tokens" in no_max.unknown[0]


def test_compute_is_billed_per_second_of_the_timeout_where_the_adapter_bills_it(llm: ProcessorSpec) -> None:
    spec = replace(llm, cost=None, runtime=Runtime(cpu=2, memory=2048, timeout=300))
    assert estimate(spec, {}).micros == 0
    est = estimate(spec, {}, bills_compute=True)
    per_second = 2 * Decimal("0.0000131") + 2 * Decimal("0.00000222")
    assert est.parts == {"compute": math.ceil(per_second * 300 * 1_000_000)}
    gpu = estimate(replace(spec, runtime=Runtime(timeout=100, gpu="h100:2")), {}, bills_compute=True)
    assert gpu.parts["compute"] == math.ceil((Decimal("0.0000131") + Decimal("0.00000222")
                                              + 2 * Decimal("0.001097")) * 100 * 1_000_000)
    odd = estimate(replace(spec, runtime=Runtime(gpu="Z9000")), {}, bills_compute=True)
    assert "no compute rate for GPU 'Z9000'" in odd.unknown[0]
    dearest = estimate(replace(spec, runtime=Runtime(timeout=10, gpu="1")), {}, bills_compute=True)
    assert dearest.parts["compute"] >= 10 * max(pricing.MODAL_GPU_SECOND.values()) * 1_000_000


def test_fixed_and_per_second_costs_from_the_spec(llm: ProcessorSpec) -> None:
    spec = replace(llm, cost={"usd": 0.5, "per_second_usd": 0.001}, runtime=Runtime(timeout=60))
    assert estimate(spec, {}).parts == {"fixed": 500_000, "per_second": 60_000}
    ran = costs.actual(spec, {}, {}, 2_500, bills_compute=False, rates=pricing.Rates())
    assert ran.parts == {"fixed": 500_000, "per_second": 2_500}
    reported = costs.actual(spec, {}, {"cost_usd": 0.0123}, 2_500, bills_compute=False, rates=pricing.Rates())
    assert reported.micros == 12_300
    assert costs.actual(spec, {}, {"cost_usd": 5}, None, bills_compute=True, rates=pricing.Rates()).micros == 0


def test_an_llm_result_without_cost_is_priced_from_its_usage(llm: ProcessorSpec) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 2000}
    cost = costs.actual(llm, {"model": "gpt-4o-mini"}, {"usage": usage, "cost_usd": None}, 10,
                        bills_compute=False, rates=pricing.Rates())
    assert cost.micros == math.ceil(1000 * micros_per_token("input_cost_per_token")
                                    + 2000 * micros_per_token("output_cost_per_token"))


def test_usage_longer_than_the_max_tokens_asked_for_is_refused(llm: ProcessorSpec) -> None:
    """No provider bills more completion tokens than the request allowed: a server claiming so
    is refused (the run is then charged its reservation, the worst case), not priced."""
    usage = {"prompt_tokens": 100, "completion_tokens": 100_000_000}
    cost = costs.actual(llm, {"model": "gpt-4o-mini", "max_tokens": 100}, {"usage": usage}, 10,
                        bills_compute=False, rates=pricing.Rates())
    assert cost.micros == 0 and cost.refused is not None and "max_tokens 100" in cost.refused
    within = costs.actual(llm, {"model": "gpt-4o-mini", "max_tokens": 100},
                          {"usage": {"prompt_tokens": 100, "completion_tokens": 100}}, 10,
                          bills_compute=False, rates=pricing.Rates())
    assert within.refused is None and within.micros > 0


def test_rates_are_overridable_by_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rates.json").write_text(json.dumps({"cpu_core_second_usd": "0.001", "gpu_second_usd": {"t4": 1}}))
    monkeypatch.setenv("THEORYX_RATES", json.dumps({"memory_gib_second_usd": 0.5}))
    rates = pricing.load_rates(tmp_path)
    assert rates.cpu_core_second == Decimal("0.001") and rates.memory_gib_second == Decimal("0.5")
    assert rates.gpu_second["T4"] == 1 and rates.gpu_second["H100"] == Decimal("0.001097")
    monkeypatch.setenv("THEORYX_RATES", '{"cpu_core_second_usd": -1}')
    with pytest.raises(RatesError):
        pricing.load_rates(tmp_path)
    monkeypatch.setenv("THEORYX_RATES", '{"cpu": 1}')
    with pytest.raises(RatesError, match="unknown key 'cpu'"):
        pricing.load_rates(tmp_path)
    monkeypatch.setenv("THEORYX_RATES", "{nope")
    with pytest.raises(RatesError, match="not valid JSON"):
        pricing.load_rates(None)


@pytest.mark.parametrize("price", ["1e999999999", "1e999990", "9" * 5000])
def test_an_absurd_price_override_estimates_the_most_without_overflow(
        llm: ProcessorSpec, monkeypatch: pytest.MonkeyPatch, price: str) -> None:
    # "1e999999999" raised decimal.Overflow (ERR_INTERNAL at admission); "1e999990" took 30 s to
    # become an integer of micro-dollars. Both are now the largest estimate, as "1e400" was.
    monkeypatch.setenv("THEORYX_RATES", json.dumps({
        "cpu_core_second_usd": price,
        "models": {"gpt-x": {"input_cost_per_token": price, "output_cost_per_token": 0, "max_output_tokens": 10}}}))
    rates = pricing.load_rates()
    inputs = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}
    est = costs.estimate(llm, inputs, bills_compute=True, rates=rates)
    assert est.parts["llm"] == est.parts["compute"] == MAX_MICROS
    actual = costs.actual(llm, inputs, {"usage": {"prompt_tokens": 3, "completion_tokens": 1}}, 10,
                          bills_compute=False, rates=rates)
    assert actual.micros == MAX_MICROS or actual.refused


def test_the_adapters_timeout_option_and_billing_margin_bound_compute(llm: ProcessorSpec) -> None:
    spec = replace(llm, cost={"per_second_usd": 0.001}, runtime=Runtime(cpu=1, memory=1024, timeout=300))
    timeout = costs.timeout_of(spec, {"timeout": 30})
    assert timeout == 30 and costs.timeout_of(spec, {}) == 300 and costs.timeout_of(spec, {"timeout": -1}) == 300
    est = costs.estimate(spec, {}, bills_compute=True, rates=pricing.Rates(), timeout=timeout, margin_s=120)
    per_second = Decimal("0.0000131") + Decimal("0.00000222")
    assert est.parts == {"per_second": 30_000, "compute": math.ceil(per_second * 150 * 1_000_000)}
    billed = costs.actual(spec, {}, {"cost_usd": 0.01}, 2_000, bills_compute=True, rates=pricing.Rates(),
                          compute_seconds=40.5)
    assert billed.parts == {"reported": 10_000, "compute": math.ceil(per_second * Decimal("40.5") * 1_000_000)}
