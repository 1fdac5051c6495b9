"""``flash build``: project files → scan → manifest → handlers → dependencies → archive.

Each stage is a module of this package; this one runs them in order, skips the whole
build when nothing changed, and never leaves a partial archive behind.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cloudpickle

import flash
from flash.build import archive as _archive
from flash.build.collect import (
    always_excluded,
    always_excluded_why,
    collect_files,
    file_marks,
    fingerprint,
    fingerprint_of,
    ignored_by,
    names_package_indexes,
    screen_secrets,
)
from flash.build.dependencies import (
    DependencyOptions,
    LocalWheel,
    ResolvedDependencies,
    check_options,
    decode_config,
    encode_config,
    file_owners,
    import_names,
    load_toml,
    local_wheels,
    local_wheels_fingerprint,
    lock_file_paths,
    normalise_name,
    package_sizes,
    referenced_files,
    requirement_name,
    requirers,
    source_urls,
    top_level_names,
    vendor_dependencies,
)
from flash.build.errors import (
    BuildError,
    BuildWarning,
    mask_config_urls,
    masking_indexes,
    redact,
)
from flash.build.handlers import render_handler
from flash.build.manifest import (
    ClassSchema,
    Dependencies,
    Manifest,
    Target,
    build_manifest,
    handler_file_name,
    load_manifest,
)
from flash.build.scanner import RemoteSpec, ScanResult, import_path, scan_project
from flash.build.schemas import SchemaResult, check_handlers_and_derive_schemas
from flash.build.target import builds_for_this_machine, platform_for_this_machine, this_machine
from flash.runtime.errors import MASKED_MIN_LENGTH
from flash.runtime.protocol import FLASH_DIR, MANIFEST_FILENAME
from flash.runtime.signing import SigningKeyError
from flash.sdk.keys import KEY_ENV_VAR, ensure_signing_key, key_to_text, make_state_dir

STAMP_NAME = "build_stamp.json"
LOCK_NAME = "build.lock"

# Standard-library modules removed in a Python version (by it, they are PyPI's to provide:
# audioop-lts, legacy-cgi, standard-imghdr, pyasyncore...). A target's names are this
# interpreter's, less those removed at or before the target, plus those removed after it:
# other differences (a module added, a private one) never name a vendored distribution.
_STDLIB_REMOVED = {
    (3, 12): frozenset({"asynchat", "asyncore", "distutils", "imp", "smtpd"}),
    (3, 13): frozenset(
        {
            "aifc",
            "audioop",
            "cgi",
            "cgitb",
            "chunk",
            "crypt",
            "imghdr",
            "lib2to3",
            "mailcap",
            "msilib",
            "nis",
            "nntplib",
            "ossaudiodev",
            "pipes",
            "sndhdr",
            "spwd",
            "sunau",
            "telnetlib",
            "uu",
            "xdrlib",
        }
    ),
}
RUNTIME_DIR = Path(flash.__file__).parent / "runtime"

# The archive's `flash` package: the vendored runtime plus every name `flash` exports, so
# any module-level import works on the worker, as light stand-ins (the configs were validated
# at build time; connect/disconnect need the SDK, which the archive does not carry).
_FLASH_STUB = '''\
"""Flash inside an endpoint (vendored by flash build): @remote and resource configs."""

from flash.runtime.errors import (
    CallDepthError,
    EndpointUnavailableError,
    InvalidResultError,
    PayloadTooLargeError,
    RemoteCancelledError,
    RemoteError,
    RemoteExecutionError,
    RemoteTimeoutError,
)
from flash.runtime.remote import MapError, RemoteClass, RemoteFunction, RemoteInstance, remote, run
from flash.runtime.resources import (
    CpuInstanceType,
    CpuLiveServerless,
    CpuServerlessEndpoint,
    GpuGroup,
    LiveServerless,
    ScalerType,
    ServerlessEndpoint,
)
from flash.runtime.resources import ResourceStub as ResourceConfig

__version__ = {version!r}

_ON_A_WORKER = (
    "is for scripts and apps that call endpoints; inside an endpoint, @remote calls "
    "already reach the other endpoints"
)


def connect(*args, **kwargs):
    """Stand-in: a module may import it, but a worker never connects anywhere."""
    raise RuntimeError("flash.connect() " + _ON_A_WORKER)


def disconnect():
    """Stand-in, as connect."""
    raise RuntimeError("flash.disconnect() " + _ON_A_WORKER)


__all__ = {names!r}
'''
_SDK_STUB = '"""Alias of the vendored flash package."""\n\nfrom flash import *  # noqa: F403\n'
# flash.sdk itself imports its remote submodule first, as the real one does: importing a
# submodule binds it on its package, so `import flash.sdk.remote` anywhere later would
# turn `from flash.sdk import remote` into the module, not the decorator.
_SDK_PACKAGE_STUB = (
    _SDK_STUB + "from flash.sdk.remote import remote  # noqa: E402  - after the submodule loads\n"
)
# The documented submodule import paths (from flash.sdk.resources import LiveServerless).
_SDK_SUBMODULE_STUBS = {
    "flash/sdk/resources.py": _SDK_STUB,  # the archive's flash exports every config name
    "flash/sdk/remote.py": "from flash.runtime.remote import remote  # noqa: F401\n",
}

Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class BuildOptions:
    project_dir: Path
    output: str = "archive.tar.gz"
    keep_build: bool = False
    max_size_mb: float = 500.0
    force: bool = False
    dependencies: DependencyOptions = field(default_factory=DependencyOptions)


@dataclass(frozen=True)
class BuildResult:
    archive: Path
    manifest: Manifest
    sha256: str
    size: int
    files: int
    skipped: bool
    timings: dict[str, float]
    # Problems the build went on after (a skipped build repeats its build's): for people.
    warnings: tuple[BuildWarning, ...] = ()

    def summary(self) -> dict[str, object]:
        return {
            "archive": str(self.archive),
            "sha256": self.sha256,
            "size_bytes": self.size,
            "files": self.files,
            "skipped": self.skipped,
            "endpoints": {
                name: sorted(f.qualified_name for f in res.functions)
                for name, res in self.manifest.resources.items()
            },
            "functions": len(self.manifest.function_registry),
            "dependencies": self.manifest.dependencies.pins,
            "excluded": self.manifest.dependencies.excluded,
            "warnings": [str(warning) for warning in self.warnings],
        }


def build_project(options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    # What the build shows or writes masks the URLs of its package sources (tokens): the
    # options' from the start, those the requirements files name once they are read.
    with masking_indexes(source_urls(options.dependencies)) as mask_too:
        return _build_project(options, progress, mask_too)


def project_dir_problem(project_dir: Path) -> str | None:
    """Why ``project_dir`` is no project folder to build (missing, or a file), or None."""
    if project_dir.is_file():
        return f"{project_dir} is a file, not a project directory"
    if not project_dir.is_dir():
        return f"project directory not found: {project_dir}"
    return None


def _build_project(
    options: BuildOptions, progress: Progress | None, mask_too: Callable[[Iterable[str]], None]
) -> BuildResult:
    report: Progress = progress or (lambda stage, detail: None)
    root = options.project_dir.resolve()
    problem = project_dir_problem(options.project_dir)
    if problem is not None:
        raise BuildError(problem)
    flash_dir = root / FLASH_DIR
    archive_path = _archive_path(flash_dir, options.output)
    _check_max_size(options.max_size_mb)
    try:
        key = ensure_signing_key(flash_dir)  # the app's key exists from its first build on
    except SigningKeyError as exc:
        raise BuildError(str(exc)) from None
    build = _Build(options, root, archive_path, report, mask_too, _never_archived(key))
    # Builds of one project share .flash/.build, the archive and the stamp: one at a time.
    with _build_lock(flash_dir, report):
        attempt = 1
        while True:
            try:
                return _build_locked(build)
            except ChangedWhileBuilding as changed:
                if attempt == _ATTEMPTS:
                    raise changed from None
                attempt += 1
                report("changed", f"{changed.names} while building: building again")


@dataclass(frozen=True)
class _Build:
    """What every try of a build goes by: its options, the project's folder, where its
    archive goes, whom it reports its stages to, what it masks (see build_project), and
    the secrets no archived file may hold (see _never_archived)."""

    options: BuildOptions
    root: Path
    archive_path: Path
    report: Progress
    mask_too: Callable[[Iterable[str]], None]
    never: Mapping[str, str]

    @property
    def flash_dir(self) -> Path:
        return self.archive_path.parent


# A build that saw its inputs change (an editor saving) starts over, this often at most.
_ATTEMPTS = 3


class ChangedWhileBuilding(BuildError):
    """Project files changed between being read and the archive being written: the
    archive could hold one version and the manifest (and the up-to-date stamp) another."""

    def __init__(self, changed: list[str]) -> None:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if changed[5:] else "")
        self.names = shown
        super().__init__(
            f"{shown} changed while the project was being built, {_ATTEMPTS} times over; "
            "build again once the files stay put"
        )


def _never_archived(key: bytes) -> dict[str, str]:
    """The secrets no archived file may hold, each with what it is: the app's signing key
    (its file's, and $FLASH_SIGNING_KEY's, which a platform may sign with instead) and the
    RunPod secrets of this environment, which configs' env may name."""
    never = {key_to_text(key): "the app's signing key"}
    for name, value in sorted(os.environ.items()):
        if name == KEY_ENV_VAR and value.strip():
            never.setdefault(value.strip(), f"the signing key in ${KEY_ENV_VAR}")
        elif name.startswith("RUNPOD_SECRET_") and len(value) >= MASKED_MIN_LENGTH:
            never.setdefault(value, f"the value of ${name}")
    return never


@contextmanager
def _build_lock(flash_dir: Path, report: Progress) -> Iterator[None]:
    """Hold the project's build lock for the block. A second build (`flash run` rebuilding
    while `flash build` runs) waits, then finds the first one's archive: up to date, or
    built again from what changed."""
    make_state_dir(flash_dir)  # a project's .flash/ made before it was ignored gets it now
    fd = os.open(flash_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock(fd, report)
        yield
    finally:
        os.close(fd)  # closing lets the lock go


def _lock(fd: int, report: Progress) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        report("waiting", "for another build of this project to finish")
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        # A file system without locks (ENOLCK, EOPNOTSUPP: some network ones): building
        # unlocked risks only two builds of one project at once; refusing, every build.
        report("lock", f"none on this file system ({exc.strerror or exc}): building without")


@dataclass(frozen=True)
class _Inputs:
    """The files a build reads, listed before it reads any: ``files`` collected from the
    project, ``dependency_files`` those only the dependency stage reads (see
    _dependency_inputs), ``stats`` both's (see file_stats) when listed, and ``sizes`` the
    collected files' (see _largest)."""

    files: list[str]
    dependency_files: list[str]
    stats: list[tuple[int, int, int] | None]
    sizes: list[tuple[str, int]]

    def changed(self, root: Path) -> ChangedWhileBuilding | None:
        """The inputs that have changed since they were listed, or None."""
        names = self.files + self.dependency_files
        now = file_stats(root, names)
        changed = [
            name for name, old, new in zip(names, self.stats, now, strict=True) if old != new
        ]
        return ChangedWhileBuilding(changed) if changed else None

    def check_unchanged(self, root: Path) -> None:
        changed = self.changed(root)
        if changed is not None:
            raise changed


def _list_inputs(root: Path, max_size_mb: float) -> _Inputs:
    files = collect_files(root)
    sizes = _largest(root, files)
    # Before anything is hashed or copied: a project too big alone never builds.
    _check_size(sum(size for _, size in sizes), max_size_mb, sizes)
    # Stats taken before the files are read: any change after them shows when the archive
    # is written (_Inputs.check_unchanged), whatever the stage that read the file.
    dependency_files = _dependency_inputs(root, files)  # reads requirements.txt
    return _Inputs(files, dependency_files, file_stats(root, files + dependency_files), sizes)


def _build_locked(build: _Build) -> BuildResult:
    """Build the project, or find its archive up to date. Any failure of a build whose
    inputs changed since it listed them (a file gone while it was hashed, screened or
    scanned) is theirs: ChangedWhileBuilding, and the build starts over."""
    timings: dict[str, float] = {}
    with _timed(timings, "collect"):
        inputs = _list_inputs(build.root, build.options.max_size_mb)
    try:
        return _build_from(build, inputs, timings)
    except ChangedWhileBuilding:
        raise
    except BuildError:
        changed = inputs.changed(build.root)
        if changed is None:
            raise
        raise changed from None


def _build_from(build: _Build, inputs: _Inputs, timings: dict[str, float]) -> BuildResult:
    """The build, stage by stage, of the ``inputs`` listed (see _build_locked)."""
    options, root, report, never = build.options, build.root, build.report, build.never
    flash_dir, archive_path = build.flash_dir, build.archive_path
    with _timed(timings, "collect"):
        marks = file_marks(root, inputs.files)
        source_fp = fingerprint_of(marks, inputs.files)
        # The local wheels too: rewritten under their version, they are new dependencies.
        wheels = local_wheels(root, options.dependencies)
        dependency_fp = fingerprint(root, inputs.dependency_files) + local_wheels_fingerprint(
            wheels
        )
        key = _build_key(source_fp, dependency_fp, options, never)
    report("collect", _count(len(inputs.files), "file"))

    # A build the stamp matches had its options checked: the key holds them.
    check_options(options.dependencies)
    cached = None if options.force else _up_to_date(flash_dir, archive_path, key)
    if cached is not None:
        report("done", "nothing changed")
        return BuildResult(
            archive=archive_path,
            manifest=cached[0],
            sha256=cached[1],
            size=archive_path.stat().st_size,
            files=cached[2],
            skipped=True,
            timings=timings,
            warnings=cached[3],
        )

    python_version = options.dependencies.python_version
    with _timed(timings, "secrets"):
        # The fingerprint covered the secret files too: changed, they rebuild and say so.
        screened = screen_secrets(root, inputs.files, never)
    with _timed(timings, "scan"):
        scan = scan_project(root, screened.kept, python_version)
        scan = _check_reserved_paths(screened.kept, scan, python_version)
    report(
        "scan",
        f"{_count(len(scan.functions), 'function')} on {_count(len(scan.resources), 'endpoint')}",
    )

    with _timed(timings, "dependencies"):
        deps = _vendor(build, scan, wheels)
    build.mask_too(deps.index_urls)
    report("dependencies", _count(len(deps.pins), "package"))

    cross_target = not builds_for_this_machine(python_version, options.dependencies.platform)
    # The manifest's fingerprint is of the files archived: a secret file's change is
    # screened again (the key above covers it), and makes the same archive.
    archived_fp = fingerprint_of(marks, screened.kept)
    manifest = _manifest_without_schemas(root, options, scan, deps, archived_fp)
    with _timed(timings, "handlers"):
        entries, dep_entries = _archive_entries(root, screened.kept, scan, deps, manifest)
        deps = _check_import_names(  # its warning too
            screened.kept, scan.src_layout, deps, python_version
        )
        build_dir = flash_dir / ".build"
        _materialize(entries + (dep_entries if options.keep_build else []), build_dir)
        try:
            with _timed(timings, "imports"):
                manifest = _import_checked(
                    root, screened.kept, scan, deps, manifest, build_dir, cross_target
                )
            manifest_json = manifest.to_json().encode()
            if options.keep_build:
                (build_dir / MANIFEST_FILENAME).write_bytes(manifest_json)
        finally:
            if not options.keep_build:
                shutil.rmtree(build_dir, ignore_errors=True)
    entries.append(_archive.Entry(name=MANIFEST_FILENAME, data=manifest_json))
    report("handlers", _handlers_checked(manifest, cross_target))
    warnings = (
        screened.warnings()
        + deps.warnings
        + scan.warnings
        + _pickle_only_warnings(scan, manifest, options.dependencies, cross_target)
    )

    all_entries = entries + dep_entries
    kept = set(screened.kept)
    sizes = [item for item in inputs.sizes if item[0] in kept]
    _check_size(sum(e.size() for e in all_entries), options.max_size_mb, sizes, deps)
    with _timed(timings, "archive"):
        info = _archive.write_archive(
            all_entries, archive_path, check=lambda: inputs.check_unchanged(root)
        )
    (flash_dir / MANIFEST_FILENAME).write_bytes(manifest_json)
    _write_stamp(flash_dir, key, info, warnings)
    report("archive", f"{info.size} bytes")
    return BuildResult(
        archive=archive_path,
        manifest=manifest,
        sha256=info.sha256,
        size=info.size,
        files=info.files,
        skipped=False,
        timings=timings,
        warnings=warnings,
    )


def _vendor(build: _Build, scan: ScanResult, wheels: Sequence[LocalWheel]) -> ResolvedDependencies:
    """The dependencies of the build's options and of the scanned @remote declarations;
    ``wheels``, the local wheels the build key was made with."""
    declared = [
        (d, f"{f.path}:{f.decorator_line or f.line} (endpoint {f.resource!r})")
        for f in scan.functions
        for d in f.dependencies
    ]
    options, cache = build.options, build.flash_dir / "cache"
    return vendor_dependencies(
        build.root, declared, options.dependencies, cache, refresh=options.force, wheels=wheels
    )


def _manifest_without_schemas(
    root: Path, options: BuildOptions, scan: ScanResult, deps: ResolvedDependencies, source_fp: str
) -> Manifest:
    """The manifest before the import check derives its functions' schemas."""
    return build_manifest(
        project=_project_name(root),
        flash_version=flash.__version__,
        target=Target(
            python_version=options.dependencies.python_version,
            platform=options.dependencies.platform,
        ),
        scan=scan,
        dependencies=Dependencies(
            requirements=list(deps.requirements),
            pins=list(deps.pins),
            excluded=list(deps.excluded),
        ),
        source_fingerprint=source_fp,
    )


def _archive_entries(
    root: Path,
    files: list[str],
    scan: ScanResult,
    deps: ResolvedDependencies,
    manifest: Manifest,
) -> tuple[list[_archive.Entry], list[_archive.Entry]]:
    """What the archive holds but its manifest: the project's ``files``, the handlers and
    the runtime; then apart, the vendored dependencies' files. No two at one path."""
    entries = _project_entries(root, files)
    project_files = {entry.name for entry in entries}
    # A vendored .pth file works where site-packages' do: its handler reads it.
    pth_files = tuple(sorted(p.name for p in deps.site_dir.glob("*.pth"))) if deps.site_dir else ()
    entries += _handler_entries(manifest, src_layout=scan.src_layout, pth_files=pth_files)
    entries += _runtime_entries(vendor_cloudpickle=not _has_package(deps.site_dir, "cloudpickle"))
    dep_entries = _tree_entries(deps.site_dir, "") if deps.site_dir else []
    _check_collisions(entries, dep_entries, project_files, deps.site_dir)
    return entries, dep_entries


def _import_checked(
    root: Path,
    files: list[str],
    scan: ScanResult,
    deps: ResolvedDependencies,
    manifest: Manifest,
    build_dir: Path,
    cross_target: bool,
) -> Manifest:
    """``manifest`` with its functions' schemas, its handlers imported from ``build_dir``
    (the archive's files) as a worker would (see _check_handlers_and_derive_schemas)."""
    with (
        _missing_module_hint(root, scan.src_layout, deps.excluded),
        _remote_object_error(scan),
    ):
        schemas = _check_handlers_and_derive_schemas(
            build_dir, deps.site_dir, manifest, cross_target, deps.excluded, files
        )
    return manifest.with_schemas(schemas)


def _handlers_checked(manifest: Manifest, cross_target: bool) -> str:
    """The handlers stage's report: how many, and what checked them."""
    if not cross_target:
        typed = sum(f.schema_ is not None for r in manifest.resources.values() for f in r.functions)
        checked = f"checked, {_count(typed, 'function')} callable with JSON"
    else:
        checked = "generated, not import-checked: cross-target build"
    return f"{_count(len(manifest.resources), 'handler')} {checked}"


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        # A stage timed in parts (collect: listed, then hashed) adds them up.
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _archive_path(flash_dir: Path, output: str) -> Path:
    if not output or Path(output).name != output or output in (".", ".."):
        raise BuildError(f"--output must be a file name inside .flash/, got {output!r}")
    # An archive name, never one of the files Flash keeps in .flash/ (the signing key, the
    # cache, a platform's job store), which the archive would overwrite.
    if not output.endswith((".tar.gz", ".tgz")):
        raise BuildError(f"--output must end in .tar.gz or .tgz, got {output!r}")
    if output in (".tar.gz", ".tgz"):  # a hidden file of no name
        raise BuildError(f"--output must name the archive before its extension, got {output!r}")
    if (flash_dir / output).is_dir():
        raise BuildError(f"--output {output!r} is an existing folder in .flash/")
    return flash_dir / output


def _check_max_size(max_size_mb: float) -> None:
    if not (math.isfinite(max_size_mb) and max_size_mb > 0):
        raise BuildError(f"--max-size must be a positive number of MB, got {max_size_mb!r}")


def _dependency_inputs(root: Path, collected: list[str]) -> list[str]:
    """The files the dependency stage reads that are not ``collected``: a requirements.txt
    or pyproject.toml in .flashignore, a file a requirements file names with -r/-c, even
    outside the project. Named relative to ``root`` (``../shared/x.txt``)."""
    files = dependency_input_paths(root)
    names = {Path(os.path.relpath(path.resolve(), root)).as_posix() for path in files}
    return sorted(names - set(collected))


def dependency_input_paths(root: Path) -> list[Path]:
    """The files the dependency stage reads whatever the ignore files say: requirements.txt,
    the files it names with -r/-c (even outside the project), pyproject.toml, and the lock
    files it compares with what it vendors (uv.lock...: their warnings change with them)."""
    requirements = root / "requirements.txt"
    files = [requirements] if requirements.is_file() else []
    files += referenced_files(files)
    if (root / "pyproject.toml").is_file():
        files.append(root / "pyproject.toml")
    return files + lock_file_paths(root)


def file_stats(root: Path, names: list[str]) -> list[tuple[int, int, int] | None]:
    """What tells a file changed without reading it: its modification time, size and
    mode (None: gone). An editor saving a file changes the first."""
    found: list[tuple[int, int, int] | None] = []
    for name in names:
        try:
            stat = os.stat(root / name)
        except OSError:
            found.append(None)
        else:
            found.append((stat.st_mtime_ns, stat.st_size, stat.st_mode))
    return found


def _build_key(
    source_fp: str, dependency_fp: str, options: BuildOptions, never: Mapping[str, str]
) -> str:
    payload = {
        # The secrets no archived file may hold (hashed, as the stamp is a file): a new one
        # in the environment looks at the files again.
        "never_archived": hashlib.sha256("\0".join(sorted(never)).encode()).hexdigest(),
        "source": source_fp,
        "dependency_inputs": dependency_fp,
        # Flash's own code, the runtime vendored into the archive and the build that makes
        # it alike: a changed Flash rebuilds even under the same version number.
        "flash_sources": _flash_sources_fingerprint(),  # __init__.py holds the version
        "cloudpickle": cloudpickle.__version__,
        "python": sys.version,
        "dependencies": asdict(options.dependencies),
        "max_size_mb": options.max_size_mb,
        "keep_build": options.keep_build,
        # Every archive entry carries this mtime: a new SOURCE_DATE_EPOCH is a new archive.
        "source_date_epoch": _archive.source_date_epoch(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@functools.cache
def _flash_sources_fingerprint() -> str:
    return sources_fingerprint(Path(flash.__file__).parent)


def sources_fingerprint(package: Path) -> str:
    """The fingerprint of every ``.py`` file of ``package``, at any depth."""
    return fingerprint(
        package, sorted(p.relative_to(package).as_posix() for p in package.rglob("*.py"))
    )


def _up_to_date(
    flash_dir: Path, archive_path: Path, key: str
) -> tuple[Manifest, str, int, tuple[BuildWarning, ...]] | None:
    try:
        stamp = json.loads((flash_dir / STAMP_NAME).read_text())
        if stamp.get("key") != key or stamp.get("archive") != archive_path.name:
            return None
        sha = _archive.file_sha256(archive_path)
        if sha != stamp.get("sha256"):
            return None
        warnings = tuple(BuildWarning(**found) for found in stamp.get("warnings", []))
        return load_manifest(flash_dir / MANIFEST_FILENAME), sha, int(stamp["files"]), warnings
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_stamp(
    flash_dir: Path, key: str, info: _archive.ArchiveInfo, warnings: tuple[BuildWarning, ...]
) -> None:
    stamp = {
        "key": key,
        "archive": info.path.name,
        "sha256": info.sha256,
        "files": info.files,
        "warnings": [asdict(warning) for warning in warnings],
    }
    tmp = flash_dir / f".{STAMP_NAME}.tmp"
    tmp.write_text(json.dumps(stamp, indent=2) + "\n")
    os.replace(tmp, flash_dir / STAMP_NAME)


def _count(number: int, noun: str) -> str:
    """``1 function``, ``2 functions``: for the stage reports."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _project_name(root: Path) -> str:
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        project = load_toml(pyproject, "pyproject.toml").get("project", {})
        if isinstance(project, dict) and isinstance(project.get("name"), str):
            return str(project["name"])
    return root.name


def _check_reserved_paths(files: list[str], scan: ScanResult, python_version: str) -> ScanResult:
    """Refuse project paths a worker could not import as meant; ``scan`` with the
    warnings about those it can live with (it is frozen: a copy)."""
    handler_names = {handler_file_name(name) for name in scan.resources}
    for rel in files:
        if rel in handler_names or rel == MANIFEST_FILENAME:
            raise BuildError("this file name is reserved for a generated file; rename it", path=rel)
        # Under an import root src/, a package is as top-level as one at the project root.
        importable = import_path(rel, scan.src_layout)
        top, _, rest = importable.partition("/")
        # A module (flash.py) is shadowed rather than shadowing: the runtime's package of
        # that name wins, and the project's module is dead on the worker. Refused alike.
        kind = "package" if rest else "module"
        name = top if rest else top.split(".", 1)[0]
        code = rest or top.endswith((".py", ".so", ".pyd"))
        if name in ("flash", "cloudpickle") and code:
            raise BuildError(
                f"a top-level {kind} named {name!r} would shadow the runtime vendored into "
                "the archive; rename it",
                path=rel,
            )
    # The standard library's names too: first on the worker's sys.path, a project's queue.py
    # is what the runtime's own `import queue` gets (or a stdlib package hides the project's
    # folder). The names of the target Python's standard library (see _stdlib_names).
    stdlib = _stdlib_names(python_version)
    for prefix, paths in _import_roots(files, scan.src_layout).items():
        for name, (kind, where) in sorted(import_names(paths).items()):
            if name not in stdlib:
                continue
            if kind == "namespace":
                raise _stdlib_named_folder_error(name, paths, prefix + where)
            what = _KIND_WORDS[kind]
            raise BuildError(
                f"the project's {what} {name!r} has the name of a module of Python's "
                "standard library: on the worker it would hide that module from the "
                "Flash runtime and every package (or be hidden by it); rename the "
                f"project's {what}",
                path=prefix + where,
            )
    return replace(scan, warnings=scan.warnings + _check_module_beside_package(files, scan))


@functools.lru_cache(maxsize=8)
def _stdlib_names(python_version: str) -> frozenset[str]:
    """The top-level module names of the target Python's standard library (see
    _STDLIB_REMOVED); for a version that is not one (refused elsewhere), this one's."""
    numbers = re.match(r"(\d+)\.(\d+)", python_version)
    if numbers is None:
        return frozenset(sys.stdlib_module_names)
    target = (int(numbers[1]), int(numbers[2]))
    names = set(sys.stdlib_module_names)
    for removed_in, removed in _STDLIB_REMOVED.items():
        if target >= removed_in:
            names -= removed
        else:
            names |= removed
    return frozenset(names)


def _stdlib_named_folder_error(name: str, paths: list[str], where: str) -> BuildError:
    """A folder without __init__.py named like a standard-library module: Python finds the
    standard library's module (or package) first, wherever it is on sys.path, and never
    looks into a namespace folder of that name, so its modules cannot be imported."""
    modules = sorted(p for p in paths if p.startswith(name + "/") and p.endswith(".py"))
    example = modules[0].removesuffix(".py").replace("/", ".") if modules else name
    return BuildError(
        f"this folder (no __init__.py) has the name of the module {name!r} of Python's "
        f"standard library, which Python finds first: `import {example}` can never reach the "
        "project's files, here or on the worker; rename the folder (and its imports)",
        path=where,
    )


def _check_module_beside_package(files: list[str], scan: ScanResult) -> tuple[BuildWarning, ...]:
    """``x.py`` next to a package ``x/`` (with ``__init__.py``): Python imports the package,
    so nothing can import the module. Refused when the module has an @remote function or
    class (no worker could ever reach it); else a warning, as such a module (a leftover, a
    script run by path) built before and may be imported by nothing."""
    present = set(files)
    remotes: dict[str, list[RemoteSpec]] = {}
    for spec in scan.functions:
        remotes.setdefault(spec.path, []).append(spec)
    warnings = []
    for rel in files:
        folder, _, name = rel.rpartition("/")
        module = f"{folder}.py"
        if name != "__init__.py" or module not in present:
            continue
        package = import_path(folder, scan.src_layout).replace("/", ".")
        said = (
            f"module {module} sits next to the package {folder}/ ({rel}); `import "
            f"{package}` gets the package, so nothing can import {module}"
        )
        if module in remotes:
            first = remotes[module][0]
            raise BuildError(
                f"{said}, and no worker could reach its @remote {first.qualified_name}: "
                "rename the module or the package (and the imports of the one renamed)",
                path=module,
                line=first.decorator_line or first.line,
            )
        warnings.append(
            BuildWarning(
                f"{said}: it is archived but never imported; rename or remove it "
                "(or leave it out in .flashignore)",
                path=module,
            )
        )
    return tuple(warnings)


def _project_entries(root: Path, files: list[str]) -> list[_archive.Entry]:
    masked = _index_configs(root, files)
    return [_project_entry(root, rel, rel in masked) for rel in files]


def _index_configs(root: Path, files: list[str]) -> set[str]:
    """The collected files that may name package indexes: INDEX_CONFIGS, and the files
    their requirements files name with -r/-c (any name, as pip reads them)."""
    found = {rel for rel in files if names_package_indexes(rel)}
    collected = set(files)
    base = root.resolve()
    requirements = [root / rel for rel in found if rel.endswith((".txt", ".in"))]
    ignored = root / "requirements.txt"  # left out of the archive, still read by the build
    if "requirements.txt" not in collected and ignored.is_file():
        requirements.append(ignored)
    for path in referenced_files(requirements):
        try:
            named = path.resolve().relative_to(base).as_posix()
        except ValueError:  # outside the project: not archived
            continue
        if named in collected:
            found.add(named)
    return found


def _project_entry(root: Path, rel: str, index_config: bool) -> _archive.Entry:
    """A project file as it goes into the archive: one that may name package indexes with
    the credentials in its URLs and its index URLs masked (secrets never enter an archive),
    others as they are.

    A masked file goes in as the bytes that were checked, whatever its size, not read again
    when the archive is written (it may have changed by then)."""
    source = root / rel
    if not index_config:
        return _archive.Entry(name=rel, source=source)
    raw = source.read_bytes()
    try:
        text, codec = decode_config(raw)
    except UnicodeDecodeError as exc:
        raise BuildError(
            f"is not the text its byte-order mark says ({exc.encoding}), so it cannot be "
            "checked for credentials in package index URLs; fix its encoding, or leave it "
            "out with .flashignore",
            path=rel,
        ) from None
    data = encode_config(redact(mask_config_urls(text)), codec)
    return _archive.Entry(name=rel, data=data, executable=bool(source.stat().st_mode & 0o111))


def _handler_entries(
    manifest: Manifest, *, src_layout: bool, pth_files: tuple[str, ...] = ()
) -> list[_archive.Entry]:
    entries = []
    for name, resource in manifest.resources.items():
        source = render_handler(name, resource, src_layout=src_layout, pth_files=pth_files)
        try:
            compile(source, resource.handler_file, "exec")
        except SyntaxError as exc:  # pragma: no cover - a bug in the generator, not the project
            raise BuildError(f"generated handler does not compile: {exc}") from exc
        entries.append(_archive.Entry(name=resource.handler_file, data=source.encode()))
    return entries


def _runtime_entries(*, vendor_cloudpickle: bool) -> list[_archive.Entry]:
    stub = _FLASH_STUB.format(version=flash.__version__, names=sorted(flash.__all__)).encode()
    entries = [
        _archive.Entry(name="flash/__init__.py", data=stub),
        _archive.Entry(name="flash/sdk/__init__.py", data=_SDK_PACKAGE_STUB.encode()),
    ]
    entries += [_archive.Entry(name=n, data=t.encode()) for n, t in _SDK_SUBMODULE_STUBS.items()]
    entries += _tree_entries(RUNTIME_DIR, "flash/runtime/")
    if vendor_cloudpickle:
        entries += _tree_entries(Path(cloudpickle.__file__).parent, "cloudpickle/")
    return entries


def _tree_entries(base: Path, prefix: str) -> list[_archive.Entry]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(base).as_posix()
            entries.append(_archive.Entry(name=prefix + rel, source=path))
    return entries


def _has_package(site_dir: Path | None, name: str) -> bool:
    return site_dir is not None and (site_dir / name / "__init__.py").is_file()


def _check_collisions(
    entries: list[_archive.Entry],
    dep_entries: list[_archive.Entry],
    project_files: Collection[str],
    site_dir: Path | None,
) -> None:
    """Refuse a vendored file at the path of one the archive has already: a project file
    (``project_files``), or one the build writes (a handler, the Flash runtime)."""
    # The manifest joins the archive after the import check: reserved here all the same.
    own = {e.name for e in entries} | {MANIFEST_FILENAME}
    for dep in dep_entries:
        if dep.name not in own:
            continue
        # Read only now: every package's RECORD, to name the one at fault.
        dist = file_owners(site_dir).get(dep.name) if site_dir is not None else None
        theirs = f"the vendored dependency {dist!r}" if dist else "a vendored dependency"
        exclude = f"--exclude {dist}" if dist else "--exclude the dependency"
        if dep.name in project_files:
            raise BuildError(
                f"project file {dep.name!r} collides with a file of {theirs}; rename the "
                f"project file or {exclude}",
                path=dep.name,
            )
        if dep.name == MANIFEST_FILENAME:
            raise BuildError(
                f"{theirs} ships {dep.name!r}, the name of the manifest flash build puts in "
                f"the archive (an archive holds one); {exclude}, or drop it from the "
                "dependencies"
            )
        what = "a generated handler" if dep.name.startswith("handler_") else "the Flash runtime"
        raise BuildError(
            f"{theirs} ships {dep.name!r}, a file of {what} that flash build puts in the "
            f"archive; {exclude}, or drop it from the dependencies"
        )


def _check_import_names(
    files: list[str], src_layout: bool, deps: ResolvedDependencies, python_version: str
) -> ResolvedDependencies:
    """A project module or package with the top-level import name of a vendored one, where
    on the worker one would hide the other (see _hides); a vendored one with a standard
    library name. ``deps`` with a warning about a vendored cloudpickle, if any."""
    site_dir = deps.site_dir
    if site_dir is None:
        return deps
    vendored = top_level_names(site_dir)
    _check_stdlib_names(vendored, site_dir, deps.requirements, python_version)
    for prefix, paths in _import_roots(files, src_layout).items():
        for name, (kind, where) in import_names(paths).items():
            if name not in vendored:
                continue
            theirs, dist = vendored[name]
            if _hides(kind, theirs, same_entry=not prefix):
                what = _KIND_WORDS[kind]
                raise BuildError(
                    f"the project's {what} {name!r} has the top-level import name of the "
                    f"{_KIND_WORDS[theirs]} the vendored distribution {dist!r} installs: on "
                    f"the worker one would hide the other; rename the project's {what}",
                    path=prefix + where,
                )
    warning = _vendored_cloudpickle_warning(site_dir, deps.requirements)
    return deps if warning is None else replace(deps, warnings=(*deps.warnings, warning))


def _check_stdlib_names(
    vendored: dict[str, tuple[str, str]],
    site_dir: Path,
    requirements: Sequence[str],
    python_version: str,
) -> None:
    """A vendored top-level module or package named like one of the target Python's standard
    library (enum34's enum/, typing's typing.py): the archive's root is first on the worker's
    sys.path, so it would hide the standard library's from the runtime and every package. (A
    namespace portion hides nothing: a regular package later on sys.path wins over it.) One
    the target no longer has (audioop-lts's audioop for 3.13) is what provides it there."""
    stdlib = _stdlib_names(python_version)
    for name, (kind, dist) in sorted(vendored.items()):
        if name not in stdlib or kind == "namespace":
            continue
        shown = f"{name}/" if kind == "package" else name
        origin = _required_by(site_dir, dist, requirements)
        if origin.startswith(" (required directly"):
            minor = ".".join(python_version.split(".")[:2])  # what the marker compares
            fix = f"drop {dist}, or add a marker: `{dist}; python_version < '{minor}'`"
        else:
            fix = f"leave {dist} out with --exclude {dist}"
        raise BuildError(
            f"the vendored distribution {dist!r}{origin} installs {shown}, which would hide "
            f"the standard library's {name!r} on the worker (the archive's root comes first on "
            f"sys.path); Python {python_version} has {name!r} built in, so {fix}"
        )


def _required_by(site_dir: Path, dist: str, requirements: Sequence[str]) -> str:
    """Where a vendored distribution comes from, as far as the build knows: ``, required
    directly (enum34==1.1.10)``, ``, required by 'pkg'``, or nothing."""
    wanted = normalise_name(dist)
    direct = [r for r in requirements if normalise_name(requirement_name(r)) == wanted]
    if direct:
        return f" (required directly: {', '.join(direct)})"
    parents = [
        f"{dist_info.name.split('-', 1)[0]} ({requirement})"
        for dist_info, requirement in requirers(site_dir, wanted)
    ]
    return f" (required by {', '.join(parents)})" if parents else ""


def _vendored_cloudpickle_warning(
    site_dir: Path, requirements: Sequence[str]
) -> BuildWarning | None:
    """A dependency's cloudpickle replaces the one Flash vendors (see _runtime_entries). Of
    another major version, the workers refuse a Flash client's pickled calls as a version
    mismatch (signing checks the major); JSON calls do not use it. A warning: a project may
    take JSON calls only."""
    if not _has_package(site_dir, "cloudpickle"):
        return None
    found = sorted(site_dir.glob("cloudpickle-*.dist-info"))
    version = found[0].name[len("cloudpickle-") : -len(".dist-info")] if found else "?"
    ours = cloudpickle.__version__
    if version.split(".", 1)[0] == ours.split(".", 1)[0]:
        return None
    return BuildWarning(
        f"the dependencies install cloudpickle {version}"
        f"{_required_by(site_dir, 'cloudpickle', requirements)}, which replaces the "
        f"cloudpickle {ours} Flash vendors: the workers will refuse pickled calls from a "
        "Flash client (its cloudpickle's major version differs: VersionMismatch); typed JSON "
        f"calls are unaffected. To keep pickled calls, allow cloudpickle {ours.split('.')[0]}"
        ".x in the dependencies"
    )


_KIND_WORDS = {
    "module": "module",
    "extension": "extension module",
    "package": "package",
    "namespace": "package",
}
# Kinds whose folders merge in one sys.path entry: both packages' files are found (the same
# file in both is an error of _check_collisions), and namespace portions join.
_MERGING = frozenset({"package", "namespace"})


def _hides(ours: str, theirs: str, same_entry: bool) -> bool:
    """Whether of two top-level names of kinds ``ours`` and ``theirs`` one hides the other.
    In one folder a package wins over a module, a module over a namespace portion, an
    extension over a module. In two sys.path entries (a src layout's src/) the first wins,
    bar namespace portions, which join."""
    if not same_entry:
        return not ours == theirs == "namespace"
    return ours != theirs and not {ours, theirs} <= _MERGING


def _import_roots(files: list[str], src_layout: bool) -> dict[str, list[str]]:
    """The project's files by the sys.path entry they are imported from on the worker: the
    archive's root (""), or in a src layout its "src/" (paths relative to the entry)."""
    roots: dict[str, list[str]] = {"": [], "src/": []}
    for rel in files:
        importable = import_path(rel, src_layout)
        roots[rel[: len(rel) - len(importable)]].append(importable)
    return roots


# The last line of a failed import's report, when what failed is a missing module.
_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([^']+)'\Z")


@contextmanager
def _missing_module_hint(root: Path, src_layout: bool, excluded: tuple[str, ...]) -> Iterator[None]:
    """Add to a failed import of a missing module what to do: archive the project's module
    an ignore file leaves out, declare its package, or, for an --exclude'd package, know
    that the build imports it from this environment."""
    try:
        yield
    except BuildError as exc:
        found = _MISSING_MODULE.search(exc.message)
        if found is None:
            raise
        module = found[1]
        hint = (
            _sibling_module_advice(root, src_layout, exc.message, module)
            or _always_excluded_advice(root, src_layout, module)
            or _missing_module_advice(root, src_layout, excluded, module)
        )
        raise BuildError(
            f"{exc.message}\n{hint}", path=exc.path, line=exc.line, col=exc.col
        ) from None


# A frame of a failed import's report: `  app/workers/job.py:2 in <module>: from utils import x`.
_FRAME = re.compile(r"^  (?P<path>[^\n]+?\.py):\d+ in [^\n]*?: (?P<source>[^\n]*)$", re.M)


def _sibling_module_advice(root: Path, src_layout: bool, report: str, module: str) -> str | None:
    """What to write when the file that failed imports ``module`` as top-level while it
    sits next to that file in a subpackage (``from utils import x`` in app/workers/, for
    app/workers/utils.py): Python looks for top-level modules at the import root only."""
    frames = list(_FRAME.finditer(report))
    if not frames:
        return None
    importer, source = frames[-1]["path"], frames[-1]["source"].strip()
    folder = importer.rpartition("/")[0]
    package = import_path(folder + "/", src_layout).rstrip("/").replace("/", ".")
    top = module.split(".", 1)[0]
    found = [
        rel
        for rel in (f"{folder}/{top}.py", f"{folder}/{top}/__init__.py")
        if package and (root / rel).is_file()
    ]
    if not found:
        return None
    named = re.match(rf"from\s+{re.escape(module)}\s+import\s+(.+)", source)
    if named is not None:
        # A parenthesised list spans lines the report does not show.
        names = "..." if named[1].startswith("(") else named[1]
        fixes = f"`from .{module} import {names}` or `from {package}.{module} import {names}`"
    else:
        fixes = f"`from . import {top}` or `from {package} import {top}`"
    return (
        f"{top!r} is no top-level module: {found[0]} sits next to {importer}, but Python "
        f"looks for top-level modules at the project's import root, not in the importing "
        f"file's folder; import it through its package: {fixes}"
    )


def _always_excluded_advice(root: Path, src_layout: bool, module: str) -> str | None:
    """For a missing ``module`` that is the project's folder of an always-excluded name
    (build/, dist/): no ignore file can re-include it (see ALWAYS_EXCLUDED), so renaming is
    the only way."""
    left_out = _left_out_module(root, src_layout, module)
    if left_out is None or not always_excluded(left_out[0]):  # else an ignore file's doing
        return None
    rel = left_out[0]
    shown = rel.split("/", 1)[0] + "/" if "/" in rel else rel
    name = module.split(".", 1)[0]
    return (
        f"{name!r} is the project's {shown}, a name flash build always leaves out "
        f"({always_excluded_why(rel)}), whatever .gitignore or .flashignore say: rename "
        "the package (and the imports of it)"
    )


@contextmanager
def _remote_object_error(scan: ScanResult) -> Iterator[None]:
    """A handler's refusal of an @remote name (generic_handler.remote_object) as an error at
    the definition the scan found, saying what to do."""
    try:
        yield
    except BuildError as exc:
        for spec in scan.functions:
            said = f"\nLookupError: {spec.module}.{spec.name} is "
            if said not in exc.message:
                continue
            what = exc.message.split(said, 1)[1]
            if what.startswith("not defined when"):
                message = (
                    f"{spec.name!r} is not defined when {spec.path} is imported: a conditional "
                    "definition (under an `if` or `try` that did not run when the build "
                    "imported it, as no worker would); define it unconditionally, importing "
                    "what it needs (an optional package) inside its body"
                )
            else:
                holds = what.split(f" when {spec.module} is imported", 1)[0]
                message = (
                    f"{spec.name!r} is rebound later in {spec.path}: once imported, the name "
                    f"holds {holds}, not the @remote one defined here, and the endpoint would "
                    "serve that; give the @remote one or the other a name of its own"
                )
            raise BuildError(message, path=spec.path, line=spec.line) from None
        raise


def _missing_module_advice(
    root: Path, src_layout: bool, excluded: tuple[str, ...], module: str
) -> str:
    left_out = _left_out_module(root, src_layout, module)
    name = module.split(".", 1)[0]
    if left_out is not None:
        rel, by = left_out
        return (
            f"{name!r} is the project's {rel}, which {by} leaves out of the build (no worker "
            "would have it either): archive it, or stop importing it"
        )
    if normalise_name(name) in excluded:  # excluded names are normalised
        return (
            f"{name!r} is excluded (--exclude: provided by the base image), so the build "
            "imports it from this environment, where it is not installed; install it "
            "here to have the handlers checked, or stop excluding it"
        )
    hint = (
        f"if {name!r} comes from a package, declare that package in "
        "@remote(..., dependencies=[...]) or requirements.txt: the build vendors only what "
        "is declared"
    )
    if excluded:  # an import name need not be its distribution's (yaml: pyyaml)
        hint += (
            f"; if it comes from one of the --exclude'd ({', '.join(excluded)}), the build "
            "imports that from this environment, where it is not installed: install it here"
        )
    return hint


def _left_out_module(root: Path, src_layout: bool, module: str) -> tuple[str, str] | None:
    """The project's module or package of the missing ``module`` (its top-level path) and
    what leaves it out of the build, when an ignore file does."""
    name = module.split(".", 1)[0]
    for prefix in ("src/", "") if src_layout else ("",):
        for rel in (f"{prefix}{name}.py", f"{prefix}{name}/__init__.py", f"{prefix}{name}/"):
            found = (root / rel).exists() and (
                not rel.endswith("/") or _is_namespace_package(root / prefix, module)
            )
            by = ignored_by(root, rel) if found else None
            if by is not None:
                return rel, by
    return None


def _is_namespace_package(base: Path, module: str) -> bool:
    """Whether ``module``'s folder under ``base``, without ``__init__.py``, is still the
    project's (namespace) package, as ``lib/`` with ``lib/helpers.py`` is: for ``a.b``,
    when ``a/b.py`` or ``a/b/`` is there; for ``a``, when ``a/`` holds a Python file or a
    folder with one (``__init__.py`` or another) directly in it. A folder that only holds
    Python files deeper down (wandb's saved copies, wandb/run-*/files/code/) is none."""
    top, *rest = module.split(".")
    if rest:
        path = base.joinpath(top, *rest)
        return path.with_name(path.name + ".py").is_file() or path.is_dir()
    try:
        children = list((base / top).iterdir())
    except OSError:
        return False
    for child in children:
        if child.is_file() and child.name.endswith(".py"):
            return True
        if child.is_dir() and any(sub.name.endswith(".py") for sub in _entries(child)):
            return True
    return False


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _materialize(entries: list[_archive.Entry], build_dir: Path) -> None:
    shutil.rmtree(build_dir, ignore_errors=True)
    for entry in entries:
        path = build_dir / entry.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.data is not None:
            path.write_bytes(entry.data)
        else:
            assert entry.source is not None
            try:
                shutil.copyfile(entry.source, path)
            except FileNotFoundError:
                if entry.source.exists():
                    raise  # not the source: the copy's folder is gone
                raise _archive.SourceChanged(entry.source) from None


def _check_handlers_and_derive_schemas(
    build_dir: Path,
    site_dir: Path | None,
    manifest: Manifest,
    cross_target: bool,
    excluded: tuple[str, ...],
    files: Sequence[str] = (),
) -> dict[str, SchemaResult]:
    """Import every generated handler as a worker would, then derive the functions' JSON
    schemas from their type hints: one fresh interpreter for both. A cross-target build
    does neither (the vendored packages cannot load here) and its functions stay pickle-only.
    """
    functions = [
        (f.qualified_name, f.module, f.name)
        for r in manifest.resources.values()
        for f in r.functions
    ]
    if cross_target:
        reason = "cross-target build: the project's modules cannot be imported here"
        return {name: SchemaResult(None, None, None, reason) for name, _, _ in functions}
    handlers = [r.handler_file[: -len(".py")] for r in manifest.resources.values()]
    # Without site-packages the import proves the build is self-contained; excluded packages
    # come from the base image, which here means this interpreter's site-packages.
    # ``files``, the project's modules among them: where an @remote the scan missed is found.
    modules = [rel for rel in files if rel.endswith(".py")]
    return check_handlers_and_derive_schemas(
        build_dir,
        site_dir,
        handlers,
        functions,
        self_contained=not excluded,
        project_files=modules,
        handler_env=_handler_env(manifest),
    )


def _handler_env(manifest: Manifest) -> dict[str, dict[str, str]]:
    """Each endpoint's ``env`` by its handler module: its workers have it when they import
    the handler, so the import check does too."""
    return {
        r.handler_file[: -len(".py")]: {str(k): str(v) for k, v in r.config.get("env", {}).items()}
        for r in manifest.resources.values()
    }


# pydantic's complaint about typing.TypedDict before Python 3.12 (in the schema child).
_TYPING_TYPEDDICT = "instead of `typing.TypedDict`"
_LISTED = 10  # functions a warning names: the manifest has all of them


def _pickle_only_warnings(
    scan: ScanResult, manifest: Manifest, options: DependencyOptions, cross_target: bool
) -> tuple[BuildWarning, ...]:
    """One warning naming the functions written with type hints that got no JSON Schema: a
    JSON call of one (curl) fails with NotJsonCallable. Untyped ones are pickle-only by design.
    """
    entries = {f.qualified_name: f for r in manifest.resources.values() for f in r.functions}
    missing: list[tuple[RemoteSpec, str, str]] = []  # (where, name, why)
    for spec in scan.functions:
        entry = entries[spec.qualified_name]
        if not spec.typed:
            continue
        if entry.schema_ is None:
            missing.append((spec, spec.name, entry.pickle_only or "no schema was derived"))
        elif isinstance(entry.schema_, ClassSchema):
            for method, why in sorted(entry.schema_.pickle_only_methods.items()):
                if method in spec.typed_methods:
                    missing.append((spec, f"{spec.name}.{method}", why))
    if not missing:
        return ()
    missing.sort(key=lambda item: (item[0].path, item[0].line, item[1]))
    count = f"{len(missing)} function{'s' if len(missing) > 1 else ''} with type hints"
    if cross_target:  # every function has the same reason: say it once
        return (BuildWarning(_cross_target_warning(options, count, [n for _, n, _ in missing])),)
    lines = [
        f"{count} got no JSON Schema, so {'they take' if len(missing) > 1 else 'it takes'} "
        "signed pickled calls only (a JSON call, from curl say, fails with NotJsonCallable):"
    ]
    lines += [f"  {spec.path}:{spec.line} {name}: {_advice(why)}" for spec, name, why in missing]
    if len(lines) > _LISTED + 1:
        more = len(lines) - _LISTED - 1
        lines[_LISTED + 1 :] = [f"  and {more} more: see pickle_only in {MANIFEST_FILENAME}"]
    return (BuildWarning("\n".join(lines)),)


def _advice(why: str) -> str:
    """``why`` a function has no schema, saying what to do where pydantic's own words do not."""
    if _TYPING_TYPEDDICT not in why:
        return why
    what = why.split(" (PydanticUserError", 1)[0]
    return (
        f"{what}: pydantic reads typing.TypedDict only on Python 3.12+; import TypedDict "
        "from typing_extensions (and list typing-extensions in requirements.txt), or build "
        "on Python 3.12+"
    )


def _cross_target_warning(options: DependencyOptions, count: str, names: list[str]) -> str:
    host = this_machine()
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    takes = "take" if len(names) > 1 else "takes"
    # Schemas come from importing the project, which only a Linux build for its own Python
    # and processor does (builds_for_this_machine).
    ways = []
    if "linux" in options.platform.lower():
        ways.append(f"run the build with Python {options.python_version} on a Linux machine")
    own = platform_for_this_machine()
    if own is not None:
        ways.append(f"build for this machine: --python-version {host.python} --platform {own}")
    how = " or ".join(ways) if ways else "build on Linux for the machine's own Python"
    return (
        f"cross-target build (Python {options.python_version} on {options.platform}; this "
        f"machine runs Python {host.python} on {host.system} {host.processor}): the project cannot "
        "be imported here, so the handlers were not import-checked and no JSON Schemas were "
        f"derived; {count} ({shown}) {takes} signed pickled calls only. To have the handlers "
        f"checked and give those functions JSON Schemas, {how}."
    )


def _largest(root: Path, files: list[str]) -> list[tuple[str, int]]:
    """(path, bytes) of the collected files, largest first."""
    sizes = []
    for rel in files:
        try:
            sizes.append((rel, (root / rel).stat().st_size))
        except OSError as exc:  # gone since the walk
            raise BuildError(f"cannot read: {exc.strerror or exc}", path=rel) from None
    return sorted(sizes, key=lambda item: -item[1])


def _check_size(
    total: int,
    max_size_mb: float,
    project_files: list[tuple[str, int]],
    deps: ResolvedDependencies | None = None,
) -> None:
    """Over --max-size, name what takes the room: the largest project files, and packages
    once they are installed (``deps`` is None before then). MB is --max-size's: 2**20."""
    limit = int(max_size_mb * 1024 * 1024)
    if total <= limit:
        return
    packages = None
    if deps is not None:  # only now: listing every installed file takes a while
        packages = package_sizes(deps.site_dir) if deps.site_dir else []
    what = "the archive would hold" if packages is not None else "the project files alone hold"
    facts = [f"{what} {_mb(total)}, over --max-size {max_size_mb:g} MB"]
    advice = []
    if project_files:
        facts.append("largest project files: " + _listed(project_files))
        advice.append("Leave project files out with .flashignore.")
    if packages:
        facts.append("largest packages: " + _listed(packages))
        advice.append("Exclude packages the base image provides with --exclude PKG.")
    if packages is not None:
        # What no option leaves out: the handlers, Flash's runtime, cloudpickle.
        own = total - sum(size for _, size in project_files) - sum(size for _, size in packages)
        if own >= 0.05 * 1024 * 1024:
            facts.append(f"Flash's runtime, cloudpickle and the handlers (always there) {_mb(own)}")
    raise BuildError(" ".join(["; ".join(facts) + ".", *advice]))


def _listed(sizes: list[tuple[str, int]]) -> str:
    """The largest of ``sizes`` (largest first), not those too small to show as 0.1 MB."""
    shown = [item for item in sizes[:5] if item[1] >= 0.05 * 1024 * 1024] or sizes[:1]
    return ", ".join(f"{name} {_mb(size)}" for name, size in shown)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
