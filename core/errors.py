"""Errors that reach the user: one line naming the file, the line and the problem."""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad or unsupported input. The CLI prints it as one line and exits with code 2."""

    def __init__(self, source: str | Path | None, problem: str, line: int | None = None):
        self.source = str(source) if source is not None else None
        self.problem = problem
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source or "<input>"
        if self.line is not None:
            where = f"{where}, line {self.line}"
        return f"{where}: {self.problem}"
