"""Remote functions, classes and handles pickle by reference, like plain functions."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle
import pytest

from flash import LiveServerless, remote, run

CFG = LiveServerless(name="pickling")


@remote(CFG)
def add(a: int, b: int = 1) -> int:
    return a + b


# The same function on another endpoint: its __module__ and __qualname__ name ``add``.
add_on_cpu = remote(LiveServerless(name="pickling-cpu"))(add.__wrapped__)
add_with_deps = remote(CFG, dependencies=["numpy"])(add.__wrapped__)


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
    assert run(handle.get()) == 5  # used in-process: it holds its instance now
    instance = handle.local_instance()
    back = pickle.loads(pickle.dumps(handle))
    assert back.remote_class is Box and back.args == (5,)
    assert run(back.get()) == 5  # the copy makes an instance of its own
    assert back.local_instance() is not instance and handle.local_instance() is instance
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


def test_a_copy_of_a_function_on_another_endpoint_pickles_as_itself() -> None:
    for copy, endpoint in ((add_on_cpu, "pickling-cpu"), (add_with_deps, "pickling")):
        back = cloudpickle.loads(cloudpickle.dumps(copy))
        assert back is not add  # not the function its names point at
        assert back.resource_name == endpoint and back.dependencies == copy.dependencies
        assert back.call(2) == 3


def test_plain_pickle_refuses_a_copy_on_another_endpoint_rather_than_misroute_it() -> None:
    with pytest.raises(pickle.PicklingError):  # it cannot take the function by value
        pickle.dumps(add_on_cpu)
    quick = add.options(timeout=3)  # an options clone is the same function: by reference
    assert pickle.loads(pickle.dumps(quick)).call_options.timeout == 3


def test_a_submodule_of_a_package_pickled_by_value_goes_by_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "byvalue_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "tasks.py").write_text(
        "from flash import LiveServerless, remote\n\n\n"
        "@remote(LiveServerless(name='by-value'))\n"
        "def work(x: int) -> int:\n"
        "    return x + 40\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import byvalue_pkg
    import byvalue_pkg.tasks

    cloudpickle.register_pickle_by_value(byvalue_pkg)
    try:
        data = cloudpickle.dumps(byvalue_pkg.tasks.work)
    finally:
        cloudpickle.unregister_pickle_by_value(byvalue_pkg)
        for name in ("byvalue_pkg.tasks", "byvalue_pkg"):
            sys.modules.pop(name, None)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    # Where the package cannot be imported (a worker that never had it), it still loads.
    back = cloudpickle.loads(data)
    assert back.local(2) == 42 and back.resource_name == "by-value"
