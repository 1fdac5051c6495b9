"""flash.platform.devloop's watch: which batches of changes reach the reload."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

from flash.platform.devloop import watch_and_reload


def _project_reading_outside(tmp_path: Path) -> tuple[Path, Path]:
    """A project, and the folder outside it that its requirements.txt reads a file of
    (watched too, not below)."""
    root, shared = tmp_path / "proj", tmp_path / "shared"
    root.mkdir()
    shared.mkdir()
    (shared / "extra.txt").write_text("# nothing\n")
    (root / "requirements.txt").write_text("-r ../shared/extra.txt\n")
    return root, shared


@contextlib.contextmanager
def _watching(root: Path) -> Iterator[queue.Queue[set[Path]]]:
    """``watch_and_reload`` over ``root`` while the block runs; yields the batches it gives."""
    batches: queue.Queue[set[Path]] = queue.Queue()
    stop = threading.Event()
    watch = threading.Thread(target=watch_and_reload, args=(root, stop, batches.put))
    watch.start()
    try:
        yield batches
    finally:
        stop.set()
        watch.join(30)
    assert not watch.is_alive()


def test_a_watch_over_two_folders_begins_with_one_empty_batch(tmp_path: Path) -> None:
    # The empty batch says "watching now" (a reload then finds an edit made before); one per
    # watched folder reloaded twice, and a second one coming after an edit restarted the web
    # app a second time.
    root, shared = _project_reading_outside(tmp_path)
    with _watching(root) as batches:
        assert batches.get(timeout=60) == set()
        edited = [root / "mod.py", shared / "extra.txt"]
        for path in edited:
            path.write_text("# an edit\n")
            _changes_until(batches, path)
    assert set() not in batches.queue
    assert set().union(*batches.queue) <= {path.resolve() for path in edited}


def _changes_until(batches: queue.Queue[set[Path]], path: Path) -> None:
    """Take the batches up to the one naming ``path`` (a busy machine may split one write in
    two batches), none of them empty and none naming a file not edited."""
    seen: set[Path] = set()
    while path.resolve() not in seen:
        batch = batches.get(timeout=60)
        assert batch, "an empty batch after the watch began"
        assert {changed.name for changed in batch} <= {"mod.py", "extra.txt"}, batch
        seen |= batch


def test_a_watch_over_a_folder_always_busy_still_says_it_is_on(tmp_path: Path) -> None:
    # A folder outside the project where another file changes all the time (a log): its
    # watch never timed out, so it never counted as on, and no empty batch came (an edit
    # made before watching was then missed).
    root, shared = _project_reading_outside(tmp_path)
    quiet = threading.Event()

    def log() -> None:
        lines = 0
        while not quiet.wait(0.05):  # more often than the watch's 0.5 s timeout
            lines += 1
            (shared / "noise.log").write_text(f"line {lines}\n")

    logger = threading.Thread(target=log)
    logger.start()
    try:
        with _watching(root) as batches:
            assert batches.get(timeout=60) == set()
    finally:
        quiet.set()
        logger.join(30)


def test_an_edit_made_while_the_watch_restarts_reaches_the_reload(tmp_path: Path) -> None:
    # A requirements edit naming another file restarts the watch; main.py, saved while that
    # edit was being reloaded, was then in no batch: the web app kept its old code.
    root, shared = _project_reading_outside(tmp_path)
    root = root.resolve()
    (shared / "more.txt").write_text("# more\n")
    main = root / "main.py"
    main.write_text("app = 1\n")
    batches: queue.Queue[set[Path]] = queue.Queue()

    def reload(changed: set[Path]) -> None:
        if root / "requirements.txt" in changed:
            main.write_text("app = 2\n")  # saved while this batch reloads
        batches.put(changed)

    stop = threading.Event()
    watch = threading.Thread(target=watch_and_reload, args=(root, stop, reload))
    watch.start()
    try:
        assert batches.get(timeout=60) == set()  # watching
        (root / "requirements.txt").write_text("-r ../shared/extra.txt\n-r ../shared/more.txt\n")
        seen: set[Path] = set()
        while main not in seen:
            seen |= batches.get(timeout=30)
    finally:
        stop.set()
        watch.join(30)
