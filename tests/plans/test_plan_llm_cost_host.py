"""LLM costs from a real litellm response against the loopback OpenAI-compatible server, with the
processor's ``run.py`` as a host subprocess under the contract (no Docker): the whole run flow
admits on the estimate, litellm's ``completion_cost`` comes back through ``THEORYX_RESULT``, and
settlement charges exactly that."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import FakeOpenAI
from plans_testing import db_of
from theoryx_testing import REGISTRY

import theoryx
from cas import Store
from theoryx import adapters
from theoryx.adapters.base import AdapterBase, ExecRequest, Outcome
from theoryx.budget import ledger, money, plans, pricing

RUN_PY = REGISTRY / "processors" / "llm" / "litellm" / "run.py"


class HostAdapter(AdapterBase):
    """Runs the processor's ``run.py`` on the host with the contract variables pointing into the
    workspace (a stand-in for the container adapters: same contract, host paths)."""

    name = "local"
    env_class = "container"
    bills_compute = False

    def execute(self, request: ExecRequest) -> Outcome:
        ws = request.workspace
        env = {**request.env(), **request.secrets, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
               "THEORYX_INPUTS": str(ws.inputs_json), "THEORYX_WRITE_PREFIX": str(ws.outputs),
               "THEORYX_RESULT": str(ws.result), "HOME": str(ws.root)}
        t0 = time.monotonic()
        with open(ws.stdout, "wb") as out, open(ws.stderr, "wb") as err:
            proc = subprocess.run([sys.executable, str(RUN_PY)], env=env, stdout=out, stderr=err,
                                  cwd=ws.root, timeout=120, check=False)
        return Outcome(proc.returncode, duration_ms=int((time.monotonic() - t0) * 1000))


@pytest.fixture
def host_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    real = adapters.get

    def get(name: str, **kwargs: Any) -> Any:
        return HostAdapter() if name == "local" else real(name, **kwargs)

    monkeypatch.setattr(adapters, "get", get)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + os.urandom(6).hex())


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply_text="The capital of France is Paris.") as server:
        yield server


def per_token_micros(key: str) -> Decimal:
    return Decimal(repr(pricing.cost_map()["gpt-4o-mini"][key])) * 1_000_000


@pytest.mark.slow
def test_litellm_cost_is_settled_on_the_plan(home: Path, fake: FakeOpenAI, host_adapter: None) -> None:
    inputs = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Capital of France?"}],
              "api_base": fake.url, "max_tokens": 200}
    theoryx.run("llm/litellm@1", inputs={"messages": [{"role": "user", "content": "x"}]}, adapter="mock",
            home=home, registry=str(REGISTRY))
    plans.create(db_of(home), "llm", 100_000)
    res = theoryx.run("llm/litellm@1", inputs=inputs, adapter="local", plan="llm", home=home, registry=str(REGISTRY))
    assert len(fake.chat_requests()) == 1
    usage = res.record.usage
    assert usage["prompt_tokens"] == 11 and usage["completion_tokens"] > 0
    meta = json.loads(Store(home / "cas-v1").read(next(o.cid for o in res.outputs if o.path.endswith("metadata.json"))))
    reported = meta["cost_usd"]                                   # litellm.completion_cost, as reported
    assert reported == pytest.approx(float(usage["prompt_tokens"] * per_token_micros("input_cost_per_token")
                                           + usage["completion_tokens"] * per_token_micros("output_cost_per_token"))
                                     / 1e6)
    charged = money.reported_micros(reported)
    assert charged is not None and res.record.cost_micros == charged > 0
    p = plans.get(db_of(home), "llm").totals
    assert (p.spent_micros, p.reserved_micros) == (charged, 0)
    reserve, settle = [e for _, e in ledger.events(db_of(home), "llm")][1:]
    assert settle["amount_micros"] == charged and settle["released_micros"] == reserve["amount_micros"]
    assert reserve["amount_micros"] >= math.ceil(200 * per_token_micros("output_cost_per_token")) >= charged
    assert plans.verify(db_of(home), "llm") == p

    hit = theoryx.run("llm/litellm@1", inputs=inputs, adapter="local", plan="llm", home=home, registry=str(REGISTRY))
    assert hit.cache == "hit" and hit.record.saved_micros == charged
    assert len(fake.chat_requests()) == 1


@pytest.mark.slow
def test_a_provider_error_settles_zero(home: Path, fake: FakeOpenAI, host_adapter: None) -> None:
    from theoryx.errors import ProcessorFailed

    fake.status = 429
    inputs = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "api_base": fake.url,
              "max_tokens": 10}
    with pytest.raises(ProcessorFailed):
        theoryx.run("llm/litellm@1", inputs=inputs, adapter="local", plan="llm", home=home, registry=str(REGISTRY))
    p = plans.get(db_of(home), "llm").totals
    assert (p.spent_micros, p.reserved_micros, p.executions) == (0, 0, 1)
