import os
import tarfile
from pathlib import Path

import pytest

from flash.build.archive import DEFAULT_MTIME, Entry, file_sha256, write_archive
from flash.build.errors import BuildError


def entries(tmp_path: Path) -> list[Entry]:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o775)
    plain = tmp_path / "a.txt"
    plain.write_text("a")
    plain.chmod(0o600)
    return [
        Entry("z/b.txt", data=b"b"),
        Entry("a.txt", source=plain),
        Entry("run.sh", source=script),
    ]


def test_archive_is_normalised(tmp_path: Path) -> None:
    info = write_archive(entries(tmp_path), tmp_path / "out.tar.gz", mtime=1234)
    with tarfile.open(info.path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a.txt", "run.sh", "z/b.txt"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(1234, 0, 0, "", "")}
    assert [oct(m.mode) for m in members] == ["0o644", "0o755", "0o644"]
    header = info.path.read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"  # gzip mtime field
    assert info.files == 3 and info.size == info.path.stat().st_size


def test_same_entries_give_identical_bytes(tmp_path: Path) -> None:
    first = write_archive(entries(tmp_path), tmp_path / "1.tar.gz")
    os.utime(tmp_path / "a.txt", (1, 1))  # file times must not matter
    second = write_archive(reversed(entries(tmp_path)), tmp_path / "2.tar.gz")
    assert first.sha256 == second.sha256


def test_source_date_epoch_sets_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    info = write_archive([Entry("x", data=b"x")], tmp_path / "o.tar.gz")
    with tarfile.open(info.path) as tar:
        assert tar.getmember("x").mtime == 1700000000


def test_failure_keeps_previous_archive_and_leaves_no_temp_file(tmp_path: Path) -> None:
    dest = tmp_path / "out.tar.gz"
    good = write_archive([Entry("x", data=b"x")], dest)
    with pytest.raises(BuildError, match="missing: deleted while the project was being built"):
        write_archive([Entry("x", data=b"x"), Entry("y", source=tmp_path / "missing")], dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar.gz"]
    assert file_sha256(dest) == good.sha256
    with tarfile.open(dest) as tar:
        assert tar.getnames() == ["x"]


@pytest.mark.parametrize(
    "value",
    [
        "²³",
        "1e9",
        "-1",
        " 1700000000",
        "1700000000.5",
        "\u0661\u0667\u0660\u0660",
        "1700000000000",
        "9" * 5000,
    ],
)
def test_a_source_date_epoch_that_is_not_plain_seconds_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # Whoever sets it wants that time in the archive: falling back to the default (or a
    # ValueError traceback) would hide the mistake.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(BuildError) as info:
        write_archive([Entry("x", data=b"x")], tmp_path / "o.tar.gz")
    assert str(info.value).startswith("SOURCE_DATE_EPOCH must be a whole number of seconds")
    assert repr(value) in str(info.value)
    assert not (tmp_path / "o.tar.gz").exists()


@pytest.mark.parametrize(("value", "mtime"), [("", DEFAULT_MTIME), ("0", 0), ("00042", 42)])
def test_source_date_epoch_empty_zero_and_leading_zeros(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, mtime: int
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    info = write_archive([Entry("x", data=b"x")], tmp_path / "o.tar.gz")
    with tarfile.open(info.path) as tar:
        assert tar.getmember("x").mtime == mtime
