"""bench/serialization.py runs and reports every path, codec only and end to end through a
real LocalPlatform (figures are not asserted: timing varies)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
