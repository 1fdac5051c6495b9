"""The build's one look inside the project: import check and JSON Schemas of typed functions.

The build never imports user code itself: one child interpreter (this one's executable,
which has pydantic) imports each generated handler of the materialised build as a worker
would, then unwraps each ``@remote`` function and asks pydantic's ``TypeAdapter`` for the
schema of its parameters and of its return value. A function whose types have no JSON form
stays pickle-only, with the reason recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flash.build import import_trace
from flash.build.errors import BuildError
from flash.runtime.errors import masks_for
from flash.sdk import json_rule
from flash.sdk.resources import MASKED_MIN_LENGTH, FilledEnv, fill_secret_references

__all__ = [
    "SchemaResult",
    "check_handlers_and_derive_schemas",
    "derive_schemas",
    "interrupt_import_checks",
    "schema_sha256",
]


@dataclass(frozen=True)
class SchemaResult:
    """The schemas of one function, or why it has none (``reason``: it is pickle-only)."""

    input: dict[str, Any] | None
    output: dict[str, Any] | None
    sha256: str | None
    reason: str | None
    stream: bool = False  # a generator: ``output`` is the schema of each item
    # A class: {"init": schema, "methods": {name: {input, output, stream}},
    # "pickle_only_methods": {name: reason}}; ``input``/``output`` are then None.
    class_schema: dict[str, Any] | None = None

    @property
    def json_callable(self) -> bool:
        return self.reason is None and (self.class_schema is not None or self.input is not None)


def schema_sha256(input_schema: dict[str, Any], output_schema: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, compact, ASCII) of {input, output}."""
    canonical = json.dumps(
        {"input": input_schema, "output": output_schema},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def derive_schemas(
    build_dir: Path,
    site_dir: Path | None,
    functions: Sequence[tuple[str, str, str]],
    *,
    timeout: float = 300.0,
) -> dict[str, SchemaResult]:
    """Schemas for ``functions`` as ``(qualified_name, module, attribute)``, by qualified name.

    The schema half of :func:`check_handlers_and_derive_schemas`, with no handler to check.
    """
    return check_handlers_and_derive_schemas(
        build_dir, site_dir, (), functions, self_contained=False, timeout=timeout
    )


def check_handlers_and_derive_schemas(
    build_dir: Path,
    site_dir: Path | None,
    handlers: Sequence[str],
    functions: Sequence[tuple[str, str, str]],
    *,
    self_contained: bool,
    project_files: Sequence[str] = (),
    handler_env: Mapping[str, Mapping[str, str]] | None = None,
    timeout: float = 300.0,
) -> dict[str, SchemaResult]:
    """Import each module of ``handlers``, then derive the schemas of ``functions``.

    One child interpreter does both, so the project is imported once per build.
    ``functions`` are ``(qualified_name, module, attribute)``; the answer is by qualified
    name. ``build_dir`` is the materialised archive tree and ``site_dir`` the vendored
    packages; both go before this interpreter's own site-packages. ``self_contained``
    imports the handlers without that site-packages (-S), as a worker on a bare image would;
    it is added afterwards, for pydantic. The vendored packages must load on this machine
    (skip this stage for cross-target builds). Raises BuildError when a module fails to
    import, the imports take over ``timeout`` seconds, or the child interpreter dies;
    KeyboardInterrupt when SIGINT ended the child or a stopping signal interrupted the wait
    (``interrupt_import_checks``). ``project_files`` (paths in ``build_dir``) are the
    project's modules: one binding an ``@remote`` object that is none of ``functions`` (the
    scanner could not see how ``@remote`` was applied) is a BuildError too.
    ``handler_env`` is the endpoint's ``env`` (as in its config) by handler module: set while
    that handler is imported, as its workers have it (secret references filled in from this
    process's environment); the secrets are masked in every error.
    """
    if not handlers and not functions:
        return {}
    envs = {name: fill_secret_references(env) for name, env in (handler_env or {}).items()}
    masks = _masks(envs)
    masked = _masker(masks)
    paths = [str(build_dir)] + ([str(site_dir)] if site_dir is not None else [])
    flags = ["-I", "-B", "-S"] if self_contained else ["-I", "-B"]
    with tempfile.TemporaryDirectory(prefix="flash-imports-") as tmp:
        output = Path(tmp) / "answer.json"
        request = {
            "paths": paths,
            "handlers": list(handlers),
            "functions": [list(f) for f in functions],
            "project_files": list(project_files),
            "handler_env": {
                name: {"set": filled.env, "unset": sorted(filled.unfilled)}
                for name, filled in envs.items()
            },
            # The child masks the texts it cuts before cutting them: a cut can split a secret.
            "masks": masks,
            "masked_min_length": MASKED_MIN_LENGTH,
            "add_site_packages": self_contained,
            "rule_file": json_rule.__file__,
            "trace_file": import_trace.__file__,
            "output": str(output),
        }
        # A worker sets neither PYTHON* nor FLASH_* variables when it imports the handler.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FLASH_"))}
        command = [sys.executable, *flags, "-c", _CHILD, *paths]  # paths: see _CHILD
        ended = _run_child(command, json.dumps(request), build_dir, env, timeout)
        if ended is None:
            raise BuildError(
                f"importing the project's modules took over {timeout:g} s: it does not "
                "finish (work at import time?)"
            )
        returncode, stderr = ended
        if returncode == -signal.SIGINT:
            raise KeyboardInterrupt  # SIGINT reached the child: the build is interrupted
        try:
            data = json.loads(output.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # Masked whole, then cut: a cut first could split a secret, which then shows.
            said = masked(stderr).strip()[-2000:].strip() or (
                "no output: does a module end the process when imported (os._exit)?"
            )
            raise BuildError(
                f"importing the project's modules crashed (exit {returncode}): {masked(said)}"
            ) from None
    handler_failures = data.get("handler_errors") or {}
    if handler_failures:
        name, trace = sorted(handler_failures.items())[0]
        # The note before the report, which ends in the error: what the hints read there.
        unset = _unset_note(envs[name].unfilled) if name in envs else ""
        raise BuildError(f"{name}.py failed to import:\n{unset}{masked(trace.rstrip())}")
    unseen = data.get("unseen_remotes") or []
    if unseen:
        raise _unseen_error(unseen)
    failures = data.get("import_errors") or {}
    if failures:
        module, trace = sorted(failures.items())[0]
        raise BuildError(
            f"module {module!r} failed to import while deriving JSON schemas:\n"
            + masked(trace.rstrip())
        )
    derived = data.get("functions") or {}
    results: dict[str, SchemaResult] = {}
    for qualified_name in sorted({f[0] for f in functions}):
        results[qualified_name] = _result(derived.get(qualified_name), masked)
    return results


def _masks(envs: Mapping[str, FilledEnv]) -> list[tuple[str, str]]:
    """Each secret filled into an endpoint's env and what stands for it in a text from the
    import check (the name of the variable holding it), longest first: a secret inside
    another is replaced after it. The values written in a config are in the manifest
    already; a secret is never shown."""
    names: dict[str, str] = {}
    for filled in envs.values():
        for secret, name in filled.secrets.items():
            names.setdefault(secret, name)
    return masks_for(names)


def _masker(masks: Sequence[tuple[str, str]]) -> Callable[[str], str]:
    """A function that replaces each secret of ``masks`` in a text (as the child's
    ``masked``)."""

    def masked(text: str) -> str:
        for secret, shown in masks:
            text = text.replace(secret, shown)
        return text

    return masked


def _unset_note(unfilled: Mapping[str, str]) -> str:
    if not unfilled:
        return ""
    said = ", ".join(f"{name} (names {secret})" for name, secret in sorted(unfilled.items()))
    return (
        f"left unset for this import, as for this endpoint's workers on this machine: {said}, "
        "a secret not set where the build runs\n"
    )


def _unseen_error(unseen: list[dict[str, Any]]) -> BuildError:
    first = unseen[0]
    others = ", ".join(f"{e['module']}.{e['attr']}" for e in unseen[1:])
    also = f" (so are: {others})" if others else ""
    return BuildError(
        f"{first['module']}.{first['attr']} is marked by @remote, but the build could not "
        "see how @remote was applied to it (through a helper function, functools.partial, "
        "getattr, ...), so no endpoint would serve it and every call would fail"
        f"{also}; write @remote(config) directly on its def or class (remote imported from "
        "flash, under any name), or a module-level alias the build reads: "
        "on_cpu = remote(cpu), then @on_cpu",
        path=first.get("path") or None,
        line=first.get("line") or None,
    )


class _MainThreadChecks:
    """The import check the main thread runs, for a stopping signal's handler (which runs
    in the main thread): the wait for it is the one place a build waits on the project's
    own code, which may never end (work at import time)."""

    def __init__(self) -> None:
        self.running: subprocess.Popen[str] | None = None
        self.starting = False  # between Popen and ``running``: not to be interrupted there
        self.pending = False  # a stop came while starting: honoured once it runs


_checks = _MainThreadChecks()

# How long an interrupted check has to end on the SIGINT passed on (a Ctrl-C to the project's
# code, as when run in a terminal) before its process group is killed.
_INTERRUPT_GRACE_S = 1.0


def interrupt_import_checks() -> None:
    """For a stopping signal's handler: if the main thread waits for an import check, raise
    KeyboardInterrupt there, which ends the check and interrupts the build (as a Ctrl-C
    would); one starting is ended as soon as it has started."""
    if _checks.running is not None:
        raise KeyboardInterrupt
    if _checks.starting:
        # Not raised inside Popen: the child would be left running, unknown to anyone.
        _checks.pending = True


def _run_child(
    command: list[str], request: str, cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int, str] | None:
    """Run the import check: (exit code, stderr), or None if it took over ``timeout``. It
    runs in a session of its own, so that it and whatever the project's code starts at import
    can be ended together, and a Ctrl-C to the terminal reaches it only through this process
    (the KeyboardInterrupt it raises here)."""
    # Only a check in the main thread, where signal handlers run, is theirs to interrupt.
    in_main_thread = threading.current_thread() is threading.main_thread()
    _checks.starting, _checks.pending = in_main_thread, False
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            text=True,
            start_new_session=True,
        )
        try:
            if in_main_thread:
                _checks.running = proc  # first: a signal from here on raises in this try
                _checks.starting = False
                if _checks.pending:
                    raise KeyboardInterrupt
            try:
                _, stderr = proc.communicate(request, timeout=timeout)
            finally:
                if in_main_thread:
                    _checks.running = None  # a second signal must not cut _end short
        except subprocess.TimeoutExpired:
            _end(proc, interrupted=False)
            return None
        except BaseException:
            _end(proc, interrupted=True)
            raise
    finally:
        if in_main_thread:
            _checks.starting = _checks.pending = False
    return proc.returncode, stderr


def _end(proc: subprocess.Popen[str], *, interrupted: bool) -> None:
    """End the check's process group: first with SIGINT if the build was interrupted (the
    project's code sees a Ctrl-C), then with SIGKILL; reaped."""
    if interrupted:
        _signal_group(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(_INTERRUPT_GRACE_S)
    _signal_group(proc.pid, signal.SIGKILL)  # what it started too, even once it has exited
    proc.communicate()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group has ended
        os.killpg(pgid, signum)


def _result(entry: Any, masked: Callable[[str], str]) -> SchemaResult:
    if not isinstance(entry, dict):
        return SchemaResult(None, None, None, "no schema was derived")
    reason = entry.get("reason")
    if reason is not None:
        return SchemaResult(None, None, None, masked(str(reason)))
    if "methods" in entry:
        canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
        return SchemaResult(None, None, digest, None, class_schema=entry)
    input_schema, output_schema = entry["input"], entry["output"]
    return SchemaResult(
        input=input_schema,
        output=output_schema,
        sha256=schema_sha256(input_schema, output_schema),
        reason=None,
        stream=bool(entry.get("stream")),
    )


# Runs in the child interpreter: reads the request on stdin, writes the answer to a file
# (user modules may print on import, so stdout is theirs).
_CHILD = r"""
import sys

# The build's paths (argv) first, before the child's own imports, as on the worker, whose
# sys.path starts with the archive's root: a vendored module that hides one of the standard
# library's (enum, re) breaks the import here too, not only on the worker.
sys.path[:0] = sys.argv[1:]

import importlib
import importlib.util
import inspect
import json
import os
import signal
import warnings

# Whether SIGINT came: only then is a KeyboardInterrupt a Ctrl-C; project code raising one
# on import is a failure of that import.
SIGINT_RECEIVED = []


def on_sigint(signum, frame):
    SIGINT_RECEIVED.append(signum)
    raise KeyboardInterrupt


# A SIGINT ignored when the build started (`flash run &` in a script) stays ignored.
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, on_sigint)
request = json.loads(sys.stdin.read())
# The build's files, then the vendored packages: frames are named relative to these.
ROOTS = [os.path.join(path, "") for path in request["paths"]]
BUILD = ROOTS[0]


def masked(text):
    # The secrets of the endpoints' env masked (as the parent's _masker), before any cut.
    for secret, stand_in in request["masks"]:
        text = text.replace(secret, stand_in)
    return text


def masking_summary(summary):
    # The rule's summary cuts an exception's text: it gets the text with the secrets masked,
    # under the exception's type name, since a cut could split a secret the parent then
    # cannot find.
    def masked_summary(exc):
        return summary(type(type(exc).__name__, (Exception,), {})(masked(str(exc))))

    return masked_summary


def shown(filename):
    return TRACE.shown(filename, ROOTS)


def user_trace():
    # The frames in the project's files, named as in the project (the build is a copy that
    # is gone by the time anyone reads this), the frame that raised it if elsewhere (a
    # vendored package), the error, and what caused it; not importlib's frames.
    return TRACE.describe(sys.exc_info()[1], ROOTS)


def load_by_path(name, path):
    # By path: here ``flash`` is the archive's stand-in, which has neither
    # flash.sdk.json_rule nor flash.build.import_trace.
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass looks itself up by module name
    spec.loader.exec_module(module)
    return module


TRACE = load_by_path("flash_import_trace", request["trace_file"])


def inline_top_ref(schema):
    # A recursive type can make pydantic answer {"$ref": ..., "$defs": ...} at the top.
    ref = schema.get("$ref")
    defs = schema.get("$defs", {})
    if isinstance(ref, str) and ref.startswith("#/$defs/") and len(schema) <= 2:
        top = dict(defs.get(ref[len("#/$defs/"):], {}))
        top["$defs"] = defs
        return top
    return schema


def derive_class(cls, rule, TypedDict, NotRequired):
    # The constructor's schema and each public method's; methods without one stay pickle-only.
    init = cls.__init__
    if not rule.has_own_constructor(cls):
        init_schema = {"type": "object", "properties": {}, "additionalProperties": False}
    else:
        try:
            init_schema = derive(init, rule, TypedDict, NotRequired, method=True)["input"]
        except rule.NotJsonCallable as skip:
            raise rule.NotJsonCallable(f"its constructor: {skip}")
        init_schema["title"] = f"{cls.__name__} constructor arguments"
    methods, pickle_only = {}, {}
    for name, value in inspect.getmembers(cls):
        if not rule.is_json_method(cls, name):
            continue
        try:
            method = rule.takes_self(cls, name)
            methods[name] = derive(value, rule, TypedDict, NotRequired, method=method)
        except rule.NotJsonCallable as skip:
            pickle_only[name] = str(skip)
    if not methods:
        raise rule.NotJsonCallable("no public method has JSON-able type hints")
    return {"init": init_schema, "methods": methods, "pickle_only_methods": pickle_only}


def derive(obj, rule, TypedDict, NotRequired, method=False):
    if getattr(obj, "__flash_remote__", False):
        obj = obj.__wrapped__
    if inspect.isclass(obj):
        return derive_class(obj, rule, TypedDict, NotRequired)
    if not callable(obj):
        raise rule.NotJsonCallable(f"not a function (a {type(obj).__name__})")
    types = rule.json_call_types(obj, method=method)
    params = list(types.signature.parameters.values())
    # One object of all the arguments; those with a default may be left out.
    fields = {
        p.name: types.hints[p.name] if p.default is p.empty else NotRequired[types.hints[p.name]]
        for p in params
    }
    try:
        arguments = TypedDict(f"{obj.__name__}_arguments", fields)
        input_schema = rule.json_schema(rule.TypeAdapter(arguments), "validation")
    except Exception as exc:
        raise rule.NotJsonCallable(f"its parameters have no JSON Schema ({rule.summary(exc)})")

    input_schema = inline_top_ref(input_schema)
    input_schema["title"] = f"{obj.__name__} arguments"
    input_schema["additionalProperties"] = False
    properties = input_schema.setdefault("properties", {})
    for p in params:
        if p.default is p.empty or p.name not in properties:
            continue
        try:  # the default in its JSON form, for the docs; skipped when it has none
            default = types.params[p.name].dump_python(p.default, mode="json")
            json.dumps(default, allow_nan=False)
        except Exception:
            continue
        properties[p.name]["default"] = default
    output_schema = inline_top_ref(types.result_schema)
    # Only defaults and examples the code shows, anywhere in them (a parameter's, a model's
    # field in $defs): see written_in_code.
    drop_unwritten_values(input_schema)
    drop_unwritten_values(output_schema)
    try:
        json.dumps([input_schema, output_schema], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise rule.NotJsonCallable(f"its schema is not plain JSON ({rule.summary(exc)})")
    return {"input": input_schema, "output": output_schema, "stream": types.stream}


# The text of each of the project's modules read so far, by path (see written_in_code).
SOURCES = {}


def written_in_code(value):
    # Whether each long text or number in a default's JSON form is written in the project's
    # modules that are imported (the build's, when the project's are not named). A default
    # computed at import time (read from the environment, a file) may be a secret: the
    # manifest, the archive and the docs get only what the code shows anyway.
    leaves = []
    json_leaves(value, leaves)
    long_ones = [leaf for leaf in leaves if len(leaf[0]) >= request["masked_min_length"]]
    if not long_ones:
        return True
    project = set(request["project_files"])
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if not (path.startswith(BUILD) and path.endswith(".py")) or path in SOURCES:
            continue
        if project and shown(path).replace(os.sep, "/") not in project:
            continue  # a vendored package, the runtime, a handler: not the project's code
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                SOURCES[path] = f.read()
        except OSError:
            SOURCES[path] = ""
    return all(
        any(form in text for form in forms for text in SOURCES.values()) for forms in long_ones
    )


# Where a JSON Schema holds schemas: by name (a map of them), one, or a list of them.
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SCHEMA_ONE = (
    "items", "additionalProperties", "propertyNames", "contains", "not", "if", "then", "else"
)
SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


def drop_unwritten_values(schema):
    # Each "default" and "examples" in ``schema`` and the schemas in it that written_in_code
    # refuses is left out (a map of schemas is no schema: a property named "default" stays).
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        for key in ("default", "examples"):
            if key in node and not written_in_code(node[key]):
                del node[key]
        for key in SCHEMA_MAPS:
            if isinstance(node.get(key), dict):
                stack.extend(node[key].values())
        stack.extend(node[key] for key in SCHEMA_ONE if key in node)
        for key in SCHEMA_LISTS:
            if isinstance(node.get(key), list):
                stack.extend(node[key])


def json_leaves(value, leaves):
    # The ways each text or number in ``value`` (JSON data) may be written in Python code.
    if isinstance(value, dict):
        for key, item in value.items():
            json_leaves(key, leaves)
            json_leaves(item, leaves)
    elif isinstance(value, list):
        for item in value:
            json_leaves(item, leaves)
    elif isinstance(value, str):
        leaves.append((value, json.dumps(value)[1:-1], repr(value)[1:-1]))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        leaves.append((repr(value),))


def interrupted(exc):
    # Ctrl-C reached this child too: the build is interrupted, not broken. A project's own
    # KeyboardInterrupt (no SIGINT came) is a failed import like any other.
    if SIGINT_RECEIVED and isinstance(exc, KeyboardInterrupt):
        raise exc


def import_handlers(names, envs):
    # Each generated handler, imported as a worker would, with its endpoint's env and
    # command line: the traceback of each failure. The env is set around that import only;
    # a module that two endpoints' handlers import is imported once, under the first one's.
    failures = {}
    for name in names:
        # A worker runs `python handler_<name>.py` in the archive's root: code parsing its
        # command line at import (argparse, absl) sees what it sees there, not this -c's.
        sys.argv = [name + ".py"]
        saved = {}
        streams = sys.stdout, sys.stderr
        printed = Printed()
        sys.stdout, sys.stderr = printed.tee(sys.stdout), printed.tee(sys.stderr)
        try:
            set_env(envs.get(name) or {"set": {}, "unset": []}, saved)
            importlib.import_module(name)
        except BaseException as exc:
            interrupted(exc)
            # A module that exits (argparse, sys.exit(2)) said why in what it printed.
            said = printed.tail() if isinstance(exc, SystemExit) else ""
            failures[name] = (f"it printed:\n{said}\n" if said else "") + user_trace()
        finally:
            sys.stdout, sys.stderr = streams
            restore_env(saved)
    return failures


class Printed:
    # What code writes to sys.stdout and sys.stderr, passed on as written; the last
    # PRINTED_KEPT characters of it are kept, and as many more as the longest secret.
    def __init__(self):
        self.text = ""
        self.cut = False
        self.longest = max((len(secret) for secret, _ in request["masks"]), default=0)

    def tee(self, stream):
        return Tee(stream, self)

    def keep(self, text):
        kept = PRINTED_KEPT + 2 * self.longest
        whole = self.text + (text if isinstance(text, str) else repr(text))
        self.cut = self.cut or len(whole) > kept
        self.text = whole[-kept:]

    def tail(self):
        # Masked whole, then cut: a cut first could split a secret, which then shows. The
        # front of a text cut in keep may be the end of a secret, which no mask matches:
        # shorter than the longest, it goes with the front.
        text = masked(self.text)
        return (text[self.longest :] if self.cut else text).strip()[-PRINTED_KEPT:].strip()


class Tee:
    # A stream that writes to ``stream`` and keeps what it writes in ``printed``.
    def __init__(self, stream, printed):
        self.stream, self.printed = stream, printed

    def write(self, text):
        self.printed.keep(text)
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


PRINTED_KEPT = 2000


def set_env(env, saved):
    # ``saved``: each variable's value before (None: unset), for restore_env.
    for name in [*env["set"], *env["unset"]]:
        saved.setdefault(name, os.environ.get(name))
    for name in env["unset"]:
        os.environ.pop(name, None)
    os.environ.update(env["set"])


def restore_env(saved):
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def unseen_remotes(handled):
    # The @remote objects bound at module level in the project's modules that no handler
    # serves: applied in a way the scanner cannot read (a helper, functools.partial,
    # getattr), so no endpoint has them. Each is reported once, in the module defining it.
    from flash.runtime.generic_handler import find_remote  # the handlers' own lookup

    project = set(request["project_files"])
    served = set()
    for _, module_name, attr in handled:
        module = sys.modules.get(module_name)
        found = find_remote(getattr(module, attr, None)) if module is not None else None
        if found is not None:
            served.add(id(found.__wrapped__))
    seen = {}
    for module_name, module in sorted(sys.modules.items()):
        path = shown(getattr(module, "__file__", None) or "").replace(os.sep, "/")
        if path not in project:
            continue  # the runtime's own modules, vendored packages, the handlers
        try:
            names = sorted(vars(module).items())
        except TypeError:
            continue
        for attr, value in names:
            found = find_remote(value)
            if found is None or id(found.__wrapped__) in served:
                continue
            target = found.__wrapped__
            here = getattr(target, "__module__", None) == module_name
            key = id(target)
            if key in seen and not here:
                continue  # imported from the module defining it, reported there
            line = None
            code = getattr(target, "__code__", None)
            if code is not None:
                line = code.co_firstlineno
            else:
                try:
                    line = inspect.getsourcelines(target)[1]
                except Exception:
                    pass
            # Where it is defined, under its own name rather than an alias of it.
            own = here and attr == getattr(target, "__name__", None)
            if key not in seen or (here and not seen[key]["here"]) or own:
                seen[key] = {
                    "module": module_name, "attr": attr, "path": path, "line": line,
                    "here": here,
                }
    return sorted(seen.values(), key=lambda e: (e["path"], e["line"] or 0, e["attr"]))


def main():
    answer = {"functions": {}, "import_errors": {}}
    answer["handler_errors"] = import_handlers(request["handlers"], request["handler_env"])
    if answer["handler_errors"]:
        return answer
    answer["unseen_remotes"] = unseen_remotes(request["functions"])
    if answer["unseen_remotes"] or not request["functions"]:
        return answer
    if request["add_site_packages"]:
        # The handlers imported without this interpreter's site-packages (-S); pydantic
        # lives there. Added now, it goes after the build's own paths.
        import site

        site.main()
    warnings.simplefilter("ignore")  # pydantic's notes on defaults and titles are not errors
    try:
        rule = load_by_path("flash_json_rule", request["rule_file"])
        rule.summary = masking_summary(rule.summary)  # its own functions use it too
        try:
            from typing_extensions import NotRequired, TypedDict
        except ImportError:
            from typing import NotRequired, TypedDict
    except Exception as exc:
        said = masked(str(exc))  # before the cut
        problem = f"{type(exc).__name__}: " + (said.strip().splitlines() or [""])[0][:200]
        reason = f"pydantic 2 cannot be imported to derive its schema ({problem})"
        for qualified_name, _, _ in request["functions"]:
            answer["functions"][qualified_name] = {"reason": reason}
        return answer
    modules = {}
    for qualified_name, module_name, attr in request["functions"]:
        if module_name not in modules:
            try:
                modules[module_name] = importlib.import_module(module_name)
            except BaseException as exc:
                interrupted(exc)
                modules[module_name] = None
                answer["import_errors"][module_name] = user_trace()
        module = modules[module_name]
        if module is None:
            continue
        if not hasattr(module, attr):
            entry = {"reason": f"module {module_name!r} has no attribute {attr!r}"}
        else:
            try:
                entry = derive(getattr(module, attr), rule, TypedDict, NotRequired)
            except rule.NotJsonCallable as skip:
                entry = {"reason": str(skip)}
            except Exception as exc:
                entry = {"reason": f"deriving its schema failed ({rule.summary(exc)})"}
        answer["functions"][qualified_name] = entry
    return answer


answer = main()
with open(request["output"], "w", encoding="utf-8") as f:
    json.dump(answer, f, sort_keys=True)
"""
