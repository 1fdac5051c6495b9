"""bench/serialization.py runs and reports every path, codec only and end to end through a
real LocalPlatform (figures are not asserted: timing varies)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serialization.py"


@pytest.mark.slow
def test_serialization_bench_quick_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", "--processes", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    rows = {row["case"]: row for row in figures["rows"]}
    assert set(rows) == {"small (3 ints)", "1 MB bytes", "1 MB list[float]"}
    for row in rows.values():
        assert row["unsigned_us"] > 0 and row["signed_us"] > 0
        assert len(row["runs"]) == 2  # the codec ran in two fresh processes: medians shown
    assert rows["1 MB bytes"]["pickle_bytes"] > 1_000_000
    assert rows["1 MB bytes"]["json_us"] is None
    assert rows["small (3 ints)"]["json_us"] > 0
    assert rows["small (3 ints)"]["signed_json_us"] > 0
    assert set(figures["small_steps_us"]) == {
        "sign_request",
        "verify_request",
        "sign_result",
        "verify_result",
    }
    # The end-to-end calls went through real workers, signed and unsigned, for every case.
    e2e = {row["case"]: row for row in figures["e2e"]}
    assert set(e2e) == set(rows)
    for row in e2e.values():
        assert row["unsigned_ms"] > 0 and row["signed_ms"] > 0
        assert row["overhead_pct_low"] <= row["overhead_pct"] <= row["overhead_pct_high"]


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_serialization", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH.parent))  # its _table helper
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH.parent))
    return module


@pytest.mark.parametrize(("processes", "k"), [(6, 0), (15, 3), (20, 5)])
def test_a_target_lines_interval_holds_the_median_with_95_percent(processes: int, k: int) -> None:
    interval = _bench_module()._processes_interval
    values = [float(v) for v in reversed(range(processes))]  # any order
    assert interval(values) == (k, processes - 1 - k)

    # The median of the processes' population lies outside (x[k], x[n-1-k]) only when k or
    # fewer of the n fall on one side of it: at most 5 % both sides together, and the next
    # wider k would pass 5 %.
    def outside(k: int) -> float:
        return 2 * sum(math.comb(processes, i) for i in range(k + 1)) / 2**processes

    assert outside(k) <= 0.05 < outside(k + 1)


def test_too_few_processes_give_no_interval_and_no_met() -> None:
    bench = _bench_module()
    assert bench._processes_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    row = {"overhead_pct": 8.0, "overhead_pct_interval": None, "runs": [{"overhead_pct": 8.0}]}
    line = bench._verdict("x < 10 %", row, "overhead_pct", 10, bench._pct)
    assert line.endswith(": not shown") and "too few for an interval" in line
    row = {
        "overhead_pct": 9.0,
        "overhead_pct_interval": (7.0, 10.5),
        "runs": [{"overhead_pct": v} for v in (7.0, 8.0, 9.0, 10.5, 11.0, 8.5)],
    }
    line = bench._verdict("x < 10 %", row, "overhead_pct", 10, bench._pct)
    assert line.endswith(": not shown") and "2 of 6 at or over 10.0 %" in line
    row["overhead_pct_interval"] = (7.0, 9.5)
    assert bench._verdict("x < 10 %", row, "overhead_pct", 10, bench._pct).endswith(": met")
