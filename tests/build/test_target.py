"""Which uv platforms build for this machine: the same processor, Linux, and the same libc."""

from __future__ import annotations

import pytest

from flash.build import target
from flash.build.target import Machine, builds_for_this_machine, platform_for_this_machine

X86_GLIBC = Machine("3.11", "x86_64", "linux", "glibc")
ARM_GLIBC = Machine("3.11", "aarch64", "linux", "glibc")
X86_MUSL = Machine("3.11", "x86_64", "linux", "musl")
MAC = Machine("3.11", "aarch64", "darwin", "")


def _on(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    monkeypatch.setattr(target, "this_machine", lambda: machine)


@pytest.mark.parametrize(
    ("machine", "platform", "imports"),
    [
        (X86_GLIBC, "x86_64-manylinux_2_28", True),
        (X86_GLIBC, "X86_64-Manylinux_2_28", True),
        (X86_GLIBC, "x86_64-manylinux2014", True),
        (X86_GLIBC, "x86_64-unknown-linux-gnu", True),
        (X86_GLIBC, "linux", True),  # uv's alias for x86_64-unknown-linux-gnu
        (X86_GLIBC, "aarch64-manylinux_2_28", False),
        (X86_GLIBC, "x86_64-unknown-linux-musl", False),  # musl wheels need musl
        (X86_GLIBC, "x86_64-linux-android", False),
        (X86_GLIBC, "x86_64-apple-darwin", False),
        (X86_GLIBC, "x86_64-pc-windows-msvc", False),
        (X86_GLIBC, "windows", False),
        (ARM_GLIBC, "aarch64-manylinux_2_28", True),
        (ARM_GLIBC, "aarch64-unknown-linux-gnu", True),
        (ARM_GLIBC, "linux", False),  # x86-64
        (ARM_GLIBC, "x86_64-manylinux_2_28", False),
        (ARM_GLIBC, "aarch64-unknown-linux-musl", False),
        (X86_MUSL, "x86_64-unknown-linux-musl", True),
        (X86_MUSL, "x86_64-manylinux_2_28", False),
        (X86_MUSL, "linux", False),
        (MAC, "macos", False),  # the build's import check is Linux only
        (MAC, "aarch64-apple-darwin", False),
        (MAC, "aarch64-manylinux_2_28", False),
    ],
)
def test_a_build_imports_here_only_for_this_processor_and_libc_on_linux(
    monkeypatch: pytest.MonkeyPatch, machine: Machine, platform: str, imports: bool
) -> None:
    _on(monkeypatch, machine)
    assert builds_for_this_machine("3.11", platform) is imports


def test_a_build_for_another_python_does_not_import_here(monkeypatch: pytest.MonkeyPatch) -> None:
    _on(monkeypatch, X86_GLIBC)
    assert builds_for_this_machine("3.11.7", "x86_64-manylinux_2_28")
    assert not builds_for_this_machine("3.12", "x86_64-manylinux_2_28")


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (X86_GLIBC, "x86_64-manylinux_2_28"),
        (ARM_GLIBC, "aarch64-manylinux_2_28"),
        (X86_MUSL, "x86_64-unknown-linux-musl"),
        (MAC, None),
    ],
)
def test_the_platform_for_this_machine_builds_for_it(
    monkeypatch: pytest.MonkeyPatch, machine: Machine, expected: str | None
) -> None:
    _on(monkeypatch, machine)
    assert platform_for_this_machine() == expected
    if expected is not None:
        assert builds_for_this_machine(machine.python, expected)


def test_this_machine_names_its_libc_on_linux_only() -> None:
    machine = target.this_machine()
    assert machine.libc in (("glibc", "musl") if machine.is_linux else ("",))
