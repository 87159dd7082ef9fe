"""A terminal progress bar (redrawn in place on a TTY, one line per step otherwise)."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, stream=None, width: int = 30, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.last_message = None

    def __call__(self, fraction: float, message: str) -> None:
        if not self.enabled:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(round(fraction * self.width))
        elapsed = time.monotonic() - self.start
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * fraction:3.0f}% {elapsed:5.1f}s {message}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            if fraction >= 1.0:
                self.stream.write("\n")
        elif message != self.last_message:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_message = message
