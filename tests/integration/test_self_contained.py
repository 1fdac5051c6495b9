"""Built archives run on their own: extracted into an empty folder, imported by an
interpreter that sees nothing but that folder and the standard library."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle  # noqa: F401  - the caller side of the wire format
from tests.integration.projects import multi_package_project, src_layout_project, write_files
from tests.wheelhouse import build_wheel

import flash
from flash.build.dependencies import DependencyOptions
from flash.build.pipeline import BuildOptions, build_project
from flash.cli.init import write_starter
from flash.platform.archive import extract_archive
from flash.runtime.serialization import deserialize, serialize_args
from flash.runtime.signing import KEY_ENV_VAR, generate_key, key_to_text, sign_request

# Runs in the isolated interpreter: import each handler named on stdin, run its jobs in one
# event loop (as a worker does), print each response as a JSON line.
_DRIVER = """
import asyncio, importlib, inspect, json, sys
sys.path[:] = [sys.argv[1]] + [p for p in sys.path if "site-packages" not in p]
requests = json.load(sys.stdin)

async def main():
    for handler_module, job in requests:
        handler = importlib.import_module(handler_module).handler
        if inspect.isasyncgenfunction(handler):  # an endpoint with a generator streams
            answers = [answer async for answer in handler(job)]
            print(json.dumps(answers[0] if len(answers) == 1 else answers), flush=True)
        else:
            print(json.dumps(await handler(job)), flush=True)

asyncio.run(main())
files = {m: getattr(mod, "__file__", None) or "" for m, mod in sys.modules.items()}
outside = [m for m, f in files.items() if "site-packages" in f]
print(json.dumps({"modules": sorted(outside)}))
"""


KEY = generate_key()


def signed(endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
    payload["signature"] = sign_request(
        KEY,
        endpoint=endpoint,
        function=payload["function_name"],
        fields=payload,
        deadline=time.time() + 120,
    )
    return {"id": "job", "input": payload}


def function_job(endpoint: str, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    a, k = serialize_args(args, kwargs)
    return signed(endpoint, {"function_name": name, "args": a, "kwargs": k})


def class_job(
    endpoint: str, name: str, ctor: tuple[Any, ...], method: str, *args: Any
) -> dict[str, Any]:
    a, k = serialize_args(ctor, {})
    ma, mk = serialize_args(args, {})
    return signed(
        endpoint,
        {
            "function_name": name,
            "execution_type": "class",
            "args": a,
            "kwargs": k,
            "method_name": method,
            "method_args": ma,
            "method_kwargs": mk,
        },
    )


def run_isolated(app: Path, requests: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-S", "-I", "-c", _DRIVER, str(app)],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        cwd=app,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", KEY_ENV_VAR: key_to_text(KEY)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[-1] == {"modules": []}, "the handler reached outside the archive"
    return lines[:-1]


def _built_app(tmp_path: Path, files: dict[str, str]) -> Path:
    """The extracted archive of a project made of ``files``."""
    build = build_project(BuildOptions(project_dir=write_files(tmp_path / "proj", files)))
    return extract_archive(build.archive, tmp_path / "app")


def result(response: dict[str, Any]) -> Any:
    assert response["success"], response
    return deserialize(response["result"])


def test_starter_archive_runs_alone(tmp_path: Path) -> None:
    root = tmp_path / "starter"
    write_starter(root)
    build = build_project(BuildOptions(project_dir=root))
    app = extract_archive(build.archive, tmp_path / "app")

    responses = run_isolated(
        app,
        [
            ("handler_gpu_worker", function_job("gpu-worker", "embed", ["ab"])),
            ("handler_cpu_worker", function_job("cpu-worker", "preprocess", ["  a   b ", " "])),
            (
                "handler_cpu_worker",
                function_job("cpu-worker", "workers.cpu_worker.embed_documents", ["x y"]),
            ),
            (
                "handler_classifier",
                class_job("classifier", "Classifier", (["fast"],), "predict", "flash is fast"),
            ),
            (
                "handler_classifier",
                class_job("classifier", "Classifier", (["fast"],), "predict", "slow"),
            ),
            ("handler_gpu_worker", function_job("gpu-worker", "missing")),
            ("handler_gpu_worker", function_job("gpu-worker", "generate", "a b c")),
        ],
    )
    assert result(responses[0])[0][:2] == [0.5, 0.5]
    assert result(responses[1]) == ["a b"]
    assert list(result(responses[2])) == ["x y"]
    assert result(responses[3]) == {"label": "positive", "calls": 1}
    assert result(responses[4]) == {"label": "neutral", "calls": 2}  # same instance reused
    # A streaming endpoint sends a failure as JSON text, all a worker loop keeps of it.
    missing = json.loads(responses[5]["error"])
    assert not missing["success"] and "embed" in missing["error"]
    assert [result(item) for item in responses[6]] == ["A", "B", "C"]


def test_multi_package_archive_with_dependency_runs_alone(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "tinydep", "2.0", files={"tinydep/__init__.py": "VALUE = 100\n"})
    root = multi_package_project(tmp_path / "multi")
    options = DependencyOptions(find_links=(str(wheels),), no_index=True)
    build = build_project(BuildOptions(project_dir=root, dependencies=options))
    app = extract_archive(build.archive, tmp_path / "app")

    responses = run_isolated(
        app,
        [
            ("handler_vision_model_v2", function_job("Vision-Model.v2", "process", [1, 2])),
            ("handler_cpu_jobs", function_job("cpu-jobs", "app.jobs.process", "hi")),
            ("handler_cpu_jobs", function_job("cpu-jobs", "prep", 3)),
        ],
    )
    assert [result(r) for r in responses] == [[101, 102], "HI", [0, 1, 2]]


def test_src_layout_archive_runs_alone(tmp_path: Path) -> None:
    # src/srcapp is the package srcapp on the worker: its own absolute imports work, and so
    # does a root-level module importing it.
    build = build_project(BuildOptions(project_dir=src_layout_project(tmp_path / "proj")))
    app = extract_archive(build.archive, tmp_path / "app")

    responses = run_isolated(
        app,
        [
            ("handler_src_cpu", function_job("src-cpu", "srcapp.gpu.embed", 20)),
            ("handler_src_cpu", function_job("src-cpu", "tasks.quadruple", 3)),
            (
                "handler_src_cpu",
                class_job("src-cpu", "srcapp.models.counter.Counter", (10,), "add", 5),
            ),
        ],
    )
    assert [result(r) for r in responses] == [41, 12, 15]


def test_stored_and_renamed_decorators_run_from_the_archive(tmp_path: Path) -> None:
    files = {
        "workers/__init__.py": "",
        "workers/common.py": "from flash import CpuLiveServerless, remote as endpoint\n"
        'cpu = CpuLiveServerless(name="cpu-worker")\n'
        "on_cpu = endpoint(resource_config=cpu)\n",
        "workers/jobs.py": "from workers.common import cpu, endpoint, on_cpu\n\n"
        "@endpoint(cpu)\ndef double(x: int) -> int:\n    return 2 * x\n\n"
        "@on_cpu\ndef shout(text: str) -> str:\n    return text.upper()\n",
    }
    build = build_project(BuildOptions(project_dir=write_files(tmp_path / "proj", files)))
    assert build.manifest.function_registry == {
        "workers.jobs.double": "cpu-worker",
        "workers.jobs.shout": "cpu-worker",
    }
    app = extract_archive(build.archive, tmp_path / "app")
    responses = run_isolated(
        app,
        [
            ("handler_cpu_worker", function_job("cpu-worker", "double", 21)),
            ("handler_cpu_worker", function_job("cpu-worker", "shout", "hi")),
        ],
    )
    assert [result(r) for r in responses] == [42, "HI"]


def test_submodule_import_paths_work_in_the_archive(tmp_path: Path) -> None:
    gpu = (
        "from flash.sdk.remote import remote\n"
        "from flash.sdk.resources import GpuGroup, LiveServerless\n\n"
        'gpu = LiveServerless(name="gpu-worker", gpus=[GpuGroup.AMPERE_80])\n\n'
        "@remote(resource_config=gpu)\ndef embed(x: int) -> int:\n    return x + 1\n"
    )
    app = _built_app(tmp_path, {"workers/__init__.py": "", "workers/gpu.py": gpu})
    responses = run_isolated(app, [("handler_gpu_worker", function_job("gpu-worker", "embed", 1))])
    assert result(responses[0]) == 2


def test_every_name_flash_exports_imports_in_the_archive(tmp_path: Path) -> None:
    names = ", ".join(n for n in flash.__all__ if n != "__version__")
    gpu = (
        f"from flash import {names}\n"
        "from flash.sdk import connect as sdk_connect, ResourceConfig as SdkConfig\n"
        "from flash.sdk.resources import ResourceConfig as ResourcesConfig\n\n"
        'gpu = LiveServerless(name="gpu-worker")\n\n'
        "@remote(resource_config=gpu)\ndef probe(url: str) -> list:\n"
        "    configs = (ResourceConfig, SdkConfig, ResourcesConfig)\n"
        "    try:\n        sdk_connect(url)\n    except RuntimeError as exc:\n"
        "        return [all(isinstance(gpu, c) for c in configs), str(exc)]\n"
        "    return [False, 'connected']\n"
    )
    app = _built_app(tmp_path, {"workers/__init__.py": "", "workers/gpu.py": gpu})
    job = function_job("gpu-worker", "probe", "http://127.0.0.1:8000")
    [response] = run_isolated(app, [("handler_gpu_worker", job)])
    is_config, error = result(response)
    assert is_config
    assert error.startswith("flash.connect() is for scripts and apps that call endpoints")


# Reads its config's fields, in the call and at import time, as code run locally does.
CONFIG_FIELDS_APP = """
from flash import CpuLiveServerless, LiveServerless, remote

cpu = CpuLiveServerless(
    name="c", workersMax=2, idle_timeout=9, scaler_type="request_count",
    env={"MODEL": "bert", "TOKEN": "{{ RUNPOD_SECRET_hf_token }}"},
)
gpu = LiveServerless(name="g", gpus=["ampere_80"])
POOL = cpu.workersMax * 4


@remote(cpu)
def f() -> str:
    return f"{cpu.env['MODEL']} x{cpu.workersMax}"


@remote(cpu)
def fields() -> list:
    try:
        cpu.workers_max
    except AttributeError as exc:
        unknown = str(exc)
    return [
        POOL, cpu.idleTimeout, cpu.scalerType, cpu.env["TOKEN"], cpu.workersMin,
        cpu.instanceIds, cpu.executionTimeoutMs, gpu.gpus, gpu.gpuCount, unknown,
    ]
"""


def test_a_config_s_fields_read_on_the_worker_as_locally(tmp_path: Path) -> None:
    app = _built_app(tmp_path, {"work.py": CONFIG_FIELDS_APP})
    # What the same calls give in this process, with no platform: the pydantic config.
    local = subprocess.run(
        [sys.executable, "-c", "import work; print(repr([work.f.call(), work.fields.call()]))"],
        cwd=tmp_path / "proj",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert local.returncode == 0, local.stderr
    responses = run_isolated(
        app,
        [
            ("handler_c", function_job("c", "f")),
            ("handler_c", function_job("c", "fields")),
        ],
    )
    on_worker = [result(r) for r in responses]
    assert on_worker[0] == "bert x2"
    assert on_worker[1] == [
        8,
        9,
        "REQUEST_COUNT",
        "{{ RUNPOD_SECRET_hf_token }}",  # a reference, never filled into the code's config
        0,
        ["cpu3g-2-8"],
        None,
        ["AMPERE_80"],
        1,
        "'CpuLiveServerless' object has no attribute 'workers_max'",
    ]
    assert repr(on_worker) == local.stdout.strip()


def test_remote_from_flash_sdk_is_the_decorator_after_its_submodule_is_imported(
    tmp_path: Path,
) -> None:
    files = {
        "conf.py": "from flash.sdk.remote import remote\n"
        "from flash.sdk.resources import CpuLiveServerless\n"
        'cpu = CpuLiveServerless(name="c")\n',
        "work.py": "from conf import cpu\nfrom flash.sdk import remote\n\n"
        "@remote(cpu)\ndef f(x: int) -> int:\n    return x\n",
        "other.py": "import flash.sdk.remote\nimport flash.sdk\nfrom conf import cpu\n\n"
        "@flash.sdk.remote(cpu)\ndef g(x: int) -> int:\n    return -x\n",
    }
    app = _built_app(tmp_path, files)
    responses = run_isolated(
        app, [("handler_c", function_job("c", "f", 3)), ("handler_c", function_job("c", "g", 3))]
    )
    assert [result(r) for r in responses] == [3, -3]
