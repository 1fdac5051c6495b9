"""What a failed import of the project's code shows: the frames in the project's files and
the error, not the frames of importlib, runpy or the server that imported it.

The standard library only, and nothing of flash: the build's import check loads this file
by its path, in an interpreter where ``flash`` is the archive's.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence

__all__ = ["describe", "shown"]

# How many of the project's frames an error shows (the innermost), and how many causes.
_FRAMES = 8
_CAUSES = 3
_MEMBERS = 5  # of an exception group


def describe(
    exc: BaseException, roots: Sequence[str], installed: Sequence[str] = (), depth: int = 0
) -> str:
    """``exc`` in the project's terms: its frames in the project's files (under ``roots[0]``,
    but not under any of ``installed``: where packages are) as ``  path:line in name:
    source``, named relative to ``roots``; the frame that raised it if elsewhere (a
    package's); the error; before them what caused it; after it, a group's members.
    Folders end in a separator."""
    parts = []
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and depth < _CAUSES:
        parts.append(describe(cause, roots, installed, depth + 1))
        parts.append("which caused:" if exc.__cause__ is not None else "then, handling it:")
    frames = traceback.extract_tb(exc.__traceback__)
    kept = [
        f
        for f in frames
        if f.filename.startswith(roots[0]) and not f.filename.startswith(tuple(installed))
    ]
    if frames and frames[-1] not in kept and not frames[-1].filename.startswith("<"):
        kept.append(frames[-1])
    parts += [
        f"  {shown(f.filename, roots)}:{f.lineno} in {f.name}: {(f.line or '').strip()}"
        for f in kept[-_FRAMES:]
    ]
    error = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    for root in roots:
        error = error.replace(root, "")
    parts.append(error)
    # A group (a TaskGroup's) says only how many it holds: each of them, indented.
    members = getattr(exc, "exceptions", None) if depth < _CAUSES else None
    if isinstance(members, tuple):
        for member in members[:_MEMBERS]:
            if isinstance(member, BaseException):
                text = describe(member, roots, installed, depth + 1)
                parts.append("    " + text.replace("\n", "\n    "))
    return "\n".join(parts)


def shown(filename: str, roots: Sequence[str]) -> str:
    """``filename`` relative to the first of ``roots`` it is under, else as it is."""
    for root in roots:
        if filename.startswith(root):
            return filename[len(root) :]
    return filename
