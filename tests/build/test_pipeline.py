import base64
import gzip
import json
import re
import shutil
import sys
import tarfile
import tracemalloc
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest
from tests.helpers import QuietHandler, SixFailsIndex, serve_http
from tests.integration.projects import multi_package_project, src_layout_project, write_files
from tests.wheelhouse import build_wheel

from flash.build import dependencies, pipeline
from flash.build.dependencies import DependencyOptions, load_toml
from flash.build.errors import BuildError
from flash.build.pipeline import BuildOptions, build_project
from flash.cli.init import write_starter


def starter(tmp_path: Path, parent: str = "") -> Path:
    root = tmp_path / parent / "proj"
    write_starter(root)
    return root


def offline(wheels: Path, **kw: object) -> DependencyOptions:
    return DependencyOptions(find_links=(str(wheels),), no_index=True, **kw)  # type: ignore[arg-type]


def names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_starter_project_builds_with_one_handler_per_endpoint(tmp_path: Path) -> None:
    root = starter(tmp_path)
    result = build_project(BuildOptions(project_dir=root))
    assert set(result.manifest.resources) == {"classifier", "cpu-worker", "gpu-worker"}
    files = names(result.archive)
    for handler in ("handler_classifier.py", "handler_cpu_worker.py", "handler_gpu_worker.py"):
        assert handler in files
    assert "flash_manifest.json" in files and "flash/runtime/generic_handler.py" in files
    assert "cloudpickle/__init__.py" in files
    assert not [n for n in files if "__pycache__" in n or n.endswith(".pyc")]
    with tarfile.open(result.archive) as tar:
        inside = tar.extractfile("flash_manifest.json").read()  # type: ignore[union-attr]
    assert inside == (root / ".flash" / "flash_manifest.json").read_bytes()
    manifest = json.loads(inside)
    assert manifest["function_registry"]["workers.gpu_worker.embed"] == "gpu-worker"
    assert manifest["resources"]["classifier"]["functions"][0]["methods"] == ["predict"]
    assert result.size < 2_000_000


def test_generated_handler_is_small_and_readable(tmp_path: Path) -> None:
    root = starter(tmp_path)
    build_project(BuildOptions(project_dir=root, keep_build=True))
    text = (root / ".flash" / ".build" / "handler_cpu_worker.py").read_text()
    assert 'create_handler(FUNCTION_REGISTRY, endpoint="cpu-worker")' in text
    assert '("preprocess", "workers.cpu_worker", "preprocess")' in text
    assert len(text.splitlines()) <= 30


def test_two_builds_of_the_same_inputs_are_byte_identical(tmp_path: Path) -> None:
    first = build_project(BuildOptions(project_dir=starter(tmp_path, "a")))
    second_root = starter(tmp_path, "b")
    second = build_project(BuildOptions(project_dir=second_root))
    forced = build_project(BuildOptions(project_dir=second_root, force=True))
    assert first.sha256 == second.sha256 == forced.sha256
    assert first.archive.read_bytes() == second.archive.read_bytes()


def test_no_change_rebuild_is_skipped_and_code_change_rebuilds(tmp_path: Path) -> None:
    root = starter(tmp_path)
    first = build_project(BuildOptions(project_dir=root))
    again = build_project(BuildOptions(project_dir=root))
    assert again.skipped and again.sha256 == first.sha256
    gpu = root / "workers" / "gpu_worker.py"
    gpu.write_text(gpu.read_text() + "\n# tweak\n")
    changed = build_project(BuildOptions(project_dir=root))
    assert not changed.skipped and changed.sha256 != first.sha256


def test_a_new_source_date_epoch_rebuilds_with_the_new_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = starter(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    first = build_project(BuildOptions(project_dir=root))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    second = build_project(BuildOptions(project_dir=root))
    assert not second.skipped and second.sha256 != first.sha256
    with tarfile.open(second.archive) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}
    assert build_project(BuildOptions(project_dir=root)).skipped


def test_code_only_rebuild_does_not_reinstall_dependencies(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "tinydep", "1.0", requires=["tinybase>=1"])
    build_wheel(wheels, "tinybase", "1.2")
    root = multi_package_project(tmp_path / "multi")
    first = build_project(BuildOptions(project_dir=root, dependencies=offline(wheels)))
    assert first.manifest.dependencies.pins == ["tinybase==1.2", "tinydep==1.0"]
    assert "tinydep/__init__.py" in names(first.archive)
    shutil.rmtree(wheels)  # any attempt to resolve or install again would now fail
    jobs = root / "app" / "jobs.py"
    jobs.write_text(jobs.read_text().replace("upper()", "lower()"))
    second = build_project(BuildOptions(project_dir=root, dependencies=offline(wheels)))
    assert not second.skipped and "tinydep/__init__.py" in names(second.archive)


def test_async_function_dependencies_reach_the_manifest(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "tinydep", "1.0")
    root = multi_package_project(tmp_path / "multi")
    result = build_project(BuildOptions(project_dir=root, dependencies=offline(wheels)))
    vision = result.manifest.resources["Vision-Model.v2"]
    assert vision.handler_file == "handler_vision_model_v2.py"
    assert vision.dependencies == ["tinydep"] and vision.functions[0].is_async
    assert vision.config["env"] == {"MODE": "fast"}
    cpu = result.manifest.resources["cpu-jobs"]
    assert {f.qualified_name for f in cpu.functions} == {"01_prep.prep", "app.jobs.process"}
    assert result.manifest.function_registry["app.vision.infer.process"] == "Vision-Model.v2"


def test_failed_build_keeps_previous_archive(tmp_path: Path) -> None:
    root = starter(tmp_path)
    good = build_project(BuildOptions(project_dir=root))
    before = sorted(p.name for p in (root / ".flash").iterdir())
    (root / "workers" / "gpu_worker.py").write_text("def broken(:\n")
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    assert info.value.path == "workers/gpu_worker.py" and info.value.line == 1
    assert good.archive.read_bytes() == (root / ".flash" / "archive.tar.gz").read_bytes()
    assert sorted(p.name for p in (root / ".flash").iterdir()) == before


def test_handler_import_failure_stops_the_build(tmp_path: Path) -> None:
    root = starter(tmp_path)
    gpu = root / "workers" / "gpu_worker.py"
    gpu.write_text(gpu.read_text() + "\nraise RuntimeError('model file missing')\n")
    with pytest.raises(BuildError, match="model file missing") as info:
        build_project(BuildOptions(project_dir=root))
    assert "handler_" in str(info.value)
    assert not (root / ".flash" / "archive.tar.gz").exists()


def test_a_patch_version_of_this_python_still_checks_imports(tmp_path: Path) -> None:
    root = starter(tmp_path)
    gpu = root / "workers" / "gpu_worker.py"
    gpu.write_text(gpu.read_text() + "\nraise RuntimeError('model file missing')\n")
    patch = "{}.{}.{}".format(*sys.version_info[:3])  # e.g. 3.11.7 on a 3.11 host
    options = BuildOptions(project_dir=root, dependencies=DependencyOptions(python_version=patch))
    with pytest.raises(BuildError, match="model file missing"):
        build_project(options)


def test_a_module_that_fails_to_import_is_named_with_its_line(tmp_path: Path) -> None:
    root = starter(tmp_path)
    cpu = root / "workers" / "cpu_worker.py"
    cpu.write_text(cpu.read_text() + "\nimport not_installed_anywhere\n")
    line = len(cpu.read_text().splitlines())
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    message = str(info.value)
    assert "handler_cpu_worker.py failed to import" in message
    # Named as in the project, not as the build's copy, and without importlib's frames.
    assert f"  workers/cpu_worker.py:{line} in <module>: import not_installed_anywhere" in message
    assert ".flash" not in message and "importlib._bootstrap" not in message
    assert "\nModuleNotFoundError: No module named 'not_installed_anywhere'\n" in message
    assert message.endswith(
        "declare that package in @remote(..., dependencies=[...]) or "
        "requirements.txt: the build vendors only what is declared"
    )


def test_a_package_only_this_machine_has_is_not_in_the_build(tmp_path: Path) -> None:
    # pydantic is installed here (the build uses it), but the project never declared it:
    # a worker would not have it, so the build must fail rather than derive schemas with it.
    root = starter(tmp_path)
    cpu = root / "workers" / "cpu_worker.py"
    cpu.write_text("import pydantic  # noqa: F401\n" + cpu.read_text())
    with pytest.raises(BuildError, match="No module named 'pydantic'") as info:
        build_project(BuildOptions(project_dir=root))
    assert "handler_cpu_worker.py failed to import" in str(info.value)


def test_a_build_imports_the_project_in_one_interpreter(tmp_path: Path) -> None:
    root = starter(tmp_path)
    imports = tmp_path / "imports.log"
    gpu = root / "workers" / "gpu_worker.py"
    gpu.write_text(
        f"import importlib.util, os\nwith open({str(imports)!r}, 'a') as log:\n"
        "    print(os.getpid(), importlib.util.find_spec('pydantic') is None, file=log)\n"
        + gpu.read_text()
    )
    result = build_project(BuildOptions(project_dir=root))
    lines = imports.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(" True")  # imported without this machine's site-packages
    embed = next(f for f in result.manifest.resources["gpu-worker"].functions if f.name == "embed")
    assert embed.schema_ is not None  # the same interpreter derived the schemas


def test_a_cross_target_build_imports_nothing_and_stays_pickle_only(tmp_path: Path) -> None:
    root = starter(tmp_path)
    imports = tmp_path / "imports.log"
    gpu = root / "workers" / "gpu_worker.py"
    gpu.write_text(f"open({str(imports)!r}, 'a').close()\n" + gpu.read_text())
    # Another Python than this one, in the range flash build targets.
    other = "3.12" if sys.version_info[:2] == (3, 10) else "3.10"
    options = BuildOptions(project_dir=root, dependencies=DependencyOptions(python_version=other))
    result = build_project(options)
    assert not imports.exists()
    functions = [f for r in result.manifest.resources.values() for f in r.functions]
    assert functions and all(f.schema_ is None for f in functions)
    assert {f.pickle_only for f in functions} == {
        "cross-target build: the project's modules cannot be imported here"
    }


def test_max_size_names_the_largest_packages(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(
        wheels, "tinydep", "1.0", files={"tinydep/__init__.py": "VALUE = 1\n" + "#" * 300_000}
    )
    root = multi_package_project(tmp_path / "multi")
    with pytest.raises(BuildError, match=r"over --max-size.*tinydep"):
        build_project(BuildOptions(project_dir=root, max_size_mb=0.2, dependencies=offline(wheels)))


def test_secrets_and_outputs_stay_out_of_the_archive(tmp_path: Path) -> None:
    root = starter(tmp_path)
    write_files(root, {".env": "HF_TOKEN=hf_supersecret\n", "config/.env.local": "K=hf_other\n"})
    result = build_project(BuildOptions(project_dir=root))
    listing = names(result.archive)
    assert not [n for n in listing if ".env" in n or n.startswith(".flash/")]
    content = gzip.decompress(result.archive.read_bytes())
    assert b"hf_supersecret" not in content
    key = (root / ".flash" / "secrets" / "signing_key").read_bytes().strip()
    assert key not in content and key not in (root / ".flash" / "flash_manifest.json").read_bytes()


def test_a_secret_file_changed_is_screened_again_and_the_archive_stays_the_same(
    tmp_path: Path,
) -> None:
    root = starter(tmp_path)
    pem = "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n"
    write_files(root, {"deploy.pem": pem.format("MIIEpAIBAAKCAQEA" * 4)})  # left out
    first = build_project(BuildOptions(project_dir=root))
    assert "deploy.pem" not in names(first.archive)
    write_files(root, {"deploy.pem": pem.format("MIIEowIBAAKCAQEA" * 4)})  # rotated
    again = build_project(BuildOptions(project_dir=root))
    assert not again.skipped  # the screen read the new file
    assert again.sha256 == first.sha256  # the archive holds none of it: flash run keeps serving


@pytest.mark.parametrize(
    "gitignore",
    ["*\n!*/\n!workers/**\n", "/*\n!/workers/\n!/pyproject.toml\n", "!.env\n!.flash/\n"],
)
def test_ignore_file_negations_cannot_re_include_secrets(tmp_path: Path, gitignore: str) -> None:
    root = starter(tmp_path)
    write_files(
        root,
        {
            ".gitignore": gitignore,
            "workers/.env": "K=hf_envsecret\n",
            "workers/.env.local": "K=hf_localsecret\n",
            "workers/.flash/secrets/signing_key": "hf_nestedkey\n",
        },
    )
    result = build_project(BuildOptions(project_dir=root))
    listing = names(result.archive)
    assert "workers/gpu_worker.py" in listing
    assert not [n for n in listing if ".env" in n or ".flash/" in n]
    content = gzip.decompress(result.archive.read_bytes())
    for secret in (b"hf_envsecret", b"hf_localsecret", b"hf_nestedkey"):
        assert secret not in content


def test_every_dot_env_variant_stays_out_of_the_archive(tmp_path: Path) -> None:
    root = starter(tmp_path)
    variants = [".envrc", ".env_production", ".env-staging", "config/.env.prod", ".envs/dev"]
    write_files(root, {name: f"K=hf_secret_{i}\n" for i, name in enumerate(variants)})
    result = build_project(BuildOptions(project_dir=root))
    assert not [n for n in names(result.archive) if ".env" in n]
    assert b"hf_secret_" not in gzip.decompress(result.archive.read_bytes())


def test_index_credentials_in_project_files_stay_out_of_the_archive(tmp_path: Path) -> None:
    root = starter(tmp_path)
    index = "--extra-index-url https://deploy:tok_req@pypi.example.invalid/simple\n"
    dev = "--index-url https://u:tok_utf16@example.invalid/simple\n"
    write_files(
        root,
        {
            # pip, uv and urllib read the password here as "p@ss-tok_at"
            "requirements.txt": index + "-r base.txt\n-c pins/constraints.txt\n"
            "--extra-index-url https://u:p@ss-tok_at@example.invalid/simple\n",
            "base.txt": "--index-url https://u:tok_base@example.invalid/simple\n-r deps/more.in\n",
            "deps/more.in": "--find-links https://u:tok_more@example.invalid/wheels\n",
            "pins/constraints.txt": "--index-url https://u:tok_pins@example.invalid/simple\n",
            "pyproject.toml": "[project]\nname = 'app'\nversion = '0'\n"
            "urls = {Home='https://example.com',Mail='mailto:team@example.com'}\n",
            "uv.toml": '[[index]]\nurl = "https://u:tok_uv@example.invalid/simple"\n',
            "poetry.toml": '[http-basic.corp]\nusername = "u"\npassword = "tok_poetry"\n',
            "pip.conf": "[global]\nindex-url = https://u:tok_pip@example.invalid/simple\n",
            ".netrc": "machine example.invalid login u password tok_netrc\n",
            ".pypirc": "[pypi]\npassword = tok_pypirc\n",
            "data/links.txt": "https://u:kept@example.invalid/x\n",  # the user's data: as is
        },
    )
    (root / "requirements-dev.txt").write_bytes(dev.encode("utf-16"))  # with its BOM
    (root / "setup.cfg").write_text("[options]\nurl = https://u:tok_cfg@example.invalid\n")
    (root / "setup.cfg").chmod(0o755)
    result = build_project(BuildOptions(project_dir=root))
    listing = names(result.archive)
    for tool_file in (".netrc", ".pypirc", "uv.toml", "poetry.toml", "pip.conf"):
        assert tool_file not in listing
    content = gzip.decompress(result.archive.read_bytes())
    assert b"tok_" not in content and "tok_".encode("utf-16-le") not in content
    with tarfile.open(result.archive) as tar:
        read = lambda name: tar.extractfile(name).read()  # type: ignore[union-attr]  # noqa: E731
        # Index URLs are masked after their host too (a token can be in their path).
        assert read("requirements.txt").decode() == (
            "--extra-index-url https://****@pypi.example.invalid/****\n-r base.txt\n"
            "-c pins/constraints.txt\n--extra-index-url https://****@example.invalid/****\n"
        )
        for included in ("base.txt", "deps/more.in", "pins/constraints.txt"):
            assert b"https://****@example.invalid/****\n" in read(included)
        assert read("requirements-dev.txt").decode("utf-16") == (
            "--index-url https://****@example.invalid/****\n"
        )
        assert b"Home='https://example.com',Mail='mailto:team@example.com'" in read(
            "pyproject.toml"
        )
        assert tar.getmember("setup.cfg").mode == 0o755
        assert read("data/links.txt") == b"https://u:kept@example.invalid/x\n"
    # The project's own files are untouched.
    assert "tok_req" in (root / "requirements.txt").read_text()


def test_a_file_an_ignored_requirements_txt_includes_is_still_masked(tmp_path: Path) -> None:
    # requirements.txt itself stays out of the archive, but the build reads it, and a file it
    # names with -r is archived under a name no index-config rule knows.
    root = starter(tmp_path)
    write_files(
        root,
        {
            "requirements.txt": "-r deps/indexes.cfg\n",
            "deps/indexes.cfg": "--extra-index-url https://u:tok_cfg@example.invalid/tok_path/\n",
        },
    )
    (root / ".flashignore").write_text((root / ".flashignore").read_text() + "requirements.txt\n")
    result = build_project(BuildOptions(project_dir=root))
    assert "requirements.txt" not in names(result.archive)
    with tarfile.open(result.archive) as tar:
        archived = tar.extractfile("deps/indexes.cfg").read()  # type: ignore[union-attr]
    assert archived == b"--extra-index-url https://****@example.invalid/****\n"


def test_lock_files_are_archived_with_their_urls_cut_after_the_host(tmp_path: Path) -> None:
    root = starter(tmp_path)
    locks = {
        "uv.lock": 'source = {{ registry = "https://dl.example.invalid/{t}/simple" }}\n',
        "poetry.lock": '[package.source]\nurl = "https://dl.example.invalid/{t}/simple"\n',
        "pylock.toml": '[[packages]]\nindex = "https://dl.example.invalid/{t}/simple"\n',
        "pylock.dev.toml": '[[packages]]\nindex = "https://dl.example.invalid/{t}/simple"\n',
        "requirements.lock": "--index-url https://dl.example.invalid/{t}/simple\n",
        "requirements-dev.lock": "x @ https://dl.example.invalid/{t}/x-1.0.tar.gz\n",
        "services/api/uv.lock": 'url = "https://u:{t}@dl.example.invalid/{t}/x.whl"\n',
    }
    write_files(
        root, {name: text.format(t=f"tok_lock{i}") for i, (name, text) in enumerate(locks.items())}
    )
    result = build_project(BuildOptions(project_dir=root))
    assert b"tok_lock" not in gzip.decompress(result.archive.read_bytes())
    with tarfile.open(result.archive) as tar:
        read = lambda name: tar.extractfile(name).read().decode()  # type: ignore[union-attr]  # noqa: E731
        assert read("uv.lock") == 'source = { registry = "https://dl.example.invalid/****" }\n'
        assert read("services/api/uv.lock") == 'url = "https://****@dl.example.invalid/****"\n'
        assert read("requirements-dev.lock") == "x @ https://dl.example.invalid/****\n"


def test_every_url_with_a_path_in_an_index_config_file_is_cut_whatever_its_syntax(
    tmp_path: Path,
) -> None:
    # The build reads none of these options (some are no pip syntax at all): the archive's
    # copy has every URL with a path or a query cut after its host all the same, and is
    # otherwise the file's very bytes (byte-order mark, line endings).
    root = starter(tmp_path)
    write_files(
        root,
        {
            "requirements-dev.txt": "--extra-index-url \\\n    https://dl.example.invalid/tok_a/simple\n"
            "--extra-index https://dl.example.invalid/tok_b/simple\n"
            "pkg @ https://dl.example.invalid/tok_c/pkg.whl\n",
            "setup.cfg": "[easy_install]\nindex_url = https://dl.example.invalid/?token=tok_e\n",
        },
    )
    pyproject = (
        '[project]\r\nname = "app"\r\nversion = "0"\r\n'
        "urls = {Home = 'https://example.com'}\r\n[[tool.uv.index]]\r\n"
        'url = "https://dl.example.invalid/tok_f/simple"\r\n[tool.uv]\r\n'
        'extra-index-url = ["https://dl.example.invalid/tok_g(1)/simple"]\r\n'
    )
    (root / "pyproject.toml").write_bytes(pyproject.encode())
    pipfile = '[[source]]\r\nurl = "https://dl.example.invalid/tok_d/simple"\r\nname = "c"\r\n'
    (root / "Pipfile").write_bytes(pipfile.encode("utf-8-sig"))
    result = build_project(BuildOptions(project_dir=root))
    assert b"tok_" not in gzip.decompress(result.archive.read_bytes())
    with tarfile.open(result.archive) as tar:
        read = lambda name: tar.extractfile(name).read()  # type: ignore[union-attr]  # noqa: E731
        assert read("requirements-dev.txt").decode() == (
            "--extra-index-url \\\n    https://dl.example.invalid/****\n"
            "--extra-index https://dl.example.invalid/****\n"
            "pkg @ https://dl.example.invalid/****\n"
        )
        assert read("Pipfile") == pipfile.replace("tok_d/simple", "****").encode("utf-8-sig")
        assert read("setup.cfg") == b"[easy_install]\nindex_url = https://dl.example.invalid/****\n"
        masked = pyproject.replace("tok_f/simple", "****").replace("tok_g(1)/simple", "****")
        assert read("pyproject.toml") == masked.encode()


def test_a_big_file_that_may_name_indexes_is_masked_like_any_other(tmp_path: Path) -> None:
    # Whatever its size (data under requirements/, say, 9 MB here), such a file is masked
    # where it names a URL's credentials, and goes in as the very bytes that were checked.
    root = starter(tmp_path)
    filler = ("# " + "x" * 100 + "\n") * 90_000
    wide = filler + "--index-url https://u:tok_wide@example.invalid/simple\n"
    write_files(
        root,
        {
            "requirements/big.txt": filler + "-i https://u:tok_big@example.invalid/simple\n",
            "requirements/data.txt": filler + "mail@example.com https://example.com/\n",
        },
    )
    (root / "requirements" / "wide.txt").write_bytes(wide.encode("utf-16"))
    result = build_project(BuildOptions(project_dir=root))
    with tarfile.open(result.archive) as tar:
        read = lambda name: tar.extractfile(name).read()  # type: ignore[union-attr]  # noqa: E731
        assert read("requirements/big.txt").decode() == (
            filler + "-i https://****@example.invalid/****\n"
        )
        assert read("requirements/wide.txt").decode("utf-16") == (
            filler + "--index-url https://****@example.invalid/****\n"
        )
        data = root / "requirements" / "data.txt"
        assert read("requirements/data.txt") == data.read_bytes()
    # The archive gets the checked bytes, not the file read again later.
    entries = {
        name: pipeline._project_entry(root, f"requirements/{name}", True)
        for name in ("big.txt", "wide.txt", "data.txt")
    }
    assert all(entry.data is not None and entry.source is None for entry in entries.values())
    assert entries["data.txt"].data == data.read_bytes()


def test_a_file_that_claims_utf16_but_is_not_fails_the_build_naming_it(tmp_path: Path) -> None:
    # Read as UTF-8 instead, its credentials would go into the archive unmasked.
    root = starter(tmp_path)
    text = "--index-url https://u:tok_odd@example.invalid/simple\n".encode("utf-16")
    (root / "requirements-dev.txt").write_bytes(text + b"\x00")  # an odd byte at the end
    with pytest.raises(BuildError, match="byte-order mark") as info:
        build_project(BuildOptions(project_dir=root))
    assert info.value.path == "requirements-dev.txt"
    assert not (root / ".flash" / "archive.tar.gz").exists()


def test_a_changed_flash_rebuilds_under_the_same_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Flash upgrade (or a checkout) that keeps the version number must not reuse an
    # archive built by the old code.
    root = starter(tmp_path)
    build_project(BuildOptions(project_dir=root))
    assert build_project(BuildOptions(project_dir=root)).skipped
    monkeypatch.setattr(pipeline, "_flash_sources_fingerprint", lambda: "another flash")
    assert not build_project(BuildOptions(project_dir=root)).skipped
    # What makes Flash "another": any of its sources, the build's as much as the runtime's.
    package = shutil.copytree(
        Path(pipeline.__file__).parents[1],
        tmp_path / "flash",
        ignore=shutil.ignore_patterns("*.pyc"),
    )
    before = pipeline.sources_fingerprint(package)
    assert before == pipeline.sources_fingerprint(Path(pipeline.__file__).parents[1])
    (package / "build" / "pipeline.py").write_text("# changed\n", encoding="utf-8")
    assert pipeline.sources_fingerprint(package) != before


@pytest.fixture
def wheel_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server for tmp_path/served: (base URL, Authorization headers it received)."""
    served = tmp_path / "served"
    build_wheel(served, "tinydep", "1.0")
    seen: list[str] = []

    class Handler(QuietHandler, SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            super().do_GET()

    with serve_http(partial(Handler, directory=str(served))) as port:
        yield f"http://user:s3cr3t@127.0.0.1:{port}", seen


def test_url_credentials_stay_out_of_manifest_and_errors(
    tmp_path: Path, wheel_server: tuple[str, list[str]]
) -> None:
    base, seen = wheel_server
    root = starter(tmp_path)
    write_files(root, {"requirements.txt": f"tinydep @ {base}/tinydep-1.0-py3-none-any.whl\n"})
    result = build_project(
        BuildOptions(project_dir=root, dependencies=DependencyOptions(no_index=True))
    )
    # The install used the real URL, credentials included...
    assert "tinydep/__init__.py" in names(result.archive)
    assert "Basic " + base64.b64encode(b"user:s3cr3t").decode() in seen
    # ...but what is recorded and shown has them masked.
    manifest = (root / ".flash" / "flash_manifest.json").read_text()
    assert "s3cr3t" not in manifest and "http://****@127.0.0.1" in manifest
    # The archive's copy of requirements.txt is masked too: the worker installs nothing.
    assert b"s3cr3t" not in gzip.decompress(result.archive.read_bytes())
    with tarfile.open(result.archive) as tar:
        shipped = tar.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
    # (every URL with a path cut after its host: the worker reads none)
    assert shipped == "tinydep @ http://****@127.0.0.1" + base.split("127.0.0.1")[1] + "/****\n"
    assert "s3cr3t" not in json.dumps(result.summary())

    write_files(root, {"requirements.txt": f"tinydep @ {base}/missing-1.0-py3-none-any.whl\n"})
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root, dependencies=DependencyOptions(no_index=True)))
    assert "s3cr3t" not in str(info.value) and "****@127.0.0.1" in str(info.value)
    write_files(root, {"requirements.txt": f"tinydep @ {base}/x.whl ; bad marker\n"})
    with pytest.raises(BuildError, match="invalid requirement") as info:
        build_project(BuildOptions(project_dir=root))
    assert "s3cr3t" not in str(info.value)
    # Any build error masks them, whichever stage raised it.
    write_files(root, {"requirements.txt": f"-r {base}/more.txt\n"})
    with pytest.raises(BuildError, match="does not exist") as info:
        build_project(BuildOptions(project_dir=root))
    assert "s3cr3t" not in str(info.value) and "****@127.0.0.1" in info.value.message


def test_a_dependency_url_with_a_password_in_source_is_warned_about_by_line(
    tmp_path: Path, wheel_server: tuple[str, list[str]]
) -> None:
    # The source file goes into the archive as written: the build says where, never what.
    base, _ = wheel_server
    root = starter(tmp_path)
    url = f"{base}/tinydep-1.0-py3-none-any.whl"
    write_files(
        root,
        {
            "workers/extra.py": "from flash import CpuLiveServerless, remote\n\n"
            'extra = CpuLiveServerless(name="extra")\n\n\n'
            f'@remote(extra, dependencies=["tinydep @ {url}"])\n'
            "def ping() -> int:\n    return 1\n",
            # Archived with its URLs cut: nothing to warn about.
            "requirements.txt": f"tinydep @ {url}\n",
        },
    )
    result = build_project(
        BuildOptions(project_dir=root, dependencies=DependencyOptions(no_index=True))
    )
    shown = json.dumps(result.summary())
    assert "workers/extra.py:6: looks like a URL with a password" in shown
    assert "requirements.txt:" not in shown and "s3cr3t" not in shown


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        (f"executionTimeoutMs={10**400}", "executionTimeoutMs"),
        ("executionTimeoutMs=604_800_001", "executionTimeoutMs"),  # over RunPod's 7 days
        (f"idle_timeout={2**31}", "idle_timeout"),  # named as written
        (f"scalerValue={10**30}", "scalerValue"),
    ],
)
def test_an_out_of_range_int_setting_is_an_error_naming_the_field(
    tmp_path: Path, setting: str, field: str
) -> None:
    root = starter(tmp_path)
    gpu = root / "workers" / "gpu_worker.py"
    gpu.write_text(gpu.read_text().replace("idleTimeout=30", setting))
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    assert (info.value.path, info.value.line) == ("workers/gpu_worker.py", 7)
    assert f"{field}: Input should be less than or equal to" in info.value.message
    assert not (root / ".flash" / "archive.tar.gz").exists()


def test_reserved_file_names_are_refused(tmp_path: Path) -> None:
    root = starter(tmp_path)
    write_files(root, {"handler_gpu_worker.py": "x = 1\n"})
    with pytest.raises(BuildError, match="reserved") as info:
        build_project(BuildOptions(project_dir=root))
    assert info.value.path == "handler_gpu_worker.py"


def test_a_src_layout_project_builds_with_its_installed_module_names(tmp_path: Path) -> None:
    root = src_layout_project(tmp_path / "proj")
    result = build_project(BuildOptions(project_dir=root, keep_build=True))
    registry = result.manifest.function_registry
    assert registry == {
        "srcapp.gpu.embed": "src-cpu",
        "srcapp.models.counter.Counter": "src-cpu",
        "tasks.quadruple": "src-cpu",
    }
    # The files stay where they are; the handler puts src/ on sys.path, right after its own
    # folder, and the build's import check (a fresh interpreter) passed through it.
    files = names(result.archive)
    assert "src/srcapp/gpu.py" in files and "srcapp/gpu.py" not in files
    handler = (root / ".flash" / ".build" / "handler_src_cpu.py").read_text()
    assert "sys.path.insert(1, _SRC)" in handler
    assert '("srcapp.gpu.embed", "srcapp.gpu", "embed")' in handler
    # Typed functions got their schemas, so the modules were imported by those names.
    functions = result.manifest.resources["src-cpu"].functions
    assert all(f.schema_ is not None for f in functions if f.name != "Counter")


def test_a_src_layout_package_named_flash_is_refused(tmp_path: Path) -> None:
    root = src_layout_project(tmp_path / "proj")
    write_files(root, {"src/flash/__init__.py": ""})
    with pytest.raises(BuildError, match="shadow the runtime") as info:
        build_project(BuildOptions(project_dir=root))
    assert info.value.path == "src/flash/__init__.py"


def test_output_name_is_a_plain_file_name(tmp_path: Path) -> None:
    root = starter(tmp_path)
    result = build_project(BuildOptions(project_dir=root, output="release.tar.gz"))
    assert result.archive == root.resolve() / ".flash" / "release.tar.gz"
    with pytest.raises(BuildError, match="--output"):
        build_project(BuildOptions(project_dir=root, output="../x.tar.gz"))


@pytest.mark.parametrize("where", ["secret_in_project", "file_outside"])
def test_a_link_to_a_secret_fails_the_build_and_keeps_it_out(tmp_path: Path, where: str) -> None:
    root = starter(tmp_path)
    good = build_project(BuildOptions(project_dir=root))
    if where == "secret_in_project":
        write_files(root, {".env": "HF_TOKEN=hf_linksecret\n"})
        (root / "envlink.txt").symlink_to(".env")
        link, says = "envlink.txt", "symbolic link to .env, which is never archived"
    else:
        (tmp_path / "outside_cred").write_text("token = hf_linksecret\n")
        (root / "notes.txt").symlink_to(tmp_path / "outside_cred")
        outside = tmp_path / "outside_cred"
        link, says = "notes.txt", f"symbolic link to {outside}, outside the project"
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    assert info.value.path == link
    assert says in info.value.message and "list the link in .flashignore" in info.value.message
    archive = root / ".flash" / "archive.tar.gz"
    assert archive.read_bytes() == good.archive.read_bytes()
    assert b"hf_linksecret" not in gzip.decompress(archive.read_bytes())


def test_a_link_to_a_package_outside_says_to_copy_it_in(tmp_path: Path) -> None:
    root = starter(tmp_path)
    write_files(tmp_path, {"elsewhere/common/__init__.py": "GREETING = 'hi'\n"})
    (root / "common").symlink_to(tmp_path / "elsewhere" / "common")
    cpu = root / "workers" / "cpu_worker.py"
    cpu.write_text("import common  # noqa: F401\n" + cpu.read_text())
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    assert info.value.path == "common"
    outside = tmp_path / "elsewhere" / "common"
    assert f"symbolic link to {outside}, outside the project" in info.value.message
    assert "copy what it points to in, or list the link in .flashignore" in info.value.message
    assert not (root / ".flash" / "archive.tar.gz").exists()
    # Doing what it says builds.
    (root / "common").unlink()
    shutil.copytree(tmp_path / "elsewhere" / "common", root / "common")
    assert "common/__init__.py" in names(build_project(BuildOptions(project_dir=root)).archive)


def test_an_ignored_link_is_left_out_silently(tmp_path: Path) -> None:
    root = starter(tmp_path)
    write_files(tmp_path, {"elsewhere/common/__init__.py": "", "outside_cred": "hf_ignored\n"})
    (root / "common").symlink_to(tmp_path / "elsewhere" / "common")
    (root / "notes.txt").symlink_to(tmp_path / "outside_cred")
    (root / ".envrc").symlink_to(tmp_path / "outside_cred")  # a name never archived
    (root / ".gitignore").write_text((root / ".gitignore").read_text() + "common/\n")
    (root / ".flashignore").write_text((root / ".flashignore").read_text() + "notes.txt\n")
    result = build_project(BuildOptions(project_dir=root))
    listing = names(result.archive)
    assert not [n for n in listing if n.startswith(("common", "notes", ".envrc"))]
    assert b"hf_ignored" not in gzip.decompress(result.archive.read_bytes())


def _shared_requirements_project(tmp_path: Path) -> tuple[Path, Path, BuildOptions]:
    """A starter project whose requirements.txt includes ../shared/reqs.txt (tinypkg==1.0),
    its included file, and offline build options with tinypkg 1.0 and 2.0 to install."""
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "tinypkg", "1.0")
    build_wheel(wheels, "tinypkg", "2.0")
    root = starter(tmp_path)
    write_files(tmp_path, {"shared/reqs.txt": "tinypkg==1.0\n"})
    write_files(root, {"requirements.txt": "-r ../shared/reqs.txt\n"})
    return (
        root,
        tmp_path / "shared" / "reqs.txt",
        BuildOptions(project_dir=root, dependencies=offline(wheels)),
    )


def test_editing_a_requirements_file_outside_the_collected_files_rebuilds(
    tmp_path: Path,
) -> None:
    root, shared, options = _shared_requirements_project(tmp_path)
    assert build_project(options).manifest.dependencies.pins == ["tinypkg==1.0"]
    assert build_project(options).skipped

    shared.write_text("tinypkg==2.0\n")
    second = build_project(options)
    assert not second.skipped and second.manifest.dependencies.pins == ["tinypkg==2.0"]
    manifest = json.loads((root / ".flash" / "flash_manifest.json").read_text())
    assert manifest["dependencies"]["pins"] == ["tinypkg==2.0"]
    with tarfile.open(second.archive) as tar:
        vendored = tar.extractfile("tinypkg/__init__.py").read()  # type: ignore[union-attr]
    assert b"VERSION = '2.0'" in vendored

    # A requirements.txt kept out of the archive still decides what is installed.
    (root / ".flashignore").write_text((root / ".flashignore").read_text() + "requirements.txt\n")
    assert "requirements.txt" not in names(build_project(options).archive)
    (root / "requirements.txt").write_text("tinypkg==1.0\n")
    third = build_project(options)
    assert not third.skipped and third.manifest.dependencies.pins == ["tinypkg==1.0"]


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ({"python_version": "banana"}, "python_version 'banana' is not a Python version"),
        ({"python_version": "2.7"}, "python_version '2.7' is older than 3.10"),
        ({"python_version": "3.8"}, "python_version '3.8' is older than 3.10"),
        ({"python_version": "3.9.18"}, "python_version '3.9.18' is older than 3.10"),
        ({"platform": "windows lol"}, "--platform 'windows lol' is not a uv --python-platform"),
    ],
)
def test_target_options_are_checked_even_without_dependencies(
    tmp_path: Path, target: dict[str, str], says: str
) -> None:
    root = starter(tmp_path)
    options = BuildOptions(project_dir=root, dependencies=DependencyOptions(**target))
    with pytest.raises(BuildError) as info:
        build_project(options)
    assert says in info.value.message
    assert not (root / ".flash" / "archive.tar.gz").exists()
    assert not (root / ".flash" / "flash_manifest.json").exists()


def test_the_oldest_target_python_is_the_oldest_flash_supports(tmp_path: Path) -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    requires = load_toml(pyproject, "pyproject.toml")["project"]["requires-python"]
    floor = ".".join(map(str, dependencies.MIN_PYTHON))
    assert f">={floor}" in requires.replace(" ", "").split(",")
    target = DependencyOptions(python_version=floor, platform="aarch64-manylinux_2_28")
    result = build_project(BuildOptions(project_dir=starter(tmp_path), dependencies=target))
    assert (result.manifest.target.python_version, result.manifest.target.platform) == (
        floor,
        "aarch64-manylinux_2_28",
    )


def test_the_newest_target_python_is_the_newest_flash_supports(tmp_path: Path) -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    requires = load_toml(pyproject, "pyproject.toml")["project"]["requires-python"]
    major, minor = dependencies.MAX_PYTHON
    assert f"<{major}.{minor + 1}" in requires.replace(" ", "").split(",")
    newest = f"{major}.{minor}"
    target = DependencyOptions(python_version=newest)
    result = build_project(BuildOptions(project_dir=starter(tmp_path), dependencies=target))
    assert result.manifest.target.python_version == newest


@pytest.mark.parametrize("version", ["3.14", "3.14.2", "4.0"])
def test_a_target_python_newer_than_flash_supports_is_refused_naming_the_range(
    tmp_path: Path, version: str
) -> None:
    # uv would resolve for it (it knows newer CPython releases than the runtime runs on):
    # refused before anything is built, even without dependencies.
    root = starter(tmp_path)
    target = DependencyOptions(python_version=version)
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root, dependencies=target))
    assert info.value.message == (
        f"python_version {version!r} is newer than 3.13: the Flash runtime in the archive "
        "runs on Python 3.10 to 3.13; choose one with --python-version"
    )
    assert not (root / ".flash" / "archive.tar.gz").exists()


def test_max_size_names_a_big_project_file_without_reading_it(tmp_path: Path) -> None:
    root = starter(tmp_path)
    with open(root / "big.bin", "wb") as f:
        f.truncate(256 * 1024 * 1024)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(BuildError) as info:
            build_project(BuildOptions(project_dir=root, max_size_mb=100))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = info.value.message
    assert "over --max-size 100 MB; largest project files: big.bin 256.0 MB" in message
    assert "Leave project files out with .flashignore." in message
    assert "package" not in message  # there are none to blame
    assert peak < 32 * 1024 * 1024
    assert not (root / ".flash" / "archive.tar.gz").exists()


def test_max_size_names_project_files_and_packages_together(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "tinydep", "1.0", files={"tinydep/__init__.py": "#" * 300_000})
    root = multi_package_project(tmp_path / "multi")
    with open(root / "data.bin", "wb") as f:
        f.truncate(300_000)
    options = BuildOptions(project_dir=root, max_size_mb=0.5, dependencies=offline(wheels))
    with pytest.raises(BuildError) as info:
        build_project(options)
    message = info.value.message
    assert "the archive would hold" in message
    assert "largest project files: data.bin 0.3 MB" in message
    assert "largest packages: tinydep 0.3 MB" in message
    # What no option leaves out is said too: the rest of the room is not the project's.
    assert re.search(
        r"Flash's runtime, cloudpickle and the handlers \(always there\) 0\.\d MB", message
    )
    assert "--exclude PKG" in message and ".flashignore" in message
    assert not (root / ".flash" / "archive.tar.gz").exists()


TOKEN = "SECRET_PATHTOKEN_7777"


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[str]:
    """An index over HTTP at a path holding a token, as Cloudsmith's are: yields
    ``http://127.0.0.1:PORT/<TOKEN>``, whose ``simple/`` has tinydep and whose ``files/``
    has tinydep's and direct's wheels. A request for six fails with a 500."""
    served = tmp_path / "served"
    build_wheel(served / TOKEN / "files", "tinydep", "1.0")
    build_wheel(served / TOKEN / "files", "direct", "1.0")
    write_files(
        served / TOKEN / "simple",
        {"tinydep/index.html": '<a href="../../files/tinydep-1.0-py3-none-any.whl">t</a>\n'},
    )

    with serve_http(partial(SixFailsIndex, directory=str(served))) as port:
        yield f"http://127.0.0.1:{port}/{TOKEN}"


def test_index_urls_stay_out_of_manifest_archive_cache_and_errors(
    tmp_path: Path, token_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = token_server.removesuffix(f"/{TOKEN}")
    root = starter(tmp_path)
    direct = f"direct @ {token_server}/files/direct-1.0-py3-none-any.whl"
    write_files(root, {"requirements.txt": f"-i {token_server}/simple/\ntinydep\n{direct}\n"})
    result = build_project(BuildOptions(project_dir=root))
    assert {"tinydep/__init__.py", "direct/__init__.py"} <= set(names(result.archive))
    # Shown and written by the host only, so one can tell which index it was.
    flash_dir = root / ".flash"
    manifest = json.loads((flash_dir / "flash_manifest.json").read_text())
    assert f"direct @ {host}/****" in manifest["dependencies"]["requirements"]
    with tarfile.open(result.archive) as tar:
        shipped = tar.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
    assert shipped == f"-i {host}/****\ntinydep\ndirect @ {host}/****\n"
    # The resolution is not cached (it would need the real URL), and installs all the same.
    assert not list((flash_dir / "cache" / "resolve").glob("*"))
    assert build_project(BuildOptions(project_dir=root, force=True)).sha256 == result.sha256
    written = [gzip.decompress(result.archive.read_bytes()), json.dumps(result.summary())]
    written += [p.read_bytes() for p in flash_dir.glob("*") if p.is_file()]
    assert not [found for found in written if TOKEN in str(found)]

    monkeypatch.setenv("UV_HTTP_RETRIES", "0")  # the 500 at once, not after uv's retries
    write_files(root, {"requirements.txt": f"-i {token_server}/simple/\nsix\n"})
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    assert f"Failed to fetch: {host}/****" in info.value.message
    assert TOKEN not in str(info.value)
    # The index of the build's own options too, from the first stage on.
    write_files(root, {"requirements.txt": "six\n"})
    options = DependencyOptions(index_url=f"{token_server}/simple/")
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root, dependencies=options))
    assert f"{host}/****" in info.value.message and TOKEN not in str(info.value)


def test_a_literal_secret_in_a_config_env_is_warned_about_by_name(tmp_path: Path) -> None:
    root = starter(tmp_path)
    gpu = root / "workers" / "gpu_worker.py"
    env = {
        "HF_TOKEN": "{{ RUNPOD_SECRET_hf_token }}",  # a reference: RunPod puts the secret in
        "OPENAI_API_KEY": "sk-literal-value-123",
        "TOKENIZERS_PARALLELISM": "false",  # no secret, whatever its name holds
        "MAX_TOKENS": "512",
        "DB_PASSWORD": "",
    }
    gpu.write_text(gpu.read_text().replace("idleTimeout=30", f"idleTimeout=30, env={env!r}"))
    result = build_project(BuildOptions(project_dir=root))
    # The build goes on, the reference recorded as written.
    manifest = json.loads((root / ".flash" / "flash_manifest.json").read_text())
    assert manifest["resources"]["gpu-worker"]["config"]["env"] == env
    (warning,) = result.warnings
    assert str(warning).startswith("workers/gpu_worker.py:7:7: LiveServerless 'gpu-worker': ")
    assert "'OPENAI_API_KEY'" in warning.message
    assert "{{ RUNPOD_SECRET_OPENAI_API_KEY }}" in warning.message
    assert "sk-literal" not in str(warning)
    assert result.summary()["warnings"] == [str(warning)]
    # An up-to-date build skips the scan, and says it all the same.
    again = build_project(BuildOptions(project_dir=root))
    assert again.skipped and again.warnings == result.warnings
    assert "sk-literal" not in (root / ".flash" / "build_stamp.json").read_text()


def test_credential_files_stay_out_whatever_the_case_of_their_names(tmp_path: Path) -> None:
    root = starter(tmp_path)
    # On macOS's file system, .ENV is the .env dotenv reads.
    variants = [".ENV", ".Env.Local", "config/.ENVRC", ".NETRC", "PIP.CONF", "Pip.Ini", "UV.toml"]
    write_files(root, {name: f"K=hf_secret_{i}\n" for i, name in enumerate(variants)})
    result = build_project(BuildOptions(project_dir=root))
    listing = {name.lower() for name in names(result.archive)}
    assert not listing & {name.lower() for name in variants}
    assert b"hf_secret_" not in gzip.decompress(result.archive.read_bytes())


# A module that rewrites its own source when the build imports it (the first time, or every
# time): a user saving a file while the project builds, after the build read it and before
# the archive is written.
SAVED_MID_BUILD = """
from pathlib import Path

from flash import CpuLiveServerless, remote

SOURCE = Path({source!r})
SAVED = Path({marker!r})
if not SAVED.exists() or {every_time!r}:
    SAVED.touch()
    SOURCE.write_text(SOURCE.read_text().replace('"A"', '"B"').replace("def ver(", "def ver2("))


@remote(CpuLiveServerless(name="cpu"))
def ver() -> str:
    return "A"
"""


def test_a_file_saved_during_a_build_is_built_again_not_archived_under_the_old_key(
    tmp_path: Path,
) -> None:
    root = tmp_path / "proj"
    module = root / "workers" / "ver.py"
    module.parent.mkdir(parents=True)
    saved = SAVED_MID_BUILD.format(
        source=str(module), marker=str(tmp_path / "saved"), every_time=False
    )
    module.write_text(saved)
    steps: list[tuple[str, str]] = []
    result = build_project(BuildOptions(project_dir=root), lambda *step: steps.append(step))
    assert ("changed", "workers/ver.py while building: building again") in steps
    # The archive, its manifest and the up-to-date stamp all hold the version saved.
    with tarfile.open(result.archive) as tar:
        archived = tar.extractfile("workers/ver.py").read().decode()  # type: ignore[union-attr]
    assert archived == module.read_text() and 'return "B"' in archived
    assert result.manifest.function_registry == {"workers.ver.ver2": "cpu"}
    assert build_project(BuildOptions(project_dir=root)).skipped


def test_a_project_that_keeps_changing_fails_the_build_and_keeps_the_archive(
    tmp_path: Path,
) -> None:
    root = starter(tmp_path)
    good = build_project(BuildOptions(project_dir=root))
    module = root / "workers" / "ver.py"
    saved = SAVED_MID_BUILD.format(
        source=str(module), marker=str(tmp_path / "saved"), every_time=True
    )
    module.write_text(saved)
    with pytest.raises(BuildError, match=r"workers/ver.py changed while the project was being"):
        build_project(BuildOptions(project_dir=root))
    assert good.archive.read_bytes() == (root / ".flash" / "archive.tar.gz").read_bytes()


def test_a_project_dir_that_is_a_file_or_missing_is_named(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x = 1\n")
    with pytest.raises(BuildError, match=r"app\.py is a file, not a project directory"):
        build_project(BuildOptions(project_dir=tmp_path / "app.py"))
    with pytest.raises(BuildError, match=r"project directory not found: .*nowhere"):
        build_project(BuildOptions(project_dir=tmp_path / "nowhere"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.py"]
