"""A readable, timestamped account of what the demo does and what the operator answers."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Timeline:
    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out
        self._start = time.monotonic()

    def _line(self, mark: str, text: str) -> None:
        self._out.write(f"[{time.monotonic() - self._start:6.1f}s] {mark} {text}\n")
        self._out.flush()

    def chapter(self, title: str) -> None:
        self._out.write(f"\n== {title}\n")
        self._out.flush()

    def do(self, text: str) -> None:
        self._line("→", text)

    def saw(self, text: str) -> None:
        self._line("✓", text)

    def note(self, text: str) -> None:
        self._line(" ", text)

    def fail(self, text: str) -> None:
        self._line("✗", text)

    def block(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            self._out.write(f"           {line}\n")
        self._out.flush()
