"""A processor's registry entry, validated into a frozen value.

``ProcessorSpec.from_mapping`` accepts the parsed YAML and raises :class:`SpecError` naming the
file and the dotted field of the first problem. ``execution_fields()`` is the part of the spec
that enters the memo key: everything that affects execution or admission, never ``description``.
``to_cache``/``from_cache`` round-trip a validated spec so that a cache hit never parses YAML.

Every value of a spec must have a canonical JSON form (RFC 8785, :mod:`theoryx.core.canonical`),
because its execution fields enter the memo key and the whole of it is stored in the spec cache:
mapping keys are strings, integers lie within ±(2**53-1), numbers are finite, strings are valid
Unicode (no lone surrogate), and nothing else (a YAML date, ``!!binary`` bytes, a set) is
allowed. A value that breaks this is :class:`SpecError` naming the file and the field when the
spec is parsed (it used to pass ``registry validate`` and fail every run, as ``ERR_INTERNAL`` or
as ``ERR_INPUTS`` blaming the inputs).
``worker`` (persistent worker mode, :class:`WorkerMode`) is an execution *strategy*, not part of
the action: it is left out of ``execution_fields()``, so a result computed by a worker keys
exactly like a one-shot run of the same processor and inputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from theoryx.core.canonical import MAX_SAFE_INT, CanonicalizationError, canonical_bytes, int_text
from theoryx.errors import SpecError
from theoryx.spec.refs import Ref

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

_SECRET = re.compile(r"^[A-Z_][A-Z0-9_]*\Z")
# Secret names refused: a host value there would change what runs without changing the memo key
# (THEORYX_SEED, THEORYX_WRITE_PREFIX...), or steer the loader, the shell or an interpreter.
_RESERVED = re.compile(r"^(THEORYX_\w*|LD_\w*|PYTHON\w*|HOME|PATH|SHELL|ENV|BASH_ENV|IFS|TMPDIR|USER|"
                       r"GLIBC_TUNABLES|MALLOC_\w*|GCONV_PATH|LOCPATH|LC_\w*|LANG|LANGUAGE|TZ|"
                       r"PERL5\w*|NODE_OPTIONS|NODE_PATH|RUBYOPT|RUBYLIB|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS)\Z")
_PINNED = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}\Z")
UNCLEAN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\]")
"""What an output's name may not hold (ingest refuses it, so a spec may not declare it): C0 and
C1 control characters, DEL, the Unicode line and paragraph separators (each reads as a line
break somewhere), and backslash."""
_TOP = {
    "ref", "description", "image", "command", "runtime", "adapter", "secrets", "inputs",
    "outputs", "limits", "cost", "stochastic", "env", "worker",
}
WORKER_PROTOCOLS = ("jsonl",)
"""The worker protocols theoryx speaks (BUILD.md, "Persistent workers")."""
MAX_WORKER_REQUESTS = 1_000_000_000


MAX_TIMEOUT_S = 7 * 24 * 3600
"""The longest ``runtime.timeout`` a spec may ask for (adapter options cap theirs the same way)."""
MIN_MEMORY_MIB = 6
"""The smallest ``runtime.memory``: the container engine refuses a memory limit below 6 MB."""
MIN_CPU = 0.01
"""The smallest ``runtime.cpu``: the engine refuses less; a value that rounds to 0 nano-CPUs
would mean *no* CPU limit at all."""


@dataclass(frozen=True)
class Runtime:
    """Resources and sandbox switches. ``memory`` in MiB, ``timeout`` in seconds."""

    cpu: float = 1.0
    memory: int = 1024
    timeout: int = 600
    gpu: str | None = None
    network: bool = False
    pids: int = 256
    tmpfs: int = 256

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu, "memory": self.memory, "timeout": self.timeout, "gpu": self.gpu,
            "network": self.network, "pids": self.pids, "tmpfs": self.tmpfs,
        }


DEFAULT_LOG_BYTES = 8 << 20
"""``limits.log_bytes`` when the spec does not set it: 8 MiB kept per stream (stdout, stderr)."""

LOG_BYTES_RANGE = (1 << 10, 1 << 30)
"""The values ``limits.log_bytes`` may take (1 KiB to 1 GiB)."""


@dataclass(frozen=True)
class OutputLimits:
    """Caps applied when ingesting a run's outputs, and ``log_bytes``: how much of each captured
    log stream is kept (its first and last halves; see :mod:`theoryx.adapters.logs`)."""

    max_files: int = 10_000
    max_bytes: int = 10 << 30
    max_depth: int = 32
    log_bytes: int = DEFAULT_LOG_BYTES

    def to_dict(self) -> dict[str, int]:
        """The caps as they enter the memo key. ``log_bytes`` changes the stored logs, which are
        part of a cached result (``--stream`` replays them on a hit), so a spec that sets it keys
        apart; left at its default it is omitted, which keeps the keys of every spec that does
        not set it what they were before the field existed."""
        d = {"max_files": self.max_files, "max_bytes": self.max_bytes, "max_depth": self.max_depth}
        if self.log_bytes != DEFAULT_LOG_BYTES:
            d["log_bytes"] = self.log_bytes
        return d


@dataclass(frozen=True)
class OutputDecl:
    """A declared output, ``path`` relative to the write prefix."""

    path: str
    mime: str
    optional: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "mime": self.mime, "optional": self.optional}


@dataclass(frozen=True)
class WorkerMode:
    """``worker: {protocol: jsonl, max_requests: N}``: the processor can serve many requests
    from one long-lived process (BUILD.md, "Persistent workers"). ``max_requests``: a worker is
    recycled (stopped and replaced) after serving that many. Never part of the memo key."""

    protocol: str = "jsonl"
    max_requests: int = 1000

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "max_requests": self.max_requests}


@dataclass(frozen=True)
class ImageSource:
    """Exactly one of ``dockerfile`` (relative to the YAML file) or ``ref`` (pinned by digest)."""

    dockerfile: str | None = None
    ref: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dockerfile": self.dockerfile, "ref": self.ref, "build_args": dict(self.build_args)}


@dataclass(frozen=True)
class ProcessorSpec:
    """A validated registry entry. ``source`` is the YAML file it came from."""

    ref: Ref
    description: str
    image: ImageSource
    command: tuple[str, ...] | None
    runtime: Runtime
    secrets: tuple[str, ...]
    inputs_schema: dict[str, Any]
    outputs: tuple[OutputDecl, ...]
    limits: OutputLimits
    modal_stub: str | None
    cost: dict[str, Any] | None
    stochastic: bool
    env: dict[str, str]
    source: Path
    worker: WorkerMode | None = None     # an execution strategy: not in execution_fields()

    @property
    def folder(self) -> Path:
        """The processor's folder: the Dockerfile's directory, else ``<yaml dir>/<name>``."""
        if self.image.dockerfile:
            return (self.source.parent / self.image.dockerfile).parent
        return self.source.parent / self.ref.name

    @property
    def dockerfile_path(self) -> Path | None:
        return None if self.image.dockerfile is None else self.source.parent / self.image.dockerfile

    def execution_fields(self) -> dict[str, Any]:
        """What of the spec can change a result or its admission; enters the memo key."""
        return {
            "ref": str(self.ref),
            "image": {"dockerfile": self.image.dockerfile, "ref": self.image.ref,
                      "build_args": dict(sorted(self.image.build_args.items()))},
            "command": None if self.command is None else list(self.command),
            "runtime": self.runtime.to_dict(),
            "secrets": sorted(self.secrets),
            "inputs": self.inputs_schema,
            "outputs": [o.to_dict() for o in self.outputs],
            "limits": self.limits.to_dict(),
            "cost": self.cost,
            "env": dict(sorted(self.env.items())),
            # How its results are judged (audits), so an execution recorded as deterministic can
            # never be audited as stochastic later; named only when true: other keys unchanged.
            **({"stochastic": True} if self.stochastic else {}),
        }

    def to_cache(self) -> dict[str, Any]:
        """A plain form of the validated spec (for the spec cache keyed by the file's hash)."""
        d = self.execution_fields()
        d.update(description=self.description, modal_stub=self.modal_stub, stochastic=self.stochastic,
                 worker=None if self.worker is None else self.worker.to_dict())
        return d

    @classmethod
    def from_cache(cls, d: dict[str, Any], source: Path) -> ProcessorSpec:
        img = d["image"]
        return cls(
            ref=Ref.parse(d["ref"]),
            description=d["description"],
            image=ImageSource(img["dockerfile"], img["ref"], dict(img["build_args"])),
            command=None if d["command"] is None else tuple(d["command"]),
            runtime=Runtime(**d["runtime"]),
            secrets=tuple(d["secrets"]),
            inputs_schema=d["inputs"],
            outputs=tuple(OutputDecl(**o) for o in d["outputs"]),
            limits=OutputLimits(**d["limits"]),
            modal_stub=d["modal_stub"],
            cost=d["cost"],
            stochastic=d["stochastic"],
            env=dict(d["env"]),
            source=source,
            worker=None if d.get("worker") is None else WorkerMode(**d["worker"]),
        )

    @classmethod
    def from_mapping(cls, raw: Any, source: Path) -> ProcessorSpec:
        """Validate parsed YAML; :class:`SpecError` names ``source`` and the field."""
        spec = _Parser(source).spec(raw)
        try:   # the checks above leave nothing without a canonical form; this proves it
            canonical_bytes(spec.to_cache())
        except (CanonicalizationError, UnicodeError) as exc:
            raise SpecError(f"{source}: the spec has no canonical JSON form: {exc}") from None
        return spec


class _Parser:
    def __init__(self, source: Path) -> None:
        self.source = source

    def fail(self, fld: str, msg: str) -> SpecError:
        return SpecError(f"{self.source}: field '{fld}': {msg}")

    def mapping(self, v: Any, fld: str) -> dict[str, Any]:
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise self.fail(fld, "must be a mapping")
        return v

    def string(self, v: Any, fld: str) -> str:
        if not isinstance(v, str) or not v:
            raise self.fail(fld, "must be a non-empty string")
        return v

    def number(self, v: Any, fld: str, *, integer: bool) -> float:
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if not ok or isinstance(v, bool) or not v > 0:     # `not v > 0`: NaN too
            raise self.fail(fld, f"must be a positive {'integer' if integer else 'number'}")
        self.bounded(v, fld)
        return float(v) if not integer else v

    def bounded(self, v: int | float, fld: str) -> None:
        """Refuse an integer beyond ±(2**53-1) or a float that is not finite."""
        if isinstance(v, int) and abs(v) > MAX_SAFE_INT:
            raise self.fail(fld, f"{int_text(v)} is too large: numbers in a spec are at most "
                                 f"{MAX_SAFE_INT} (2**53-1), the largest canonical JSON holds exactly")
        if isinstance(v, float) and not math.isfinite(v):
            raise self.fail(fld, f"must be a finite number, not {v}")

    def json_value(self, v: Any, fld: str) -> None:
        """Refuse anything without a canonical JSON form, naming the field where it is: a key
        that is not a string, a number out of range, a string with a lone surrogate, a value
        YAML gives as a date, bytes or a set."""
        stack = [(v, fld)]
        while stack:
            value, where = stack.pop()
            t = type(value)
            if t is str:
                if not value.isascii():
                    try:
                        value.encode("utf-8")
                    except UnicodeEncodeError:
                        raise self.fail(where, "holds a lone surrogate (an escape such as \\ud800), "
                                               "which no UTF-8 text can") from None
            elif value is None or t is bool:
                continue
            elif t is int or t is float:
                self.bounded(value, where)
            elif t is dict:     # pushed in reverse: the first problem in the file is reported
                for key, item in reversed(value.items()):
                    if type(key) is not str:
                        shown = int_text(key) if type(key) is int else repr(key)[:60]
                        raise self.fail(f"{where}.{shown}", f"the key {shown} must be a string (quote it)")
                    stack.append((item, f"{where}.{key}"))
                    stack.append((key, f"{where}.{key}"))
            elif t is list:
                stack.extend((value[i], f"{where}[{i}]") for i in range(len(value) - 1, -1, -1))
            else:
                kind = {"date": "a date", "datetime": "a date and time", "bytes": "binary data (!!binary)",
                        "set": "a set (!!set)", "tuple": "an ordered map (!!omap or !!pairs)"}.get(
                            t.__name__, f"a {t.__name__}")
                raise self.fail(where, f"{kind} is not a JSON value (write it as a string or number)")

    def strict(self, d: dict[str, Any], allowed: set[str], fld: str) -> None:
        extra = sorted(set(d) - allowed)
        if extra:
            where = f"{fld}.{extra[0]}" if fld else extra[0]
            raise self.fail(where, f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def spec(self, raw: Any) -> ProcessorSpec:
        d = self.mapping(raw, "<top>")
        self.strict(d, _TOP, "")
        for key, value in d.items():
            self.json_value(value, key)
        for req in ("ref", "image", "inputs", "outputs"):
            if req not in d:
                raise self.fail(req, "is required")
        try:
            ref = Ref.parse(self.string(d["ref"], "ref"))
        except SpecError:
            raise
        except Exception as exc:
            raise self.fail("ref", str(exc)) from exc
        description = d.get("description", "")
        if not isinstance(description, str):
            raise self.fail("description", "must be a string")
        secrets, env = self.secrets(d.get("secrets") or []), self.env(d.get("env") or {})
        for i, name in enumerate(secrets):
            if name in env:     # the host's value would replace the keyed one
                raise self.fail(f"secrets[{i}]", f"{name} is also set by the spec's env: a secret must not "
                                                 "override a value the memo key covers")
        return ProcessorSpec(
            ref=ref,
            description=description.strip(),
            image=self.image(d["image"]),
            command=self.command(d.get("command")),
            runtime=self.runtime(d.get("runtime") or {}),
            secrets=secrets,
            inputs_schema=self.schema(d["inputs"]),
            outputs=self.outputs(d["outputs"]),
            limits=self.limits(d.get("limits") or {}),
            modal_stub=self.modal(d.get("adapter") or {}),
            cost=self.cost(d.get("cost")),
            stochastic=self.flag(d.get("stochastic", False), "stochastic"),
            env=env,
            source=self.source,
            worker=self.worker(d.get("worker")),
        )

    def flag(self, v: Any, fld: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(fld, "must be true or false")
        return v

    def image(self, v: Any) -> ImageSource:
        d = self.mapping(v, "image")
        self.strict(d, {"dockerfile", "ref", "build_args"}, "image")
        if ("dockerfile" in d) == ("ref" in d):
            raise self.fail("image", "needs exactly one of 'dockerfile' or 'ref'")
        args = self.mapping(d.get("build_args") or {}, "image.build_args")
        build_args = {k: str(self.string(str(a), f"image.build_args.{k}")) for k, a in args.items()}
        if "ref" in d:
            ref = self.string(d["ref"], "image.ref")
            if not _PINNED.match(ref):
                raise self.fail("image.ref", "must be pinned by digest: name@sha256:<64 hex>")
            return ImageSource(ref=ref, build_args=build_args)
        path = self.string(d["dockerfile"], "image.dockerfile")
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise self.fail("image.dockerfile", "must be a relative path inside the registry")
        if not (self.source.parent / path).is_file():
            raise self.fail("image.dockerfile", f"no such file: {self.source.parent / path}")
        return ImageSource(dockerfile=path, build_args=build_args)

    def command(self, v: Any) -> tuple[str, ...] | None:
        if v is None:
            return None
        if isinstance(v, str):
            raise self.fail("command", "must be a list of strings (exec form), not a shell string")
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise self.fail("command", "must be a non-empty list of strings")
        for i, arg in enumerate(v):
            if "\0" in arg:
                raise self.fail(f"command[{i}]", "must not contain a NUL character (no process argument can)")
        return tuple(v)

    def runtime(self, v: Any) -> Runtime:
        d = self.mapping(v, "runtime")
        self.strict(d, {"cpu", "memory", "timeout", "gpu", "network", "pids", "tmpfs"}, "runtime")
        r = Runtime()
        timeout = int(self.number(d.get("timeout", r.timeout), "runtime.timeout", integer=True))
        if timeout > MAX_TIMEOUT_S:
            raise self.fail("runtime.timeout", f"must be at most {MAX_TIMEOUT_S} seconds (one week)")
        gpu = d.get("gpu")
        if gpu is not None and (not isinstance(gpu, (str, int)) or isinstance(gpu, bool)):
            raise self.fail("runtime.gpu", "must be a GPU type or count (e.g. 'A10G' or 1), or null")
        cpu = self.number(d.get("cpu", r.cpu), "runtime.cpu", integer=False)
        if cpu < MIN_CPU:
            raise self.fail("runtime.cpu", f"must be at least {MIN_CPU} (a container cannot be given less)")
        memory = int(self.number(d.get("memory", r.memory), "runtime.memory", integer=True))
        if memory < MIN_MEMORY_MIB:
            raise self.fail("runtime.memory", f"must be at least {MIN_MEMORY_MIB} MiB (a container cannot be "
                                              "given less)")
        return Runtime(
            cpu=cpu,
            memory=memory,
            timeout=timeout,
            gpu=None if gpu is None else str(gpu),
            network=self.flag(d.get("network", r.network), "runtime.network"),
            pids=int(self.number(d.get("pids", r.pids), "runtime.pids", integer=True)),
            tmpfs=int(self.number(d.get("tmpfs", r.tmpfs), "runtime.tmpfs", integer=True)),
        )

    def limits(self, v: Any) -> OutputLimits:
        d = self.mapping(v, "limits")
        self.strict(d, {"max_files", "max_bytes", "max_depth", "log_bytes"}, "limits")
        base = OutputLimits()
        values = {
            k: int(self.number(d.get(k, getattr(base, k)), f"limits.{k}", integer=True))
            for k in ("max_files", "max_bytes", "max_depth", "log_bytes")
        }
        low, high = LOG_BYTES_RANGE
        if not low <= values["log_bytes"] <= high:
            raise self.fail("limits.log_bytes", f"must be between {low} and {high} bytes (per log stream)")
        return OutputLimits(**values)

    def secrets(self, v: Any) -> tuple[str, ...]:
        if not isinstance(v, list):
            raise self.fail("secrets", "must be a list of environment variable names")
        for i, s in enumerate(v):
            if not isinstance(s, str) or not _SECRET.match(s):
                raise self.fail(f"secrets[{i}]", "must be an environment variable name like OPENAI_API_KEY")
            if _RESERVED.match(s):
                raise self.fail(f"secrets[{i}]", f"{s} is reserved: the contract's THEORYX_* variables and the "
                                                 "variables that steer the loader, the C library, the shell or "
                                                 "an interpreter (HOME, PATH, LD_*, PYTHON*, LC_*, TZ, ...) "
                                                 "cannot come from the host's "
                                                 "environment, which the memo key does not cover")
        return tuple(v)

    def schema(self, v: Any) -> dict[str, Any]:
        d = self.mapping(v, "inputs")
        import jsonschema  # only when a spec is parsed, never on a cache hit

        try:
            jsonschema.Draft202012Validator.check_schema(d)
        except jsonschema.SchemaError as exc:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
            raise self.fail(f"inputs{where}", f"not a valid JSON Schema: {exc.message}") from exc
        self.refs_resolve(d)
        return d

    def refs_resolve(self, schema: dict[str, Any]) -> None:
        """Every ``$ref`` of the inputs schema must point into the schema itself (``#/$defs/x``,
        or a subschema's ``$id``): nothing is fetched, so any other is refused here rather than
        failing every run when the inputs are validated."""
        from referencing import Registry
        from referencing.exceptions import Unresolvable
        from referencing.jsonschema import DRAFT202012

        root = Registry().with_resource("", DRAFT202012.create_resource(schema)).crawl().resolver()
        stack: list[tuple[Any, Any, str]] = [(schema, root, "inputs")]
        while stack:
            node, resolver, where = stack.pop()
            if isinstance(node, list):
                stack.extend((item, resolver, f"{where}[{i}]") for i, item in enumerate(node))
                continue
            if not isinstance(node, dict):
                continue
            if node is not schema and isinstance(node.get("$id"), str):
                resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolver.lookup(ref)
                except Unresolvable:
                    raise self.fail(f"{where}.$ref", f"{ref!r} points nowhere in the inputs schema (a $ref "
                                                     "must name a part of it, such as '#/$defs/name'; "
                                                     "nothing is fetched)") from None
            for key, value in node.items():
                if key not in ("const", "enum", "default", "examples"):    # values, not schemas
                    stack.append((value, resolver, f"{where}.{key}"))

    def outputs(self, v: Any) -> tuple[OutputDecl, ...]:
        if not isinstance(v, list):
            raise self.fail("outputs", "must be a list of {path, mime}")
        out: list[OutputDecl] = []
        for i, item in enumerate(v):
            d = self.mapping(item, f"outputs[{i}]")
            self.strict(d, {"path", "mime", "optional"}, f"outputs[{i}]")
            path = self.string(d.get("path"), f"outputs[{i}].path")
            path = path.removeprefix("/artifacts/outputs/")
            parts = path.split("/")
            if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise self.fail(f"outputs[{i}].path", "must be a relative path below the write prefix")
            if UNCLEAN_NAME.search(path):   # ingest refuses such a name: no run could produce it
                raise self.fail(f"outputs[{i}].path", "holds a control character, a line separator or a "
                                                      "backslash, which no output's name may hold")
            for j, other in enumerate(out):
                if other.path == path:
                    raise self.fail(f"outputs[{i}].path", f"{path} is already declared by outputs[{j}]")
                if path.startswith(other.path + "/") or other.path.startswith(path + "/"):
                    raise self.fail(f"outputs[{i}].path", f"{path} and outputs[{j}] ({other.path}) cannot both "
                                                          "be files: one would be a directory of the other")
            out.append(OutputDecl(path, self.string(d.get("mime"), f"outputs[{i}].mime"),
                                  self.flag(d.get("optional", False), f"outputs[{i}].optional")))
        return tuple(out)

    def modal(self, v: Any) -> str | None:
        d = self.mapping(v, "adapter")
        self.strict(d, {"modal", "local"}, "adapter")
        if "modal" not in d:
            return None
        m = self.mapping(d["modal"], "adapter.modal")
        self.strict(m, {"stub_name"}, "adapter.modal")
        return self.string(m.get("stub_name"), "adapter.modal.stub_name")

    def cost(self, v: Any) -> dict[str, Any] | None:
        if v is None:
            return None
        d = self.mapping(v, "cost")
        self.strict(d, {"usd", "per_second_usd", "llm"}, "cost")
        for k in ("usd", "per_second_usd"):
            if k in d and (not isinstance(d[k], (int, float)) or isinstance(d[k], bool) or not d[k] >= 0):
                raise self.fail(f"cost.{k}", "must be a non-negative number of dollars")
            if k in d:
                self.bounded(d[k], f"cost.{k}")
        if "llm" in d:
            self.flag(d["llm"], "cost.llm")
        return d

    def worker(self, v: Any) -> WorkerMode | None:
        if v is None:
            return None
        d = self.mapping(v, "worker")
        self.strict(d, {"protocol", "max_requests"}, "worker")
        if "protocol" not in d:
            raise self.fail("worker.protocol", f"is required (one of: {', '.join(WORKER_PROTOCOLS)})")
        if d["protocol"] not in WORKER_PROTOCOLS:
            raise self.fail("worker.protocol", f"must be one of: {', '.join(WORKER_PROTOCOLS)}")
        limit = int(self.number(d.get("max_requests", WorkerMode.max_requests), "worker.max_requests",
                                integer=True))
        if limit > MAX_WORKER_REQUESTS:
            raise self.fail("worker.max_requests", f"must be at most {MAX_WORKER_REQUESTS}")
        return WorkerMode(str(d["protocol"]), limit)

    def env(self, v: Any) -> dict[str, str]:
        d = self.mapping(v, "env")
        for k, val in d.items():
            if not _SECRET.match(k) or not isinstance(val, (str, int, float)) or isinstance(val, bool):
                raise self.fail(f"env.{k}", "must map a variable NAME to a string")
            if "\0" in str(val):
                raise self.fail(f"env.{k}", "must not contain a NUL character (no environment variable can)")
        return {k: str(val) for k, val in d.items()}
