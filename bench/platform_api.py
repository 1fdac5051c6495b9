"""Benchmark the local platform against the runpod SDK's own ``--rp_serve_api`` dev server.

    python bench/platform_api.py [--seq 1000] [--jobs 4000] [--clients 32]

Same trivial handler for both. Prints sequential /runsync latency (p50/p99), throughput with
32 concurrent clients (ours: 2 workers; the SDK dev server has a single process, its only
mode), and worker cold start (process start to first job taken) for both worker loops.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

import flash.runtime
from _table import print_table  # type: ignore[import-not-found]
from flash.platform.local import LocalPlatform
from flash.runtime.protocol import MANIFEST_FILENAME

HANDLER = """
from flash.runtime.worker import start

def handler(job):
    return {"echo": job["input"]}

if __name__ == "__main__":
    start(handler)
"""
ENDPOINT = "bench"


def write_app(root: Path, workers: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "handler_bench.py").write_text(HANDLER)
    config = {"name": ENDPOINT, "workersMin": workers, "workersMax": max(workers, 1)}
    manifest = {
        "schema_version": 1,
        "project": "bench",
        "resources": {
            ENDPOINT: {
                "type": "LiveServerless",
                "handler_file": "handler_bench.py",
                "config": config,
            }
        },
    }
    (root / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    vendored = root / "flash"
    shutil.rmtree(vendored, ignore_errors=True)
    vendored.mkdir()
    (vendored / "__init__.py").write_text("")
    shutil.copytree(
        Path(flash.runtime.__file__).parent,
        vendored / "runtime",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return root


# ---------------------------------------------------------------------------- clients


def sequential(host: str, port: int, path: str, count: int) -> list[float]:
    """Latencies in ms of ``count`` back-to-back /runsync calls on one keep-alive connection."""
    conn = http.client.HTTPConnection(host, port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    latencies = []
    for i in range(count + 50):
        body = json.dumps({"input": {"i": i}})
        start = time.perf_counter()
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        data = json.loads(response.read())
        elapsed = (time.perf_counter() - start) * 1000
        if data.get("output") != {"echo": {"i": i}}:
            raise RuntimeError(f"unexpected answer {data}")
        if i >= 50:  # warm-up excluded
            latencies.append(elapsed)
    conn.close()
    return latencies


async def _throughput(url: str, jobs: int, clients: int) -> float:
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Authorization": "Bearer bench"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def client(numbers: range) -> None:
            for n in numbers:
                async with session.post(url, json={"input": {"i": n}}) as r:
                    data = await r.json()
                if data.get("output") != {"echo": {"i": n}}:
                    raise RuntimeError(f"unexpected answer {data}")

        await asyncio.gather(*(client(range(i, 200, clients)) for i in range(clients)))
        start = time.perf_counter()
        await asyncio.gather(*(client(range(i, jobs, clients)) for i in range(clients)))
        return jobs / (time.perf_counter() - start)


def throughput(url: str, jobs: int, clients: int) -> float:
    return asyncio.run(_throughput(url, jobs, clients))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


# ---------------------------------------------------------------------------- servers


def serve_forever(app: Path, state: Path, port: int) -> None:
    """Child-process mode: serve ``app`` until stdin closes."""
    platform = LocalPlatform(state, port=port, echo=None, max_workers=2)
    platform.start()
    platform.load_app(app)
    deadline = time.monotonic() + 60
    while sum(1 for w in platform.workers() if w["cold_start_ms"]) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start")
        time.sleep(0.05)
    print("ready", flush=True)
    sys.stdin.read()
    platform.stop()


def bench_ours(work: Path, seq: int, jobs: int, clients: int) -> dict[str, float]:
    app = write_app(work / "ours", workers=2)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(app), str(work / "state"), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("our platform did not start")
        lat = sequential("127.0.0.1", port, f"/v2/{ENDPOINT}/runsync", seq)
        rate = throughput(f"http://127.0.0.1:{port}/v2/{ENDPOINT}/runsync", jobs, clients)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
    return _summary(lat, rate)


def bench_sdk_dev_server(work: Path, seq: int, jobs: int, clients: int) -> dict[str, float]:
    app = write_app(work / "sdk", workers=1)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_WEBHOOK")}
    env["UVICORN_LOG_LEVEL"] = "warning"
    env["RUNPOD_DEBUG_LEVEL"] = "ERROR"
    proc = subprocess.Popen(
        [sys.executable, "handler_bench.py", "--rp_serve_api", "--rp_api_port", str(port)],
        cwd=app,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(port)
        lat = sequential("127.0.0.1", port, "/runsync", seq)
        rate = throughput(f"http://127.0.0.1:{port}/runsync", jobs, clients)
    finally:
        proc.terminate()
        proc.wait(30)
    return _summary(lat, rate)


def cold_starts(work: Path, loop: str, repeats: int) -> list[float]:
    """Spawn-to-first-job-take of a fresh worker, each on a fresh platform."""
    results = []
    for i in range(repeats):
        app = write_app(work / f"cold-{loop}-{i}", workers=0)
        with LocalPlatform(work / f"cold-state-{loop}-{i}", echo=None, worker_loop=loop) as p:
            p.load_app(app)
            conn = http.client.HTTPConnection("127.0.0.1", p.port)
            conn.request("POST", f"/v2/{ENDPOINT}/runsync", json.dumps({"input": {"i": 0}}))
            conn.getresponse().read()
            conn.close()
            results.append(float(p.workers()[0]["cold_start_ms"]))
    return results


def _summary(latencies: list[float], rate: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[int(len(ordered) * 0.99) - 1],
        "rate": rate,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seq", type=int, default=1000, help="sequential /runsync calls")
    parser.add_argument("--jobs", type=int, default=4000, help="jobs for the throughput run")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--cold", type=int, default=3, help="cold starts per worker loop")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_forever(Path(args.serve[0]), Path(args.serve[1]), int(args.serve[2]))
        return
    with tempfile.TemporaryDirectory(prefix="flash-bench-") as tmp:
        work = Path(tmp)
        ours = bench_ours(work, args.seq, args.jobs, args.clients)
        sdk = bench_sdk_dev_server(work, args.seq, args.jobs, args.clients)
        cold_flash = cold_starts(work, "flash", args.cold)
        cold_sdk = cold_starts(work, "runpod", args.cold)
    rows: list[tuple[str, Any, Any, str]] = [
        ("sequential /runsync p50 (ms)", ours["p50"], sdk["p50"], "< 3"),
        ("sequential /runsync p99 (ms)", ours["p99"], sdk["p99"], ""),
        (
            f"throughput, {args.clients} clients (jobs/s)",
            ours["rate"],
            sdk["rate"],
            ">= 1000",
        ),
        ("cold start, our loop (ms)", statistics.median(cold_flash), "-", "< 200"),
        ("cold start, SDK loop (ms)", statistics.median(cold_sdk), "-", ""),
    ]
    print_table(
        [
            [name, f"{mine:.1f}", f"{theirs:.1f}" if isinstance(theirs, float) else theirs, target]
            for name, mine, theirs, target in rows
        ],
        ("metric", "flash platform", "SDK rp_serve_api", "target"),
    )
    print(
        "ours: gateway + 2 worker processes (our loop); SDK dev server: one process, handler "
        "in-process, no queue. Cold start: median of "
        f"{args.cold} (ours {', '.join(f'{c:.0f}' for c in cold_flash)}; "
        f"SDK {', '.join(f'{c:.0f}' for c in cold_sdk)})."
    )


if __name__ == "__main__":
    main()
