"""The built manifest records each function's JSON schemas and their hash, or why it has none."""

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.integration.projects import write_files

from flash.build.pipeline import BuildOptions, build_project
from flash.build.schemas import schema_sha256

JOBS = """\
    from flash import CpuLiveServerless, remote

    cpu = CpuLiveServerless(name="cpu")


    class Opaque:
        pass


    @remote(cpu)
    def add(a: int, b: int) -> int:
        return a + b


    @remote(cpu)
    def opaque(o: Opaque) -> int:
        return 1


    @remote(cpu)
    def loose(x):
        return x
    """


def build(root: Path) -> dict[str, dict[str, Any]]:
    """Build the project at ``root``; the cpu endpoint's functions, by name, as the
    archive's flash_manifest.json records them."""
    result = build_project(BuildOptions(project_dir=root))
    with tarfile.open(result.archive) as tar:
        member = tar.extractfile("flash_manifest.json")
        assert member is not None
        manifest = json.loads(member.read())
    return {f["name"]: f for f in manifest["resources"]["cpu"]["functions"]}


def project(root: Path, jobs: str = JOBS) -> Path:
    return write_files(root, {"app/__init__.py": "", "app/jobs.py": jobs})


@pytest.fixture(scope="module")
def functions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return build(project(tmp_path_factory.mktemp("schemas") / "proj"))


def test_a_typed_function_records_its_schemas_and_their_hash(
    functions: dict[str, dict[str, Any]],
) -> None:
    add = functions["add"]
    assert add["pickle_only"] is None
    schema = add["schema"]
    assert schema["input"]["required"] == ["a", "b"]
    assert {p["type"] for p in schema["input"]["properties"].values()} == {"integer"}
    assert schema["output"] == {"type": "integer"}
    assert schema["sha256"] == schema_sha256(schema["input"], schema["output"])


def test_a_parameter_without_a_schema_makes_the_function_pickle_only_naming_it(
    functions: dict[str, dict[str, Any]],
) -> None:
    opaque = functions["opaque"]
    assert opaque["schema"] is None
    assert "parameter 'o'" in opaque["pickle_only"] and "Opaque" in opaque["pickle_only"]
    assert "no JSON Schema" in opaque["pickle_only"]


def test_a_parameter_without_annotation_makes_the_function_pickle_only_naming_it(
    functions: dict[str, dict[str, Any]],
) -> None:
    loose = functions["loose"]
    assert loose["schema"] is None
    assert loose["pickle_only"] == "parameter 'x' has no type annotation"


def test_changing_an_annotation_changes_the_hash_in_the_rebuilt_manifest(
    tmp_path: Path,
) -> None:
    root = project(tmp_path / "proj")
    before = build(root)["add"]["schema"]
    project(root, JOBS.replace("b: int)", "b: float)"))
    after = build(root)["add"]["schema"]
    assert after["input"]["properties"]["b"]["type"] == "number"
    assert after["sha256"] != before["sha256"]
    assert after["sha256"] == schema_sha256(after["input"], after["output"])
