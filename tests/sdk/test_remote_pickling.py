"""Remote functions, classes and handles pickle by reference, like plain functions."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle

from flash import LiveServerless, remote

CFG = LiveServerless(name="pickling")


@remote(CFG)
def add(a: int, b: int = 1) -> int:
    return a + b


@remote(CFG)
class Box:
    def __init__(self, value: int) -> None:
        self.value = value

    def get(self) -> int:
        return self.value


def test_a_remote_function_pickles_as_itself() -> None:
    assert pickle.loads(pickle.dumps(add)) is add
    assert cloudpickle.loads(cloudpickle.dumps(add)) is add


def test_options_survive_pickling() -> None:
    quick = add.options(timeout=3, serialization="pickle")
    back = pickle.loads(pickle.dumps(quick))
    assert back.call_options == quick.call_options
    assert back.call(2) == 3


def test_a_remote_class_and_a_handle_pickle() -> None:
    assert pickle.loads(pickle.dumps(Box)) is Box
    handle = Box(5)
    assert handle.get  # a handle that has been used in-process
    back = pickle.loads(pickle.dumps(handle))
    assert back.remote_class is Box and back.args == (5,)
    assert pickle.loads(pickle.dumps(Box.options(timeout=2))).call_options.timeout == 2


def test_cloudpickle_takes_a_function_of_a_scripts_main_by_value(tmp_path: Path) -> None:
    # The function exists only in the script's __main__: what arrives here must carry it.
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys

            import cloudpickle

            from flash import LiveServerless, remote


            @remote(LiveServerless(name="main-only"), timeout=7)
            def triple(x: int) -> int:
                return 3 * x


            sys.stdout.buffer.write(cloudpickle.dumps(triple))
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    back = cloudpickle.loads(done.stdout)
    assert back.local(2) == 6 and back.call(2) == 6
    assert back.resource_name == "main-only" and back.call_options.timeout == 7
