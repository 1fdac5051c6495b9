"""The app's signing key: created once per project, kept outside every archive and log.

It lives in ``.flash/secrets/signing_key`` (mode 0600; ``.flash/`` never enters an archive)
and reaches workers and clients only through ``FLASH_SIGNING_KEY``.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from flash.runtime.protocol import FLASH_DIR
from flash.runtime.signing import (
    KEY_ENV_VAR,
    SigningKeyError,
    generate_key,
    key_from_text,
    key_to_text,
    load_signing_key,
    remember_key_source,
)

__all__ = [
    "KEY_ENV_VAR",
    "ensure_signing_key",
    "find_signing_key",
    "keep_signing_key",
    "key_file",
    "key_to_text",
    "make_state_dir",
    "owned_by_user",
    "read_signing_key",
]


def key_file(state_dir: Path) -> Path:
    """Where the key of the project whose state folder (``.flash``) is ``state_dir`` lives."""
    return state_dir / "secrets" / "signing_key"


# Written into a state folder, as pytest and ruff do for their caches: a project that
# `flash init` did not make may have no .gitignore naming .flash/, and `git add -A` would
# commit the signing key.
_STATE_GITIGNORE = "# Made by Flash: its builds, caches and the app's key stay out of git.\n*\n"


def make_state_dir(state_dir: Path) -> None:
    """Create the state folder ``state_dir`` if need be, with a ``.gitignore`` leaving all of
    it out of git: written where there is none, in a ``.flash`` folder or one made here (a
    ``--state-dir`` of the user's own keeps its files visible); a user's own is kept."""
    made = not state_dir.is_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    if not (made or state_dir.name == FLASH_DIR):
        return
    try:
        with open(state_dir / ".gitignore", "x") as fh:
            fh.write(_STATE_GITIGNORE)
    except FileExistsError:
        pass


def ensure_signing_key(state_dir: Path, key: bytes | None = None) -> bytes:
    """The project's key, created (readable by the owner only) if it does not exist yet:
    as ``key`` when given, else a new one."""
    path = key_file(state_dir)
    if path.is_file():
        return read_signing_key(path)
    make_state_dir(state_dir)
    path.parent.mkdir(exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = generate_key() if key is None else key
    # O_EXCL: two processes creating the key at once keep the first one's.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_signing_key(path)
    with os.fdopen(fd, "w") as fh:
        fh.write(key_to_text(key) + "\n")
    return key


def keep_signing_key(state_dir: Path, key: bytes) -> str | None:
    """While a platform serves the project with ``key`` (read from its key file): the file
    written again with it if it was deleted, so that a rebuild does not make another key.
    A file holding another key is left as it is: the platform follows its key file, and
    its new workers take that key (see ``LocalPlatform``). A warning when the file cannot
    be written."""
    path = key_file(state_dir)
    if path.is_file():
        return None
    try:
        ensure_signing_key(state_dir, key)  # one written meanwhile by a build is kept
    except (SigningKeyError, OSError) as exc:
        return (
            f"{path} was deleted and could not be written again ({exc}): the next build "
            "makes a new key, which the workers started after it take"
        )
    return None


def find_signing_key(start: Path | None = None) -> bytes | None:
    """``$FLASH_SIGNING_KEY``, else the key of the nearest project at or above ``start``."""
    from_env = load_signing_key()
    if from_env is not None:
        return remember_key_source(from_env, f"${KEY_ENV_VAR}")
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = key_file(folder / ".flash")
        if path.is_file():
            if not owned_by_user(path):  # planted, say in /tmp: as git's safe.directory
                print(f"Warning: {path} belongs to another user: not used", file=sys.stderr)
                continue
            return remember_key_source(read_signing_key(path), str(path))
    return None


def owned_by_user(path: Path) -> bool:
    """Whether this user owns ``path``, as git's safe.directory counts owners: under sudo,
    the user who ran it too (anywhere without user ids: yes; a path gone: no)."""
    if not hasattr(os, "getuid"):
        return True
    try:
        owner = path.stat().st_uid
    except OSError:
        return False
    sudo_uid = os.environ.get("SUDO_UID", "") if os.getuid() == 0 else ""
    return owner == os.getuid() or (sudo_uid.isdigit() and owner == int(sudo_uid))


def read_signing_key(path: Path) -> bytes:
    """The key in ``path``, its folder and file first made the owner's only where others
    could read them (a key copied in, a folder made under a loose umask), saying so."""
    _make_private(path.parent, 0o700)
    _make_private(path, 0o600)
    try:
        return key_from_text(path.read_text().strip(), source=str(path))
    except SigningKeyError as exc:
        raise SigningKeyError(
            f"{exc}: it is not a key Flash wrote. Delete it and the next `flash build` or "
            "`flash run` makes a new one (a `flash serve` or `flash run` signing with this "
            "file takes it up for its new workers; give callers elsewhere the new key)"
        ) from None


def _make_private(path: Path, mode: int) -> None:
    """Give ``path`` ``mode`` when its group or others have any access, with a warning on
    stderr: once, since the next read finds it private."""
    was = stat.S_IMODE(path.stat().st_mode)
    if not was & 0o077:
        return
    try:
        os.chmod(path, mode)
    except OSError as exc:
        done = f"could not be made {mode:04o} ({exc.strerror})"
    else:
        done = f"made {mode:04o}"
    print(
        f"Warning: {path} was open to other users (mode {was:04o}): {done}",
        file=sys.stderr,
    )
