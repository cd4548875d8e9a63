"""theoryx's error tree. Every class has a stable ``code``; only the CLI maps them to exit codes.

```
TheoryxError                       ERR_THEORYX
├── UsageError                     ERR_USAGE            (exit 2: a bad option value)
│   ├── WritePrefixError           ERR_WRITE_PREFIX
│   ├── InputsJsonError            ERR_INPUTS_JSON
│   ├── PlanKeyError               ERR_PLAN_KEY         (a plan key with forbidden characters)
│   ├── AmountError                ERR_AMOUNT           (a bad dollar amount)
│   │   ├── AmountNotANumber       ERR_AMOUNT_NOT_A_NUMBER
│   │   ├── AmountNegative         ERR_AMOUNT_NEGATIVE
│   │   ├── AmountTooPrecise       ERR_AMOUNT_PRECISION  (more than 6 decimals: below a micro-dollar)
│   │   └── AmountTooLarge         ERR_AMOUNT_TOO_LARGE
│   ├── RatesError                 ERR_RATES            (a malformed THEORYX_RATES / rates.json)
│   ├── AdapterOptionsError        ERR_ADAPTER_OPTIONS  (unknown, mistyped, out of range, or relaxing the sandbox)
│   ├── AttachmentError            ERR_ATTACHMENT
│   │   └── AttachmentNotFound     ERR_ATTACHMENT_NOT_FOUND
│   └── RefError                   ERR_REF              (malformed ref)
├── ProcessorNotFound              ERR_PROCESSOR_NOT_FOUND
├── SpecError                      ERR_SPEC             (a malformed registry entry)
├── InputsError                    ERR_INPUTS           (inputs violate the spec's schema)
├── SecretsMissing                 ERR_SECRETS_MISSING
├── StoreError                     ERR_STORE            (CAS/LMDB trouble; wraps cas.CasError)
│   ├── NotFound                   ERR_NOT_FOUND        (no such execution / world path / cid)
│   │   └── NoHome                 ERR_NO_HOME          (a reading command pointed at no home)
│   ├── StoreBusy                  ERR_STORE_BUSY       (another gc or verify holds the store's gc lock)
│   ├── StoreFull                  ERR_STORE_FULL       (no space or quota left where the store writes)
│   └── CorruptBlobError           ERR_CORRUPT_BLOB     (a blob's bytes do not match its cid: quarantined)
├── AdapterError                   ERR_ADAPTER
│   ├── AdapterUnavailable         ERR_ADAPTER_UNAVAILABLE
│   ├── DockerUnavailable          ERR_DOCKER_UNAVAILABLE
│   ├── ImageNotFound              ERR_IMAGE_NOT_FOUND
│   ├── ImageBuildError            ERR_IMAGE_BUILD
│   └── ModalError                 ERR_MODAL
│       ├── ModalNotInstalled      ERR_MODAL_NOT_INSTALLED (the `modal` package is missing: theoryx[modal])
│       ├── ModalCredentialsMissing ERR_MODAL_CREDENTIALS (no Modal token configured)
│       ├── ModalAuthError         ERR_MODAL_AUTH       (Modal rejected the token)
│       ├── ModalUnreachable       ERR_MODAL_UNREACHABLE
│       ├── ModalGpuUnsupported    ERR_MODAL_GPU        (runtime.gpu names no GPU type/count Modal offers)
│       └── ModalSandboxError      ERR_MODAL_SANDBOX    (the Sandbox could not be prepared or read back)
├── ExecutionError                 ERR_EXECUTION        (the processor ran and did not succeed)
│   ├── ProcessorFailed            ERR_PROCESSOR_FAILED
│   ├── ExecutionTimeout           ERR_TIMEOUT
│   ├── OutOfMemory                ERR_OOM
│   ├── OutputRejected             ERR_OUTPUT_REJECTED
│   ├── OutputMissing              ERR_OUTPUT_MISSING
│   └── ExecutionCancelled         ERR_CANCELLED        (a batch was interrupted: its container was stopped)
├── OutputFormatError              ERR_OUTPUT_FORMAT    (Output.text()/.json() of other bytes; a ValueError)
├── BudgetError                    ERR_BUDGET
│   ├── BudgetExceeded             ERR_BUDGET_EXCEEDED
│   ├── PlanNotFound               ERR_PLAN_NOT_FOUND
│   ├── PlanExists                 ERR_PLAN_EXISTS
│   └── PriceUnknown               ERR_PRICE_UNKNOWN    (no price/bound under a limited plan)
├── AuditError                     ERR_AUDIT            (an audit could not be carried out: exit 2)
├── ReceiptError                   ERR_RECEIPT          (a malformed receipt or DSSE envelope)
│   ├── SignatureInvalid           ERR_SIGNATURE_INVALID  (no signature verifies with the key)
│   └── SigningKeyError            ERR_SIGNING_KEY      (an unreadable or non-ed25519 key file)
├── LedgerCorrupt                  ERR_LEDGER_CORRUPT
├── RemoteError                    ERR_REMOTE           (the team cache unreachable or refusing: only
│   │                                                  `theoryx remote` fails on it, never a run)
│   ├── RemoteConfigError          ERR_REMOTE_CONFIG    (a malformed remote URL or remote.json)
│   └── RemoteRejected             ERR_REMOTE_REJECTED  (a remote entry or blob failed verification)
├── UiError                        ERR_UI               (`theoryx ui` cannot listen on the address asked)
├── RunInterrupted                 ERR_INTERRUPTED      (Ctrl-C while a run was in flight; what its record says)
└── InternalError                  ERR_INTERNAL         (a bug: the details went to a crash file)
```
"""

from __future__ import annotations

import re

CLIP_OVER = 400      # characters: a longer word in a message is shown as head…[length]…tail
_WRAPPING = "'\"()[]{}<>,.:;"     # quotes and punctuation around a value: not counted in its length
_LONG_WORD = re.compile(rf"\S{{{CLIP_OVER + 1},}}")


def clipped(message: str) -> str:
    """``message`` with every run of more than :data:`CLIP_OVER` non-space characters (a
    100,000-character ref, key or input echoed back) cut to its first 160 and last 40
    characters around ``…[N characters]…``, and lone surrogates (which no record could store)
    written as ``\\udcff``; everything else unchanged."""
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:      # lone surrogates (a file name that is not UTF-8): shown escaped,
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")   # so it can be stored
    if len(message) <= CLIP_OVER:
        return message
    return _LONG_WORD.sub(lambda m: f"{m[0][:160]}…[{len(m[0].strip(_WRAPPING))} characters]…{m[0][-40:]}", message)


class TheoryxError(Exception):
    """Base of every error theoryx raises on purpose.

    ``message`` is neutral: it speaks to whoever called the library (and :func:`clipped`: a
    value of any length is echoed in at most a few hundred characters), so where it names one of
    the caller's settings it uses the Python parameter name (``write_prefix must end with /``,
    ``use force=True``, ``adapter='mock'``) and ``option`` says which parameter that is. Only
    the command line turns such names into its flags (:func:`theoryx.cli.messages.message`).
    """

    code = "ERR_THEORYX"
    exit_code = 1
    execution_id: str | None = None
    option: str | None = None
    reported = False  # set by a CLI command that already printed this error's --json envelope
    # What the failed execution was charged, set when its record is written (a processor that
    # failed after a billable call is charged for it): its plan, cost and overrun in micro-USD.
    plan: str | None = None
    cost_micros = 0
    overrun_micros = 0

    def __init__(self, message: str, *, option: str | None = None) -> None:
        message = clipped(message)
        super().__init__(message)
        self.message = message
        if option is not None:
            self.option = option

    def to_dict(self) -> dict[str, str]:
        """The machine form (``code`` and the neutral ``message``); the CLI's ``--json`` prints
        :func:`theoryx.cli.messages.to_dict` instead, which names its flags."""
        return {"code": self.code, "message": self.message}

    def envelope(self, error: dict[str, str] | None = None) -> dict[str, object]:
        """The ``--json`` envelope of this error: ``status``, ``execution_id`` and ``error``
        (default :meth:`to_dict`); for a failed execution also what it was charged, under the
        names a success's envelope uses (``plan``, ``cost_micros``, ``overrun_micros``)."""
        out: dict[str, object] = {"status": "error", "execution_id": self.execution_id}
        if self.execution_id is not None:
            out.update(plan=self.plan, cost_micros=self.cost_micros, overrun_micros=self.overrun_micros)
        out["error"] = self.to_dict() if error is None else error
        return out


class UsageError(TheoryxError):
    code = "ERR_USAGE"
    exit_code = 2


class WritePrefixError(UsageError):
    code = "ERR_WRITE_PREFIX"
    option = "write_prefix"


class InputsJsonError(UsageError):
    code = "ERR_INPUTS_JSON"


class PlanKeyError(UsageError):
    code = "ERR_PLAN_KEY"


class AmountError(UsageError):
    code = "ERR_AMOUNT"


class AmountNotANumber(AmountError):
    code = "ERR_AMOUNT_NOT_A_NUMBER"


class AmountNegative(AmountError):
    code = "ERR_AMOUNT_NEGATIVE"


class AmountTooPrecise(AmountError):
    code = "ERR_AMOUNT_PRECISION"


class AmountTooLarge(AmountError):
    code = "ERR_AMOUNT_TOO_LARGE"


class RatesError(UsageError):
    code = "ERR_RATES"


class AttachmentError(UsageError):
    code = "ERR_ATTACHMENT"


class AttachmentNotFound(AttachmentError):
    code = "ERR_ATTACHMENT_NOT_FOUND"


class RefError(UsageError):
    code = "ERR_REF"


class ProcessorNotFound(TheoryxError):
    code = "ERR_PROCESSOR_NOT_FOUND"


class SpecError(TheoryxError):
    code = "ERR_SPEC"


class InputsError(TheoryxError):
    code = "ERR_INPUTS"


class SecretsMissing(TheoryxError):
    code = "ERR_SECRETS_MISSING"


class StoreError(TheoryxError):
    code = "ERR_STORE"


class NotFound(StoreError):
    code = "ERR_NOT_FOUND"


class NoHome(NotFound):
    """A command that only reads a home was pointed at a directory that is none (a typo in
    ``--home`` or ``THEORYX_HOME``, or nothing has run there yet); nothing was created."""

    code = "ERR_NO_HOME"


class StoreBusy(StoreError):
    code = "ERR_STORE_BUSY"


class AdapterError(TheoryxError):
    code = "ERR_ADAPTER"


class AdapterUnavailable(AdapterError):
    code = "ERR_ADAPTER_UNAVAILABLE"


class DockerUnavailable(AdapterError):
    code = "ERR_DOCKER_UNAVAILABLE"


class ImageNotFound(AdapterError):
    code = "ERR_IMAGE_NOT_FOUND"


class ImageBuildError(AdapterError):
    code = "ERR_IMAGE_BUILD"


class ModalError(AdapterError):
    code = "ERR_MODAL"


class ModalNotInstalled(ModalError):
    code = "ERR_MODAL_NOT_INSTALLED"


class ModalCredentialsMissing(ModalError):
    code = "ERR_MODAL_CREDENTIALS"


class ModalAuthError(ModalError):
    code = "ERR_MODAL_AUTH"


class ModalUnreachable(ModalError):
    code = "ERR_MODAL_UNREACHABLE"


class ExecutionError(TheoryxError):
    code = "ERR_EXECUTION"


class ProcessorFailed(ExecutionError):
    code = "ERR_PROCESSOR_FAILED"


class ExecutionTimeout(ExecutionError):
    code = "ERR_TIMEOUT"


class OutOfMemory(ExecutionError):
    code = "ERR_OOM"


class OutputRejected(ExecutionError):
    code = "ERR_OUTPUT_REJECTED"


class OutputMissing(ExecutionError):
    code = "ERR_OUTPUT_MISSING"


class BudgetError(TheoryxError):
    code = "ERR_BUDGET"


class BudgetExceeded(BudgetError):
    code = "ERR_BUDGET_EXCEEDED"


class PlanNotFound(BudgetError):
    """``plan`` is the key that names no plan (the CLI adds how to create it)."""

    code = "ERR_PLAN_NOT_FOUND"
    plan: str | None = None


class PlanExists(BudgetError):
    code = "ERR_PLAN_EXISTS"


class PriceUnknown(BudgetError):
    code = "ERR_PRICE_UNKNOWN"


class AuditError(TheoryxError):
    code = "ERR_AUDIT"
    exit_code = 2


class ReceiptError(TheoryxError):
    code = "ERR_RECEIPT"


class SignatureInvalid(ReceiptError):
    code = "ERR_SIGNATURE_INVALID"


class SigningKeyError(ReceiptError):
    code = "ERR_SIGNING_KEY"


class LedgerCorrupt(TheoryxError):
    code = "ERR_LEDGER_CORRUPT"


def all_error_classes() -> list[type[TheoryxError]]:
    """Every error class, for the test that codes are unique and documented."""
    out: list[type[TheoryxError]] = []
    todo: list[type[TheoryxError]] = [TheoryxError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


class StoreFull(StoreError):
    """The filesystem of the home (or of a workspace) ran out of space or quota. Whatever was
    being written was removed; the store is consistent."""

    code = "ERR_STORE_FULL"


class RunInterrupted(TheoryxError):
    """A run stopped by Ctrl-C (``KeyboardInterrupt``) while in flight: its record's error (the
    library re-raises the ``KeyboardInterrupt``, carrying this as :func:`interruption`)."""

    code = "ERR_INTERRUPTED"
    exit_code = 130


def interruption(stop: BaseException) -> RunInterrupted:
    """The :class:`RunInterrupted` a run attached to ``stop`` (naming its execution), or a new one."""
    found = getattr(stop, "theoryx_error", None)
    return found if isinstance(found, RunInterrupted) else RunInterrupted("interrupted")


class InternalError(TheoryxError):
    """An exception theoryx did not expect: a bug. The CLI prints one line naming the file that
    holds the details (the traceback), never the traceback itself."""

    code = "ERR_INTERNAL"


class AdapterOptionsError(UsageError):
    """An adapter option (``adapter_options`` / ``--adapter-opts-json``) that is unknown to the
    adapter, of the wrong type, out of its range, or that would relax a sandbox switch the
    spec keeps closed. Raised before anything is written for the run."""

    code = "ERR_ADAPTER_OPTIONS"
    option = "adapter_options"


class RemoteError(TheoryxError):
    """The team cache (``theoryx.remote``) could not be reached, timed out or answered an error.
    A run never fails on it (it continues locally with one warning); ``theoryx remote push`` and
    ``theoryx remote status`` do. The message never holds a credential."""

    code = "ERR_REMOTE"


class RemoteConfigError(RemoteError):
    """A malformed remote setting: ``remote`` / ``THEORYX_REMOTE`` / ``<home>/remote.json``
    (an unknown scheme, credentials inside the URL, a wrong type, an unreadable key file)."""

    code = "ERR_REMOTE_CONFIG"


class RemoteRejected(RemoteError):
    """A remote action cache entry or blob failed verification (no trusted signature, a payload
    for another memo key, bytes that do not hash to their cid): ignored, never used."""

    code = "ERR_REMOTE_REJECTED"


class CorruptBlobError(StoreError):
    """A blob's bytes do not hash to its cid (``cid``): found while they were leaving the store
    (``cat``, ``export``, ``logs``, reading an output, materialising an input). The blob was
    quarantined, so the next run that needs it re-executes; nothing corrupt was handed out.
    ``theoryx verify --repair`` checks the rest of the store and clears the quarantine."""

    code = "ERR_CORRUPT_BLOB"
    cid: str | None = None


class UiError(TheoryxError):
    """``theoryx ui`` cannot serve: the address is in use, not an address of this machine, or
    not allowed (the message names it)."""

    code = "ERR_UI"


class ModalGpuUnsupported(ModalError):
    """``runtime.gpu`` names no GPU type Modal documents, or more of them than Modal attaches to
    one container (the message lists what it offers); refused before anything is written."""

    code = "ERR_MODAL_GPU"


class ModalSandboxError(ModalError):
    """theoryx could not prepare a Modal Sandbox for the processor (its image lacks ``/bin/sh``,
    ``mkdir``, ``ln`` or ``tar``, or its user cannot create ``/artifacts``) or read its results
    back (a malformed output archive)."""

    code = "ERR_MODAL_SANDBOX"


class ExecutionCancelled(ExecutionError):
    """The run's batch was cancelled (Ctrl-C on ``theoryx map``) while the processor ran: its
    container was stopped (SIGTERM, then SIGKILL after a grace period) and removed; nothing it
    produced is kept or cached."""

    code = "ERR_CANCELLED"


class OutputFormatError(TheoryxError, ValueError):
    """An output read as text that is not text in the encoding asked for, or as JSON that is not
    JSON (:meth:`theoryx.Output.text` / :meth:`~theoryx.Output.json`). Also a ``ValueError``, as
    the decoding errors it replaces were; the bytes themselves are intact (checked against the
    cid)."""

    code = "ERR_OUTPUT_FORMAT"
