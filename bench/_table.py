"""One way to print a benchmark's table: metric, ours, reference, target."""

from __future__ import annotations

from collections.abc import Sequence

HEADER = ("metric", "ours", "reference", "target")


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
