"""Build stage 2: find every ``@remote`` function and class and its resource config.

The project is read, never imported: configs and options come from literal values in the
source, following module-level names and imports across the project's own modules.
"""

from __future__ import annotations

import ast
import bisect
import hashlib
import io
import re
import sys
import tokenize
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from flash.build.collect import ignored_by
from flash.build.dependencies import requirement_problem
from flash.build.errors import BuildError, BuildWarning
from flash.build.secrets import secret_env_entries
from flash.runtime.remote import REMOTE_KEYWORDS, unknown_keyword_problem
from flash.runtime.resources import CpuInstanceType, GpuGroup, ScalerType
from flash.sdk.resources import CONFIG_TYPES, check_name, validate_config

__all__ = [
    "SRC_ROOT",
    "RemoteSpec",
    "ResourceSpec",
    "ScanResult",
    "has_src_layout",
    "import_path",
    "sanitize_resource_name",
    "scan_project",
]

# A top-level folder of this name without an __init__.py is an import root, as the project
# root is (the "src layout"): src/mypkg/gpu.py is the module mypkg.gpu, not src.mypkg.gpu.
SRC_ROOT = "src"
_SRC_PREFIX = SRC_ROOT + "/"


@dataclass(frozen=True)
class ResourceSpec:
    """One endpoint's resource config, as read from the source."""

    name: str
    type: str
    config: dict[str, Any]
    path: str
    line: int
    col: int


@dataclass(frozen=True)
class RemoteSpec:
    """One ``@remote`` function or class."""

    name: str
    module: str
    qualified_name: str
    resource: str
    is_async: bool
    is_class: bool
    is_generator: bool
    methods: tuple[str, ...]
    async_methods: tuple[str, ...]
    dependencies: tuple[str, ...]
    system_dependencies: tuple[str, ...]
    path: str
    line: int
    col: int
    # Whether its source has type hints (a class: on a public method), and which public
    # methods of a class have some: the build warns when these get no JSON Schema.
    typed: bool = False
    typed_methods: tuple[str, ...] = ()
    # The line of its @remote decorator (``line`` is the def's), where its options are asked
    # for: what errors about its dependencies name. 0 when not known.
    decorator_line: int = 0


@dataclass(frozen=True)
class ScanResult:
    resources: dict[str, ResourceSpec]
    functions: tuple[RemoteSpec, ...]
    src_layout: bool = False  # modules under src/ are named without "src." (see SRC_ROOT)
    warnings: tuple[BuildWarning, ...] = ()


def has_src_layout(files: Sequence[str]) -> bool:
    """Whether the project's ``src/`` folder is an import root: it holds Python files and is
    not itself a package (no ``src/__init__.py``)."""
    return f"{_SRC_PREFIX}__init__.py" not in files and any(
        f.startswith(_SRC_PREFIX) and f.endswith(".py") for f in files
    )


def import_path(rel: str, src_layout: bool) -> str:
    """``rel`` (a posix path in the project) relative to its import root: ``src/`` in a src
    layout, else the project root."""
    return rel.removeprefix(_SRC_PREFIX) if src_layout else rel


def sanitize_resource_name(name: str) -> str:
    """The file-name-safe form of a resource name (``handler_<this>.py``)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    if cleaned:
        return cleaned
    return "resource_" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def scan_project(root: Path, files: Sequence[str], python_version: str | None = None) -> ScanResult:
    """Find the ``@remote`` functions and classes of the project at ``root``.

    ``files`` are the project's files as posix paths relative to ``root``; only ``.py`` files
    are read, with the grammar of ``python_version`` (the workers' Python, "3.10"; this
    interpreter's when None): syntax the target cannot run is an error. Raises BuildError for
    anything that cannot be known without running the code.
    """
    src_layout = has_src_layout(files)
    modules = [
        _load_module(root, rel, src_layout, python_version)
        for rel in sorted(f for f in files if f.endswith(".py"))
    ]
    if src_layout:
        _check_import_roots(modules)
    project = _Project(modules, root, files, src_layout)
    functions: list[RemoteSpec] = []
    for module in modules:
        # Cheap filter: a module without "@" has no decorators. (Not "remote": the decorator
        # may be imported under another name, e.g. `from common import endpoint`.)
        if _may_decorate(module.source):
            functions.extend(project.remote_specs(module))
    _check_remote_not_applied(project, modules)
    if not functions:
        raise BuildError(f"no @remote functions found in {root}; {_REMOTE_EXAMPLE}")
    _check_unique_functions(functions)
    resources = project.used_resources(functions)
    return ScanResult(
        resources=dict(sorted(resources.items())),
        functions=tuple(sorted(functions, key=lambda f: (f.resource, f.qualified_name))),
        src_layout=src_layout,
        warnings=(
            *_secret_env_warnings(resources.values()),
            *_no_worker_warnings(resources.values()),
        ),
    )


def _check_remote_not_applied(project: _Project, modules: list[_Module]) -> None:
    """Refuse remote(...) applied by a call anywhere. Only a module that names remote, or a
    name bound to it or to a remote(...) call elsewhere (``on_cpu = remote(cfg)``), can
    apply it, and every import or assignment names what it binds: so each round reads the
    modules naming what the last round's modules bound (``from common import on_cpu as
    gpu``, then ``from other import gpu``), and most modules are never parsed twice."""
    unread = modules
    names = {"remote"}
    seen: set[str] = set()
    while names and unread:
        found: list[_Module] = []
        rest: list[_Module] = []
        for module in unread:
            (found if not names.isdisjoint(module.words) else rest).append(module)
        unread, seen = rest, seen | names
        names = set()
        for module in found:
            project.check_remote_not_applied(module)
            names |= project.remote_names(module) - seen


def _secret_env_warnings(resources: Iterable[ResourceSpec]) -> Iterator[BuildWarning]:
    """A warning for each env entry of ``resources`` whose value is written out and looks
    like a secret (see flash.build.secrets): it goes into the manifest and the archive as it
    is. The warning names the variable and why it was taken for a secret, never its value."""
    for spec in sorted(resources, key=lambda r: (r.path, r.line, r.col)):
        for key, why in secret_env_entries(spec.config.get("env") or {}):
            yield BuildWarning(
                f"{spec.type} {spec.name!r}: env {key!r} looks like a secret {why}, and its "
                "value is written out, so it goes into flash_manifest.json and the archive as "
                "it is; keep it as a RunPod secret and write its reference instead: "
                f'env={{{key!r}: "{{{{ RUNPOD_SECRET_{key} }}}}"}}',
                path=spec.path,
                line=spec.line,
                col=spec.col,
            )


def _no_worker_warnings(resources: Iterable[ResourceSpec]) -> Iterator[BuildWarning]:
    """A warning for each of ``resources`` with ``workersMax=0``: deployed, it would run no
    job; the local platform runs its jobs with one worker, so that it can be tried here."""
    for spec in sorted(resources, key=lambda r: (r.path, r.line, r.col)):
        if spec.config.get("workersMax") == 0:
            yield BuildWarning(
                f"{spec.type} {spec.name!r}: workersMax=0 lets the endpoint run no job "
                "(deployed, its jobs would wait for ever); flash run and flash serve give it "
                "one worker so that it can be tried here",
                path=spec.path,
                line=spec.line,
                col=spec.col,
            )


def _check_import_roots(modules: list[_Module]) -> None:
    """A top-level module or package both at the project root and under src/: on the worker
    one would hide the other (the root comes first on sys.path), so the build refuses it."""
    at_root: dict[str, _Module] = {}
    for module in modules:
        if not module.path.startswith(_SRC_PREFIX):
            at_root.setdefault(module.name.split(".")[0], module)
    for module in modules:
        if not module.path.startswith(_SRC_PREFIX):
            continue
        top = module.name.split(".")[0]
        clash = at_root.get(top)
        if clash is not None:
            raise BuildError(
                f"{clash.path} and {module.path} both define the top-level module {top!r} "
                f"({SRC_ROOT}/ is an import root, like the project root); rename or remove "
                "one of them",
                path=module.path,
            )


_REMOTE_EXAMPLE = (
    "decorate a module-level function or class, e.g.\n"
    "    from flash import remote, LiveServerless\n"
    '    gpu = LiveServerless(name="gpu-worker")\n'
    "\n"
    "    @remote(resource_config=gpu)\n"
    "    async def embed(texts: list[str]) -> list[list[float]]: ..."
)
_CONFIG_HINT = (
    "define the config at module level with literal values, e.g. "
    'gpu = LiveServerless(name="gpu-worker", workersMax=3), and pass it as '
    "@remote(resource_config=gpu) (it may be imported from another module of the project)"
)

_REMOTE_TARGETS = frozenset(
    {"flash.remote", "flash.sdk.remote", "flash.sdk.remote.remote", "flash.runtime.remote.remote"}
)
_CONFIG_MODULES = ("flash", "flash.sdk", "flash.sdk.resources")
_CONFIG_CONSTRUCTORS = {f"{m}.{t}": t for m in _CONFIG_MODULES for t in CONFIG_TYPES}
_ENUMS: dict[str, type[Enum]] = {
    f"{m}.{e.__name__}": e
    for m in (*_CONFIG_MODULES, "flash.runtime.resources")
    for e in (GpuGroup, CpuInstanceType, ScalerType)
}
_FLASH_SYMBOLS = _REMOTE_TARGETS | _CONFIG_CONSTRUCTORS.keys() | _ENUMS.keys()
_PROPERTY_DECORATORS = frozenset({"property", "cached_property", "setter", "getter", "deleter"})
# Bounds alias chains (a = b; c = a; ...) and import chains without tracking visited sets.
_MAX_DEPTH = 64
# An OS package as `apt-get install` takes it: a Debian package name (two characters at
# least), optionally with an architecture (libc6:i386), then a version (epoch and revision
# included, or a glob apt matches: nginx=1.18.*) or a release (ffmpeg/bookworm-backports).
# Never a space, quote or shell syntax: one entry is one word.
_SYSTEM_PACKAGE = re.compile(
    r"[a-z0-9][a-z0-9+.-]+"  # name
    r"(:[a-z0-9][a-z0-9-]*)?"  # architecture
    r"(=[0-9][A-Za-z0-9.+~:*-]*|/[A-Za-z0-9][A-Za-z0-9.+~-]*)?"  # version or release
)
# A word of source text: a name there is a whole one of these, never part of one.
_WORD = re.compile(r"\w+")

_Pos = tuple[int, int]
# Where a module-level statement sits: for each compound statement around it, (its position,
# which of its blocks, its kind). Empty: it runs whenever the module is imported.
_Branch = tuple[_Pos, int, str]
_Path = tuple[_Branch, ...]
_EXCLUSIVE = frozenset({"if", "match"})  # kinds of which at most one block runs
_Def = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
_DEF_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_TRY_TYPES: tuple[type[ast.stmt], ...] = tuple(
    t for t in (ast.Try, getattr(ast, "TryStar", None)) if t is not None
)


def _error(message: str, path: str, node: ast.expr | ast.stmt | ast.keyword) -> BuildError:
    return BuildError(message, path=path, line=node.lineno, col=node.col_offset + 1)


def _pos(node: ast.expr | ast.stmt) -> _Pos:
    return (node.lineno, node.col_offset)


def _text(node: ast.AST) -> str:
    return ast.unparse(node)


_SPREAD = "a ** argument"  # a config's field that is a **mapping the build cannot read

# What kind of expression a node is, for messages that must not quote its values.
_KINDS = (
    (ast.IfExp, "a conditional expression"),
    (ast.JoinedStr, "an f-string"),
    (ast.BinOp, "an operation"),
    (ast.BoolOp, "a boolean operation"),
    (ast.Subscript, "a subscript"),
    (ast.Dict, "a dict"),
    (ast.DictComp, "a dict comprehension"),
    (ast.Lambda, "a lambda"),
)


def _shown(node: ast.expr) -> str:
    """``node`` said without quoting a value: a name as written (``the name `ENV```), a
    call by what it calls (``a call str(...)``), else its kind."""
    if _is_dotted(node):
        return f"the name `{_text(node)}`"
    if isinstance(node, ast.Call):
        return f"a call {_text(node.func)}(...)" if _is_dotted(node.func) else "a call"
    if isinstance(node, ast.Subscript) and _is_dotted(node.value):
        return f"a subscript {_text(node.value)}[...]"
    return next((kind for cls, kind in _KINDS if isinstance(node, cls)), "an expression")


def _is_dotted(node: ast.expr) -> bool:
    """Whether ``node`` is a name or a chain of attributes of one (``os.environ``)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


# --- reading modules ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Binding:
    """What a module-level statement binds a name to."""

    pos: _Pos
    kind: str  # "import" (module target), "from" (target.attr), "value" (node), "opaque"
    target: str = ""
    attr: str = ""
    node: ast.expr | None = None
    path: _Path = ()


class _Module:
    def __init__(
        self, path: str, name: str, is_package: bool, source: str, tree: ast.Module | None
    ):
        self.path = path
        self.name = name
        self.is_package = is_package
        self.source = source
        self._tree = tree
        self._names: dict[str, tuple[list[_Pos], list[_Binding]]] | None = None
        self._stars: list[_Binding] = []
        self._paths: dict[_Pos, _Path] = {}  # of the statements inside compound ones
        self._words: frozenset[str] | None = None

    @property
    def words(self) -> frozenset[str]:
        """The words of the source (names, keywords, words in strings and comments)."""
        # Split once: a set test per name then costs the same however long the module is.
        if self._words is None:
            self._words = frozenset(_WORD.findall(self.source))
        return self._words

    @property
    def tree(self) -> ast.Module:
        if self._tree is None:
            # Already parsed once without error; re-read only when another module imports it.
            self._tree = ast.parse(self.source, filename=self.path)
        return self._tree

    def lookup(self, name: str, before: _Pos | None) -> tuple[list[_Binding], bool]:
        """The bindings of ``name`` that may be in effect just before the statement at
        ``before`` (at the end of the module if None), latest first: the last one that surely
        ran by then, and those after it that a condition (if, try, loop, with, match) decides;
        and whether one surely ran (if not, the name may still come from a star import)."""
        entry = self._bindings().get(name)
        if entry is None:
            return [], False
        positions, bindings = entry
        index = len(positions) if before is None else bisect.bisect_left(positions, before)
        where = self._paths.get(before, ()) if before is not None else ()
        found = []
        for binding in reversed(bindings[:index]):
            if _exclusive(binding.path, where):
                continue  # another block of an if or match that `before` is in
            found.append(binding)
            if where[: len(binding.path)] == binding.path:
                return found, True  # it ran whenever `before` runs: earlier ones are overwritten
        return found, False

    def bound_names(self) -> Iterable[str]:
        """The names module-level statements bind (star imports aside)."""
        return self._bindings().keys()

    def stars(self, before: _Pos | None) -> list[_Binding]:
        """``from x import *`` statements before ``before``."""
        self._bindings()
        return [s for s in self._stars if before is None or s.pos < before]

    def _bindings(self) -> dict[str, tuple[list[_Pos], list[_Binding]]]:
        # Built on first use: most modules are never looked into.
        if self._names is None:
            self._names = {}
            for stmt, path in _module_statements(self.tree.body):
                if path:
                    self._paths[_pos(stmt)] = path
                for name, binding in _statement_bindings(self, stmt):
                    if path:
                        binding = replace(binding, path=path)
                    if name == "*":
                        self._stars.append(binding)
                        continue
                    positions, bindings = self._names.setdefault(name, ([], []))
                    positions.append(binding.pos)
                    bindings.append(binding)
        return self._names


def _load_module(
    root: Path, rel: str, src_layout: bool = False, python_version: str | None = None
) -> _Module:
    try:
        data = (root / rel).read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read file: {exc.strerror or exc}", path=rel) from None
    source = _decode(data, rel)
    target = _target_feature_version(python_version)
    try:
        # With the target's grammar: syntax its workers cannot import is refused here.
        tree = ast.parse(source, filename=rel, feature_version=target)
        # ast.parse takes what only the compiler refuses (a repeated keyword argument,
        # `return` outside a function), which the worker's import would fail on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings: for the worker's import to show
            compile(tree, rel, "exec", dont_inherit=True)
    except SyntaxError as exc:
        if target is not None and python_version is not None:
            error = _target_syntax_error(source, rel, exc, target, python_version)
            if error is not None:
                raise error from None
        # A file that never names remote may well be no part of the app (a Python 2 script).
        hint = "" if "remote" in source else _NOT_THE_APP
        raise BuildError(
            f"syntax error: {exc.msg}{hint}",
            path=rel,
            line=exc.lineno,
            col=exc.offset,
        ) from None
    except ValueError as exc:  # null bytes, before Python 3.12
        raise BuildError(f"cannot parse file: {exc}", path=rel) from None
    except (RecursionError, MemoryError):  # what Python's import would fail with too
        raise BuildError(
            "cannot parse file: an expression is nested too deeply for Python", path=rel
        ) from None
    name, is_package = _module_name(rel, src_layout)
    # Keeping every tree alive costs more (allocation, garbage collection) than parsing the
    # few modules that configs are imported from a second time.
    kept = tree if _may_decorate(source) else None
    return _Module(rel, name, is_package, source, kept)


def _target_feature_version(python_version: str | None) -> tuple[int, int] | None:
    """The target's (major, minor) for ast.parse's feature_version: None when it is this
    interpreter's or newer (ast.parse knows no grammar newer than its own)."""
    numbers = re.match(r"(\d+)\.(\d+)", python_version or "")
    if numbers is None:
        return None
    target = (int(numbers[1]), int(numbers[2]))
    return target if target < sys.version_info[:2] else None


def _target_syntax_error(
    source: str, rel: str, exc: SyntaxError, target: tuple[int, int], python_version: str
) -> BuildError | None:
    """The error for syntax this interpreter parses but the target Python cannot run (an
    ``except*`` for 3.10 workers, whose import would fail); None for a syntax error on any
    Python, reported as such."""
    try:
        ast.parse(source, filename=rel)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    shown = f"{target[0]}.{target[1]}"
    return BuildError(
        f"syntax error for Python {shown}, the workers' Python (--python-version "
        f"{python_version}): {exc.msg}; rewrite it for Python {shown}, or build for a "
        "newer Python",
        path=rel,
        line=exc.lineno,
        col=exc.offset,
    )


def _module_name(rel: str, src_layout: bool) -> tuple[str, bool]:
    """The module a project file is imported as, and whether it is a package."""
    parts = import_path(rel, src_layout)[: -len(".py")].split("/")
    is_package = parts[-1] == "__init__" and len(parts) > 1
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _unimportable(module: _Module) -> str | None:
    """The file or folder name that keeps ``module`` from being imported under its name:
    a "." in it splits the module name (embed.v2.py would be the module v2 of a package
    embed). None when it can be imported."""
    parts = module.path[: -len(".py")].split("/")
    return next((part for part in parts if "." in part), None)


_NOT_THE_APP = (
    "; if this file is not part of the app (an old script, a fixture), list it in .flashignore"
)


# PEP 263: a comment in one of the first two lines naming the source's encoding.
_CODING_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=]")


def _decode(data: bytes, rel: str) -> str:
    """The source text as Python's import reads it: a BOM or a PEP 263 coding declaration
    says the encoding, else UTF-8."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        if not any(_CODING_COOKIE.match(line) for line in data.split(b"\n", 2)[:2]):
            # No declaration: a byte that is not UTF-8 in the first two lines. The decode
            # below says where.
            encoding = "utf-8"
        else:  # an unknown or malformed declaration
            raise BuildError(
                f"cannot read file: {exc.msg}; fix its coding declaration, or save it as UTF-8 "
                "without one",
                path=rel,
                line=exc.lineno,
            ) from None
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        start = exc.start
        line = data.count(b"\n", 0, start) + 1
        col = start - (data.rfind(b"\n", 0, start) + 1) + 1
        if encoding in ("utf-8", "utf-8-sig"):
            what = "UTF-8", "save it as UTF-8"
        else:
            what = (
                f"{encoding}, as its coding declaration says",
                "save it in that encoding, or as UTF-8 without a coding declaration",
            )
        raise BuildError(
            f"file is not valid {what[0]} (byte 0x{data[start]:02x}); {what[1]}",
            path=rel,
            line=line,
            col=col,
        ) from None


def _may_decorate(source: str) -> bool:
    return "@" in source


def system_dependency_problem(text: str) -> str | None:
    """Why ``text`` is not one OS package as apt-get install takes it, or None."""
    if _SYSTEM_PACKAGE.fullmatch(text):
        return None
    return (
        f"invalid system dependency {text!r}: an entry is one OS package as apt-get install "
        "takes it: a package name (two or more of lowercase letters, digits, '+', '-' and "
        "'.', starting with a letter or digit), optionally with :ARCH, then =VERSION (a glob "
        'such as =1.18.* too) or /RELEASE, e.g. "ffmpeg", "libgl1=1.7.0-1", "libc6:i386" or '
        '"ffmpeg/bookworm-backports"'
    )


def _module_statements(body: list[ast.stmt], path: _Path = ()) -> Iterator[tuple[ast.stmt, _Path]]:
    """Statements that run at module level, including those inside compound statements, each
    with its path (see _Path). For and with statements come too, for the names they bind.

    Not the blocks that never run when a worker imports the module (``if __name__ ==
    "__main__":``, ``if TYPE_CHECKING:``): a config rebound there must not decide where
    functions go.
    """
    for stmt in body:
        here = _pos(stmt)
        if isinstance(stmt, ast.If):
            skipped = _skipped_on_import(stmt.test)
            if skipped is None:
                yield from _module_statements(stmt.body, (*path, (here, 0, "if")))
                yield from _module_statements(stmt.orelse, (*path, (here, 1, "if")))
            else:  # the other block runs whenever the if does
                yield from _module_statements(stmt.orelse if skipped else stmt.body, path)
        elif isinstance(stmt, _TRY_TYPES):
            blocks = [
                stmt.body,  # type: ignore[attr-defined]
                *(handler.body for handler in stmt.handlers),  # type: ignore[attr-defined]
            ]
            for i, block in enumerate(blocks):
                yield from _module_statements(block, (*path, (here, i, "try")))
            # -1: _alternatives tells the else (which follows the body) from the handlers.
            orelse = stmt.orelse  # type: ignore[attr-defined]
            yield from _module_statements(orelse, (*path, (here, -1, "try")))
            yield from _module_statements(stmt.finalbody, path)  # type: ignore[attr-defined]
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            yield stmt, path
            # A context manager may swallow an exception and skip the rest of the block.
            yield from _module_statements(stmt.body, (*path, (here, 0, "with")))
        elif isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            loop = (*path, (here, 0, "loop"))
            yield stmt, loop  # a for's target is bound only if the body runs
            yield from _module_statements(stmt.body, loop)
            yield from _module_statements(stmt.orelse, (*path, (here, 1, "loop")))
        elif isinstance(stmt, ast.Match):
            for i, case in enumerate(stmt.cases):
                yield from _module_statements(case.body, (*path, (here, i, "match")))
        else:
            yield stmt, path


def _exclusive(first: _Path, second: _Path) -> bool:
    """Whether statements at these paths never both run: different blocks of one if/match."""
    for a, b in zip(first, second, strict=False):
        if a != b:
            return a[0] == b[0] and a[2] in _EXCLUSIVE
    return False


def _alternatives(first: _Path, second: _Path) -> bool:
    """Whether statements at these paths are alternatives: different blocks of one if or
    match, or a try's body (or else) and one of its handlers, or two handlers. (A handler may
    run after part of the body did: a definition there replaces the body's.)"""
    for a, b in zip(first, second, strict=False):
        if a != b:
            if a[0] != b[0]:
                return False
            return a[2] in _EXCLUSIVE or (a[2] == "try" and {a[1], b[1]} != {0, -1})
    return False


def _skipped_on_import(test: ast.expr) -> bool | None:
    """True when an if's body never runs as a worker imports the module (``if __name__ ==
    "__main__":``, ``if TYPE_CHECKING:``), False when its else never does (``!=``), None for
    any other test."""
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return True
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    sides = {_text(test.left), _text(test.comparators[0])}
    if sides != {"__name__", repr("__main__")}:
        return None
    if isinstance(test.ops[0], ast.Eq):
        return True
    return False if isinstance(test.ops[0], ast.NotEq) else None


def _script_only_nodes(tree: ast.Module) -> dict[int, str]:
    """ids of the nodes in the blocks of ifs that never run on import, each with its if."""
    found: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (skipped := _skipped_on_import(node.test)) is not None:
            where = f"if {_text(node.test)}:"
            where = f"`{where}`" if skipped else f"the else of `{where}`"
            for stmt in node.body if skipped else node.orelse:
                found.update(dict.fromkeys((id(n) for n in ast.walk(stmt)), where))
    return found


_FUNCTION_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPREHENSION_TYPES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_NOTHING: frozenset[int] = frozenset()  # not a scope: no child runs in a scope of its own


def _calls_of_local_names(tree: ast.Module) -> set[int]:
    """The ids of the calls in ``tree`` whose callee starts from a name (``remote`` in
    ``remote(cfg)(fn)``) that a function, lambda or comprehension around the call binds
    (``def apply(remote, fn)``), which hides the module's. A class body's names are left
    out: no function in it sees them, and a class body calling remote by another of its
    names is far-fetched."""
    found: set[int] = set()
    # A loop, not recursion: `1 + 1 + ...` nests as deep as it is long.
    todo: list[tuple[ast.AST, frozenset[str]]] = [(tree, frozenset())]
    while todo:
        node, local = todo.pop()
        if local and isinstance(node, ast.Call) and _root_name(node.func) in local:
            found.add(id(node))
        inner, own = _scope(node, local)
        todo.extend(
            (child, inner if id(child) in own else local) for child in ast.iter_child_nodes(node)
        )
    return found


def _scope(node: ast.AST, local: frozenset[str]) -> tuple[frozenset[str], Set[int]]:
    """The names seen inside ``node`` if it is a scope, with the ids of its children that run
    in it (a function's defaults and decorators run outside it, in ``local``)."""
    if isinstance(node, _FUNCTION_TYPES):
        names = _parameters(node.args) | _bound_names(node.body)
        return local | names, {id(stmt) for stmt in node.body}
    if isinstance(node, ast.Lambda):
        names = _parameters(node.args) | _bound_names([node.body])
        return local | names, {id(node.body)}
    if isinstance(node, _COMPREHENSION_TYPES):
        names = _bound_names([g.target for g in node.generators])
        return local | names, {id(child) for child in ast.iter_child_nodes(node)}
    return local, _NOTHING


def _parameters(args: ast.arguments) -> set[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return {arg.arg for arg in every if arg is not None}


def _bound_names(nodes: Iterable[ast.AST]) -> set[str]:
    """The names ``nodes`` bind in the scope they run in (not in scopes nested in them),
    less those a ``global`` statement gives to the module."""
    names: set[str] = set()
    module_names: set[str] = set()
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, _DEF_TYPES):
            names.add(node.name)
            continue  # its body is its own scope
        elif isinstance(node, (ast.Lambda, *_COMPREHENSION_TYPES)):
            continue
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        elif isinstance(node, ast.Global):
            module_names.update(node.names)
        todo.extend(ast.iter_child_nodes(node))
    return names - module_names


def _root_name(func: ast.expr) -> str | None:
    """The name a callee starts from: ``remote`` in ``remote(cfg)(fn)``, ``flash`` in
    ``flash.remote(cfg)(fn)``; None for any other expression."""
    while isinstance(func, (ast.Call, ast.Attribute)):
        func = func.func if isinstance(func, ast.Call) else func.value
    return func.id if isinstance(func, ast.Name) else None


def _statement_bindings(module: _Module, stmt: ast.stmt) -> Iterator[tuple[str, _Binding]]:
    pos = _pos(stmt)
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            if alias.asname:
                yield alias.asname, _Binding(pos, "import", alias.name)
            else:
                # ``import a.b`` binds ``a``.
                first = alias.name.split(".")[0]
                yield first, _Binding(pos, "import", first)
    elif isinstance(stmt, ast.ImportFrom):
        source = _import_source(module, stmt)
        for alias in stmt.names:
            if source is None:
                yield alias.asname or alias.name, _Binding(pos, "opaque")
            elif alias.name == "*":
                yield "*", _Binding(pos, "from", source)
            else:
                yield alias.asname or alias.name, _Binding(pos, "from", source, alias.name)
    elif isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            yield from _assignment_bindings(target, stmt.value, pos)
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        yield from _assignment_bindings(stmt.target, stmt.value, pos)
    elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        yield stmt.target.id, _Binding(pos, "opaque")
    elif isinstance(stmt, _DEF_TYPES):
        yield stmt.name, _Binding(pos, "opaque")
    elif isinstance(stmt, (ast.For, ast.AsyncFor)):
        yield from _opaque_names(stmt.target, pos)
    elif isinstance(stmt, (ast.With, ast.AsyncWith)):
        for item in stmt.items:
            if item.optional_vars is not None:
                yield from _opaque_names(item.optional_vars, pos)


def _opaque_names(target: ast.expr, pos: _Pos) -> Iterator[tuple[str, _Binding]]:
    for node in ast.walk(target):
        if isinstance(node, ast.Name):
            yield node.id, _Binding(pos, "opaque")


def _assignment_bindings(
    target: ast.expr, value: ast.expr, pos: _Pos
) -> Iterator[tuple[str, _Binding]]:
    if isinstance(target, ast.Name):
        yield target.id, _Binding(pos, "value", node=value)
    elif isinstance(target, (ast.Tuple, ast.List)):
        if (
            isinstance(value, (ast.Tuple, ast.List))
            and len(value.elts) == len(target.elts)
            and not any(isinstance(e, ast.Starred) for e in (*target.elts, *value.elts))
        ):
            for element, element_value in zip(target.elts, value.elts, strict=True):
                yield from _assignment_bindings(element, element_value, pos)
            return
        yield from _opaque_names(target, pos)


def _import_source(module: _Module, stmt: ast.ImportFrom) -> str | None:
    """The absolute module a ``from ... import`` reads (None: beyond the top level)."""
    if not stmt.level:
        return stmt.module
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    if stmt.level - 1 >= len(package):
        return None
    base = package[: len(package) - (stmt.level - 1)]
    if stmt.module:
        base.append(stmt.module)
    return ".".join(base)


# --- resolving names and values -----------------------------------------------------------


@dataclass(frozen=True)
class _ModuleRef:
    name: str


@dataclass(frozen=True)
class _External:
    dotted: str


@dataclass(frozen=True)
class _Value:
    """An expression, with the module and position its names are looked up from."""

    module: _Module
    node: ast.expr
    pos: _Pos | None


@dataclass(frozen=True)
class _Ambiguous:
    """A name bound in more than one place at module level, where which binding is in effect
    depends on a condition: what it may refer to, each different."""

    name: str
    module: _Module
    lines: tuple[int, ...]  # of the bindings, in ``module``
    options: tuple[_Resolved, ...]  # never ambiguous themselves (see _one_of)


_Resolved = _ModuleRef | _External | _Value | _Ambiguous | None


def _one_of(
    name: str,
    module: _Module,
    lines: Sequence[int],
    options: list[_Resolved],
    identity: Callable[[_Resolved], object] | None = None,
) -> _Resolved:
    """``options`` as one result: the one thing they all stand for, or an ambiguity."""
    identity = identity or _identity
    distinct: dict[object, _Resolved] = {}
    for option in options:  # an ambiguity's options are never ambiguous: shallow to hash
        distinct.setdefault(identity(option), option)
    if len(distinct) == 1:  # the same import in a try and its except; an imported ambiguity
        return next(iter(distinct.values()))  # keeps the lines of the module it is in
    unique: dict[object, _Resolved] = {}
    for option in options:
        # Flat: an option that is itself ambiguous adds its own options, so a chain of
        # conditional rebindings stays one set instead of nesting (and hashing) ever deeper.
        for leaf in option.options if isinstance(option, _Ambiguous) else (option,):
            unique.setdefault(identity(leaf), leaf)
    if len(unique) == 1:  # e.g. the same import in a try and in its except
        return next(iter(unique.values()))
    return _Ambiguous(name, module, tuple(sorted(lines)), tuple(unique.values()))


def _is_remote_target(resolved: _Resolved) -> bool:
    """Whether ``resolved`` is Flash's ``remote`` itself."""
    return isinstance(resolved, _External) and resolved.dotted in _REMOTE_TARGETS


def _may_be_remote(resolved: _Resolved) -> bool:
    """Whether ``resolved`` is Flash's ``remote``, or may be (bound under a condition)."""
    if isinstance(resolved, _Ambiguous):
        return any(map(_is_remote_target, resolved.options))
    return _is_remote_target(resolved)


def _identity(resolved: _Resolved) -> object:
    """What ``resolved`` stands for: Flash exports each of its names from several modules."""
    if isinstance(resolved, _External):
        dotted = resolved.dotted
        if dotted in _REMOTE_TARGETS:
            return "remote"
        if dotted in _CONFIG_CONSTRUCTORS:
            return _CONFIG_CONSTRUCTORS[dotted]
        owner, _, member = dotted.rpartition(".")
        if dotted in _ENUMS:
            return _ENUMS[dotted]
        if owner in _ENUMS:
            return (_ENUMS[owner], member)
    return resolved


def _ambiguous_error(resolved: _Ambiguous, what: str, path: str, node: ast.expr) -> BuildError:
    places = [f"{resolved.module.path}:{line}" for line in resolved.lines]
    listed = ", ".join(places[:-1]) + " and " + places[-1]
    return _error(
        f"{what} would depend on run-time conditions: `{resolved.name}` is bound at {listed}, "
        "and an if, try, loop, with or match at module level decides which binding is in "
        f"effect; bind `{resolved.name}` once, unconditionally (the build reads your code, "
        "never runs it)",
        path,
        node,
    )


@dataclass(frozen=True)
class _Decorator:
    """A ``remote(...)`` call that decorates a definition, and where it is written."""

    call: ast.Call
    module: _Module
    pos: _Pos | None
    site: ast.expr  # the decorator as written on the definition


class _NotStatic(Exception):
    """A value that cannot be known without running the user's code."""


class _Project:
    def __init__(
        self,
        modules: list[_Module],
        root: Path | None = None,
        files: Sequence[str] = (),
        src_layout: bool = False,
    ):
        # A file no import can reach under its name is no module of the project: an import
        # of that name finds something else, or nothing (see _unimportable).
        # Left out by path: the module of the same dotted name (embed/v2.py beside
        # embed.v2.py) is the one an import finds. By name, for _left_out's message.
        unimportable = [m for m in modules if _unimportable(m) is not None]
        left_out = {id(m) for m in unimportable}
        self.unimportable = {m.name: m for m in unimportable}
        self.modules = {m.name: m for m in modules if id(m) not in left_out}
        self.root = root
        self.files = frozenset(files)
        self.src_layout = src_layout
        self.packages = {
            ".".join(parts[:i])
            for parts in (name.split(".") for name in self.modules)
            for i in range(1, len(parts))
        }
        self._members: dict[tuple[str, str, bool], _Resolved] = {}
        self._names: dict[tuple[str, str, _Pos | None], _Resolved] = {}
        self._resources: dict[tuple[str, int, int], ResourceSpec] = {}
        self._classes: dict[str, dict[_Pos, ast.ClassDef]] = {}

    def project_module(self, dotted: str) -> str | None:
        """The name of the project module or package an absolute import of ``dotted`` finds,
        or None. In a src layout ``src.X`` is the module ``X`` (src/ is a namespace package
        on the worker too, but the build names its modules from src/ alone), and ``src`` a
        package of them."""
        # The installed flash package wins over a project file that shadows it.
        if dotted == "flash" or dotted.startswith("flash."):
            return None
        if dotted in self.modules or dotted in self.packages:
            return dotted
        if self.src_layout and dotted.split(".")[0] == SRC_ROOT:
            if dotted == SRC_ROOT:
                return dotted
            return self.project_module(dotted[len(SRC_ROOT) + 1 :])
        return None

    def resolve(
        self, module: _Module, node: ast.expr, pos: _Pos | None, depth: int = 0
    ) -> _Resolved:
        """What ``node`` refers to when evaluated in ``module`` just before ``pos``."""
        if depth > _MAX_DEPTH:
            return None
        if isinstance(node, ast.Name):
            return self._resolve_name(module, node.id, pos, depth + 1)
        if isinstance(node, ast.Attribute):
            base = self.resolve(module, node.value, pos, depth + 1)
            return self._attribute(base, node.attr, depth + 1)
        return _Value(module, node, pos)

    def _attribute(self, base: _Resolved, attr: str, depth: int) -> _Resolved:
        if isinstance(base, _External):
            return _External(f"{base.dotted}.{attr}")
        if isinstance(base, _ModuleRef):
            return self._resolve_member(base.name, attr, depth)
        if isinstance(base, _Ambiguous):
            options = [self._attribute(option, attr, depth) for option in base.options]
            return _one_of(base.name, base.module, base.lines, options)
        return None

    def _resolve_name(self, module: _Module, name: str, pos: _Pos | None, depth: int) -> _Resolved:
        key = (module.name, name, pos)
        if key in self._names:  # a chain of conditional rebindings would branch each time
            return self._names[key]
        bindings, sure = module.lookup(name, pos)
        star, star_line = (None, 0) if sure else self._resolve_star(module, name, pos, depth)
        if not bindings:
            found = star
        else:
            options = [self._resolve_binding(module, binding, depth) for binding in bindings]
            lines = [binding.pos[0] for binding in bindings]
            if star is not None:  # bound under a condition, else by a star import
                options.append(star)
                lines.append(star_line)
            found = _one_of(name, module, lines, options, self._identity)
        # Not kept when an import cycle may have made it (a member still being resolved
        # reads as None): asked again later, from outside the cycle, it can be found.
        if found is not None and not (
            isinstance(found, _Ambiguous) and any(option is None for option in found.options)
        ):
            self._names[key] = found
        return found

    def _identity(self, resolved: _Resolved) -> object:
        """_identity, and one more: the same literal call of the same constructor (a config
        written alike in a try and in its except) is one value."""
        if isinstance(resolved, _Value) and isinstance(resolved.node, ast.Call):
            call = resolved.node
            if isinstance(call.func, (ast.Name, ast.Attribute)) and not any(
                isinstance(n, ast.Name)
                for part in (*call.args, *call.keywords)
                for n in ast.walk(part)
            ):
                func = self.resolve(resolved.module, call.func, resolved.pos)
                if isinstance(func, _External):
                    arguments = ast.dump(ast.Call(ast.Constant(0), call.args, call.keywords))
                    return ("call", _identity(func), arguments)
        return _identity(resolved)

    def _resolve_binding(self, module: _Module, binding: _Binding, depth: int) -> _Resolved:
        if binding.kind == "import":
            found = self.project_module(binding.target)
            return _ModuleRef(found) if found is not None else _External(binding.target)
        if binding.kind == "from":
            if binding.target == module.name:
                # ``from . import sub`` inside a package's __init__.py.
                return self._submodule(module.name, binding.attr)
            found = self.project_module(binding.target)
            if found is not None:
                return self._resolve_member(found, binding.attr, depth + 1)
            return _External(f"{binding.target}.{binding.attr}")
        if binding.kind == "value" and binding.node is not None:
            return self.resolve(module, binding.node, binding.pos, depth + 1)
        return None

    def _resolve_star(
        self, module: _Module, name: str, pos: _Pos | None, depth: int
    ) -> tuple[_Resolved, int]:
        """What ``name`` is by the latest star import that has it, and that import's line."""
        for star in reversed(module.stars(pos)):
            source = self.project_module(star.target)
            if source is not None:
                found = self._resolve_member(source, name, depth + 1, submodules=False)
                if found is not None:
                    return found, star.pos[0]
            elif f"{star.target}.{name}" in _FLASH_SYMBOLS:
                return _External(f"{star.target}.{name}"), star.pos[0]
        return None, 0

    def _resolve_member(
        self, module_name: str, attr: str, depth: int, *, submodules: bool = True
    ) -> _Resolved:
        """``module_name.attr`` once the module has run, as an import sees it."""
        key = (module_name, attr, submodules)
        if key in self._members:
            return self._members[key]
        if depth > _MAX_DEPTH:
            return None
        # Memoised, with None while in progress: import cycles and star-import loops end
        # instead of recursing, and each member is resolved once per scan.
        self._members[key] = None
        found: _Resolved = None
        module = self.modules.get(module_name)
        if module is not None:
            found = self._resolve_name(module, attr, None, depth + 1)
        if found is None and submodules:
            found = self._submodule(module_name, attr)
        self._members[key] = found
        return found

    def _submodule(self, package: str, attr: str) -> _Resolved:
        sub = self.project_module(f"{package}.{attr}")
        return _ModuleRef(sub) if sub is not None else None

    def evaluate(self, module: _Module, node: ast.expr, pos: _Pos | None, depth: int = 0) -> Any:
        """The value of a literal expression, following names of module-level literals and
        Flash enum members. Raises _NotStatic for anything else."""
        if depth > _MAX_DEPTH:
            raise _NotStatic
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.evaluate(module, e, pos, depth + 1) for e in node.elts]
            if isinstance(node, ast.List):
                return items
            return tuple(items) if isinstance(node, ast.Tuple) else _build(set, items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise _NotStatic
            keys = [self.evaluate(module, k, pos, depth + 1) for k in node.keys if k is not None]
            values = [self.evaluate(module, v, pos, depth + 1) for v in node.values]
            return _build(dict, zip(keys, values, strict=True))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.evaluate(module, node.operand, pos, depth + 1)
            if not _is_number(operand):
                raise _NotStatic
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BinOp):
            left = self.evaluate(module, node.left, pos, depth + 1)
            right = self.evaluate(module, node.right, pos, depth + 1)
            return _arithmetic(node.op, left, right)
        if isinstance(node, ast.JoinedStr):
            return "".join(self._f_string_part(module, part, pos, depth) for part in node.values)
        if isinstance(node, (ast.Name, ast.Attribute)):
            resolved = self.resolve(module, node, pos)
            if isinstance(resolved, _Ambiguous):
                raise _ambiguous_error(resolved, f"the value of `{_text(node)}`", module.path, node)
            if isinstance(resolved, _External):
                return _enum_value(module, node, resolved.dotted)
            if isinstance(resolved, _Value):
                return self.evaluate(resolved.module, resolved.node, resolved.pos, depth + 1)
        raise _NotStatic

    def _f_string_part(self, module: _Module, part: ast.expr, pos: _Pos | None, depth: int) -> str:
        """One piece of an f-string: text, or ``{NAME}`` of a string or integer constant."""
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            return part.value
        if not isinstance(part, ast.FormattedValue):
            raise _NotStatic
        if part.conversion != -1 or part.format_spec is not None:
            # Formatting is Python's to do; the build would have to reimplement it exactly.
            raise _error(
                f"the f-string field `{{{_text(part.value)}...}}` has a format spec or "
                f"conversion (!r, !s, :03d), which the build does not apply; write "
                f"`{{{_text(part.value)}}}` alone, or the formatted text out",
                module.path,
                part,
            )
        value = self.evaluate(module, part.value, pos, depth + 1)
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
        raise _NotStatic

    def string_list(
        self,
        module: _Module,
        node: ast.expr,
        pos: _Pos | None,
        option: str,
        check: Callable[[str], str | None] | None = None,
    ) -> tuple[str, ...]:
        """The strings of a literal list; ``check`` says what is wrong with one, if anything."""
        if isinstance(node, ast.Constant) and node.value is None:
            return ()
        owner: _Module = module
        target: ast.expr = node
        target_pos: _Pos | None = pos
        if isinstance(node, (ast.Name, ast.Attribute)):
            resolved = self.resolve(module, node, pos)
            if isinstance(resolved, _Ambiguous):
                raise _ambiguous_error(resolved, f"{option}={_text(node)}", module.path, node)
            if isinstance(resolved, _Value):
                owner, target, target_pos = resolved.module, resolved.node, resolved.pos
        if not isinstance(target, (ast.List, ast.Tuple)):
            raise _error(
                f'{option} must be a list of string literals, e.g. {option}=["numpy"]; '
                f"got `{_text(node)}`",
                module.path,
                node,
            )
        values = []
        for i, element in enumerate(target.elts):
            try:
                value = self.evaluate(owner, element, target_pos)
            except _NotStatic:
                value = None
            if not isinstance(value, str):
                raise _error(
                    f"{option}[{i}] must be a string literal; got `{_text(element)}`",
                    owner.path,
                    element,
                )
            problem = check(value) if check is not None else None
            if problem is not None:
                raise _error(problem, owner.path, element)
            values.append(value)
        return tuple(values)

    # Configs ----------------------------------------------------------------------------

    def resource(self, module: _Module, expr: ast.expr, pos: _Pos | None) -> ResourceSpec:
        resolved = self.resolve(module, expr, pos)
        if isinstance(resolved, _Ambiguous):
            # The manifest records one endpoint; at run time the other could be the one used.
            what = f"the endpoint of resource config `{_text(expr)}`"
            raise _ambiguous_error(resolved, what, module.path, expr)
        if isinstance(resolved, _Value) and isinstance(resolved.node, ast.Call):
            ctor = self.resolve(resolved.module, resolved.node.func, resolved.pos)
            if isinstance(ctor, _Ambiguous):
                what = f"the config class `{_text(resolved.node.func)}`"
                raise _ambiguous_error(ctor, what, resolved.module.path, resolved.node.func)
            if isinstance(ctor, _External) and ctor.dotted in _CONFIG_CONSTRUCTORS:
                type_name = _CONFIG_CONSTRUCTORS[ctor.dotted]
                return self._config(resolved.module, resolved.node, resolved.pos, type_name)
        why = self._left_out(resolved) or _why_unresolved(resolved)
        raise _error(
            f"cannot resolve the resource config `{_text(expr)}` without running your code "
            f"({why}); {_CONFIG_HINT}",
            module.path,
            expr,
        )

    def _left_out(self, resolved: _Resolved) -> str | None:
        """Why an import of something that is no project module finds nothing: the file
        that would be it is left out of the build, or has a name no import can reach.
        (Only on the way to an error: it reads ignore files.)"""
        if not isinstance(resolved, _External) or self.root is None:
            return None
        parts = resolved.dotted.split(".")
        for n in range(len(parts), 0, -1):
            name = ".".join(parts[:n])
            dotted_file = self.unimportable.get(name)
            if dotted_file is not None:
                return (
                    f"it refers to {resolved.dotted}, but {dotted_file.path} cannot be "
                    f"imported as {name}: a '.' in a file or folder name splits a module "
                    "name; rename it"
                )
            base = "/".join(parts[:n])
            for prefix in (_SRC_PREFIX, "") if self.src_layout else ("",):
                for rel in (f"{prefix}{base}.py", f"{prefix}{base}/__init__.py"):
                    if rel in self.files or not (self.root / rel).is_file():
                        continue
                    by = ignored_by(self.root, rel)
                    if by is not None:
                        return (
                            f"it refers to {resolved.dotted}, from {rel}, which {by} leaves "
                            f"out of the build; change {by} so that it keeps {rel}: the "
                            "code a worker runs must be in the archive"
                        )
        return None

    def _config(
        self, module: _Module, call: ast.Call, pos: _Pos | None, type_name: str
    ) -> ResourceSpec:
        key = (module.path, call.lineno, call.col_offset)
        cached = self._resources.get(key)
        if cached is not None:
            return cached
        if call.args:
            raise _error(
                f'{type_name} takes keyword arguments only, e.g. {type_name}(name="worker")',
                module.path,
                call.args[0],
            )
        values: dict[str, Any] = {}
        dynamic: tuple[str, ast.expr] | None = None  # the first field that is not a literal
        name_node: ast.expr | None = None
        for keyword in call.keywords:
            if keyword.arg is None:
                try:
                    extra = self.evaluate(module, keyword.value, pos)
                except _NotStatic:
                    extra = None
                if isinstance(extra, dict) and all(isinstance(k, str) for k in extra):
                    values.update(extra)
                elif dynamic is None:
                    dynamic = (_SPREAD, keyword.value)
                continue
            if keyword.arg == "name":
                name_node = keyword.value
            try:
                values[keyword.arg] = self.evaluate(module, keyword.value, pos)
            except _NotStatic:
                dynamic = dynamic or (keyword.arg, keyword.value)
        name = values.get("name")
        if not isinstance(name, str):
            got = f"; got `{_text(name_node)}`" if name_node is not None else ""
            raise _error(
                f"{type_name} needs name= set to a string the build can read: text in "
                "quotes, a module-level constant of one, or + or an f-string of such "
                f'constants, e.g. name="gpu-worker" or name=f"{{PREFIX}}-gpu"{got}',
                module.path,
                name_node or call,
            )
        try:
            check_name(name)  # at the name itself, before the config as a whole is checked
        except ValueError as exc:
            raise _error(f"{type_name} {exc}", module.path, name_node or call) from None
        if dynamic is not None:
            # The deployed endpoint gets what the manifest says: a value only known when the
            # code runs would silently become the field's default there.
            field, node = dynamic
            got = f"`{_text(node)}`"
            if field in ("env", _SPREAD):  # env's values may be secrets: never quoted
                got, node = self._unreadable_entry(module, node, pos)
            raise _error(
                f"{type_name} {name!r}: {field} must be a literal value (or a module-level "
                f"constant of one) so the build can record it; got {got}",
                module.path,
                node,
            )
        try:
            config = validate_config(type_name, values).to_manifest()
        except ValueError as exc:
            raise _error(str(exc), module.path, call) from None
        spec = ResourceSpec(
            name=name,
            type=type_name,
            config=config,
            path=module.path,
            line=call.lineno,
            col=call.col_offset + 1,
        )
        self._resources[key] = spec
        return spec

    def _unreadable_entry(
        self, module: _Module, node: ast.expr, pos: _Pos | None
    ) -> tuple[str, ast.expr]:
        """What in a dict (``env=``'s value, a ``**`` argument) the build cannot read, said
        without quoting any value (``N: a call str(...)``), and the node to point at."""
        if not isinstance(node, ast.Dict):
            return _shown(node), node
        for key, value in zip(node.keys, node.values, strict=True):
            if key is not None and not self._readable(module, key, pos):
                return f"a key that is {_shown(key)}", key
            if not self._readable(module, value, pos):
                entry = "**" if key is None else f"{self.evaluate(module, key, pos)}: "
                return entry + _shown(value), value
        return _shown(node), node

    def _readable(self, module: _Module, node: ast.expr, pos: _Pos | None) -> bool:
        """Whether the build can read the value of ``node`` without running code."""
        try:
            self.evaluate(module, node, pos)
        except _NotStatic:
            return False
        return True

    def used_resources(self, functions: list[RemoteSpec]) -> dict[str, ResourceSpec]:
        used = {f.resource for f in functions}
        by_name: dict[str, ResourceSpec] = {}
        by_file_name: dict[str, ResourceSpec] = {}
        # Configs in the order they were first met: sorted files, then source order.
        for spec in self._resources.values():
            if spec.name not in used:
                continue
            first = by_name.get(spec.name)
            if first is not None:
                if (first.type, first.config) != (spec.type, spec.config):
                    raise BuildError(
                        f"two different resource configs are named {spec.name!r}: "
                        f"{_where(first)} and {_where(spec)} ({_differences(first, spec)}); "
                        "give each endpoint its own name, or define the config once and "
                        "import it",
                        path=spec.path,
                        line=spec.line,
                        col=spec.col,
                    )
                continue
            file_name = sanitize_resource_name(spec.name)
            clash = by_file_name.get(file_name)
            if clash is not None:
                raise BuildError(
                    f"resource names {clash.name!r} ({_where(clash)}) and {spec.name!r} "
                    f"({_where(spec)}) both become handler_{file_name}.py; rename one of them",
                    path=spec.path,
                    line=spec.line,
                    col=spec.col,
                )
            by_name[spec.name] = spec
            by_file_name[file_name] = spec
        return by_name

    # Classes ----------------------------------------------------------------------------

    def _lineage(self, module: _Module, node: ast.ClassDef) -> list[ast.ClassDef]:
        """``node`` and the project classes it inherits from, nearest first (depth first,
        each once: close to the MRO for the public names it decides). A base the build
        cannot find (a library's, a computed one) adds nothing."""
        found = [node]
        seen = {id(node)}
        todo = [(module, node)]
        while todo and len(found) <= _MAX_DEPTH:
            owner, cls = todo.pop(0)
            for base in cls.bases:
                parent = self._find_class(owner, base, _pos(cls), 0)
                if parent is not None and id(parent[1]) not in seen:
                    seen.add(id(parent[1]))
                    found.append(parent[1])
                    todo.append(parent)
        return found

    def _find_class(
        self, module: _Module, expr: ast.expr, pos: _Pos | None, depth: int
    ) -> tuple[_Module, ast.ClassDef] | None:
        """The project class ``expr`` names in ``module`` just before ``pos``, if the build
        can tell (one unconditional binding, followed through imports and aliases)."""
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, ast.Attribute):
            base = self.resolve(module, expr.value, pos)
            owner = self.modules.get(base.name) if isinstance(base, _ModuleRef) else None
            if owner is None:
                return None
            return self._find_class(owner, ast.Name(expr.attr, ast.Load()), None, depth + 1)
        if not isinstance(expr, ast.Name):
            return None
        bindings, sure = module.lookup(expr.id, pos)
        if not bindings:
            for star in reversed(module.stars(pos)):
                source = self.modules.get(self.project_module(star.target) or "")
                found = source and self._find_class(source, expr, None, depth + 1)
                if found:
                    return found
            return None
        if len(bindings) != 1 or not sure:
            return None
        binding = bindings[0]
        if binding.kind == "opaque":
            cls = self._class_statements(module).get(binding.pos)
            return (module, cls) if cls is not None else None
        if binding.kind == "from":
            source = self.modules.get(self.project_module(binding.target) or "")
            if source is None or source is module:
                return None
            return self._find_class(source, ast.Name(binding.attr, ast.Load()), None, depth + 1)
        if binding.kind == "value" and binding.node is not None:
            return self._find_class(module, binding.node, binding.pos, depth + 1)
        return None

    def _class_statements(self, module: _Module) -> dict[_Pos, ast.ClassDef]:
        # Once per module: a module of many classes is walked once, not once per lookup.
        found = self._classes.get(module.name)
        if found is None:
            found = {
                _pos(stmt): stmt
                for stmt, _ in _module_statements(module.tree.body)
                if isinstance(stmt, ast.ClassDef)
            }
            self._classes[module.name] = found
        return found

    # Decorated definitions --------------------------------------------------------------

    def remote_specs(self, module: _Module) -> list[RemoteSpec]:
        specs = []
        top_level: set[int] = set()
        # The paths of each name's definitions so far: a definition in another branch of an
        # if, or in a try's handler, is an alternative to the first, not a second function.
        defined: dict[str, list[tuple[_Path, RemoteSpec]]] = {}
        for stmt, path in _module_statements(module.tree.body):
            # A definition in a loop is defined again on each pass: not module level.
            if isinstance(stmt, _DEF_TYPES) and all(kind != "loop" for _, _, kind in path):
                top_level.add(id(stmt))
                decorator = self._remote_decorator(module, stmt)
                if decorator is None:
                    continue
                bad = _unimportable(module)
                if bad is not None:
                    raise _error(
                        f"@remote on {stmt.name!r}: {module.path} cannot be imported under the "
                        f"name {module.name} (the '.' in {bad!r} splits a module name), so no "
                        "worker could load it; rename it without the '.' (e.g. "
                        f"{bad.replace('.', '_')!r}), or list it in .flashignore if it is not "
                        "part of the app",
                        module.path,
                        decorator.site,
                    )
                spec = self._remote_spec(module, stmt, decorator)
                earlier = defined.setdefault(stmt.name, [])
                if earlier and all(_alternatives(p, path) for p, _ in earlier):
                    first = earlier[0][1]
                    if first.resource != spec.resource:
                        raise _error(
                            f"@remote {stmt.name!r} is defined on endpoint {first.resource!r} "
                            f"at {_where(first)} and on {spec.resource!r} here, in another "
                            "branch; the manifest records one endpoint per function, so give "
                            "both definitions the same resource config (or rename one)",
                            module.path,
                            stmt,
                        )
                    _check_same_kind(first, spec, stmt.name, module.path, stmt)
                    earlier.append((path, spec))
                    continue  # one function: callers reach whichever definition ran
                earlier.append((path, spec))
                specs.append(spec)
        for node in ast.walk(module.tree):
            if isinstance(node, _DEF_TYPES) and node.decorator_list and id(node) not in top_level:
                decorator = self._remote_decorator(module, node)
                if decorator is None:
                    continue
                # Only now, on the way to an error: the walk below costs as much as this one.
                where = _script_only_nodes(module.tree).get(id(node))
                if where is not None:
                    problem = (
                        f"inside {where}, which never runs when a worker imports the module; "
                        "define it at module level"
                    )
                else:
                    problem = (
                        "which is not defined at module level; @remote functions and classes "
                        "must be defined at the top level of a module (not inside a function, "
                        "class or loop)"
                    )
                raise _error(f"@remote on {node.name!r}, {problem}", module.path, decorator.site)
        return specs

    def check_remote_not_applied(self, module: _Module) -> None:
        """Refuse ``remote(cfg)(fn)`` and ``on_cpu(fn)`` (``on_cpu = remote(cfg)``): the
        build reads only decorators, so no endpoint would have ``fn`` and calls of it would
        fail with UnknownFunction."""
        decorators: set[int] = set()  # read as decorators, not here
        local_calls: set[int] | None = None  # known on the first call that applies remote
        for node in ast.walk(module.tree):  # breadth first: a definition before its decorators
            if isinstance(node, _DEF_TYPES):
                decorators.update(map(id, node.decorator_list))
                continue
            if not isinstance(node, ast.Call) or id(node) in decorators:
                continue
            # Module-level names as at the end of the module: a call in a function runs after.
            if isinstance(node.func, ast.Call):
                applied = self._names_remote(module, node.func.func, None)
            elif isinstance(node.func, (ast.Name, ast.Attribute)):
                applied = self._is_remote_result(self.resolve(module, node.func, None))
            else:
                continue
            if not applied:
                continue
            # Scopes only now, on the way to an error: knowing them costs another walk, one
            # for every call of the module.
            if local_calls is None:
                local_calls = _calls_of_local_names(module.tree)
            if id(node) not in local_calls:
                raise _error(
                    f"`{_text(node)}` applies remote(...) by a call, which the build never "
                    "sees: no endpoint would have the function, and calls of it would fail "
                    "(UnknownFunction); write @remote(...) as a decorator on its def or class",
                    module.path,
                    node,
                )

    def remote_names(self, module: _Module) -> set[str]:
        """Names ``module`` binds at module level to remote itself or to a ``remote(...)``
        call (``on_cpu = remote(cfg)``), as at its end, where other modules import them."""
        names = set()
        for name in module.bound_names():
            resolved = self.resolve(module, ast.Name(name, ast.Load()), None)
            if _may_be_remote(resolved) or self._is_remote_result(resolved):
                names.add(name)
        return names

    def _names_remote(self, module: _Module, func: ast.expr, pos: _Pos | None) -> bool:
        """Whether ``func`` (the callee of ``func(...)(fn)``) is, or may be, Flash's remote."""
        if not isinstance(func, (ast.Name, ast.Attribute)):
            return False
        return _may_be_remote(self.resolve(module, func, pos))

    def _is_remote_result(self, resolved: _Resolved) -> bool:
        """Whether ``resolved`` is a stored ``remote(...)`` call (``on_cpu = remote(cfg)``)."""
        options = resolved.options if isinstance(resolved, _Ambiguous) else (resolved,)
        for option in options:
            if not (isinstance(option, _Value) and isinstance(option.node, ast.Call)):
                continue
            if self._names_remote(option.module, option.node.func, option.pos):
                return True
        return False

    def _remote_decorator(self, module: _Module, node: _Def) -> _Decorator | None:
        found: _Decorator | None = None
        for decorator in node.decorator_list:
            func = decorator.func if isinstance(decorator, ast.Call) else decorator
            resolved = self.resolve(module, func, _pos(node))
            if isinstance(resolved, _Ambiguous):
                # Other decorators may well be bound under conditions (a fallback import).
                if any(self._is_remote(decorator, option) for option in resolved.options):
                    what = f"@{_text(func)} on {node.name!r}"
                    raise _ambiguous_error(resolved, what, module.path, decorator)
                continue
            candidate = self._stored_remote_call(decorator, resolved)
            if candidate is None:
                if not _is_remote_target(resolved):
                    continue
                if not isinstance(decorator, ast.Call):
                    raise _error(
                        f"@{_text(decorator)} on {node.name!r} needs a resource config, e.g. "
                        f"@{_text(decorator)}(resource_config=gpu) with "
                        'gpu = LiveServerless(name="gpu-worker")',
                        module.path,
                        decorator,
                    )
                candidate = _Decorator(decorator, module, _pos(node), decorator)
            if found is not None:
                raise _error(
                    f"{node.name!r} has more than one @remote decorator", module.path, decorator
                )
            found = candidate
        return found

    def _is_remote(self, decorator: ast.expr, resolved: _Resolved) -> bool:
        if isinstance(resolved, _External):
            return _is_remote_target(resolved)
        return self._stored_remote_call(decorator, resolved) is not None

    def _stored_remote_call(self, decorator: ast.expr, resolved: _Resolved) -> _Decorator | None:
        """``@on_cpu`` where ``on_cpu = remote(resource_config=cpu)``, here or imported."""
        if isinstance(decorator, ast.Call) or not isinstance(resolved, _Value):
            return None
        call = resolved.node
        if not isinstance(call, ast.Call):
            return None
        func = self.resolve(resolved.module, call.func, resolved.pos)
        if isinstance(func, _Ambiguous) and any(map(_is_remote_target, func.options)):
            # `remote` itself bound under a condition: as for @remote(...) written in place.
            what = f"`{_text(call.func)}` in `{_text(decorator)}`"
            raise _ambiguous_error(func, what, resolved.module.path, call.func)
        if not _is_remote_target(func):
            return None
        return _Decorator(call, resolved.module, resolved.pos, decorator)

    def _remote_spec(self, defining: _Module, node: _Def, found: _Decorator) -> RemoteSpec:
        # The decorator's options are read where the remote(...) call is written, which is
        # another place than the definition when the decorator was stored in a variable.
        module, decorator = found.module, found.call
        pos = found.pos
        if len(decorator.args) > 1 or any(isinstance(a, ast.Starred) for a in decorator.args):
            raise _error(
                f"@remote on {node.name!r}: pass the resource config as the only positional "
                "argument and the other options by keyword",
                module.path,
                decorator,
            )
        options: dict[str, ast.expr] = {}
        for keyword in decorator.keywords:
            if keyword.arg is None:
                raise _error(
                    f"@remote(**{_text(keyword.value)}) on {node.name!r} cannot be read without "
                    "running your code; pass resource_config=, dependencies= and "
                    "system_dependencies= by name",
                    module.path,
                    decorator,
                )
            if keyword.arg not in REMOTE_KEYWORDS:
                # Python would refuse it when the module is imported; a build that went on
                # would drop the option (a misspelled dependencies=: nothing vendored).
                raise _error(unknown_keyword_problem(keyword.arg), module.path, keyword)
            options[keyword.arg] = keyword.value
        if decorator.args and "resource_config" in options:
            raise _error(
                f"@remote on {node.name!r} is given a resource config twice "
                "(positionally and as resource_config=)",
                module.path,
                decorator,
            )
        config_expr = decorator.args[0] if decorator.args else options.get("resource_config")
        if config_expr is None:
            raise _error(
                f"@remote on {node.name!r} needs a resource config, e.g. "
                '@remote(resource_config=gpu) with gpu = LiveServerless(name="gpu-worker")',
                module.path,
                decorator,
            )
        resource = self.resource(module, config_expr, pos)
        dependencies: tuple[str, ...] = ()
        if "dependencies" in options:
            # Checked here, where the entry's file and line are known.
            dependencies = self.string_list(
                module, options["dependencies"], pos, "dependencies", requirement_problem
            )
        system_dependencies: tuple[str, ...] = ()
        if "system_dependencies" in options:
            system_dependencies = self.string_list(
                module,
                options["system_dependencies"],
                pos,
                "system_dependencies",
                system_dependency_problem,
            )
        methods: tuple[str, ...] = ()
        async_methods: tuple[str, ...] = ()
        typed_methods: tuple[str, ...] = ()
        if isinstance(node, ast.ClassDef):
            methods, async_methods, typed_methods = _class_methods(self._lineage(defining, node))
        return RemoteSpec(
            name=node.name,
            module=defining.name,
            qualified_name=f"{defining.name}.{node.name}",
            resource=resource.name,
            is_async=isinstance(node, ast.AsyncFunctionDef),
            is_class=isinstance(node, ast.ClassDef),
            is_generator=not isinstance(node, ast.ClassDef) and _is_generator(node),
            methods=methods,
            async_methods=async_methods,
            dependencies=dependencies,
            system_dependencies=system_dependencies,
            path=defining.path,
            line=node.lineno,
            col=node.col_offset + 1,
            typed=bool(typed_methods) if isinstance(node, ast.ClassDef) else _has_type_hints(node),
            typed_methods=typed_methods,
            decorator_line=found.site.lineno,
        )


# --- small helpers ------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _build(factory: Any, items: Any) -> Any:
    try:
        return factory(items)
    except TypeError:  # an unhashable key, e.g. {[1]: 2}
        raise _NotStatic from None


_OPERATORS: dict[type[ast.operator], Any] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}


def _arithmetic(op: ast.operator, left: Any, right: Any) -> Any:
    """Plain arithmetic such as ``10 * 60 * 1000`` and string concatenation. No powers or
    string repetition, so a config cannot make the build compute something huge."""
    apply = _OPERATORS.get(type(op))
    if apply is None:
        raise _NotStatic
    if _is_number(left) and _is_number(right):
        try:
            return apply(left, right)
        except ZeroDivisionError:
            raise _NotStatic from None
    if isinstance(op, ast.Add) and isinstance(left, str) and isinstance(right, str):
        return left + right
    raise _NotStatic


def _enum_value(module: _Module, node: ast.expr, dotted: str) -> Any:
    owner, _, member = dotted.rpartition(".")
    enum = _ENUMS.get(owner)
    if enum is None:
        raise _NotStatic
    try:
        return enum[member].value
    except KeyError:
        choices = ", ".join(enum.__members__)
        raise _error(
            f"{enum.__name__} has no member {member!r}; choose one of: {choices}",
            module.path,
            node,
        ) from None


def _why_unresolved(resolved: _Resolved) -> str:
    if resolved is None:
        return "it is not a name defined or imported at module level in the project"
    if isinstance(resolved, _ModuleRef):
        return f"it is the module {resolved.name}"
    if isinstance(resolved, _External):
        return f"it refers to {resolved.dotted}, which is not a Flash resource config"
    if isinstance(resolved, _Ambiguous):
        return f"`{resolved.name}` is bound more than once, under conditions"
    if isinstance(resolved.node, ast.Call):
        kinds = ", ".join(CONFIG_TYPES)
        return f"`{_text(resolved.node.func)}(...)` is not one of Flash's configs ({kinds})"
    return f"its value `{_text(resolved.node)}` is not a call of a Flash config class"


def _kind(spec: RemoteSpec) -> str:
    """What the manifest records of a definition's kind, in words."""
    if spec.is_class:
        return "a class"
    what = "an async" if spec.is_async else "a"
    return f"{what} {'generator ' if spec.is_generator else ''}function"


def _check_same_kind(
    first: RemoteSpec, spec: RemoteSpec, name: str, path: str, node: ast.stmt
) -> None:
    """Alternative definitions of one @remote (if/else, try/except) are one function, which
    the manifest describes from the first: the others must be of its kind, or a caller would
    get what the one that ran is not."""
    if _kind(first) != _kind(spec):
        difference = f"{_kind(first)} at line {first.line} but {_kind(spec)} here"
    elif first.is_class and set(first.methods) != set(spec.methods):
        difference = (
            f"a class with the methods {_names(first.methods)} at line {first.line} but "
            f"with {_names(spec.methods)} here"
        )
    elif first.is_class and set(first.async_methods) != set(spec.async_methods):
        difference = (
            f"a class with the async methods {_names(first.async_methods)} at line "
            f"{first.line} but with {_names(spec.async_methods)} here"
        )
    else:
        return
    raise _error(
        f"@remote {name!r} is {difference} (line {spec.line}), in another branch; alternative "
        "definitions of one function must match: the same kind (function or class, async "
        "or not, generator or not) and, for a class, the same public methods, async alike, "
        "since the manifest records one description for whichever definition runs",
        path,
        node,
    )


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(sorted(names)) if names else "(none)"


def _where(spec: ResourceSpec | RemoteSpec) -> str:
    return f"{spec.path}:{spec.line}:{spec.col}"


def _differences(first: ResourceSpec, second: ResourceSpec) -> str:
    if first.type != second.type:
        return f"{first.type} vs {second.type}"
    keys = sorted(set(first.config) | set(second.config))
    fields = [k for k in keys if first.config.get(k) != second.config.get(k)]
    return "different " + ", ".join(fields)


def _check_unique_functions(functions: list[RemoteSpec]) -> None:
    seen: dict[str, RemoteSpec] = {}
    for spec in functions:
        first = seen.setdefault(spec.qualified_name, spec)
        if first is not spec:
            raise BuildError(
                f"@remote {spec.name!r} is defined twice in {spec.module} "
                f"({_where(first)} and {_where(spec)}); rename one of them",
                path=spec.path,
                line=spec.line,
                col=spec.col,
            )


def _is_generator(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    pending: list[ast.AST] = list(node.body)
    while pending:
        current = pending.pop()
        if isinstance(current, (ast.Yield, ast.YieldFrom)):
            return True
        # A yield inside a nested function, class or lambda belongs to that scope.
        if isinstance(current, (*_DEF_TYPES, ast.Lambda)):
            continue
        pending.extend(ast.iter_child_nodes(current))
    return False


def _has_type_hints(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return node.returns is not None or any(a is not None and a.annotation for a in every)


def _class_methods(
    lineage: list[ast.ClassDef],
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The public methods of the first class of ``lineage`` (it and the classes it inherits
    from, nearest first), those that are async, and those with type hints. A name a nearer
    class binds (a property, an attribute) hides a base's method of that name."""
    methods: list[str] = []
    async_methods: list[str] = []
    typed: list[str] = []
    hidden: set[str] = set()
    for cls in lineage:
        bound: set[str] = set()
        for item in cls.body:
            if isinstance(item, (ast.Assign, ast.AnnAssign)):
                targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                bound.update(t.id for t in targets if isinstance(t, ast.Name))
            if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            bound.add(item.name)
            if item.name.startswith("_") and item.name != "__call__":
                continue
            if item.name in hidden or item.name in methods or _is_property(item):
                continue
            methods.append(item.name)
            if isinstance(item, ast.AsyncFunctionDef):
                async_methods.append(item.name)
            if _has_type_hints(item):
                typed.append(item.name)
        hidden |= bound
    return tuple(methods), tuple(async_methods), tuple(typed)


def _is_property(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Properties are attributes, not methods a caller can invoke remotely."""
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Name) and decorator.id in _PROPERTY_DECORATORS:
            return True
        if isinstance(decorator, ast.Attribute) and decorator.attr in _PROPERTY_DECORATORS:
            return True
    return False


def module_bindings(source: str, path: str = "<module>") -> set[str]:
    """The names ``source``'s module-level statements bind, as the scan reads them (inside
    if/try/with/for/match blocks too; star imports aside). SyntaxError if it does not parse."""
    module = _Module(path, Path(path).stem, False, source, None)
    return set(module.bound_names())
