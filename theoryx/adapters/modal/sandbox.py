"""One execution in a Modal Sandbox: prepare it, run the processor's own command, read back.

The Sandbox's main process is an idle loop (:data:`IDLE`); everything else runs through
``Sandbox.exec`` as the image's user, in this order:

1. **setup** (:data:`SETUP`, ``/bin/sh``): make ``/artifacts/inputs``, ``/theoryx/result`` and the
   write prefix; link ``/theoryx/inputs.json`` and every ``/artifacts/inputs/<cid>/<name>`` to its
   blob on the read-only Volume mount (:mod:`theoryx.adapters.modal.blobs`), checking that each
   blob is there; drop the write bits of ``/artifacts/inputs``; print the container's OOM-kill
   count;
2. **the processor**: the spec's command (as Docker would run the image), in the Dockerfile's
   ``WORKDIR``, in an environment theoryx sets completely (:func:`processor_argv`): exactly the
   image's own ``ENV`` (recorded when the image was built, :data:`IMAGE_ENV`), then ``HOME=/tmp``
   and the contract variables (``request.env()``), then the secrets, which reach this exec only,
   through a ``modal.Secret``, and are carried over by name. Whatever Modal adds to a Sandbox's
   processes (``MODAL_*``, thread counts, a ``/pkg`` path; its docs do not list them) never
   reaches the processor, and neither does a value Modal changes. stdout and stderr are read as
   they come into the run's log captures (scrubbed, bounded, forwarded live under ``--stream``).
   A watchdog terminates the whole Sandbox at ``timeout``;
3. **the verdict** (see below), then ``/theoryx/result/result.json`` (a regular file, its first
   MiB) and, after a success, the write prefix as a tar stream (:mod:`.outputs`);
4. **terminate** the Sandbox, whatever happened (also on Ctrl-C).

Verdict, from what Modal documents and what it does not:

- documented: an exec'd process exits with its code, or 128 + N for a signal N; the SDK reports -1
  when an exec's own deadline passed; a Sandbox that ended reports 124 after its timeout and 137
  when it was terminated (``modal.sandbox._common._result_returncode``); containers over their
  hard memory limit are OOM-killed (modal.com/docs/guide/resources); Sandboxes are not preempted
  unless they have a GPU (modal.com/docs/guide/preemption);
- so: our watchdog fired, or the exec deadline passed (-1), or the Sandbox ended at its timeout
  (124): **timed out** (``ERR_TIMEOUT``). The processor was killed (137) while the Sandbox lives
  and the container's OOM-kill count went up: **OOM** (``ERR_OOM``);
- not documented, handled both ways: whether a memory kill takes the process (a kernel OOM
  killer in the container: the count above) or the whole Sandbox (it then ends under the
  processor, reported as terminated). A Sandbox that ended under the processor without our
  watchdog is read as an OOM kill for a CPU Sandbox (the one documented reason Modal kills one);
  with a GPU it may also have been preempted, so it is a processor failure (exit 137) whose stderr
  says both: theoryx never re-runs it (an LLM call must not be paid twice);
- anything else: the exit code; non-zero is ``ERR_PROCESSOR_FAILED``.

Before the Sandbox exists, its image is built (``Image.build``, a no-op when Modal has it cached)
so that a build never overlaps the Sandbox's life and its duration is measured on its own. A
failed build is :class:`ImageBuildError` before any Sandbox is created; its message says that
Modal's image builders up to 2024.10 need ``python`` and ``pip`` in the image (:data:`PYTHON_HINT`).
A Sandbox that ends before theoryx could prepare it is :class:`ModalSandboxError` saying Modal may
need Python in the image (its docs do not say whether a Sandbox does); theoryx itself needs only
``/bin/sh``, ``env``, ``mkdir``, ``ln``, ``head`` and ``tar``, so an image without Python works
wherever Modal does not require it.

Billed compute is the Sandbox's measured lifetime: from the call to ``Sandbox.create`` (the image
already built) to ``terminate`` returning, capped at the Sandbox's timeout, after which Modal ends
it. Whether Modal bills image builds, its docs do not say: builds are not charged, and
:attr:`Ran.image_build_s` says how long the build step took (:data:`BILLING` names the basis).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from theoryx.adapters.base import (
    CONTAINER_RESULT,
    Captures,
    ExecRequest,
    check_cancelled,
    interrupts_deferred,
    stoppable,
)
from theoryx.adapters.modal import boundary, outputs
from theoryx.errors import ExecutionCancelled, ImageBuildError, ModalError, ModalSandboxError, TheoryxError

if TYPE_CHECKING:
    import modal
    from modal.container_process import ContainerProcess

IDLE = ("/bin/sh", "-c", "while :; do sleep 3600; done")
SANDBOX_MARGIN_S = 600        # setup and reading back, on top of the processor's timeout
EXEC_GRACE_S = 5              # Modal's own exec deadline, a backstop behind the watchdog
SETUP_TIMEOUT_S = 300         # the first exec also waits for the container to start
SMALL_LIMIT = 1 << 20         # what theoryx reads of a helper exec's stdout/stderr
RESULT_LIMIT = 1 << 20        # THEORYX_RESULT: its first MiB (+1 byte, so a longer one is invalid JSON)
DRAIN_S = 10.0
OOM_UNKNOWN = -1
IMAGE_ENV = "/.theoryx/image-env.sh"
"""The image's own environment, recorded when Modal built the image: ``export -p`` of the image's
``/bin/sh`` in a last build step (:func:`theoryx.adapters.modal.adapter.record_env_command`), which
the processor's exec sources into an otherwise empty environment (:func:`processor_argv`)."""
BILLING = {"compute": "sandbox-lifetime", "image_build": "not-charged"}
"""The basis of what a run on Modal is charged (:func:`theoryx.adapters.modal.adapter` puts it, with
the measured milliseconds, in the Outcome's ``meta["billing"]``, which the plan's ``settle`` event
records): compute is the Sandbox's measured lifetime at the Sandbox rates; an image build is not
charged (Modal's docs do not say whether builds are billed, nor at what rate)."""
PYTHON_HINT = (
    "Modal's image builders up to version 2024.10 install Modal's client with `python -m pip` on top of "
    "the image, so an image without `python` and pip on PATH fails there (theoryx itself needs no Python "
    "in the image): select image builder 2025.06 or later in the Modal workspace's settings, or add Python "
    "to the image")
"""Appended to a failed build's message: the one documented way an image without Python fails on
Modal (``modal._image._Image._registry_setup_commands`` in the SDK; its docs say Functions need
``python``, and say nothing of Sandboxes)."""

# How many times the container's memory cgroup OOM-killed a process (cgroup v2, else v1); nothing
# when neither file is readable (the answer is then "unknown").
OOM_COUNT = r"""
for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
  if [ -r "$f" ]; then
    while read -r k v; do [ "$k" = oom_kill ] && echo "oom_kill=$v"; done < "$f"
    break
  fi
done
exit 0
"""
# POSIX sh; $1 the write prefix, $2 the inputs.json blob, then (cid, name, blob) triples. Exit 4:
# the image's environment was not recorded at build; 5: no `env` command in the image.
SETUP = r"""
set -eu
prefix=$1 inputs=$2
shift 2
umask 022
[ -r """ + IMAGE_ENV + r""" ] || { echo "theoryx: """ + IMAGE_ENV + r""" is missing" >&2; exit 4; }
command -v env >/dev/null 2>&1 || { echo "theoryx: the image has no env command" >&2; exit 5; }
mkdir -p /artifacts/inputs /theoryx/result "$prefix"
[ -f "$inputs" ] || { echo "theoryx: blob $inputs is not on the mounted volume" >&2; exit 3; }
ln -sf "$inputs" /theoryx/inputs.json
while [ "$#" -ge 3 ]; do
  [ -f "$3" ] || { echo "theoryx: blob $3 is not on the mounted volume" >&2; exit 3; }
  mkdir -p "/artifacts/inputs/$1"
  ln -s "$3" "/artifacts/inputs/$1/$2"
  shift 3
done
chmod -R a-w /artifacts/inputs 2>/dev/null || true
set +e
""" + OOM_COUNT
RESULT = r"""
f=$1
if [ -f "$f" ] && [ ! -L "$f" ]; then exec head -c "$2" "$f"; fi
exit 0
"""
# The processor's exec, in two POSIX sh stages that never put a secret's value on a command line.
# Stage 1 runs with whatever environment Modal gives the exec (the secrets included): $1 stage 2's
# script, $2 the number of secret names, the names; it quotes the values of those that are set
# into `export NAME='value'` lines and hands them on stdin (a here-document: a pipe, or with bash a
# file in the Sandbox's /tmp when they exceed a pipe's buffer) to stage 2, started by `env -i`
# with an empty environment. Stage 2: $1 the recorded image environment, $2 the number of
# NAME=VALUE assignments (HOME and the contract variables), the assignments, then `env`'s
# arguments: `-u NAME` for what a shell adds by itself (PWD, SHLVL, _), `--` and the command. It
# sources the image's environment, exports the assignments, then the secrets (so the secrets win,
# then the contract, then the image, as under `local`), and execs the command through `env` with
# stdin at end of file (a `local` container has no stdin either).
ENV_STAGE1 = r"""
s2=$1 n=$2
shift 2
sq="'"
q() {
  r= v=$1
  while :; do
    case $v in
      *"$sq"*) r="$r${v%%"$sq"*}'\\''"; v=${v#*"$sq"} ;;
      *) printf "'%s%s'" "$r" "$v"; return ;;
    esac
  done
}
snap=
while [ "$n" -gt 0 ]; do
  eval "isset=\${$1+x}"
  if [ "$isset" = x ]; then
    eval "v=\${$1}"
    snap="${snap}export $1=$(q "$v")
"
  fi
  shift
  n=$((n - 1))
done
exec env -i /bin/sh -c "$s2" theoryx-env "$@" <<THEORYX_SECRETS
$snap
THEORYX_SECRETS
"""
ENV_STAGE2 = r"""
s=
while IFS= read -r l || [ -n "$l" ]; do s="$s$l
"; done
unset PWD
. "$1"
n=$2
shift 2
while [ "$n" -gt 0 ]; do export "$1"; shift; n=$((n - 1)); done
eval "$s"
exec env "$@" </dev/null
"""
# exit 91: the prefix became a link; 92: it is gone (no outputs)
OUTPUTS = r"""
p=${1%/}
[ -L "$p" ] && exit 91
[ -d "$p" ] || exit 92
cd "$p" && exec tar -cf - .
"""


@dataclass(frozen=True)
class Plan:
    """Everything one execution needs besides the :class:`ExecRequest`: the Sandbox, the
    processor's command and working directory, its wall-clock timeout, the mounted paths of the
    inputs JSON and of each attachment (``(cid, name, blob path)``), whether it has a GPU, and the
    variables a shell adds by itself that the processor's environment loses (:data:`SHELL_NOISE`
    less those the image's last stage sets with ``ENV``)."""

    sandbox: boundary.SandboxRequest
    command: tuple[str, ...]
    cwd: str
    timeout: float
    inputs_blob: str
    attachments: tuple[tuple[str, str, str], ...]
    gpu: bool
    env_drop: tuple[str, ...] = ("_", "SHLVL", "PWD", "OLDPWD")


@dataclass(frozen=True)
class Ran:
    """What :func:`run` saw: the exit status, the verdict flags, the processor's wall time, the
    Sandbox's billed lifetime, what the log bounds dropped, and notes for the record."""

    exit_code: int
    timed_out: bool
    oom_killed: bool
    duration_ms: int
    lifetime_s: float
    log_dropped: Mapping[str, int]
    notes: tuple[str, ...] = ()
    image_build_s: float = 0.0          # the build step (Image.build), never part of lifetime_s


def processor_argv(plan: Plan, request: ExecRequest) -> list[str]:
    """The processor's exec: :data:`ENV_STAGE1` and :data:`ENV_STAGE2` around ``plan.command``, so
    that it runs with exactly the image's recorded ``ENV``, ``HOME=/tmp`` and ``request.env()``
    over it, and the secrets over those (by name: their values come from the exec's
    ``modal.Secret``). Every name is a shell identifier (the spec's rule for secrets and ``env``);
    the command's first word has no ``=`` (:func:`theoryx.adapters.modal.adapter.command_and_cwd`
    refuses it: ``env`` would read it as a variable)."""
    assignments = [f"{k}={v}" for k, v in {"HOME": "/tmp", **request.env()}.items()]
    names = sorted(request.secrets)
    drop = [arg for name in plan.env_drop for arg in ("-u", name)]
    return ["/bin/sh", "-c", ENV_STAGE1, "theoryx-env", ENV_STAGE2, str(len(names)), *names,
            IMAGE_ENV, str(len(assignments)), *assignments, *drop, "--", *plan.command]


def sandbox_timeout(timeout: float) -> int:
    """The Sandbox's lifetime for a processor timeout: the timeout, rounded up, plus
    :data:`SANDBOX_MARGIN_S`."""
    return math.ceil(timeout) + SANDBOX_MARGIN_S


# -- helpers -----------------------------------------------------------------------------------


class _Reader(threading.Thread):
    """Reads one stream of an exec'd process: into the run's captures (``captures``, under
    ``lock``: two readers share the stream sink) or, for a helper exec, into memory up to
    ``limit`` bytes (the rest is read and dropped, so the process never blocks on its pipe)."""

    def __init__(self, stream: Any, name: str, *, captures: Captures | None = None,
                 lock: threading.Lock | None = None, limit: int = SMALL_LIMIT) -> None:
        super().__init__(name=f"theoryx-modal-{name}", daemon=True)
        self.stream, self.stream_name = stream, name
        self.captures, self.lock, self.limit = captures, lock or threading.Lock(), limit
        self.data = bytearray()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for chunk in boundary.chunks(self.stream):
                if self.captures is not None:
                    with self.lock:
                        self.captures.write(self.stream_name, chunk)
                elif len(self.data) < self.limit:
                    self.data += chunk[: self.limit - len(self.data)]
        except BaseException as exc:   # the main thread decides what it means
            self.error = exc


def _helper(sb: modal.Sandbox, what: str, argv: Sequence[str], *, timeout: int = SETUP_TIMEOUT_S,
            limit: int = SMALL_LIMIT) -> tuple[int, bytes, bytes]:
    """Run a helper command (POSIX sh) in the Sandbox: ``(status, stdout, stderr)``, each stream
    cut at ``limit``. A helper that cannot start or finish is :class:`ModalSandboxError`
    (:func:`_cannot`)."""
    try:
        proc = boundary.exec_bytes(sb, argv, timeout=timeout)
        readers = [_Reader(proc.stdout, "stdout", limit=limit), _Reader(proc.stderr, "stderr", limit=limit)]
        for r in readers:
            r.start()
        status = boundary.wait(proc)
    except TheoryxError as exc:
        if type(exc) is ModalError:
            raise ModalSandboxError(_cannot(sb, what, exc.message)) from exc
        raise
    for r in readers:
        r.join(DRAIN_S)
    return status, bytes(readers[0].data), bytes(readers[1].data)


def _cannot(sb: modal.Sandbox, what: str, message: str) -> str:
    """Why theoryx could not ``what`` in the Sandbox. When the Sandbox has already ended, the
    likeliest reason is one Modal's docs leave open: whether a Sandbox's image needs Python
    (theoryx's own commands do not)."""
    try:
        ended = boundary.poll(sb)
    except TheoryxError:
        ended = None
    if ended is not None:
        return (f"the Modal Sandbox ended (status {ended}) before theoryx could {what}: {message}. Modal may "
                "require Python in a Sandbox's image (its docs require `python` for Functions and say nothing "
                "for Sandboxes; theoryx needs only /bin/sh, env, mkdir, ln, head and tar): if the image has no "
                "`python` on PATH, add it, else see the Sandbox's logs on Modal")
    return (f"theoryx could not {what} in the Modal Sandbox: {message} (the image needs /bin/sh with env, "
            "mkdir, ln, head and tar)")


def _oom_count(out: bytes) -> int:
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith("oom_kill="):
            value = line.split("=", 1)[1].strip()
            if value.isdigit():
                return int(value)
    return OOM_UNKNOWN


def _tail(data: bytes, limit: int = 2000) -> str:
    return data.decode("utf-8", "replace").strip()[-limit:]




# -- the run -----------------------------------------------------------------------------------


def run(plan: Plan, request: ExecRequest, secrets: Sequence[modal.Secret]) -> Ran:
    """Execute ``plan`` (see the module docstring). Raises theoryx errors for infrastructure
    failures only; a processor that failed, timed out or was OOM-killed is reported in the
    returned :class:`Ran` with its logs captured. The image is built first (a failed build is
    :class:`ImageBuildError` with :data:`PYTHON_HINT`, and no Sandbox is created); the Sandbox's
    lifetime counts from the call that creates it. The Sandbox is terminated before returning."""
    started = time.monotonic()
    try:
        image = boundary.build_image(plan.sandbox)
    except ImageBuildError as exc:
        raise ImageBuildError(f"{exc.message} ({PYTHON_HINT})") from exc
    check_cancelled(f"the Modal Sandbox of {request.spec.ref}")   # an item of a cancelled batch
    born = time.monotonic()
    sb = boundary.create_sandbox(plan.sandbox, image)

    def stop() -> None:           # the batch was cancelled (Ctrl-C): end the Sandbox now
        with contextlib.suppress(Exception):
            boundary.terminate(sb)

    try:
        with stoppable(f"modal-sandbox-{id(sb)}", stop) as stopped:
            try:
                ran = _run(sb, plan, request, secrets)
            except TheoryxError as exc:
                if stopped.is_set():
                    raise ExecutionCancelled(f"the batch was cancelled: the Modal Sandbox of {request.spec.ref} "
                                             "was terminated") from exc
                raise
            if stopped.is_set():
                raise ExecutionCancelled(f"the batch was cancelled: the Modal Sandbox of {request.spec.ref} "
                                         f"was terminated after {ran.duration_ms} ms")
    except BaseException as exc:
        with contextlib.suppress(TheoryxError), interrupts_deferred():
            boundary.terminate(sb)
        # Modal bills the Sandbox for the time it existed, whatever went wrong in it: the adapter
        # turns these into the outcome the failed run is settled on.
        exc.sandbox_lifetime_s = min(time.monotonic() - born, float(plan.sandbox.timeout_s))  # type: ignore[attr-defined]
        exc.image_build_s = born - started  # type: ignore[attr-defined]
        raise
    with interrupts_deferred():
        boundary.terminate(sb)
    lifetime = min(time.monotonic() - born, float(plan.sandbox.timeout_s))
    return Ran(ran.exit_code, ran.timed_out, ran.oom_killed, ran.duration_ms, lifetime, ran.log_dropped, ran.notes,
               image_build_s=born - started)


def _run(sb: modal.Sandbox, plan: Plan, request: ExecRequest, secrets: Sequence[modal.Secret]) -> Ran:
    triples = [part for triple in plan.attachments for part in triple]
    status, out, err = _helper(sb, "prepare the processor's directories",
                               ["/bin/sh", "-c", SETUP, "theoryx-setup", request.write_prefix, plan.inputs_blob,
                                *triples])
    if status != 0:
        hint = ("the image's environment was not recorded when Modal built it: the build ran as a user that "
                f"cannot write {IMAGE_ENV} (a registry image, or a USER inherited from the base image, that is "
                "not root); set USER in the last stage of the Dockerfile" if status == 4
                else "the image needs an env command (coreutils or busybox)" if status == 5
                else "the image's user could not create /artifacts or /theoryx" if b"ermission denied" in err
                else "the image needs /bin/sh with mkdir and ln")
        raise ModalSandboxError(f"theoryx could not prepare the processor's directories in the Modal Sandbox "
                                f"(exit {status}: {hint}):\n{_tail(err)}")
    oom_before = _oom_count(out)
    captures = Captures(request)
    try:
        status, timed_out, duration_ms = _processor(sb, plan, request, secrets, captures)
        status, timed_out, oom, ended, notes = _verdict(sb, plan, status, timed_out, oom_before)
        for note in notes:                 # where the error message's stderr tail shows it
            captures.write("stderr", f"\ntheoryx: {note}\n".encode())
    finally:
        dropped = captures.close()
    if not (ended or timed_out):
        _read_result(sb, request)
        if status == 0 and not oom:
            _read_outputs(sb, request)
    return Ran(status, timed_out, oom, duration_ms, 0.0, dropped)


def _verdict(sb: modal.Sandbox, plan: Plan, status: int, timed_out: bool,
             oom_before: int) -> tuple[int, bool, bool, bool, list[str]]:
    """``(status, timed out, OOM-killed, the Sandbox ended, notes)`` from what the processor's
    exec reported and what the Sandbox says (see the module docstring)."""
    if timed_out:
        return status, True, False, True, []
    ended = boundary.poll(sb)
    if ended is None and status == 137:
        try:
            _, out, _ = _helper(sb, "read the container's OOM-kill count", ["/bin/sh", "-c", OOM_COUNT])
        except TheoryxError:
            ended = boundary.poll(sb)      # the Sandbox went away meanwhile: judged below
            if ended is None:
                raise
        else:
            after = _oom_count(out)
            oom = OOM_UNKNOWN not in (oom_before, after) and after > oom_before
            return status, False, oom, False, []
    if ended is None:
        return status, False, False, False, []
    if ended == 124:                       # the Sandbox's own timeout came first
        return status, True, False, True, []
    if plan.gpu:
        return 137, False, False, True, [
            f"Modal ended the GPU Sandbox while the processor ran (Sandbox status {ended}): it was killed for "
            "its memory limit or preempted (Modal preempts GPU Sandboxes); theoryx does not run it again"]
    return 137, False, True, True, [
        f"Modal ended the Sandbox while the processor ran (Sandbox status {ended}); the one reason Modal "
        "documents for ending a CPU Sandbox is its memory limit"]


def _processor(sb: modal.Sandbox, plan: Plan, request: ExecRequest, secrets: Sequence[modal.Secret],
               captures: Captures) -> tuple[int, bool, int]:
    """Run the processor (:func:`processor_argv`): ``(status, timed out, wall time in ms)``."""
    proc: ContainerProcess[bytes] = boundary.exec_bytes(
        sb, processor_argv(plan, request), workdir=plan.cwd, secrets=secrets,
        timeout=math.ceil(plan.timeout) + EXEC_GRACE_S)
    t0 = time.monotonic()
    lock = threading.Lock()
    readers = [_Reader(proc.stdout, "stdout", captures=captures, lock=lock),
               _Reader(proc.stderr, "stderr", captures=captures, lock=lock)]
    for r in readers:
        r.start()
    fired = threading.Event()

    def watchdog() -> None:
        fired.set()
        with contextlib.suppress(TheoryxError):
            boundary.terminate(sb)

    timer = threading.Timer(plan.timeout, watchdog)
    timer.daemon = True
    timer.start()
    status = -1
    try:
        status = boundary.wait(proc)
    except TheoryxError:
        # after our watchdog terminated the Sandbox, or when Modal ended it under the process
        # (judged by _verdict); anything else is an infrastructure failure
        if not fired.is_set():
            if boundary.poll(sb) is None:
                raise
            status = 137
    finally:
        timer.cancel()
    duration_ms = int((time.monotonic() - t0) * 1000)
    for r in readers:
        r.join(DRAIN_S)
    timed_out = fired.is_set() or status == -1
    for r in readers:
        if r.error is not None and not timed_out and not isinstance(r.error, TheoryxError):
            raise ModalSandboxError(f"reading the processor's {r.stream_name} failed: {r.error}") from r.error
    return status, timed_out, duration_ms


def _read_result(sb: modal.Sandbox, request: ExecRequest) -> None:
    """``/theoryx/result/result.json`` into the workspace: a regular file (not a link), its first
    :data:`RESULT_LIMIT` + 1 bytes (a longer one is then invalid JSON, as ``read_result`` wants)."""
    status, out, _ = _helper(sb, "read the processor's result", ["/bin/sh", "-c", RESULT, "theoryx-result",
                                                                  CONTAINER_RESULT, str(RESULT_LIMIT + 1)],
                             limit=RESULT_LIMIT + 1)
    if status == 0 and out:
        request.workspace.result_dir.mkdir(parents=True, exist_ok=True)
        request.workspace.result.write_bytes(out)


def _read_outputs(sb: modal.Sandbox, request: ExecRequest) -> None:
    """The write prefix, streamed as tar into ``workspace.outputs`` (:func:`outputs.extract`)."""
    ws = request.workspace
    try:
        proc = boundary.exec_bytes(sb, ["/bin/sh", "-c", OUTPUTS, "theoryx-outputs", request.write_prefix],
                                   timeout=SANDBOX_MARGIN_S)
    except TheoryxError as exc:
        if type(exc) is ModalError:
            raise ModalSandboxError(f"theoryx could not read the outputs back from the Modal Sandbox: "
                                    f"{exc.message}") from exc
        raise
    errors = _Reader(proc.stderr, "stderr")
    errors.start()
    done = outputs.extract(outputs.reader(boundary.chunks(proc.stdout)), ws.outputs,
                           request.spec.limits, ws.root / "modal-links")
    if done.stopped:        # over a cap: the rest is never read; terminating the Sandbox ends tar
        return
    status = boundary.wait(proc)
    errors.join(DRAIN_S)
    if status == 91:
        from theoryx.errors import OutputRejected

        raise OutputRejected(f"output {request.write_prefix} rejected: the processor replaced its write prefix "
                             "by a symbolic link")
    # 1: GNU tar's "some files changed while being read" (a process the processor left running)
    if status not in (0, 1, 92):
        raise ModalSandboxError(f"theoryx could not read the outputs back from the Modal Sandbox (tar exit "
                                f"{status}; the image needs tar):\n{_tail(bytes(errors.data))}")
    if status != 92 and not done.complete:     # tar finished, yet its archive's end never arrived
        raise ModalSandboxError("theoryx could not read the outputs back from the Modal Sandbox: the output "
                                "stream ended before the archive did (a dropped connection?); nothing was "
                                "cached: run it again")


__all__ = ["BILLING", "IDLE", "IMAGE_ENV", "PYTHON_HINT", "SANDBOX_MARGIN_S", "Plan", "Ran", "processor_argv", "run",
           "sandbox_timeout"]

