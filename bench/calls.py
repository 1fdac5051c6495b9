"""Remote-call benchmarks on the local platform, with real worker processes.

    .venv/bin/python bench/calls.py [--calls 300] [--items 1000]

- one cross-endpoint hop: the client calls A, A calls B (no-op), against the client
  calling B directly (the reference: a plain runsync to B) in the same run;
- map: 1,000 no-op items with ``map(concurrency=32)`` against a sequential loop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _table import print_table  # type: ignore[import-not-found]
from flash.platform import serve_project

PROJECT = {
    "benchapp/__init__.py": "",
    "benchapp/calls.py": """
        from flash import CpuLiveServerless, remote

        a = CpuLiveServerless(name="bench-a", workersMin=1, workersMax=1, concurrency=8)
        b = CpuLiveServerless(name="bench-b", workersMin=2, workersMax=2, concurrency=32)


        @remote(b)
        def noop(x):
            return x


        @remote(a)
        async def hop(x):
            return await noop(x)
    """,
}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latencies(fn, calls: int) -> list[float]:  # type: ignore[no-untyped-def]
    for i in range(20):  # warm up connections and workers
        await fn(i)
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        await fn(i)
        samples.append(time.perf_counter() - start)
    return samples


async def map_times(fn, items: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for i in range(items):
        await fn(i)
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    results = await fn.map(range(items), concurrency=32)
    mapped = time.perf_counter() - start
    assert results == list(range(items))
    return sequential, mapped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--items", type=int, default=1000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        for rel, text in PROJECT.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(textwrap.dedent(text).lstrip())
        sys.path.insert(0, str(root))
        with serve_project(root):
            from benchapp.calls import hop, noop  # type: ignore[import-not-found]

            direct = asyncio.run(latencies(noop, opts.calls))
            hopped = asyncio.run(latencies(hop, opts.calls))
            sequential, mapped = asyncio.run(map_times(noop, opts.items))

    d50, d99 = percentile(direct, 0.5) * 1e3, percentile(direct, 0.99) * 1e3
    h50, h99 = percentile(hopped, 0.5) * 1e3, percentile(hopped, 0.99) * 1e3
    rows = [
        ("client -> A -> B, p50", f"{h50:.2f} ms", f"client -> B {d50:.2f} ms", ""),
        ("client -> A -> B, p99", f"{h99:.2f} ms", f"client -> B {d99:.2f} ms", ""),
        ("added by one hop, p50", f"{h50 - d50:.2f} ms", "-", "< 5 ms"),
        (
            f"{opts.items} no-op items, map(32)",
            f"{mapped:.2f} s",
            f"sequential {sequential:.2f} s",
            "",
        ),
        ("map speed-up", f"{sequential / mapped:.1f}x", "-", ">= 5x"),
        ("mean direct call", f"{statistics.mean(direct) * 1e3:.2f} ms", "-", ""),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
