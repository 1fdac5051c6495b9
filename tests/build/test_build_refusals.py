"""Projects the build must refuse, because what it would produce could never be called."""

from pathlib import Path

import pytest
from pydantic import ValidationError
from tests.build.test_scanner import HEADER, write

from flash import CpuLiveServerless, LiveServerless
from flash.build.errors import BuildError
from flash.build.pipeline import BuildOptions, build_project


def build_error(root: Path, files: dict[str, str]) -> BuildError:
    write(root, files)
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    return info.value


# --- endpoint names that cannot go into a URL ----------------------------------------------


@pytest.mark.parametrize("name", ["my worker", "café", "推論"])
def test_a_name_with_a_space_or_non_ascii_character_is_refused_at_its_line(
    tmp_path: Path, name: str
) -> None:
    source = f'{HEADER}\ncfg = CpuLiveServerless(name="{name}")\n\n@remote(cfg)\ndef f(): ...\n'
    error = build_error(tmp_path, {"app.py": source})
    text = str(error)
    assert text.startswith("app.py:3:"), text
    assert "CpuLiveServerless" in text and repr(name) in text
    assert "letters, digits" in text


@pytest.mark.parametrize("name", ["my worker", "café", "推論", "tab\tname"])
def test_a_config_with_such_a_name_cannot_be_constructed(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        LiveServerless(name=name)
    text = str(info.value)
    assert "name" in text and "letters, digits" in text


@pytest.mark.parametrize("name", ["gpu-worker", "cpu_worker", "Model.v2", "A1"])
def test_names_of_letters_digits_dashes_underscores_and_dots_still_work(
    tmp_path: Path, name: str
) -> None:
    assert CpuLiveServerless(name=name).name == name
    source = f'{HEADER}\ncfg = CpuLiveServerless(name="{name}")\n\n@remote(cfg)\ndef f(): ...\n'
    write(tmp_path, {"app.py": source})
    result = build_project(BuildOptions(project_dir=tmp_path))
    assert list(result.manifest.resources) == [name]


# --- @remote applied where the scanner cannot see it ---------------------------------------

CPU = 'from flash import CpuLiveServerless, remote\n\ncpu = CpuLiveServerless(name="cpu")\n'
# A function the scanner sees, so the project has an endpoint and a handler.
SEEN = "\n@remote(cpu)\ndef seen(x: int) -> int:\n    return x\n"


@pytest.mark.parametrize(
    "common, decorator",
    [
        (CPU + "\n\ndef on_cpu(**kw):\n    return remote(cpu, **kw)\n", "@on_cpu()"),
        (CPU + "import functools\n\non_cpu = functools.partial(remote, cpu)\n", "@on_cpu()"),
        (
            CPU + "import flash\n\nhidden = getattr(flash, 'remote')\n",
            "@hidden(cpu)",
        ),
    ],
    ids=["factory", "partial", "getattr"],
)
def test_remote_applied_where_the_scanner_cannot_see_it_fails_the_build(
    tmp_path: Path, common: str, decorator: str
) -> None:
    names = "cpu, on_cpu" if "on_cpu" in decorator else "cpu, hidden"
    app = (
        f"from flash import remote\nfrom common import {names}\n{SEEN}\n\n"
        f"{decorator}\ndef hidden_fn(x: int) -> int:\n    return x\n"
    )
    error = build_error(tmp_path, {"common.py": common, "app.py": app})
    text = str(error)
    assert "app.py:" in text and "hidden_fn" in text, text
    assert "could not see" in text and "@remote(config)" in text


def test_a_remote_function_imported_into_another_module_still_builds(tmp_path: Path) -> None:
    files = {
        "common.py": CPU,
        "app.py": f"from common import cpu, remote\n{SEEN}\nagain = seen\n",
        "other.py": (
            "from common import cpu, remote\nfrom app import seen\n\n"
            "@remote(cpu)\ndef uses(x: int) -> int:\n    return seen.__wrapped__(x)\n"
        ),
    }
    write(tmp_path, files)
    result = build_project(BuildOptions(project_dir=tmp_path))
    assert set(result.manifest.function_registry) >= {"app.seen", "other.uses"}


# --- project modules named as the standard library's -------------------------------------


@pytest.mark.parametrize(
    "rel, named",
    [("queue.py", "queue.py"), ("types/__init__.py", "types/"), ("json/x.py", "json/")],
)
def test_a_top_level_module_with_a_standard_library_name_is_refused(
    tmp_path: Path, rel: str, named: str
) -> None:
    source = f'{HEADER}\ncfg = CpuLiveServerless(name="cpu")\n\n@remote(cfg)\ndef f(): ...\n'
    error = build_error(tmp_path, {rel: source})
    text = str(error)
    assert text.startswith(f"{named}: "), text
    assert "standard library" in text and "rename" in text
