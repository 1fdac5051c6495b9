"""The one error type every build stage raises for a user's mistake."""

from __future__ import annotations


class BuildError(Exception):
    """A problem in the user's project or options, reported without a traceback.

    ``path`` is relative to the project root; ``line`` and ``col`` are 1-based.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col

    @property
    def location(self) -> str:
        if self.path is None:
            return ""
        parts = [self.path]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message
