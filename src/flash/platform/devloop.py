"""``flash run``'s loop: watch what the build reads, rebuild on a change, reload the platform
and the web app. Output goes through the callbacks given, as with ``start_project``."""

from __future__ import annotations

import enum
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import watchfiles

from flash.build.collect import collect_files, is_ignored
from flash.build.dependencies import DependencyOptions, local_find_links, local_wheels
from flash.build.errors import BuildError
from flash.build.pipeline import (
    BuildOptions,
    BuildResult,
    ChangedWhileBuilding,
    Progress,
    build_project,
    dependency_input_paths,
    file_stats,
)
from flash.platform.archive import extract_for_serving
from flash.platform.local import LocalPlatform
from flash.platform.manifest import PlatformError
from flash.platform.own_writes import REPEATS, OwnWrites, Restart
from flash.platform.web_app import WebApp, WebAppError, defines_web_app
from flash.sdk.keys import keep_signing_key

__all__ = [
    "Outcome",
    "Reloader",
    "always_watched",
    "interrupt_failure",
    "snapshot",
    "source_filter",
    "wait_for_change",
    "wait_until_settled",
    "waiting_to_settle",
    "watch_and_reload",
]

# How long a KeyboardInterrupt out of a build waits for our own stopping signal: a Ctrl-C
# reaches the build's child and this process together, but not in a known order.
_SIGNAL_GRACE_S = 1.0


def interrupt_failure(stop: threading.Event) -> BuildError | None:
    """After a build raised KeyboardInterrupt: None if it was our stopping signal (it comes
    within _SIGNAL_GRACE_S, in either order), else the failure to report: the project's
    code raised it while imported."""
    if stop.wait(_SIGNAL_GRACE_S):
        return None
    return BuildError("importing the project raised KeyboardInterrupt (not a Ctrl-C)")


class Outcome(enum.Enum):
    """What a rebuild came to."""

    NEW = "new"  # a new build serves
    SAME = "same"  # nothing to reload: the build served is up to date
    # A new build of the archive served (a file it reads but leaves out changed): the
    # workers keep serving it; the web app, which reads the project's files, restarts.
    REBUILT = "rebuilt"
    FAILED = "failed"  # the build or its loading failed: the last good one serves on
    STOPPED = "stopped"  # a stop was asked for meanwhile: nothing more is done


class Reloader:
    """Rebuilds and reloads the platform and the web app for a batch of changes. ``say``
    gets news, ``warn`` (title, message) problems and the build's warnings (those not among
    the last build's: ``warned`` are the first build's, said already)."""

    def __init__(
        self,
        options: BuildOptions,
        platform: LocalPlatform,
        web: WebApp,
        stop: threading.Event,
        *,
        say: Callable[[str], None],
        warn: Callable[[str, str], None],
        progress: Progress | None = None,
        warned: Iterable[str] = (),
    ):
        self.options = options
        self.platform = platform
        self.web = web
        self.stop = stop
        self.say = say
        self.warn = warn
        self.progress = progress
        self.broken = False  # the last rebuild failed: the next good one says so
        self.unserved: str | None = None  # a build that was made but could not be served
        self._key_warning: str | None = None  # said once, until it changes
        # The warnings of the build served (``warned``: the first one's, said already): a
        # rebuild says only those it adds, not the same ones at every save.
        self._warnings = set(warned)
        self._said_empty = False  # "main.py is empty" was said, and it is still empty
        self.own_writes = OwnWrites()
        self._built_at = 0.0  # when the last build was done (wall clock, as files' times)
        # When the last reload restarted what serves (its build done, its own return), if
        # it did: a change written meanwhile may be the project's own (see own_writes).
        self._restarted: tuple[float, float] | None = None

    def _keep_key(self) -> None:
        """The project's key file keeps the key the workers check (a deleted one is written
        again; the build would make a new one), unless they were given another key. A new
        key written there meanwhile (by another process's build) is the workers' now: the
        platform follows the file, as flash serve's does."""
        if not self.platform.key_from_state_dir:
            return
        self.platform.follow_signing_key()
        warning = keep_signing_key(self.platform.state_dir, self.platform.signing_key)
        if warning is not None and warning != self._key_warning:
            self.warn("Warning", warning)
        self._key_warning = warning

    def __call__(self, changed: Iterable[Path]) -> None:
        changed = frozenset(changed)
        if changed and changed <= self.own_writes.files:
            return  # the project's own writes (said once): the next other change builds them
        own = self.own_writes.found(changed, self._last_restart())
        self._restarted = None
        outcome = self.rebuild()  # the batch found to be own writes too: none is dropped
        if own:
            self._say_own_writes(own)
        if outcome is Outcome.STOPPED:
            return
        main_changed = self.web.main.resolve() in changed
        # The web app imports the project's files as they are on disk: any new build may
        # change what it sees (which files, read when, cannot be told), so it restarts;
        # main.py may also be ignored by the build.
        if outcome in (Outcome.NEW, Outcome.REBUILT) or (
            outcome is Outcome.SAME and (main_changed or self.web.needs_start)
        ):
            self.update_web_app()
        if outcome is Outcome.NEW or self.web.starting:
            self._restarted = (self._built_at, time.time())

    def _last_restart(self) -> Restart | None:
        """What the last reload restarted, if anything: from its build on, until all it
        started is ready."""
        if self._restarted is None:
            return None
        began, returned = self._restarted
        settled = None if self.web.starting else max(returned, self.web.settled_at)
        return Restart(began, settled)

    def _say_own_writes(self, files: Iterable[Path]) -> None:
        root = self.options.project_dir.resolve()
        names = sorted(os.path.relpath(path, root) for path in files)
        it = "it" if len(names) == 1 else "them"
        self.warn(
            "Warning",
            f"{', '.join(names)} changed right after each of the last {REPEATS} reloads, "
            "written by the project itself as it starts, it seems (a log, a database): "
            f"flash run no longer reloads for changes to {it} alone; add {it} to "
            f".flashignore, or write {it} outside the project",
        )

    def rebuild(self) -> Outcome:
        """Build and serve what changed."""
        self._keep_key()
        result = self._build()
        if isinstance(result, Outcome):
            return result
        if self.stop.is_set():
            return Outcome.STOPPED  # no new build to load, nor web app to start, on the way out
        self._built_at = time.time()
        # A new build may make the archive served: REBUILT.
        if (result.skipped or self._serves(result.sha256)) and result.sha256 != self.unserved:
            if self.broken:
                self.broken = False
                self.say(f"Build good again: serving {result.sha256[:12]}")
            return Outcome.SAME if result.skipped else Outcome.REBUILT
        warnings = [str(warning) for warning in result.warnings]
        for warning in warnings:
            if warning not in self._warnings:
                self.warn("Warning", warning)
        repeated = sum(warning in self._warnings for warning in warnings)
        self._warnings = set(warnings)
        before = {endpoint["name"] for endpoint in self.platform.endpoints()}
        try:
            self.platform.load_copy(
                extract_for_serving(result.archive, self.platform.copies_root, sha256=result.sha256)
            )
        except PlatformError as exc:
            self.broken, self.unserved = True, result.sha256
            self.warn("Cannot serve the new build, still serving the last", str(exc))
            return Outcome.FAILED
        self.broken, self.unserved = False, None
        as_before = (
            f" ({repeated} warning{'s' if repeated > 1 else ''} as before)" if repeated else ""
        )
        self.say(f"Reloaded {result.sha256[:12]}{as_before}")
        self._say_endpoint_changes(before)
        return Outcome.NEW

    def _serves(self, sha256: str) -> bool:
        """Whether the platform serves the archive ``sha256`` (its copy is named by it)."""
        app_dir = self.platform.app_dir
        return app_dir is not None and app_dir.name == sha256

    def _build(self) -> BuildResult | Outcome:
        """The build, or what it came to. Files changing while it ran (a script writing,
        a git checkout) are no failure: it builds again once they stay put."""
        said = False
        while True:
            try:
                return build_project(self.options, progress=self.progress)
            except ChangedWhileBuilding as exc:
                if not said and not self.stop.is_set():
                    self.say(waiting_to_settle(exc))
                said = True
                if not wait_until_settled(self.options, self.stop):
                    return Outcome.STOPPED
            except KeyboardInterrupt:
                failure = interrupt_failure(self.stop)
                return Outcome.STOPPED if failure is None else self._failed(failure)
            except BuildError as exc:
                return Outcome.STOPPED if self.stop.is_set() else self._failed(exc)

    def _say_endpoint_changes(self, before: set[str]) -> None:
        """Name the endpoints the reload added (with their URLs: what a script calls) and
        removed: the table printed at the start no longer says what serves."""
        after = self.platform.endpoints()
        for endpoint in after:
            if endpoint["name"] not in before:
                self.say(f"  added endpoint {endpoint['name']} at {endpoint['url']}")
        for name in sorted(before - {endpoint["name"] for endpoint in after}):
            self.say(f"  removed endpoint {name}")

    def _failed(self, exc: BuildError) -> Outcome:
        self.broken = True
        self.warn("Build failed, still serving the last build", str(exc))
        return Outcome.FAILED

    def update_web_app(self) -> None:
        """(Re)start main.py's web app if main.py binds ``app``; else stop it."""
        if self.web.running and _is_empty(self.web.main):
            # An editor saving in place leaves it so for a moment: the write to come
            # restarts the app. One left empty keeps the old app until its next change
            # (said once, not at every reload meanwhile).
            if not self._said_empty:
                self.say("main.py is empty: its web app serves on until main.py changes")
            self._said_empty = True
            return
        self._said_empty = False
        if defines_web_app(self.web.main) is False:
            if self.web.running:
                self.web.stop()
                self.say("main.py no longer binds `app`: its web app is stopped")
            return
        # Cannot be told (a syntax error, say): the start fails and uvicorn says why, while
        # an app serving goes on.
        try:
            self.web.start()
        except (WebAppError, OSError) as exc:  # its port taken meanwhile, no descriptors left
            self.warn("Cannot start the web app", str(exc))


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


# No package sources given: the local --find-links are those requirements.txt names.
_NO_SOURCES = DependencyOptions()


# What the build reads, changed while it ran, is built once it stays put this long.
_SETTLE_S = 1.0


def waiting_to_settle(changed: ChangedWhileBuilding) -> str:
    """What a loop says once as it waits for the files ``changed`` names to stay put."""
    return f"{changed.names} changed while building: building once they stay put"


def wait_until_settled(options: BuildOptions, stop: threading.Event) -> bool:
    """Wait until what the build of ``options`` reads (see ``snapshot``) has not changed
    for _SETTLE_S: True then, False on ``stop``."""
    before = snapshot(options.project_dir, options.dependencies)
    while not stop.wait(_SETTLE_S):
        now = snapshot(options.project_dir, options.dependencies)
        if now == before:
            return True
        before = now
    return False


def watch_and_reload(
    root: Path,
    stop: threading.Event,
    reload: Callable[[set[Path]], None],
    dependencies: DependencyOptions = _NO_SOURCES,
) -> None:
    """Call ``reload`` with each batch of changes to what the build reads, until ``stop``;
    ``dependencies``: the build's package sources (their local --find-links are read)."""
    ended: Snapshot | None = None  # what the build read as the last watch ended
    while not stop.is_set():
        inputs = always_watched(root, dependencies)
        folders = _outside_folders(root, inputs)
        wanted = source_filter(root, inputs, dependencies)
        for changed in _changes(root, folders, wanted, stop):
            if ended is not None:  # the first batch, once watching: and what changed between
                changed = changed | _changed_since(ended, snapshot(root, dependencies))
                ended = None
            now = always_watched(root, dependencies)
            restart = now != inputs or _outside_folders(root, now) != folders
            if restart:  # a requirements edit named other files, a folder came: watch those
                ended = snapshot(root, dependencies)  # before the reload: an edit made
                # while it runs comes in no batch of this watch
            reload(changed)
            if restart:
                break
        if stop.is_set():
            return
        if ended is None:  # the watch ended by itself (a folder removed)
            ended = snapshot(root, dependencies)


# What a build read: each file and its stat (None: missing), see ``snapshot``.
Snapshot = tuple[tuple[str, tuple[int, int, int] | None], ...]


def snapshot(root: Path, dependencies: DependencyOptions = _NO_SOURCES) -> Snapshot:
    """The files a build reads (collected, ``always_watched``, and the local wheels) as they
    stand, taken before a build: ``wait_for_change`` then tells an edit made while that
    build ran."""
    try:
        files = [str(root / rel) for rel in collect_files(root)]
    except (BuildError, OSError):
        files = []  # what stops the collection the build reports; the rest still counts
    wheels = [wheel[2] for wheel in local_wheels(root, dependencies)]
    watched = [str(path) for path in always_watched(root, dependencies)]
    names = sorted({*files, *watched, *wheels})
    return tuple(zip(names, file_stats(root, names), strict=True))


def _changed_since(before: Snapshot, after: Snapshot) -> set[Path]:
    """The files whose stat differs between two snapshots (come, gone or written)."""
    return {Path(name).resolve() for name, _ in set(before) ^ set(after)}


def wait_for_change(
    root: Path,
    stop: threading.Event,
    since: Snapshot | None = None,
    dependencies: DependencyOptions = _NO_SOURCES,
) -> bool:
    """Wait for a change to what the build reads, watched as ``watch_and_reload`` watches:
    True once one comes (or the watch had to end: a folder removed), False on ``stop``.
    ``since``: what the last build read; if the files differ once watching, that is a
    change (made while it ran). Raises OSError if the watch cannot start at all."""
    inputs = always_watched(root, dependencies)
    folders = _outside_folders(root, inputs)
    wanted = source_filter(root, inputs, dependencies)
    for changed in _changes(root, folders, wanted, stop, strict=True):
        # The empty batch comes once watching: from then on no edit is missed.
        if changed or (since is not None and snapshot(root, dependencies) != since):
            return True
    return not stop.is_set()


def _outside_folders(root: Path, inputs: frozenset[Path]) -> list[Path]:
    """The folders to watch (not below) for the ``inputs`` outside ``root``: a folder of
    wheels itself; files through their folders, as an editor's save replaces the file (a
    new inode), and a file (or folder) named but missing may come later."""
    outside = {path for path in inputs if not path.is_relative_to(root)}
    folders = {path if path.is_dir() else path.parent for path in outside}
    return sorted(folder for folder in folders if folder.is_dir())


def _changes(
    root: Path,
    folders: list[Path],
    wanted: Callable[[watchfiles.Change, str], bool],
    stop: threading.Event,
    *,
    strict: bool = False,
) -> Iterator[set[Path]]:
    """Batches of changed paths: in ``root`` and below, and in ``folders`` (not below:
    one may hold the project), until ``stop`` or the caller stops iterating; one empty
    batch once every watch is on. ``strict``:
    a watch failing before it began raises OSError (else it ends them, as a later failure
    does), for a caller that would otherwise try again at once, and fail as fast."""
    batches: queue.Queue[set[Path] | Exception | None] = queue.Queue()
    done = threading.Event()
    ended = _Either(stop, done)

    def follow(paths: list[Path], recursive: bool) -> None:
        watching = False

        def on() -> None:
            nonlocal watching
            if not watching:
                watching = True
                batches.put(set())  # this watch is on

        def wanted_once_on(change: watchfiles.Change, path: str) -> bool:
            on()  # changes came (wanted or not, as in a folder always busy): it watches
            return wanted(change, path)

        try:
            for changes in watchfiles.watch(
                *paths,
                watch_filter=wanted_once_on,
                stop_event=ended,
                recursive=recursive,
                raise_interrupt=False,
                yield_on_timeout=True,  # an empty yield when none came: it watches
                rust_timeout=500,
            ):
                on()
                if changes:
                    batches.put({Path(path).resolve() for _, path in changes})
        except (OSError, RuntimeError) as exc:  # a folder removed meanwhile: watch afresh
            batches.put(None if watching else exc)

    watches = [threading.Thread(target=follow, args=([root], True), daemon=True)]
    if folders:
        watches.append(threading.Thread(target=follow, args=(folders, False), daemon=True))
    for watch in watches:
        watch.start()
    unarmed = len(watches)
    try:
        # Short waits: the signal handler setting ``stop`` runs in this thread.
        while not stop.is_set():
            try:
                batch = batches.get(timeout=0.5)
            except queue.Empty:
                continue
            if isinstance(batch, Exception):
                if strict:
                    raise OSError(f"cannot watch {root} for changes: {batch}") from batch
                return
            if batch is None:
                return  # the caller watches afresh
            if batch:
                yield batch
                continue
            unarmed -= 1
            if unarmed == 0:
                # One empty batch once every watch is on: an edit made after the build
                # but before watching is looked for then, not missed (nor acted on twice).
                yield batch
    finally:
        done.set()
        for watch in watches:
            watch.join(5)


class _Either:
    """Set once either event is: what watchfiles polls to end a watch."""

    def __init__(self, first: threading.Event, second: threading.Event):
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()


def always_watched(root: Path, dependencies: DependencyOptions = _NO_SOURCES) -> frozenset[Path]:
    """Files read whatever the ignore files say: by the build, requirements.txt and
    pyproject.toml, the files requirements.txt names with -r/-c (even outside the
    project), the lock files it compares (uv.lock...) and the local --find-links folders
    of ``dependencies`` and requirements.txt (the wheels in them, or a wheel named); by
    the web app, main.py."""
    listed = (root / "requirements.txt", root / "pyproject.toml", root / "main.py")
    read = (*listed, *dependency_input_paths(root), *local_find_links(root, dependencies))
    return frozenset(path.resolve() for path in read)


def _reads(inputs: frozenset[Path], path: Path) -> bool:
    """Whether a build reads ``path``, one of ``inputs`` or a wheel in a folder of them."""
    return path in inputs or (path.suffix == ".whl" and path.parent in inputs)


def source_filter(
    root: Path,
    inputs: frozenset[Path] = frozenset(),
    dependencies: DependencyOptions = _NO_SOURCES,
) -> Callable[[watchfiles.Change, str], bool]:
    """Changes to files a build would collect, or to ``inputs`` (``always_watched``, of
    ``dependencies``) and the wheels in their folders; never .flash/ (our own writes) or
    ignored ones. Outside ``root``, a file ``inputs`` lacks counts if the project now reads
    it (a file named by requirements.txt, created late)."""

    def wanted(_change: watchfiles.Change, path: str) -> bool:
        resolved = Path(path).resolve()
        if _reads(inputs, resolved):
            return True
        try:
            rel = resolved.relative_to(root).as_posix()
        except ValueError:
            return _reads(always_watched(root, dependencies), resolved)
        # Read the ignore files afresh: an edit to one changes what the build collects.
        try:
            return not is_ignored(root, rel)
        except BuildError:
            return True  # an unreadable ignore file: the rebuild reports it

    return wanted
