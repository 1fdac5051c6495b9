"""Per-call cost of the three call paths: CPU time in one process, and end to end.

    .venv/bin/python bench/serialization.py [--quick] [--json] [--no-e2e] [--processes N]

Codec only: for each payload, one call is timed in one process, without transport:

- unsigned pickle: serialize the arguments, deserialize them (worker), serialize the result,
  deserialize it (caller);
- signed pickle: the same plus sign_request, verify_request (with a replay cache),
  sign_result and verify_result;
- typed JSON: json.dumps of the job, parse_json (size and depth limits), validation against
  the schema flash build derives and conversion to the annotated types (bind_json_call),
  to_json_result and json.dumps of the result, json.loads by the caller;
- signed JSON: the same, as the Python client holding the app's key calls: sign_request
  before and verify_request after the job's JSON (a successful JSON answer goes unsigned).

End to end (unless --no-e2e): a real call through a LocalPlatform (HTTP to the gateway, the
job store, a worker process running the generic handler, and back), the same payloads sent
as pickles to two platforms serving the same build in the same run: one whose workers hold
the app's key (the client signs, the worker verifies and signs the answer, the client
verifies it), one whose workers accept unsigned pickles (FLASH_ALLOW_UNSIGNED=1). Calls to the
two take turns one by one, in alternating order; the figures are the median per-call time of
each, and what signing adds is the median difference between the two calls of a round, with
a 95 % interval (a block bootstrap: the machine drifts for seconds at a time). A megabyte
call here varies by tens of milliseconds (the job store's checkpoints and purges, the
allocator), and stretches of fifty rounds differ by ±5 ms, so the interval spans several
percent.

The functions echo their payload, so results are as big as the arguments. Targets (issue 5):
signing and verifying add under 10 % for 1 MB payloads and under 20 µs for small ones. The
codec rounds of the paths take turns, so the drift of this shared machine hits them alike.

Each codec figure is the median over fifteen fresh processes (``--processes``), each the
best of its rounds: what a megabyte call costs depends on how the allocator's heap settles in
a process (page faults: about 2,700 per unsigned round trip here), which differs more between
processes than between rounds in one (what signing adds to the 1 MB bytes call ranges from
about 6 to 13 % between processes here). A target line gives the median, a 95 % interval for
it (order statistics of the processes: a sign test, whatever the shape of the spread), and
how many processes were over the limit; it says "met" only when the whole interval is below
the limit, "not shown" when only the median is. The figures of every process are printed too.

The "SHA-256 alone" line is the floor for any MAC over the payload: four SHA-256 passes over
its pickle bytes (request signed and verified, result signed and verified) on one thread.
Flash hides part of each pass behind the base64 work on a second thread (hashlib lets go of
the GIL, base64 does not); how much depends on how well two threads really run at once here.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import importlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _table import print_table  # type: ignore[import-not-found]
from flash.build.schemas import derive_schemas
from flash.runtime.generic_handler import _success
from flash.runtime.jsoncall import bind_json_call, to_json_result
from flash.runtime.jsonschema import parse_json
from flash.runtime.serialization import deserialize, deserialize_args, serialize, serialize_args
from flash.runtime.signing import (
    Digests,
    ReplayCache,
    generate_key,
    sign_request,
    sign_result,
    verify_request,
    verify_result,
)

MAX_BODY = 64 * 1024 * 1024
MAX_DEPTH = 64
ENDPOINT = "bench"

APP = """
def add(a: int, b: int, c: int) -> int:
    return a + b + c


def echo_bytes(data: bytes) -> bytes:
    return data


def echo_floats(values: list[float]) -> list[float]:
    return values
"""


def _load_app(work: Path) -> tuple[Any, dict[str, Any]]:
    (work / "bench_app.py").write_text(textwrap.dedent(APP))
    names = ["add", "echo_bytes", "echo_floats"]
    derived = derive_schemas(work, None, [(f"bench_app.{n}", "bench_app", n) for n in names])
    sys.path.insert(0, str(work))
    module = importlib.import_module("bench_app")
    return module, {n: derived[f"bench_app.{n}"].input for n in names}


def unsigned_call(fn: Callable[..., Any], name: str, args: tuple[Any, ...]) -> Any:
    raw_args, raw_kwargs = serialize_args(args, {})
    job: dict[str, Any] = {"function_name": name, "args": raw_args, "kwargs": raw_kwargs}
    call_args, call_kwargs = deserialize_args(job["args"], job["kwargs"])
    answer = _success(fn(*call_args, **call_kwargs), name)  # the worker's answer
    return deserialize(answer["result"])


def make_signed_call(key: bytes) -> Callable[..., Any]:
    replay = ReplayCache()  # one for the whole run, as in a worker

    def signed_call(fn: Callable[..., Any], name: str, args: tuple[Any, ...]) -> Any:
        digests: Digests = {}  # what serialize hashed while encoding, for signing
        raw_args, raw_kwargs = serialize_args(args, {}, digests=digests)
        job: dict[str, Any] = {"function_name": name, "args": raw_args, "kwargs": raw_kwargs}
        job["signature"] = sign_request(
            key,
            endpoint=ENDPOINT,
            function=name,
            fields=job,
            deadline=time.time() + 600,
            digests=digests,
        )
        # worker: the check decodes big pickles (never trusting the caller's digests) and
        # hands their bytes on to be unpickled
        signature = job["signature"]
        decoded: dict[int, bytes] = {}
        verify_request(
            key,
            signature,
            endpoint=ENDPOINT,
            function=name,
            fields=job,
            replay=replay,
            decoded=decoded,
        )
        call_args, call_kwargs = deserialize_args(job["args"], job["kwargs"], decoded=decoded)
        kept: Digests = {}
        answer = _success(fn(*call_args, **call_kwargs), name, kept)  # the worker's answer
        mac = sign_result(key, nonce=signature["nonce"], result_fields=answer, digests=kept)
        # caller
        received: dict[int, bytes] = {}
        verify_result(key, mac, nonce=signature["nonce"], result_fields=answer, decoded=received)
        return deserialize(answer["result"], received)

    return signed_call


def json_call(
    fn: Callable[..., Any],
    name: str,
    kwargs: dict[str, Any],
    schema: Any,
    key: bytes | None = None,
    replay: ReplayCache | None = None,
) -> Any:
    """A typed JSON call; with ``key``, signed and checked as a key holder's is (a successful
    answer goes unsigned)."""
    payload: dict[str, Any] = {"function": name, "kwargs": kwargs}
    if key is not None:
        payload["signature"] = sign_request(
            key, endpoint=ENDPOINT, function=name, fields=payload, deadline=time.time() + 600
        )
    job = parse_json(json.dumps({"input": payload}), MAX_BODY, MAX_DEPTH)["input"]
    if key is not None:
        verify_request(
            key,
            job["signature"],
            endpoint=ENDPOINT,
            function=name,
            fields=job,
            replay=replay or ReplayCache(),
        )
    issues, bound = bind_json_call(fn, job["kwargs"], schema)
    if issues:
        raise AssertionError(issues)
    out = json.dumps({"output": to_json_result(fn(**bound))})
    return json.loads(out)["output"]


def make_signed_json_call(key: bytes) -> Callable[..., Any]:
    return functools.partial(json_call, key=key, replay=ReplayCache())


def per_call_us(call: Callable[[], Any], budget_s: float) -> float:
    """Best mean over five rounds, each about budget_s / 5 long (one call each, at least)."""
    return paired_per_call_us({"call": call}, budget_s, rounds=5)["call"]


def paired_per_call_us(
    calls: dict[str, Callable[[], Any]], budget_s: float, rounds: int = 9
) -> dict[str, float]:
    """Best mean µs per call of each, over ``rounds`` rounds that take turns, so that the
    machine's drift (other tenants of this VM) hits all of them alike."""
    number = {}
    for name, call in calls.items():
        start = time.perf_counter()
        call()
        once = max(time.perf_counter() - start, 1e-7)
        number[name] = max(1, int(budget_s / rounds / len(calls) / once))
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(number[name]):
                call()
            best[name] = min(best[name], (time.perf_counter() - start) / number[name])
    return {name: value * 1e6 for name, value in best.items()}


def _payloads() -> tuple[bytes, list[float]]:
    floats = [i * 0.1 + 0.123456 for i in range(116_000)]  # about 1 MB pickled
    return os.urandom(1 << 20), floats


def run(quick: bool) -> list[dict[str, Any]]:
    # Seconds per pair of paths (half each). The megabyte pairs need theirs: shorter runs
    # stop before the allocator's heap settles and overstate what signing adds (about +1.5
    # points at a third of this budget). Microsecond calls settle at once.
    budget = 0.05 if quick else 2.0
    small_budget = 0.05 if quick else 0.5
    with tempfile.TemporaryDirectory(prefix="flash-bench-") as tmp:
        app, schemas = _load_app(Path(tmp))
        key = generate_key()
        signed_call = make_signed_call(key)
        signed_json_call = make_signed_json_call(key)
        blob, floats = _payloads()
        cases: list[tuple[str, str, tuple[Any, ...], dict[str, Any] | None]] = [
            ("small (3 ints)", "add", (3, 4, 5), {"a": 3, "b": 4, "c": 5}),
            ("1 MB bytes", "echo_bytes", (blob,), None),
            ("1 MB list[float]", "echo_floats", (floats,), {"values": floats}),
        ]
        rows = []
        for label, name, args, kwargs in cases:
            fn = getattr(app, name)
            wire = len(serialize(args[0])) if len(args) == 1 else len(serialize_args(args, {})[0])
            paired = paired_per_call_us(
                {
                    "unsigned": lambda: unsigned_call(fn, name, args),  # noqa: B023
                    "signed": lambda: signed_call(fn, name, args),  # noqa: B023
                },
                2 * (budget if label.startswith("1 MB") else small_budget),
            )
            unsigned, signed = paired["unsigned"], paired["signed"]
            json_us = signed_json_us = None
            if kwargs is not None:
                assert json_call(fn, name, kwargs, schemas[name]) is not None
                assert signed_json_call(fn, name, kwargs, schemas[name]) is not None
                json_us = per_call_us(
                    lambda: json_call(fn, name, kwargs, schemas[name]),  # noqa: B023
                    small_budget,
                )
                signed_json_us = per_call_us(
                    lambda: signed_json_call(fn, name, kwargs, schemas[name]),  # noqa: B023
                    small_budget,
                )
            rows.append(
                {
                    "case": label,
                    "pickle_bytes": wire,
                    "unsigned_us": unsigned,
                    "signed_us": signed,
                    "overhead_us": signed - unsigned,
                    "overhead_pct": 100 * (signed - unsigned) / unsigned,
                    "json_us": json_us,
                    "signed_json_us": signed_json_us,
                }
            )
        return rows


def run_in_processes(quick: bool, processes: int) -> list[dict[str, Any]]:
    """:func:`run` in ``processes`` fresh processes, one after another: each row's figures
    are the medians over them, and ``runs`` holds every process's own row."""
    if processes <= 1:
        return [{**row, "runs": [row]} for row in run(quick)]
    command = [sys.executable, __file__, "--codec-only", *(["--quick"] if quick else [])]
    runs = [
        json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        for _ in range(processes)
    ]
    rows = []
    for same_case in zip(*runs, strict=True):
        first = same_case[0]
        median = {
            name: None if first[name] is None else statistics.median(r[name] for r in same_case)
            for name in (
                "unsigned_us",
                "signed_us",
                "overhead_us",
                "json_us",
                "signed_json_us",
            )
        }
        # Of the medians shown beside it, so that the table's two columns agree.
        median["overhead_pct"] = 100 * median["overhead_us"] / median["unsigned_us"]
        interval = {
            f"{name}_interval": _processes_interval([r[name] for r in same_case])
            for name in ("overhead_us", "overhead_pct")
        }
        rows.append({**first, **median, **interval, "runs": list(same_case)})
    return rows


def _processes_interval(values: list[float]) -> tuple[float, float] | None:
    """A 95 % interval for the median over processes of ``values``, one per process: the
    widest pair of order statistics ``(x[k], x[n-1-k])`` that holds the median with at
    least 95 % (the sign test: each process lies below it with probability 1/2, whatever the
    shape of the spread). None for fewer than six processes, too few for one."""
    n = len(values)
    k = -1  # the largest k with P(at most k of n below the median) <= 2.5 %
    while sum(math.comb(n, i) for i in range(k + 2)) / 2**n <= 0.025:
        k += 1
    if k < 0:
        return None
    ordered = sorted(values)
    return ordered[k], ordered[n - 1 - k]


def steps_small(quick: bool) -> dict[str, float]:
    """The four signing steps alone, on the small call's job."""
    budget = 0.05 if quick else 1.0
    key = generate_key()
    raw_args, raw_kwargs = serialize_args((3, 4, 5), {})
    job: dict[str, Any] = {"function_name": "add", "args": raw_args, "kwargs": raw_kwargs}
    replay = ReplayCache()
    deadline = time.time() + 600
    answer = _success(12, "add")

    def sign() -> dict[str, Any]:
        return sign_request(key, endpoint=ENDPOINT, function="add", fields=job, deadline=deadline)

    def sign_and_verify() -> None:
        # A replayed nonce would be refused: sign anew, and subtract the signing time below.
        verify_request(key, sign(), endpoint=ENDPOINT, function="add", fields=job, replay=replay)

    signature = sign()
    mac = sign_result(key, nonce=signature["nonce"], result_fields=answer)
    sign_us = per_call_us(sign, budget)
    return {
        "sign_request": sign_us,
        "verify_request": per_call_us(sign_and_verify, budget) - sign_us,
        "sign_result": per_call_us(
            lambda: sign_result(key, nonce=signature["nonce"], result_fields=answer), budget
        ),
        "verify_result": per_call_us(
            lambda: verify_result(key, mac, nonce=signature["nonce"], result_fields=answer),
            budget,
        ),
    }


E2E_FILES = {
    "pyproject.toml": '[project]\nname = "flashbench"\nversion = "0.1.0"\ndependencies = []\n',
    "flashbench/__init__.py": "",
    "flashbench/calls.py": """
from flash import CpuLiveServerless, remote

bench = CpuLiveServerless(name="bench-calls", workersMax=1)


@remote(resource_config=bench)
async def add(a, b, c):
    return a + b + c


@remote(resource_config=bench)
async def echo(data):
    return data
""",
}


def _timed_calls(
    invokers: dict[str, Any], fn: Any, args: tuple[Any, ...], calls: int
) -> dict[str, float]:
    """Median ms per call for each invoker, and ``"added"``: the median, over rounds, of
    the second invoker's call less the first's in the same round.

    Each round makes one call through each invoker, in alternating order: whichever call
    comes second shares the machine with what the first leaves behind (the worker
    reporting its answer, the store writing it), so a fixed order would bill that to one
    side. Pairing calls of the same round cancels this shared machine's drift."""
    from flash.runtime.remote import set_invoker

    async def measure() -> dict[str, float]:
        for invoker in invokers.values():  # warm up: workers started, connections open
            set_invoker(invoker)
            await fn(*args)
        samples: dict[str, list[float]] = {name: [] for name in invokers}
        order = list(invokers)
        for _ in range(calls):
            for name in order:
                set_invoker(invokers[name])
                start = time.perf_counter()
                await fn(*args)
                samples[name].append((time.perf_counter() - start) * 1000)
            order.reverse()
        first, second = samples.values()
        medians = {name: statistics.median(values) for name, values in samples.items()}
        added = [b - a for a, b in zip(first, second, strict=True)]
        medians["added"] = statistics.median(added)
        medians["added_low"], medians["added_high"] = _median_interval(added)
        return medians

    return asyncio.run(measure())


def _median_interval(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95 % interval for the median of ``values``, by a moving-block bootstrap (seeded:
    reruns agree). Blocks of consecutive rounds, because the machine drifts for seconds at a
    time (the job store's checkpoints and purges, the allocator): rounds next to each other
    are alike, and resampling them one by one would make the interval far too narrow."""
    size = max(1, len(values) // 15)
    starts = range(len(values) - size + 1)
    rng = random.Random(0)
    medians = []
    for _ in range(resamples):
        sample: list[float] = []
        while len(sample) < len(values):
            start = rng.choice(starts)
            sample += values[start : start + size]
        medians.append(statistics.median(sample[: len(values)]))
    medians.sort()
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def run_e2e(quick: bool, cases: list[tuple[str, str, tuple[Any, ...]]]) -> list[dict[str, Any]]:
    """Per-call ms of real pickled calls through a LocalPlatform, unsigned and signed.

    The platforms run in a process of their own, as under ``flash run``: sharing this
    process's GIL with their gateway threads would bill the client's work twice."""
    from flash.build.pipeline import BuildOptions, build_project
    from flash.runtime.client import Endpoints, PlatformInvoker
    from flash.runtime.remote import get_invoker, set_invoker
    from flash.sdk.keys import ensure_signing_key

    with tempfile.TemporaryDirectory(prefix="flash-bench-e2e-") as tmp:
        work = Path(tmp)
        root = work / "project"
        for name, text in E2E_FILES.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        build = build_project(BuildOptions(project_dir=root))
        key = ensure_signing_key(root / ".flash")
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve-platforms", str(work), str(build.archive)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        previous = get_invoker()
        sys.path.insert(0, str(root))
        try:
            assert server.stdout is not None
            urls = json.loads(server.stdout.readline())
            invokers = {
                # Keyless: its unsigned pickles must be allowed (trusted local workers).
                "unsigned": PlatformInvoker(Endpoints(urls["unsigned"]), allow_unsigned=True),
                "signed": PlatformInvoker(Endpoints(urls["signed"]), signing_key=key),
            }
            module = importlib.import_module("flashbench.calls")
            rows = []
            for label, name, args in cases:
                fn = getattr(module, name).options(serialization="pickle")
                big = label.startswith("1 MB")
                calls = (2 if big else 5) if quick else (300 if big else 1500)
                best = _timed_calls(invokers, fn, args, calls)
                rows.append(
                    {
                        "case": label,
                        "unsigned_ms": best["unsigned"],
                        "signed_ms": best["signed"],
                        "overhead_ms": best["added"],
                        "overhead_pct": 100 * best["added"] / best["unsigned"],
                        "overhead_pct_low": 100 * best["added_low"] / best["unsigned"],
                        "overhead_pct_high": 100 * best["added_high"] / best["unsigned"],
                    }
                )
            return rows
        finally:
            set_invoker(previous)
            sys.path.remove(str(root))
            for module_name in [m for m in sys.modules if m.startswith("flashbench")]:
                del sys.modules[module_name]
            server.communicate(timeout=60)  # closes its stdin: it stops its platforms


def serve_platforms(work: Path, archive: Path) -> None:
    """Serve ``archive`` on two platforms, one whose workers hold the key of
    ``work/project`` and one that takes unsigned pickles; print their URLs as one JSON
    line, and stop both once standard input closes."""
    from flash.platform import serve_archive
    from flash.platform.local import LocalPlatform
    from flash.sdk.keys import KEY_ENV_VAR, ensure_signing_key, key_to_text

    key = ensure_signing_key(work / "project" / ".flash")
    quiet: Any = lambda line: None  # noqa: E731
    platforms = {
        "signed": LocalPlatform(
            work / "signed",
            echo=quiet,
            max_workers=1,
            worker_env={KEY_ENV_VAR: key_to_text(key)},
        ),
        "unsigned": LocalPlatform(
            work / "unsigned",
            echo=quiet,
            max_workers=1,
            worker_env={KEY_ENV_VAR: "", "FLASH_ALLOW_UNSIGNED": "1"},
        ),
    }
    serving: list[LocalPlatform] = []
    try:
        for platform in platforms.values():
            serve_archive(platform, archive)  # stops the platform itself if it fails
            serving.append(platform)
        print(json.dumps({name: platform.url for name, platform in platforms.items()}), flush=True)
        sys.stdin.read()
    finally:
        for platform in serving:
            platform.stop()


def hash_floor_us(quick: bool) -> float:
    """SHA-256 of the 1 MB payload's pickle bytes (what a signature digests), four times
    (request signed and verified, result signed and verified), on one thread: what any MAC
    over the payload costs here."""
    raw = base64.b64decode(serialize(_payloads()[0]))
    return 4 * per_call_us(lambda: hashlib.sha256(raw).digest(), 0.05 if quick else 1.0)


def _verdict(
    target: str, row: dict[str, Any], name: str, limit: float, show: Callable[[float], str]
) -> str:
    """A target's line: the median over processes, its 95 % interval, how many processes
    were over the limit, and "met" only when the whole interval is below it."""
    runs = [run[name] for run in row["runs"]]
    over = sum(value >= limit for value in runs)
    interval = row.get(f"{name}_interval")
    if interval is None:
        spread = f"{len(runs)} process(es), too few for an interval"
        verdict = "not shown" if row[name] < limit else "missed"
    else:
        low, high = interval
        spread = f"95 % interval {show(low)} to {show(high)} over {len(runs)} processes"
        verdict = "met" if high < limit else "not shown" if row[name] < limit else "missed"
    return (
        f"target: {target}: median {show(row[name])} ({spread}; {over} of {len(runs)} at or "
        f"over {show(limit)}): {verdict}"
    )


def _pct(value: float) -> str:
    return f"{value:.1f} %"


def _us(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f} µs" if value < 1000 else f"{value / 1000:,.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--no-e2e", action="store_true", help="skip the end-to-end calls through LocalPlatform"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="fresh processes the codec figures are the median over (default 15, --quick 1)",
    )
    parser.add_argument("--serve-platforms", type=Path, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--codec-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve_platforms is not None:  # the platforms' process (see run_e2e)
        serve_platforms(*options.serve_platforms)
        return 0
    if options.codec_only:  # one process of run_in_processes
        print(json.dumps(run(options.quick)))
        return 0
    processes = options.processes or (1 if options.quick else 15)
    rows = run_in_processes(options.quick, processes)
    steps = steps_small(options.quick)
    floor = hash_floor_us(options.quick)
    e2e = None
    if not options.no_e2e:
        blob, floats = _payloads()
        e2e = run_e2e(
            options.quick,
            [
                ("small (3 ints)", "add", (3, 4, 5)),
                ("1 MB bytes", "echo", (blob,)),
                ("1 MB list[float]", "echo", (floats,)),
            ],
        )
    if options.json:
        print(
            json.dumps(
                {"rows": rows, "small_steps_us": steps, "hash_floor_us": floor, "e2e": e2e},
                indent=2,
            )
        )
        return 0
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print_table(
        [
            [
                row["case"],
                f"{row['pickle_bytes'] / 1e6:.2f} MB",
                _us(row["unsigned_us"]),
                _us(row["signed_us"]),
                f"{_us(row['overhead_us'])} ({row['overhead_pct']:+.0f} %)",
                _us(row["json_us"]),
                _us(row["signed_json_us"]),
            ]
            for row in rows
        ],
        (
            "case",
            "pickle size",
            "unsigned pickle",
            "signed pickle",
            "signing adds",
            "typed JSON",
            "signed JSON",
        ),
    )
    if processes > 1:
        print(f"signing adds, in each of {processes} processes (the table shows the medians):")
        for row in rows:
            each = " / ".join(_us(run["overhead_us"]) for run in row["runs"])
            pcts = " / ".join(f"{run['overhead_pct']:+.0f}" for run in row["runs"])
            print(f"  {row['case']}: {each} ({pcts} %)")
    print()
    print("small call, signing steps: " + ", ".join(f"{k} {_us(v)}" for k, v in steps.items()))
    small = rows[0]
    big = [r for r in rows if r["case"].startswith("1 MB")]
    print(_verdict("signing adds < 20 µs on small calls", small, "overhead_us", 20, _us))
    for row in big:
        print(_verdict(f"signing adds < 10 % on {row['case']}", row, "overhead_pct", 10, _pct))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = 100 * floor / big[0]["unsigned_us"]
    print(
        f"SHA-256 alone over the 1 MB bytes payload, four passes on one thread: {_us(floor)} "
        f"= {share:.0f} % of its unsigned round trip ({share / (cpus or 1):.0f} % if all "
        f"{cpus} CPUs hashed at once)"
    )
    if e2e is not None:
        print()
        print("end to end, one pickled call through LocalPlatform (HTTP, gateway, worker):")
        print_table(
            [
                [
                    row["case"],
                    _us(row["unsigned_ms"] * 1000),
                    _us(row["signed_ms"] * 1000),
                    f"{_us(row['overhead_ms'] * 1000)} ({row['overhead_pct']:+.1f} %)",
                    f"{row['overhead_pct_low']:+.1f} to {row['overhead_pct_high']:+.1f} %",
                ]
                for row in e2e
            ],
            ("case", "unsigned", "signed", "signing adds", "95 % interval"),
        )
        for row in e2e[1:]:
            pct, high = row["overhead_pct"], row["overhead_pct_high"]
            verdict = "met" if high < 10 else "not shown" if pct < 10 else "missed"
            print(
                f"target: signing adds < 10 % on {row['case']}, end to end: median {pct:.1f} % "
                f"(95 % interval {row['overhead_pct_low']:.1f} to {high:.1f} %): {verdict}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
