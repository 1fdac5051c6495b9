"""Find and kill the processes a worker started, so that none outlives it (Linux).

A worker's process group is not enough: user code may leave it (``setsid``,
``start_new_session=True``, a daemon's double fork), and a process whose parent exited is
re-parented to init. On a real serverless platform the worker is a container and nothing
started in it survives it; here two things stand in for the container:

* every worker's environment holds ``TAG_ENV_VAR=<tag>``, a tag unique to the platform and
  the worker, which its descendants inherit: ``kill_tagged`` finds them through
  /proc/<pid>/environ wherever they are in the process tree, even after the worker died;
* while a worker lives, ``descendants`` walks its /proc parent tree, which also finds the
  children that cleared their environment (or overwrote it, as ``setproctitle`` does).

Elsewhere (no /proc) both find nothing: only the worker's process group is killed there.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable
from typing import NamedTuple

TAG_ENV_VAR = "FLASH_WORKER_TAG"
_TAGGED_PASSES = 5


class Process(NamedTuple):
    """A process, told apart from a later one that reuses its pid by when it started."""

    pid: int
    started: int  # clock ticks after boot, /proc/<pid>/stat field 22


def descendants(roots: Iterable[int]) -> dict[int, set[Process]]:
    """The live processes below each of ``roots`` in the parent tree (not the roots
    themselves), from one pass over /proc."""
    children: dict[int, list[Process]] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(Process(pid, int(fields[19])))
    found: dict[int, set[Process]] = {}
    for root in roots:
        below, seen = [root], found.setdefault(root, set())
        while below:
            for child in children.get(below.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    below.append(child.pid)
    return found


def kill(processes: Iterable[Process], *, spare_group: int | None = None) -> set[int]:
    """SIGKILL each process that still runs (not a later one with its pid) outside process
    group ``spare_group`` (the caller's killpg has that one); the pids signalled."""
    killed = set()
    for process in processes:
        fields = _stat(process.pid)
        if (
            fields is not None
            and fields[0] != "Z"
            and int(fields[19]) == process.started
            and int(fields[2]) != spare_group
            and _kill(process.pid)
        ):
            killed.add(process.pid)
    return killed


def kill_tagged(tag: str, *, spare_group: int | None = None) -> set[int]:
    """SIGKILL every process of this user whose environment holds ``TAG_ENV_VAR=tag`` (or,
    for a ``tag`` ending in ``-``, any tag that starts with it: all of a platform's workers'
    at once), outside process group ``spare_group``; the pids signalled.

    It reads other processes' /proc/<pid>/environ, which waits on their memory map lock: a
    process stuck in the kernel can make it block, so callers run it off the event loop."""
    needle = f"\0{TAG_ENV_VAR}={tag}".encode() + (b"" if tag.endswith("-") else b"\0")
    seen: set[int] = set()
    killed: set[int] = set()
    # A process forking while it is killed may add one a pass missed: look again until a
    # pass finds none new.
    for _ in range(_TAGGED_PASSES):
        found = [pid for pid in _pids() if pid not in seen and _has(pid, needle)]
        if not found:
            break
        seen.update(found)
        for pid in found:
            fields = _stat(pid)
            if fields is not None and int(fields[2]) != spare_group and _kill(pid):
                killed.add(pid)
    return killed


def _pids() -> list[int]:
    if sys.platform != "linux":
        return []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    me = os.getpid()
    return [int(name) for name in names if name.isdigit() and int(name) != me]


def stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP, SIGTSTP, a debugger); False where there is
    no /proc, or once it is gone."""
    fields = _stat(pid)
    return fields is not None and fields[0] in ("T", "t")


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the state on (field 3, index 0); None once it is gone.
    The command name before them may hold spaces and parentheses: split after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return None


def _has(pid: int, needle: bytes) -> bool:
    """Whether the environment ``pid`` started with holds ``needle`` (``\\0NAME=value\\0``).
    Another user's processes are skipped unread; a process gone or out of reach has none."""
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.geteuid():
            return False
        with open(f"/proc/{pid}/environ", "rb") as f:
            return needle in b"\0" + f.read()
    except OSError:
        return False


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:  # gone already (ProcessLookupError), or no longer ours
        return False
    return True
