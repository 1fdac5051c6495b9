"""Project files that shrink or disappear while the project builds (an editor's autosave, a
rotated log) are files changing while building: the build starts over, and names the file
when they keep changing."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.integration.projects import write_files

from flash.build import archive, pipeline
from flash.build.errors import BuildError
from flash.build.pipeline import BuildOptions, build_project

# Deletes temp.txt when the build imports it (after the build listed the file, before the
# archive is written): the user's editor, say, dropping its autosave.
DELETES_TEMP_AT_IMPORT = """
from pathlib import Path

from flash import CpuLiveServerless, remote

Path({temp!r}).unlink(missing_ok=True)


@remote(CpuLiveServerless(name="cpu"))
def f(x: int) -> int:
    return x
"""

ONE_FUNCTION = """
from flash import CpuLiveServerless, remote


@remote(CpuLiveServerless(name="cpu"))
def f(x: int) -> int:
    return x
"""


def _archived(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _leftovers(root: Path) -> list[str]:
    """What a failed build left in .flash/ besides what a build keeps there."""
    return sorted(p.name for p in (root / ".flash").iterdir() if p.name.endswith(".tmp"))


def test_a_file_deleted_while_building_builds_again_without_it(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    temp = root / "temp.txt"
    write_files(root, {"app.py": DELETES_TEMP_AT_IMPORT.format(temp=str(temp))})
    temp.write_text("autosaved\n")
    steps: list[tuple[str, str]] = []
    result = build_project(BuildOptions(project_dir=root), lambda *step: steps.append(step))
    assert ("changed", "temp.txt while building: building again") in steps
    assert "temp.txt" not in _archived(result.archive)
    assert build_project(BuildOptions(project_dir=root)).skipped


def _truncate_when_packed(
    monkeypatch: pytest.MonkeyPatch, path: Path, times: int | None = None
) -> list[int]:
    """Halve ``path`` each time the archive packs it, after the size its entry goes in with
    was taken and before its bytes are read (``times`` at most): a log rotated mid-build."""
    done: list[int] = []
    addfile = tarfile.TarFile.addfile

    def packing(self: tarfile.TarFile, info: tarfile.TarInfo, fileobj: Any = None) -> None:
        if info.name == path.name and (times is None or len(done) < times):
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
            done.append(len(data))
        addfile(self, info, fileobj)

    monkeypatch.setattr(tarfile.TarFile, "addfile", packing)
    return done


def test_a_file_cut_short_while_packed_builds_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_files(tmp_path / "proj", {"app.py": ONE_FUNCTION})
    log = root / "run.log"
    log.write_bytes(b"line\n" * 20000)
    cut = _truncate_when_packed(monkeypatch, log, times=1)
    steps: list[tuple[str, str]] = []
    result = build_project(BuildOptions(project_dir=root), lambda *step: steps.append(step))
    assert cut == [100000]
    assert ("changed", "run.log while building: building again") in steps
    assert _archived(result.archive)["run.log"] == b"line\n" * 10000 == log.read_bytes()
    assert build_project(BuildOptions(project_dir=root)).skipped


def test_a_file_cut_short_at_every_try_is_named_and_the_archive_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_files(tmp_path / "proj", {"app.py": ONE_FUNCTION})
    log = root / "run.log"
    log.write_bytes(b"line\n" * 20000)
    good = build_project(BuildOptions(project_dir=root))
    log.write_bytes(b"more\n" * 20000)
    cut = _truncate_when_packed(monkeypatch, log)
    with pytest.raises(BuildError) as failed:
        build_project(BuildOptions(project_dir=root))
    assert str(failed.value) == (
        "run.log changed while the project was being built, 3 times over; "
        "build again once the files stay put"
    )
    assert len(cut) == 3
    assert good.archive.read_bytes() == (root / ".flash" / "archive.tar.gz").read_bytes()
    assert _leftovers(root) == []


def test_a_file_deleted_while_packed_at_every_try_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A log rotated at every try: there when the build lists the files, gone by the time
    # the archive packs it.
    root = write_files(tmp_path / "proj", {"app.py": ONE_FUNCTION})
    log = root / "run.log"
    collect_files, add = pipeline.collect_files, archive._add

    def collecting(where: Path) -> list[str]:
        log.write_text("rotated\n")
        return collect_files(where)

    def packing(tar: tarfile.TarFile, entry: archive.Entry, mtime: int) -> None:
        if entry.name == "run.log":
            log.unlink()
        add(tar, entry, mtime)

    monkeypatch.setattr(pipeline, "collect_files", collecting)
    monkeypatch.setattr(archive, "_add", packing)
    with pytest.raises(BuildError, match=r"^run.log changed while the project was being built"):
        build_project(BuildOptions(project_dir=root))
    assert not (root / ".flash" / "archive.tar.gz").exists()
    assert _leftovers(root) == []


def test_a_file_deleted_while_dependencies_install_builds_again_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Gone before the build copies the project to import it: the import check's copy.
    root = write_files(tmp_path / "proj", {"app.py": ONE_FUNCTION, "temp.txt": "autosaved\n"})
    vendor = pipeline.vendor_dependencies

    def vendoring(*args: Any, **kwargs: Any) -> Any:
        (root / "temp.txt").unlink(missing_ok=True)
        return vendor(*args, **kwargs)

    monkeypatch.setattr(pipeline, "vendor_dependencies", vendoring)
    steps: list[tuple[str, str]] = []
    result = build_project(BuildOptions(project_dir=root), lambda *step: steps.append(step))
    assert ("changed", "temp.txt while building: building again") in steps
    assert "temp.txt" not in _archived(result.archive)


def test_an_archive_source_gone_is_named_and_no_partial_archive_is_left(tmp_path: Path) -> None:
    gone = tmp_path / "site" / "pkg.py"
    dest = tmp_path / "out" / "archive.tar.gz"
    entries = [archive.Entry(name="a.txt", data=b"a"), archive.Entry(name="pkg.py", source=gone)]
    with pytest.raises(BuildError, match=f"^{gone}: deleted while the project was being built$"):
        archive.write_archive(entries, dest)
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("stage", ["fingerprint", "screen_secrets", "scan_project"])
def test_a_file_deleted_in_the_builds_first_stages_builds_again_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    # Gone after the build listed it, while it hashed, screened or scanned the files: that
    # failed at once, naming the file ("cannot read"), where a later stage started over.
    root = tmp_path / "proj"
    write_files(root, {"app.py": ONE_FUNCTION, "scratch.py": "X = 1\n"})
    original = getattr(pipeline, stage)

    def deleting(*args: Any, **kwargs: Any) -> Any:
        (root / "scratch.py").unlink(missing_ok=True)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, stage, deleting)
    steps: list[tuple[str, str]] = []
    result = build_project(BuildOptions(project_dir=root), lambda *step: steps.append(step))
    assert ("changed", "scratch.py while building: building again") in steps, steps
    assert "scratch.py" not in _archived(result.archive)
