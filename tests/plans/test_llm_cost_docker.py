"""LLM costs from a real litellm response, ``llm/litellm@1`` in Docker on the local adapter against
the loopback OpenAI-compatible server (the container uses the host network to reach it): admitted
on the estimate, charged litellm's ``completion_cost``, a hit saves it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.openai_server import FakeOpenAI
from plans_testing import db_of
from theoryx_testing import REGISTRY

import theoryx
from cas import Store
from theoryx.budget import ledger, money, plans

pytestmark = pytest.mark.docker


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply_text="The capital of France is Paris.") as server:
        yield server


@pytest.mark.slow
def test_litellm_cost_in_docker_is_charged_to_the_plan(
    home: Path, fake: FakeOpenAI, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + os.urandom(6).hex())
    inputs = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Capital of France?"}],
              "api_base": fake.url, "max_tokens": 100}
    opts = {"network": "host"}
    theoryx.run("llm/litellm@1", inputs={"messages": [{"role": "user", "content": "x"}]}, adapter="mock",
            home=home, registry=str(REGISTRY))
    plans.create(db_of(home), "docker-llm", 50_000)

    res = theoryx.run("llm/litellm@1", inputs=inputs, adapter="local", plan="docker-llm", home=home,
                  registry=str(REGISTRY), adapter_options=opts)
    meta_cid = next(o.cid for o in res.outputs if o.path.endswith("metadata.json"))
    reported = json.loads(Store(home / "cas-v1").read(meta_cid))["cost_usd"]
    charged = money.reported_micros(reported)
    assert charged is not None and charged > 0 and res.record.cost_micros == charged
    p = plans.get(db_of(home), "docker-llm").totals
    assert (p.spent_micros, p.reserved_micros, p.executions) == (charged, 0, 1)
    reserve, settle = [e for _, e in ledger.events(db_of(home), "docker-llm")][1:]
    assert reserve["amount_micros"] >= charged == settle["amount_micros"]
    receipt = json.loads(Store(home / "cas-v1").read(res.record.receipt_cid or ""))
    assert (receipt["plan"], receipt["charged_micros"]) == ("docker-llm", charged)

    hit = theoryx.run("llm/litellm@1", inputs=inputs, adapter="local", plan="docker-llm", home=home,
                  registry=str(REGISTRY), adapter_options=opts)
    assert hit.cache == "hit" and (hit.record.cost_micros, hit.record.saved_micros) == (0, charged)
    assert len(fake.chat_requests()) == 1
    assert plans.verify(db_of(home), "docker-llm").saved_micros == charged
