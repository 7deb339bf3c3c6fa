"""``modalign train --nproc N``: the same training launched by ``torchrun`` on N local processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modalign.errors import ConfigError


def torchrun_command(nproc: int, train_args: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m modalign train ARGS``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "modalign",
        "train",
        *train_args,
    ]


def train_args(config: Path, out: Path | None, sets: list[str], resume: bool, overwrite: bool) -> list[str]:
    """The ``modalign train`` arguments that reproduce a parsed command line (without --nproc)."""
    args = [str(config)]
    if out is not None:
        args += ["--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return args + ["--resume"] * resume + ["--overwrite"] * overwrite


def launch_torchrun(nproc: int, args: list[str]) -> int:
    """Run ``modalign train ARGS`` on ``nproc`` local processes; returns torchrun's exit code."""
    if "WORLD_SIZE" in os.environ:
        raise ConfigError("--nproc starts torchrun itself: drop it when launching with torchrun")
    return subprocess.run(torchrun_command(nproc, args), check=False).returncode
