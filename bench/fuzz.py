"""The long fuzz run: at least 100,000 generated inputs against the generic handler and the gateway.

    .venv/bin/python bench/fuzz.py                      # 90,000 handler jobs + 10,000 HTTP requests
                                                        # + 20,000 atheris inputs (if installed)
    .venv/bin/python bench/fuzz.py --handler 9000 --gateway 1000 --atheris 0   # a quick look
    .venv/bin/python bench/fuzz.py --atheris 50000      # more coverage-guided runs

Targets, with the strategies of ``tests/fuzz/strategies.py`` (both wire formats; random JSON,
truncated base64, corrupt and hostile pickles, forged and stale signatures, wrong types, huge
strings, deep nesting):

- ``handler ...``: in-process ``create_handler`` with signing on and off, plain and streaming,
  and with no key at all (every pickle refused). Each job must get a well-formed answer within
  10 s, no hostile pickle may run without a valid signature, and a valid job must still work
  after it. A failing input is counted and the run goes on.
- ``gateway http``: random requests to one ``LocalPlatform`` with a real worker; no 5xx, every
  accepted job final within a deadline, the platform still serving at the end.
- ``atheris``: optional, coverage-guided (libFuzzer) bytes turned into jobs: raw bytes as a
  signed pickle argument, or parsed as a JSON job input. Counted apart from the 100,000
  hypothesis inputs. Run by default when atheris is importable (``pip install -e '.[fuzz]'``,
  not a dev dependency), else skipped with a line saying so.

Bounded in time: ``--time-limit`` seconds in all (default 1800). The default run takes about
5.5 minutes on a quiet 2-CPU machine (handler ~3.5, gateway ~1, atheris ~1), so the limit
leaves three times that for a loaded one. Each target gets the time left, weighted by its
expected cost, so time a fast target leaves unused goes to the next; one that runs out of
time stops early.
Prints one row per target: inputs, failures, wall time, inputs per second; then the first
failing inputs, if any, and a line per target that ran fewer inputs than asked.
Exit status 1 when anything failed, else 2 when any target ran fewer inputs than asked.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fuzz, tests.platform

from bench._table import print_table  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tests.fuzz import strategies as fz  # noqa: E402

from flash.runtime.generic_handler import create_handler  # noqa: E402
from flash.runtime.signing import generate_key  # noqa: E402

HEADER = ("target", "inputs", "failures", "wall s", "inputs/s", "note")
CHUNK = 1000  # examples per hypothesis run: each run has its own seed
SHOWN_FAILURES = 5
DEFAULT_ATHERIS = 20_000  # coverage-guided inputs when atheris is importable
FINAL_WAIT_S = 60.0  # kept from the gateway's share for its accepted jobs to end
ATHERIS_INSTALL = ".venv/bin/pip install atheris  (or: .venv/bin/pip install -e '.[fuzz]')"
# Seconds before the first input, and inputs per second, on a 2-CPU machine (rounded from
# small runs: handler 440/s, HTTP 200/s, atheris 1,500/s after ~40 s of instrumenting).
# Only used to share the time limit, so a slow target gets more seconds per input.
EXPECTED_SETUP_S = {"handler": 2.0, "gateway": 5.0 + FINAL_WAIT_S, "atheris": 45.0}
EXPECTED_RATE = {"handler": 400.0, "gateway": 150.0, "atheris": 1000.0}


class Result:
    def __init__(self, name: str, requested: int) -> None:
        self.name = name
        self.requested = requested
        self.inputs = 0
        self.failures: list[str] = []
        self.wall = 0.0
        self.note = ""

    def row(self) -> tuple[str, ...]:
        rate = f"{self.inputs / self.wall:,.0f}" if self.wall else "-"
        return (
            self.name,
            f"{self.inputs:,}",
            str(len(self.failures)),
            f"{self.wall:.1f}",
            rate,
            self.note,
        )

    def shortfall(self) -> str | None:
        """A line when fewer inputs ran than asked: such a run proves less than it claims."""
        if self.inputs >= self.requested:
            return None
        return f"SHORT {self.name}: {self.inputs:,} of {self.requested:,} inputs run"


def _fuzz(
    result: Result,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], object],
    count: int,
    budget_s: float,
) -> None:
    """Run ``check`` on ``count`` drawn values (or until ``budget_s``), recording failures."""
    start = time.monotonic()
    end = start + budget_s
    run = 0
    while result.inputs < count and time.monotonic() < end:
        size = min(CHUNK, count - result.inputs)

        # Failures are recorded, never raised: hypothesis would stop to shrink them.
        @seed(run)
        @settings(
            max_examples=size,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(value=strategy)
        def chunk(value: Any) -> None:
            if time.monotonic() >= end:
                return
            result.inputs += 1
            try:
                check(value)
            except Exception as exc:
                result.failures.append(f"{type(exc).__name__}: {str(exc)[:400]}")

        try:
            chunk()
        except Exception as exc:  # the strategy itself failed: a bug here, worth a row
            result.failures.append(f"generating inputs: {type(exc).__name__}: {str(exc)[:300]}")
        run += 1
    result.wall = time.monotonic() - start
    if result.inputs < count:
        result.note = f"time limit: {result.inputs:,} of {count:,}"


# --------------------------------------------------------------------------- handler


def fuzz_handler(count: int, budget_s: float, work: Path) -> list[Result]:
    from tests.fuzz.test_fuzz_handler import Target

    module = fz.import_app(work / "app")
    manifests = {
        False: fz.manifest(work / "plain", fz.PLAIN_FUNCTIONS),
        True: fz.manifest(work / "stream", fz.STREAM_FUNCTIONS),
    }
    loop = asyncio.new_event_loop()
    variants = [(True, False), (True, True), (False, False), (False, True), (None, False)]
    end = time.monotonic() + budget_s
    results = []
    for index, (signing, streaming) in enumerate(variants):
        share = count // len(variants) + (index < count % len(variants))
        names = fz.STREAM_FUNCTIONS if streaming else fz.PLAIN_FUNCTIONS
        key = generate_key() if signing else None
        marker = work / f"pwned-{index}"
        handler = create_handler(
            fz.registry(module, names),
            endpoint=fz.ENDPOINT,
            signing_key=key,
            allow_unsigned=signing is False,
            manifest=manifests[streaming],
        )
        target = Target(
            handler, key, None if signing is False else marker, loop, pickles=signing is not None
        )
        if signing is None:
            name = "handler no key (pickles refused)"
            strategy: st.SearchStrategy[Any] = fz.jobs(
                key=generate_key(), names=names, marker=marker
            )
        else:
            shape = "streaming" if streaming else "plain"
            name = f"handler {'signed' if signing else 'unsigned'} {shape}"
            strategy = fz.jobs(key=key, names=names, marker=target.marker)
        result = Result(name, share)
        variant_budget = max(0.0, end - time.monotonic()) / (len(variants) - index)
        _fuzz(result, strategy, target.check, share, variant_budget)
        results.append(result)
    loop.close()
    return results


# --------------------------------------------------------------------------- gateway


def fuzz_gateway(count: int, budget_s: float, work: Path) -> Result:
    from tests.fuzz.test_fuzz_gateway import GatewayFuzzer, start_platform

    result = Result("gateway http", count)
    platform, key = start_platform(work / "gateway")
    fuzzer = GatewayFuzzer(platform, key, work / "gateway" / "pwned")
    try:
        fuzzer.check_still_serving()
        requests = fz.http_requests(key=key, marker=fuzzer.marker)
        _fuzz(result, requests, fuzzer.send, count, max(0.0, budget_s - FINAL_WAIT_S))
        started = time.monotonic()
        finals: dict[str, int] | None
        try:
            finals = fuzzer.wait_all_final(deadline_s=FINAL_WAIT_S)
            fuzzer.check_still_serving()
        except Exception as exc:
            result.failures.append(f"after the run: {type(exc).__name__}: {str(exc)[:400]}")
            finals = None
        result.wall += time.monotonic() - started
        accepted = f"{len(set(fuzzer.accepted)):,} distinct jobs accepted"
        if finals is None:
            summary = f"{accepted}, NOT all final"
        else:
            jobs = ", ".join(f"{k.lower()} {v}" for k, v in sorted(finals.items()))
            summary = f"{accepted}, all final ({jobs})"
        result.note = (result.note + "; " if result.note else "") + summary
    finally:
        fuzzer.close()
        platform.stop()
    return result


# --------------------------------------------------------------------------- atheris


def atheris_installed() -> bool:
    return importlib.util.find_spec("atheris") is not None


def fuzz_atheris(count: int, budget_s: float, work: Path) -> Result:
    result = Result("atheris handler (coverage-guided)", count)
    if not atheris_installed():
        result.note = "skipped: atheris is not installed"
        return result
    failures = work / "atheris-failures.txt"
    start = time.monotonic()
    command = [sys.executable, __file__, "--atheris-child", str(count), "--work", str(work)]
    command += ["--time-limit", str(budget_s)]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=budget_s + 60, env=_child_env()
        )
    except subprocess.TimeoutExpired:
        result.wall = time.monotonic() - start
        result.failures.append(f"libFuzzer child still running {budget_s + 60:.0f} s: hung")
        return result
    result.wall = time.monotonic() - start
    done = [line for line in proc.stderr.splitlines() if line.startswith("Done ")]
    result.inputs = int(done[-1].split()[1]) if done else 0
    if failures.exists():
        result.failures = failures.read_text(encoding="utf-8").splitlines()
    if proc.returncode != 0 or not done:
        result.failures.append(f"libFuzzer exit {proc.returncode}: {proc.stderr[-600:]}")
    if not done:
        result.note = "libFuzzer gave no run count"
    elif result.inputs < count:
        result.note = f"time limit: {result.inputs:,} of {count:,}"
    else:  # the wall time is mostly instrumenting: say how long libFuzzer itself ran
        result.note = f"fuzzing {done[-1].split()[4]} s of it"
    return result


def _child_env() -> dict[str, str]:
    """The repo root first, then any PYTHONPATH already set: atheris may be installed there."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _atheris_child(count: int, work: Path, budget_s: float) -> None:
    """Runs under libFuzzer: each input is a job; failures go to a file, the run goes on."""
    end = time.monotonic() + budget_s
    import atheris
    from tests.fuzz.test_fuzz_handler import Target

    module = fz.import_app(work / "atheris-app")
    manifest = fz.manifest(work / "atheris-plain", fz.PLAIN_FUNCTIONS)
    key = generate_key()
    handler = create_handler(
        fz.registry(module, fz.PLAIN_FUNCTIONS),
        endpoint=fz.ENDPOINT,
        signing_key=key,
        manifest=manifest,
    )
    target = Target(handler, key, None, asyncio.new_event_loop())
    failures = (work / "atheris-failures.txt").open("a", encoding="utf-8")

    def one(data: bytes) -> None:
        job_input = _atheris_job(data, key)
        try:
            target.check({"id": "a", "input": job_input})
        except Exception as exc:
            failures.write(f"{type(exc).__name__}: {str(exc)[:300]!r} input={data[:80]!r}\n")
            failures.flush()

    sys.addaudithook(_refuse_unlisted_globals)
    atheris.instrument_all()
    # Instrumenting takes ~40 s and libFuzzer's clock starts after it: give it what is left,
    # at least a second (0 would mean no limit).
    fuzz_s = max(1, int(end - time.monotonic()))
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={count}",
            f"-max_total_time={fuzz_s}",
            "-max_len=4096",
            f"-artifact_prefix={work}/",  # a crashing input is kept there, not in the cwd
        ],
        one,
    )
    atheris.Fuzz()


# Coverage-guided mutation of signed pickles could assemble any global call (os.system...):
# the child lets pickles reach only these harmless ones. A signed pickle is trusted code by
# design, so this guards the machine running the fuzzer, not the product.
_PICKLE_GLOBALS = {
    ("builtins", name)
    for name in ("set", "frozenset", "bytearray", "complex", "slice", "range", "ValueError")
} | {("copyreg", "_reconstructor"), ("collections", "OrderedDict")}


def _refuse_unlisted_globals(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class" and tuple(args) not in _PICKLE_GLOBALS:
        raise RuntimeError(f"fuzz guard: pickle global {args!r} refused")


def _atheris_job(data: bytes, key: bytes) -> Any:
    import base64
    import json

    if data[:1] == b"{":  # parsed as a JSON job input, typed or not
        try:
            return json.loads(data.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            return {"function": "add", "kwargs": {"a": data.decode("latin-1")}}
    # raw bytes as the pickle of a signed call's argument: pickle.loads on anything
    if _claims_a_huge_memo(data):
        # A signed pickle is trusted code: one that asks for a memo slot a billion places on
        # makes the unpickler allocate gigabytes, by design. Sent unsigned, it is refused.
        return {"function_name": "echo", "args": [base64.b64encode(data).decode("ascii")]}
    payload: dict[str, Any] = {
        "function_name": "echo",
        "args": [base64.b64encode(data).decode("ascii")],
    }
    from flash.runtime.signing import sign_request

    payload["signature"] = sign_request(
        key, endpoint=fz.ENDPOINT, function="echo", fields=payload, deadline=time.time() + 60
    )
    return payload


# Memo indexes above this are never written by a pickler of a fuzzed argument's size.
_MAX_MEMO_INDEX = 1 << 16


def _claims_a_huge_memo(data: bytes) -> bool:
    """Whether the pickle opcodes in ``data`` (as far as they parse) store to a memo index
    over _MAX_MEMO_INDEX: the unpickler grows its memo table to that index at once."""
    import pickletools

    try:
        for opcode, arg, _ in pickletools.genops(data):
            if "PUT" in opcode.name and isinstance(arg, int) and arg > _MAX_MEMO_INDEX:
                return True
    except Exception:  # not a pickle past this point: what parsed is all it can do
        pass
    return False


# --------------------------------------------------------------------------- main


def _time_share(name: str, pending: dict[str, int], deadline: float) -> float:
    """Seconds for ``name``: the time left, weighted by the expected cost of what is pending."""
    cost = {
        target: EXPECTED_SETUP_S[target] + count / EXPECTED_RATE[target]
        for target, count in pending.items()
    }
    left = max(0.0, deadline - time.monotonic())
    return left * cost[name] / sum(cost.values())


def _atheris_count(requested: int | None) -> int:
    """The default is ``DEFAULT_ATHERIS`` where atheris is importable, else none (said so)."""
    if requested is not None:
        return requested
    if atheris_installed():
        return DEFAULT_ATHERIS
    print(f"atheris: skipped, not installed; to include it: {ATHERIS_INSTALL}")
    return 0


def run_targets(counts: dict[str, int], time_limit: float, work: Path) -> list[Result]:
    """Runs the targets in order; each gets its share of the time still left."""
    deadline = time.monotonic() + time_limit
    pending = {name: count for name, count in counts.items() if count > 0}
    results: list[Result] = []
    for name, count in list(pending.items()):
        budget = _time_share(name, pending, deadline)
        del pending[name]
        if name == "handler":
            results += fuzz_handler(count, budget, work)
        elif name == "gateway":
            results.append(fuzz_gateway(count, budget, work))
        else:
            results.append(fuzz_atheris(count, budget, work))
    return results


def report(results: list[Result], elapsed: float) -> int:
    """Prints the table, failures and shortfalls; returns the exit status."""
    total_inputs = sum(r.inputs for r in results)
    total_requested = sum(r.requested for r in results)
    total_failures = sum(len(r.failures) for r in results)
    rows = [r.row() for r in results]
    total_note = f"of {total_requested:,} asked"
    rows.append(
        ("total", f"{total_inputs:,}", str(total_failures), f"{elapsed:.1f}", "-", total_note)
    )
    print_table(rows, HEADER)
    for r in results:
        for failure in r.failures[:SHOWN_FAILURES]:
            print(f"[{r.name}] {failure}")
    shortfalls = [line for line in (r.shortfall() for r in results) if line]
    for line in shortfalls:
        print(line)
    if shortfalls:
        print("Fewer inputs than asked: raise --time-limit or lower the counts.")
    return 1 if total_failures else 2 if shortfalls else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handler", type=int, default=90_000, help="in-process handler jobs")
    parser.add_argument("--gateway", type=int, default=10_000, help="HTTP requests")
    parser.add_argument(
        "--atheris",
        type=int,
        help=f"coverage-guided inputs (default {DEFAULT_ATHERIS:,} if atheris is installed)",
    )
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds in all")
    parser.add_argument("--atheris-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if args.atheris_child is not None:
        _atheris_child(args.atheris_child, args.work, args.time_limit)
        return 0
    counts = {
        "handler": args.handler,
        "gateway": args.gateway,
        "atheris": _atheris_count(args.atheris),
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flash-fuzz-") as tmp:
        results = run_targets(counts, args.time_limit, Path(tmp))
    return report(results, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
