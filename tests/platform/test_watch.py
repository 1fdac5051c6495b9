"""flash.platform.devloop's watch: which batches of changes reach the reload."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from flash.platform.devloop import watch_and_reload


def test_a_watch_over_two_folders_begins_with_one_empty_batch(tmp_path: Path) -> None:
    # The empty batch says "watching now" (a reload then finds an edit made before); one per
    # watched folder reloaded twice, and a second one coming after an edit restarted the web
    # app a second time.
    root, shared = tmp_path / "proj", tmp_path / "shared"
    root.mkdir()
    shared.mkdir()
    (shared / "extra.txt").write_text("# nothing\n")
    (root / "requirements.txt").write_text("-r ../shared/extra.txt\n")  # watches shared/ too
    batches: queue.Queue[set[Path]] = queue.Queue()
    stop = threading.Event()
    watch = threading.Thread(target=watch_and_reload, args=(root, stop, batches.put))
    watch.start()
    try:
        assert batches.get(timeout=60) == set()
        (root / "mod.py").write_text("x = 1\n")
        assert batches.get(timeout=60) == {(root / "mod.py").resolve()}
        (shared / "extra.txt").write_text("# an edit\n")
        assert batches.get(timeout=60) == {(shared / "extra.txt").resolve()}
    finally:
        stop.set()
        watch.join(30)
    assert not watch.is_alive()
    assert batches.empty()
