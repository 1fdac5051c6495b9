"""bench/fuzz.py must not pass a run that was cut short of the inputs it was asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_cut_short_by_the_time_limit_exits_non_zero_naming_the_shortfall() -> None:
    # 50,000 jobs cannot run in 0.5 s; atheris off so the run does not depend on it.
    command = [sys.executable, str(ROOT / "bench" / "fuzz.py"), "--handler", "50000"]
    command += ["--gateway", "0", "--atheris", "0", "--time-limit", "0.5"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "SHORT handler signed plain: " in proc.stdout
    assert " of 10,000 inputs run" in proc.stdout
    assert "raise --time-limit" in proc.stdout
