"""The files a build collects are those git keeps: ignore files read as git reads them.

Each case is checked against real git (`git ls-files -o --exclude-standard`), with the
patterns in .gitignore and in .flashignore (which git reads here as its core.excludesFile).
"""

import os
import subprocess
from pathlib import Path

import pytest

from flash.build.collect import collect_files, is_ignored

_GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

# (patterns, project files, the files git keeps: written out so a failure reads plainly)
CASES = {
    "everything but folders and .py files": (
        "*\n!*/\n!*.py\n!.gitignore\n!.flashignore\n",
        [
            "workers/api.py",
            "workers/models/conf.py",
            "workers/models/deep/w.py",
            "workers/models/w.bin",
        ],
        ["workers/api.py", "workers/models/conf.py", "workers/models/deep/w.py"],
    ),
    "a folder's contents, one file re-included": (
        "models/**\n!models/config.json\n",
        ["app.py", "models/config.json", "models/w.bin", "models/sub/config.json"],
        ["app.py", "models/config.json"],
    ),
    "every folder re-included with **/": (
        "*\n!**/\n!*.py\n",
        ["a.py", "a.txt", "x/b.py", "x/b.txt", "x/y/c.py", "x/y/z/d.py"],
        ["a.py", "x/b.py", "x/y/c.py", "x/y/z/d.py"],
    ),
    "a folder at any depth, not a file of its name": (
        "**/cache/\n",
        ["cache/a.py", "src/cache/b.py", "src/deep/cache/c.py", "src/cache.py", "docs/cache"],
        ["docs/cache", "src/cache.py"],
    ),
    "the folders inside a folder, not its files": (
        "out/**/\n",
        ["out/top.txt", "out/sub/x.txt", "out/sub/deeper/y.txt", "src/out/sub/z.txt"],
        ["out/top.txt", "src/out/sub/z.txt"],
    ),
    "anchored and unanchored folders": (
        "/data/\ntmp/\n",
        ["data/a.csv", "src/data/b.csv", "tmp/c.txt", "src/tmp/d.txt", "tmp.py"],
        ["src/data/b.csv", "tmp.py"],
    ),
    "a folder's files out, one subfolder back in": (
        "logs/*\n!logs/keep/\n",
        ["logs/a.log", "logs/keep/b.log", "logs/old/c.log"],
        ["logs/keep/b.log"],
    ),
    "no re-including below an ignored folder": (
        "logs/\n!logs/keep.log\n",
        ["logs/keep.log", "logs/a.log", "app.py"],
        ["app.py"],
    ),
    "** between folders: none, one or more": (
        "a/**/b\n!a/x/y/b\n",
        ["a/b", "a/x/b", "a/x/y/b", "a/bb", "c/a/b"],
        ["a/bb", "a/x/y/b", "c/a/b"],
    ),
    "everything below any folder": (
        "*/**\n!src/**/\n!*.py\n",
        ["top.txt", "src/a.py", "src/a.txt", "src/x/b.py", "docs/c.py"],
        ["docs/c.py", "src/a.py", "src/x/b.py", "top.txt"],
    ),
}


def _git_keeps(root: Path, excludes_file: Path | None = None) -> list[str]:
    """The untracked files git does not ignore in the repository ``root``."""
    config = [] if excludes_file is None else ["-c", f"core.excludesFile={excludes_file}"]
    listed = subprocess.run(
        ["git", *config, "ls-files", "-z", "--others", "--exclude-standard"],
        cwd=root,
        env=_GIT_ENV,
        capture_output=True,
        check=True,
    )
    return sorted(name.decode() for name in listed.stdout.split(b"\0") if name)


def _repository(root: Path, files: list[str], ignore_name: str, patterns: bytes) -> list[str]:
    """A git repository at ``root`` holding ``files`` and the ignore file; what git keeps."""
    subprocess.run(["git", "init", "-q", str(root)], env=_GIT_ENV, check=True)
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / ignore_name).write_bytes(patterns)
    return _git_keeps(root, root / ignore_name if ignore_name == ".flashignore" else None)


@pytest.mark.parametrize("ignore_name", [".gitignore", ".flashignore"])
@pytest.mark.parametrize("case", CASES)
def test_the_files_collected_are_those_git_keeps(
    tmp_path: Path, case: str, ignore_name: str
) -> None:
    patterns, files, kept = CASES[case]
    git_keeps = _repository(tmp_path, files, ignore_name, patterns.encode())
    ignore_file = [ignore_name] if ignore_name in git_keeps else []
    assert git_keeps == sorted(kept + ignore_file)  # the table says what git does
    assert collect_files(tmp_path) == git_keeps
    assert [rel for rel in files if not is_ignored(tmp_path, rel)] == [
        rel for rel in files if rel in kept
    ]


@pytest.mark.parametrize("ignore_name", [".gitignore", ".flashignore", "data/.gitignore"])
@pytest.mark.parametrize(
    "patterns",
    [
        b"\xef\xbb\xbfsecret_dump.bin\r\n*.log\r\n",  # Windows editors write both
        b"\xef\xbb\xbfsecret_dump.bin\n*.log",  # no newline at the end
        b"secret_dump.bin\r\n*.log\r\n",
    ],
)
def test_a_byte_order_mark_and_crlf_line_ends_are_read_as_git_reads_them(
    tmp_path: Path, ignore_name: str, patterns: bytes
) -> None:
    folder = ignore_name.rpartition("/")[0]
    files = [f"{folder}/{name}".lstrip("/") for name in ("secret_dump.bin", "a.log", "app.py")]
    git_keeps = _repository(tmp_path, files, ignore_name, patterns)
    assert [rel for rel in git_keeps if rel.endswith(("app.py", ignore_name))] == git_keeps
    assert collect_files(tmp_path) == git_keeps


def test_a_lone_carriage_return_is_part_of_the_pattern_as_for_git(tmp_path: Path) -> None:
    # Git splits lines at "\n" only: "a.log\rb.log" is one pattern, matching neither file.
    git_keeps = _repository(tmp_path, ["a.log", "b.log"], ".gitignore", b"a.log\rb.log\n")
    assert git_keeps == [".gitignore", "a.log", "b.log"]
    assert collect_files(tmp_path) == git_keeps
