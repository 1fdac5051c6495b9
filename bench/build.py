"""Build benchmarks: CLI start-up, cold build, no-change and code-only rebuilds, scanning,
handler overhead.

    .venv/bin/python bench/build.py [--reference-venv PATH]

Prints one table: our figure, the reference measured in the same run where one can be
(a direct function call; RunPod's own `flash build` on the same two-function project when
--reference-venv points at a venv with `runpod-flash` installed, for example
`python3 -m venv /tmp/ref && /tmp/ref/bin/pip install runpod-flash==1.21.0`), and the target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _table import print_table  # type: ignore[import-not-found]
from flash.build.collect import collect_files
from flash.build.scanner import scan_project
from flash.cli.init import write_starter
from flash.runtime.generic_handler import create_handler
from flash.runtime.serialization import serialize_args
from flash.runtime.signing import generate_key, sign_request

FLASH = [sys.executable, "-m", "flash.cli"]


def _flash(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([*FLASH, *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_startup(reference_venv: Path | None) -> tuple[float, float | None]:
    """Best of five `flash --help`: what every command pays before it starts its work.
    And runpod-flash's, when its venv is given."""
    ours = min(_flash("--help", cwd=Path.cwd()) for _ in range(5))
    flash_bin = reference_venv / "bin" / "flash" if reference_venv else None
    if flash_bin is None or not flash_bin.exists():
        return ours, None
    theirs = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([str(flash_bin), "--help"], check=True, capture_output=True)
        theirs.append(time.perf_counter() - start)
    return ours, min(theirs)


def bench_builds(work: Path) -> dict[str, float]:
    project = work / "starter"
    write_starter(project)
    cold = _flash("build", ".", cwd=project)
    no_change = min(_flash("build", ".", cwd=project) for _ in range(3))
    code_only = []
    target = project / "workers" / "gpu_worker.py"
    for i in range(3):
        target.write_text(target.read_text() + f"\n# edit {i}\n")
        code_only.append(_flash("build", ".", cwd=project))
    size = (project / ".flash" / "archive.tar.gz").stat().st_size
    return {"cold": cold, "no_change": no_change, "code_only": min(code_only), "size": size}


def make_big_project(root: Path, modules: int) -> None:
    (root / "shared").mkdir(parents=True)
    (root / "shared" / "__init__.py").write_text("")
    (root / "shared" / "config.py").write_text(
        'from flash import LiveServerless\ngpu = LiveServerless(name="gpu", workersMax=3)\n'
    )
    for i in range(modules):
        pkg = root / f"pkg{i // 100}"
        pkg.mkdir(exist_ok=True)
        (pkg / "__init__.py").touch()
        body = "import math\n\n\ndef helper(x):\n    return math.sqrt(x) + 1\n" * 3
        if i % 10 == 0:
            body += (
                "\nfrom flash import remote\nfrom shared.config import gpu\n\n\n"
                f"@remote(resource_config=gpu)\nasync def fn_{i}(x):\n    return x\n"
            )
        (pkg / f"mod{i}.py").write_text(body)


def bench_scan(work: Path, modules: int = 2000) -> float:
    root = work / "big"
    make_big_project(root, modules)
    return _best_scan(root, modules // 10)


def make_remote_bound_project(root: Path, modules: int) -> None:
    """``modules`` modules, half of them binding remote(cfg) to a name (``on_cpu_7 =
    remote(cfg)``): every name bound so is looked for in every other module."""
    make_big_project(root, modules // 2)
    for i in range(modules // 2):
        (root / f"bound{i}.py").write_text(
            f"from flash import remote\nfrom shared.config import gpu\n\non_cpu_{i} = remote(gpu)\n"
        )


def make_local_apply_project(root: Path, functions: int) -> None:
    """One module binding ``on_cpu = remote(cfg)`` and ``functions`` functions calling a
    parameter of that name (``def apply(on_cpu, fn): return on_cpu(fn)``), which is allowed."""
    make_big_project(root, 10)
    body = "from flash import remote\nfrom shared.config import gpu\n\non_cpu = remote(gpu)\n"
    body += "".join(
        f"\n\ndef apply_{k}(on_cpu, fn):\n    return on_cpu(fn)\n" for k in range(functions)
    )
    (root / "apply.py").write_text(body)


def _best_scan(root: Path, functions: int) -> float:
    files = collect_files(root)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        result = scan_project(root, files)
        runs.append(time.perf_counter() - start)
    assert len(result.functions) == functions
    return min(runs)


def bench_remote_checks(work: Path) -> tuple[float, float]:
    """Scans that the check for remote applied by a call weighs on: many modules binding
    remote to names, and many calls of a local name that hides a module-level one."""
    make_remote_bound_project(work / "bound", 2000)
    make_local_apply_project(work / "local", 500)
    return _best_scan(work / "bound", 100), _best_scan(work / "local", 1)


def bench_handler(calls: int = 20_000) -> tuple[float, float, float]:
    """Per-call cost of the generic handler awaited inside a running loop, against calling the
    function: the wire format alone (unsigned), and with signature checks (request verified,
    answer signed; each job signed beforehand, since a nonce is good once)."""

    def add(a: int, b: int) -> int:
        return a + b

    args, kwargs = serialize_args((1, 2), {})
    plain = create_handler({"add": add}, signing_key=None, allow_unsigned=True, manifest=None)
    job = {"id": "j", "input": {"function_name": "add", "args": args, "kwargs": kwargs}}
    key = generate_key()

    def signed() -> object:  # a fresh replay cache per round
        return create_handler({"add": add}, endpoint="e", signing_key=key, manifest=None)

    def signed_jobs() -> list[dict[str, object]]:
        jobs = []
        for _ in range(calls):
            payload = {"function_name": "add", "args": args, "kwargs": kwargs}
            payload["signature"] = sign_request(
                key, endpoint="e", function="add", fields=payload, deadline=time.time() + 600
            )
            jobs.append({"id": "j", "input": payload})
        return jobs

    async def through(handler: object, jobs: list[dict[str, object]]) -> float:
        start = time.perf_counter()
        for one in jobs:
            answer = await handler(one)  # type: ignore[operator]
        assert answer["success"], answer
        return (time.perf_counter() - start) / len(jobs)

    def direct() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            add(1, 2)
        return (time.perf_counter() - start) / calls

    ours = statistics.median(asyncio.run(through(plain, [job] * calls)) for _ in range(5))
    with_signing = statistics.median(
        asyncio.run(through(signed(), signed_jobs())) for _ in range(3)
    )
    ref = statistics.median(direct() for _ in range(5))
    return ours, with_signing, ref


TWO_FUNCTIONS = {
    "pyproject.toml": '[project]\nname = "two"\nversion = "0.1.0"\ndependencies = []\n',
    "workers/__init__.py": "",
    "workers/gpu.py": (
        "from {sdk} import LiveServerless, remote\n\n"
        'gpu = LiveServerless(name="gpu-worker")\n\n\n'
        "@remote(resource_config=gpu)\nasync def double(x: int) -> int:\n    return 2 * x\n"
    ),
    "workers/cpu.py": (
        "from {sdk} import CpuLiveServerless, remote\n\n"
        'cpu = CpuLiveServerless(name="cpu-worker")\n\n\n'
        "@remote(resource_config=cpu)\ndef shout(text: str) -> str:\n    return text.upper()\n"
    ),
}


def two_functions_project(root: Path, sdk: str) -> Path:
    """Two tiny functions, the case the seed took ~40 s and 45 MB for."""
    for rel, text in TWO_FUNCTIONS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text.format(sdk=sdk))
    return root


def bench_two_functions(work: Path, reference_venv: Path | None) -> dict[str, tuple[float, int]]:
    """Cold build of the same two-function project by us and, if given, by runpod-flash."""
    results = {}
    ours = two_functions_project(work / "two-ours", "flash")
    elapsed = _flash("build", ".", cwd=ours)
    results["ours"] = (elapsed, (ours / ".flash" / "archive.tar.gz").stat().st_size)
    flash_bin = reference_venv / "bin" / "flash" if reference_venv else None
    if flash_bin is not None and flash_bin.exists():
        theirs = two_functions_project(work / "two-ref", "runpod_flash")
        start = time.perf_counter()
        proc = subprocess.run(
            [str(flash_bin), "build"], cwd=theirs, capture_output=True, text=True, timeout=600
        )
        elapsed = time.perf_counter() - start
        archives = sorted((theirs / ".flash").glob("*.tar.gz"))
        if proc.returncode == 0 and archives:
            results["reference"] = (elapsed, archives[0].stat().st_size)
        else:
            print(f"reference build failed: {proc.stdout[-800:]}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--reference-venv", type=Path, default=os.environ.get("FLASH_REFERENCE_VENV")
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        startup, ref_startup = bench_startup(opts.reference_venv)
        builds = bench_builds(work)
        scan = bench_scan(work)
        scan_bound, scan_local = bench_remote_checks(work)
        handler, signed, direct = bench_handler()
        two = bench_two_functions(work, opts.reference_venv)

    ours_two = two["ours"]
    ref = two.get("reference")
    ref_cold = f"{ref[0]:.2f} s (runpod-flash)" if ref else "~40 s (seed, documented)"
    ref_size = f"{ref[1] / 1e6:.3f} MB (runpod-flash)" if ref else "45 MB (seed, documented)"
    rows = [
        (
            "CLI start-up (flash --help)",
            f"{startup:.2f} s",
            f"{ref_startup:.2f} s (runpod-flash)" if ref_startup is not None else "-",
            "-",
        ),
        ("cold build, two functions", f"{ours_two[0]:.2f} s", ref_cold, "-"),
        ("archive size, two functions", f"{ours_two[1] / 1e6:.3f} MB", ref_size, "-"),
        ("cold build, init project", f"{builds['cold']:.2f} s", "-", "-"),
        ("no-change rebuild", f"{builds['no_change']:.2f} s", "-", "< 1 s"),
        ("code-only rebuild", f"{builds['code_only']:.2f} s", "-", "< 3 s"),
        ("archive size, init project", f"{builds['size'] / 1e6:.3f} MB", "-", "< 2 MB"),
        ("scan 2,000 modules", f"{scan:.2f} s", "-", "< 2 s"),
        ("scan 2,000 modules, 1,000 binding remote", f"{scan_bound:.2f} s", "-", "< 2 s"),
        ("scan 500 functions calling a local remote", f"{scan_local:.2f} s", "-", "< 1 s"),
        (
            "handler overhead per call",
            f"{(handler - direct) * 1e6:.2f} µs",
            f"direct call {direct * 1e6:.2f} µs",
            "< 10 µs",
        ),
        (
            "  with signature checks",
            f"{(signed - direct) * 1e6:.2f} µs",
            f"direct call {direct * 1e6:.2f} µs",
            "-",
        ),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
