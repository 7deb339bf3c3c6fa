"""Training progress: a Rich bar in a terminal, plain log lines anywhere else (CI, nohup, ``| tee``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TextIO


class TrainingProgress:
    """Context manager returning ``advance(metrics)``, called once per optimizer step.

    In a terminal it draws a Rich bar (loss, samples/s, elapsed, ETA). Outside one (``stream`` not
    a TTY) it prints ``train step S/N  loss L  R samples/s  elapsed T  ETA E`` on the first step,
    then every ``every`` steps or ``seconds`` seconds, whichever comes first, and on the last step.

    Args:
        start: steps already done (a resumed run).
        total: the run's ``max_steps``.
        enabled: False draws nothing.
        stream: where lines go (default stderr).
        every, seconds: the plain-line cadence.
    """

    def __init__(
        self,
        start: int,
        total: int,
        enabled: bool,
        stream: TextIO | None = None,
        every: int = 50,
        seconds: float = 30.0,
    ):
        self.start, self.total, self.enabled = start, total, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.every, self.seconds = every, seconds
        self.bar: Any = None

    def __enter__(self) -> Callable[[dict[str, float]], None]:
        if not self.enabled:
            return lambda metrics: None
        if self.stream.isatty():
            return self._rich()
        return self._plain()

    def _plain(self) -> Callable[[dict[str, float]], None]:
        began = last = time.monotonic()
        step = self.start

        def advance(metrics: dict[str, float]) -> None:
            nonlocal step, last
            step += 1
            now = time.monotonic()
            due = step == self.start + 1 or step == self.total or step % self.every == 0
            if not (due or now - last >= self.seconds):
                return
            last = now
            elapsed = now - began
            eta = elapsed / (step - self.start) * (self.total - step)
            print(
                f"train step {step}/{self.total}  loss {metrics['loss']:.4f}  "
                f"{metrics['samples_per_s']:.0f} samples/s  elapsed {_clock(elapsed)}  ETA {_clock(eta)}",
                file=self.stream,
                flush=True,
            )

        return advance

    def _rich(self) -> Callable[[dict[str, float]], None]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.0f} samples/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
        )
        self.bar.__enter__()
        task = self.bar.add_task("train", total=self.total, completed=self.start, loss=float("nan"), rate=0.0)

        def advance(metrics: dict[str, float]) -> None:
            self.bar.update(task, advance=1, loss=metrics["loss"], rate=metrics["samples_per_s"])

        return advance

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
