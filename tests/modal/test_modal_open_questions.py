"""What Modal's documentation leaves open, each answer exercised on the Sandbox/Volume emulator.

- **Which variables Modal adds to a Sandbox's processes** (BUILD.md section 9, modal): none, or
  some (``MODAL_*``, thread counts, a ``/pkg`` path, even a changed ``PATH``). Either way the
  processor sees exactly the image's own ``ENV`` (recorded when the image was built), ``HOME`` and
  the contract variables, and the secrets.
- **Whether a Sandbox's image needs Python**: no (an image without Python runs), or yes, at build
  (as Modal's builders up to 2024.10: the build fails before any Sandbox exists, with a message
  naming Python) or at start (the Sandbox ends at once: the message names Python).
- **Whether image builds are billed**: the build is its own step before the Sandbox exists,
  measured, and recorded as not charged on the plan's settle event, beside the Sandbox lifetime
  that is charged; the reservation stays the worst case.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_modal_emulator import fails, processor_execs, run

from theoryx.adapters.base import CONTAINER_INPUTS_JSON, CONTAINER_RESULT
from theoryx.errors import ImageBuildError, ModalSandboxError

pytestmark = pytest.mark.docker

SECRET = "modal-secret-value-42"
MODAL_ADDS = {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MODAL_TASK_ID": "ta-emulated", "MODAL_IS_REMOTE": "1",
    "PYTHONPATH": "/pkg", "PATH": "/pkg/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONDONTWRITEBYTECODE": "0",
}
"""What the emulated Modal adds to every process of a Sandbox: new names, and two of the image's
own (``PATH``, ``PYTHONDONTWRITEBYTECODE``) with other values."""


def image_env(docker_client: Any, emulator: Any) -> dict[str, str]:
    """The ``ENV`` of the image the Sandbox ran, as the engine that built it says."""
    (create,) = emulator.called("Sandbox.create")
    env = docker_client.images.get(create["image"].tag).attrs["Config"]["Env"] or []
    return dict(item.split("=", 1) for item in env)


@pytest.mark.parametrize("adds", [{}, MODAL_ADDS], ids=["modal-adds-nothing", "modal-adds-variables"])
def test_the_processor_sees_exactly_the_images_env_the_contract_and_the_secrets(
        registry: Path, home: Path, emulator: Any, docker_client: Any, monkeypatch: pytest.MonkeyPatch,
        adds: dict[str, str]) -> None:
    emulator.inject_env = adds
    monkeypatch.setenv("PROBE_SECRET", SECRET)
    res = run(registry, home, {"mode": "environ"}, ref="test/secret@1")
    seen = res.output("out.json").json()["env"]
    declared = image_env(docker_client, emulator)
    expected = {
        **declared, "HOME": "/tmp",
        "THEORYX_INPUTS": CONTAINER_INPUTS_JSON, "THEORYX_WRITE_PREFIX": "/artifacts/outputs/",
        "THEORYX_RESULT": CONTAINER_RESULT, "THEORYX_SEED": "0", "THEORYX_EXECUTION_ID": res.record.execution_id,
        "THEORYX_REF": "test/secret@1", "THEORYX_STREAM": "0",
        "PROBE_SECRET": "sha256:" + hashlib.sha256(SECRET.encode()).hexdigest(),
    }
    print(f"image ENV {sorted(declared)}; Modal added {sorted(adds)}; the processor saw {sorted(seen)}")
    assert seen == expected
    assert declared["PYTHONDONTWRITEBYTECODE"] == "1" and "PATH" in declared, "the image's own values"
    (proc,) = processor_execs(emulator)
    assert SECRET not in repr(proc["args"]), "the secret travels in the exec's Secret only"


def test_an_image_whose_build_user_cannot_record_its_environment_is_refused_clearly(
        registry: Path, home: Path, emulator: Any) -> None:
    """A USER inherited from an earlier stage (not root, not set by the last stage) cannot write
    the record: the Sandbox's setup says so, and the processor never runs with a guessed one."""
    folder = registry / "processors" / "test" / "probe"
    (folder / "Dockerfile").write_text((folder / "Dockerfile").read_text().replace(
        "FROM ${BASE_IMAGE}", "FROM ${BASE_IMAGE} AS app").replace("USER 10001:10001", "USER 10001:10001\nFROM app"))
    err = fails(registry, home, {"mode": "hello"})
    print(f"{err.code}: {err.message}")
    assert isinstance(err, ModalSandboxError) and "environment was not recorded" in err.message
    assert "set USER in the last stage" in err.message and processor_execs(emulator) == []


def nopython(registry: Path) -> str:
    """``test/nopython@1``: an image without any Python whose command is a shell line."""
    folder = registry / "processors" / "test" / "nopython"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        "ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\n"
        "RUN rm -f /usr/bin/python* /usr/local/bin/python* && ! command -v python3 && ! command -v python\n"
        "USER 10001:10001\n")
    line = ('if command -v python3 || command -v python; then p=yes; else p=no; fi >/dev/null; '
            'printf \'{"python": "%s", "home": "%s"}\' "$p" "$HOME" > "${THEORYX_WRITE_PREFIX}out.json"')
    spec = {"ref": "test/nopython@1", "image": {"dockerfile": "nopython/Dockerfile"},
            "command": ["/bin/sh", "-c", line], "runtime": {"cpu": 0.5, "memory": 256, "timeout": 60},
            "adapter": {"modal": {"stub_name": "theoryx-test-np"}}, "inputs": {"type": "object"},
            "outputs": [{"path": "out.json", "mime": "application/json"}]}
    (registry / "processors" / "test" / "nopython@1.yaml").write_text(yaml.safe_dump(spec))
    return "test/nopython@1"


def test_an_image_without_python_runs_where_modal_does_not_require_it(registry: Path, home: Path,
                                                                      emulator: Any) -> None:
    body = run(registry, home, {}, ref=nopython(registry)).output("out.json").json()
    print(body)
    assert body == {"python": "no", "home": "/tmp"}


def settle_event(home: Path, plan: str) -> dict[str, Any]:
    from theoryx.budget import ledger
    from theoryx.store.handle import open_stores

    (settle,) = [e for _, e in ledger.events(open_stores(home).db, plan) if e["kind"] == "settle"]
    return settle


def test_a_builder_that_needs_python_fails_the_build_clearly_before_any_sandbox(registry: Path, home: Path,
                                                                                emulator: Any) -> None:
    """Modal's builders up to 2024.10 run ``python -m pip`` on top of the image: the build fails,
    and the SDK's error has no log. No Sandbox is created, nothing is charged."""
    emulator.requires_python = "build"
    err = fails(registry, home, {}, ref=nopython(registry), plan="p")
    print(f"{err.code}: {err.message}")
    assert isinstance(err, ImageBuildError) and err.code == "ERR_IMAGE_BUILD"
    assert "modal image logs im-emu-" in err.message and "`python` and pip" in err.message
    assert "image builder 2025.06 or later" in err.message
    assert emulator.called("Image.build") and emulator.called("Sandbox.create") == [] and emulator.sandboxes == []
    settle = settle_event(home, "p")
    assert settle["amount_micros"] == 0 and settle["status"] == "error"


def test_a_sandbox_that_needs_python_to_start_is_reported_clearly(registry: Path, home: Path, emulator: Any) -> None:
    emulator.requires_python = "start"
    err = fails(registry, home, {}, ref=nopython(registry))
    print(f"{err.code}: {err.message}")
    assert isinstance(err, ModalSandboxError) and err.code == "ERR_MODAL_SANDBOX"
    assert "ended (status 137) before theoryx could prepare" in err.message
    assert "Modal may require Python" in err.message and emulator.sandboxes == []


def test_an_image_build_is_measured_apart_and_recorded_as_not_charged(registry: Path, home: Path,
                                                                      emulator: Any) -> None:
    """The build (forced here, so that it takes a while) happens before the Sandbox exists; the
    settle event says compute is the Sandbox's lifetime and the build is not charged; compute is
    charged on the lifetime alone and stays within the worst case reserved."""
    from theoryx.adapters.modal import adapter as modal_adapter
    from theoryx.budget.money import ceil_micros
    from theoryx.budget.pricing import Rates

    res = run(registry, home, {"mode": "hello"}, plan="p", build=True)
    names = [name for name, _ in emulator.calls if name in ("Image.build", "Sandbox.create")]
    assert names == ["Image.build", "Sandbox.create"]
    settle = settle_event(home, "p")
    billing = settle["billing"]
    print(f"billing {billing}; cost {settle['cost']}")
    assert (billing["compute"], billing["image_build"]) == ("sandbox-lifetime", "not-charged")
    assert billing["image_build_ms"] > 0 and billing["compute_ms"] > 0
    rate = Rates().per_second(0.5, 256, None, sandbox=True) or Decimal(0)
    assert settle["cost"]["compute"] == ceil_micros(rate * Decimal(billing["compute_ms"]) / 1000)
    worst = ceil_micros(rate * (60 + modal_adapter.ModalAdapter.billing_margin_s))
    assert settle["cost"]["compute"] < worst and settle["released_micros"] >= worst
    assert res.record.cost_micros == settle["cost"]["compute"] + settle["cost"]["reported"]


def test_a_sandbox_that_fails_after_it_was_created_is_charged_its_lifetime(registry: Path, home: Path,
                                                                         emulator: Any) -> None:
    """Modal bills a Sandbox for the time it existed, whatever went wrong in it: a run refused at
    the Sandbox's setup (an infrastructure error, not the processor's) is settled on the measured
    lifetime, with the usual billing basis, not charged $0."""
    from theoryx.budget.money import ceil_micros
    from theoryx.budget.pricing import Rates

    folder = registry / "processors" / "test" / "probe"
    (folder / "Dockerfile").write_text((folder / "Dockerfile").read_text().replace(
        "FROM ${BASE_IMAGE}", "FROM ${BASE_IMAGE} AS app").replace("USER 10001:10001", "USER 10001:10001\nFROM app"))
    err = fails(registry, home, {"mode": "hello"}, plan="p")
    assert isinstance(err, ModalSandboxError) and processor_execs(emulator) == []
    assert len(emulator.called("Sandbox.create")) == 1, "the Sandbox existed"
    settle = settle_event(home, "p")
    billing = settle["billing"]
    print(f"{err.code}; billing {billing}; cost {settle['cost']}")
    assert billing["compute"] == "sandbox-lifetime" and billing["compute_ms"] > 0
    rate = Rates().per_second(0.5, 256, None, sandbox=True) or Decimal(0)
    assert settle["cost"]["compute"] == ceil_micros(rate * Decimal(billing["compute_ms"]) / 1000) > 0
