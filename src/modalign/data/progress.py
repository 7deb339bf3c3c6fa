"""Progress of a pass over manifest rows (loading a split, ``data check``): a Rich bar in a
terminal, plain lines anywhere else (CI, nohup, ``| tee``), so a long pass is never silent."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TextIO


class RowProgress:
    """Context manager returning ``update(done)``, called with the number of rows done so far.

    Outside a terminal it prints ``LABEL: D/N rows (P%)  elapsed T  ETA E`` every ``seconds``
    seconds and ``LABEL: N rows in T`` at the end (one line for a short pass).

    Args:
        label: what is being done (``loading train``, ``checking test``).
        total: rows in the pass.
        enabled: False draws nothing.
        stream: where it goes (default stderr).
        seconds: the plain-line cadence.
    """

    def __init__(
        self,
        label: str,
        total: int,
        enabled: bool = True,
        stream: TextIO | None = None,
        seconds: float = 10.0,
    ):
        self.label, self.total, self.enabled, self.seconds = label, total, enabled, seconds
        self.stream = stream if stream is not None else sys.stderr
        self.bar: Any = None
        self.began = time.monotonic()
        self.done = 0

    def __enter__(self) -> Callable[[int], None]:
        self.began = time.monotonic()
        if not self.enabled:
            return lambda done: None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(transient=True, console=Console(file=self.stream))
            self.bar.__enter__()
            task = self.bar.add_task(f"{self.label} ({self.total} rows)", total=self.total)

            def draw(done: int) -> None:
                if done % 64 == 0 or done == self.total:
                    self.bar.update(task, completed=done)

            return draw
        last = self.began

        def line(done: int) -> None:
            nonlocal last
            self.done = done
            now = time.monotonic()
            if now - last < self.seconds or done >= self.total:
                return
            last = now
            elapsed = now - self.began
            eta = elapsed / max(done, 1) * (self.total - done)
            print(
                f"{self.label}: {done}/{self.total} rows ({done / max(self.total, 1):.0%})  "
                f"elapsed {clock(elapsed)}  ETA {clock(eta)}",
                file=self.stream,
                flush=True,
            )

        return line

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
        elif self.enabled and exc[0] is None:
            elapsed = time.monotonic() - self.began
            print(f"{self.label}: {self.total} rows in {elapsed:.1f} s", file=self.stream, flush=True)


def clock(seconds: float) -> str:
    """``H:MM:SS`` of a duration."""
    return str(timedelta(seconds=round(seconds)))
