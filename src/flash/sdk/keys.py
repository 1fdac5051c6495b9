"""The app's signing key: created once per project, kept outside every archive and log.

It lives in ``.flash/secrets/signing_key`` (mode 0600; ``.flash/`` never enters an archive)
and reaches workers and clients only through ``FLASH_SIGNING_KEY``.
"""

from __future__ import annotations

import os
from pathlib import Path

from flash.runtime.signing import (
    KEY_ENV_VAR,
    generate_key,
    key_from_text,
    key_to_text,
    load_signing_key,
)

__all__ = ["KEY_ENV_VAR", "ensure_signing_key", "find_signing_key", "key_file", "key_to_text"]


def key_file(state_dir: Path) -> Path:
    """Where the key of the project whose state folder (``.flash``) is ``state_dir`` lives."""
    return state_dir / "secrets" / "signing_key"


def ensure_signing_key(state_dir: Path) -> bytes:
    """The project's key, created (readable by the owner only) if it does not exist yet."""
    path = key_file(state_dir)
    if path.is_file():
        return key_from_text(path.read_text().strip(), source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = generate_key()
    # O_EXCL: two processes creating the key at once keep the first one's.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_from_text(path.read_text().strip(), source=str(path))
    with os.fdopen(fd, "w") as fh:
        fh.write(key_to_text(key) + "\n")
    return key


def find_signing_key(start: Path | None = None) -> bytes | None:
    """``$FLASH_SIGNING_KEY``, else the key of the nearest project at or above ``start``."""
    from_env = load_signing_key()
    if from_env is not None:
        return from_env
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = key_file(folder / ".flash")
        if path.is_file():
            return key_from_text(path.read_text().strip(), source=str(path))
    return None
