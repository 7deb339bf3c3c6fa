"""Training progress: a Rich bar in a terminal, plain log lines anywhere else (CI, nohup, ``| tee``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from modalign.data.progress import clock as hms


class TrainingProgress:
    """Context manager returning ``advance(metrics)``, called once per optimizer step.

    In a terminal it draws a Rich bar (loss, samples/s, elapsed, ETA). Outside one (``stream`` not
    a TTY) it prints ``train step S/N  loss L  R samples/s  elapsed T  ETA E`` on the first step,
    then every ``every`` steps or ``seconds`` seconds, whichever comes first, and on the last step.

    Either way, once ``warmup`` steps after the first have run, one line states the measured time
    per step and the ETA of the run. The warm-up steps are the run's real first steps, only timed:
    an estimate that ran extra steps would consume random numbers and change the weights. The
    first step is left out of the estimate (it pays one-time set-up: allocation, lazy init).

    Args:
        start: steps already done (a resumed run).
        total: the run's ``max_steps``.
        enabled: False draws nothing.
        stream: where lines go (default stderr).
        every, seconds: the plain-line cadence.
        warmup: steps after the first that the estimate is measured on.
        clock: seconds of a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        start: int,
        total: int,
        enabled: bool,
        stream: TextIO | None = None,
        every: int = 50,
        seconds: float = 30.0,
        warmup: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.start, self.total, self.enabled = start, total, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.every, self.seconds, self.warmup, self.clock = every, seconds, warmup, clock
        self.bar: Any = None

    def __enter__(self) -> Callable[[dict[str, float]], None]:
        if not self.enabled:
            return lambda metrics: None
        inner = self._rich() if self.stream.isatty() else self._plain()
        times: list[float] = []  # clock after the first step, then after each warm-up step

        def advance(metrics: dict[str, float]) -> None:
            inner(metrics)
            if len(times) <= self.warmup:
                times.append(self.clock())
                if len(times) == self.warmup + 1:
                    self._estimate((times[-1] - times[0]) / self.warmup)

        return advance

    def _estimate(self, per_step: float) -> None:
        done = self.start + 1 + self.warmup
        if done >= self.total:
            return  # the run is over: nothing left to estimate
        left = self.total - done
        text = (
            f"estimated {per_step:.3g} s/step (steps {self.start + 2}-{done}); "
            f"ETA {hms(per_step * left)} for the {left} step{'s' * (left != 1)} left"
        )
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def _plain(self) -> Callable[[dict[str, float]], None]:
        began = last = self.clock()
        step = self.start

        def advance(metrics: dict[str, float]) -> None:
            nonlocal step, last
            step += 1
            now = self.clock()
            due = step == self.start + 1 or step == self.total or step % self.every == 0
            if not (due or now - last >= self.seconds):
                return
            last = now
            elapsed = now - began
            eta = elapsed / (step - self.start) * (self.total - step)
            print(
                f"train step {step}/{self.total}  loss {metrics['loss']:.4f}  "
                f"{metrics['samples_per_s']:.0f} samples/s  elapsed {hms(elapsed)}  ETA {hms(eta)}",
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
