"""flash.build.import_trace: what a failed import of the project's code shows."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from flash.build.import_trace import describe


def test_an_error_in_a_group_shows_with_its_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A TaskGroup run at import raises a group: its one line ("unhandled errors in a
    # TaskGroup") hid the error inside and where it was raised.
    (tmp_path / "grouped_mod.py").write_text(
        "import asyncio\n"
        "async def fails():\n"
        "    raise ValueError('DB_URL unset')\n"
        "async def main():\n"
        "    async with asyncio.TaskGroup() as group:\n"
        "        group.create_task(fails())\n"
        "asyncio.run(main())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BaseExceptionGroup) as raised:  # noqa: F821 - 3.11+
        importlib.import_module("grouped_mod")
    text = describe(raised.value, [f"{tmp_path}/"], [sys.prefix])
    assert "ValueError: DB_URL unset" in text, text
    assert "grouped_mod.py:3 in fails" in text, text
