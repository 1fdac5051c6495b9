"""The project's signing key file: created private, and kept private once it exists."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flash.sdk.keys import KEY_ENV_VAR, ensure_signing_key, find_signing_key, key_file


def _modes(path: Path) -> tuple[int, int]:
    return stat.S_IMODE(path.parent.stat().st_mode), stat.S_IMODE(path.stat().st_mode)


def _loosened(state_dir: Path) -> tuple[Path, bytes]:
    """A project key that others can read, as one copied in or made under umask 022 is."""
    key = ensure_signing_key(state_dir)
    path = key_file(state_dir)
    path.chmod(0o644)
    path.parent.chmod(0o755)
    return path, key


def test_an_existing_key_others_can_read_is_made_private_saying_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = _loosened(tmp_path / ".flash")
    capsys.readouterr()
    assert ensure_signing_key(tmp_path / ".flash") == key
    assert _modes(path) == (0o700, 0o600)
    said = capsys.readouterr().err
    assert f"{path} was open to other users (mode 0644): made 0600" in said
    assert f"{path.parent} was open to other users (mode 0755): made 0700" in said
    assert ensure_signing_key(tmp_path / ".flash") == key
    assert capsys.readouterr().err == ""  # private now: nothing more to say


def test_a_key_found_from_a_working_directory_is_made_private_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    path, key = _loosened(tmp_path / ".flash")
    (tmp_path / "scripts").mkdir()
    assert find_signing_key(tmp_path / "scripts") == key
    assert _modes(path) == (0o700, 0o600)
    assert "was open to other users" in capsys.readouterr().err


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file to another user"
)
def test_a_key_another_user_owns_is_not_taken_from_a_folder_above(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A /tmp/.flash/secrets/signing_key planted by another user would sign the calls of
    # every script run under /tmp, as git's safe.directory guards against.
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    planted = ensure_signing_key(tmp_path / ".flash")
    os.chown(key_file(tmp_path / ".flash"), 12345, 12345)
    (tmp_path / "mine").mkdir()
    assert find_signing_key(tmp_path / "mine") is None
    said = capsys.readouterr().err
    assert f"{key_file(tmp_path / '.flash')} belongs to another user: not used" in said
    assert planted.hex() not in said
    # Under sudo, the key of the user who ran it is theirs (as git takes SUDO_UID).
    monkeypatch.setenv("SUDO_UID", "12345")
    assert find_signing_key(tmp_path / "mine") == planted
