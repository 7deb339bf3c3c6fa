"""Run directories: one process at a time, never overwritten unasked, resumed only with its config.

``modalign train --out RUN`` writes ``config.yaml``, ``transforms/``, ``checkpoints/``,
``metrics.jsonl``, ``model/``, ``report.json`` and ``report.html`` (and ``modalign eval`` writes
under ``eval/``). :func:`open_run` decides, before any data is read, what a run may do there:

- without flags, only a new or empty directory is used;
- ``resume``: the run continues from its newest readable checkpoint; with no checkpoint yet (killed
  early, or an empty directory) it starts from step 0 exactly as a fresh run; a finished run whose
  checkpoints were deleted cannot be continued (refused: ``--overwrite`` retrains it);
- ``overwrite``: the run's own files (the names above) are deleted and it starts again; other
  files stay; a non-empty directory that is not a run is refused, even with ``overwrite``.

Lock: ``RUN/run.lock`` carries an OS advisory lock (``flock``, :mod:`modalign.workflows.runlock`)
for as long as the run lasts. The kernel releases it when the process ends in any way, ``kill -9``
included, so a lock file without a holder is stale by definition: the next run says whose it was
(pid, host, start, command) and takes it over. A held lock refuses the second run with the holder's
pid and host. On a platform without ``fcntl`` (Windows) the lock is not taken, with a warning.

Resume checks the saved ``RUN/config.yaml`` against the new config. Every field must match except
those that change where, how fast or how often the run works, not what it computes:
``trainer.max_steps`` (may grow; the cosine schedule then stretches from the checkpoint on),
``trainer.checkpoint_every``, ``trainer.keep_checkpoints``, ``trainer.threads``, ``trainer.device``
(a CUDA run may go on on a CPU), ``trainer.max_nonfinite_steps``, ``data.workers`` (the same
batches from a manifest; from shards every sample of the epoch still once, in another order, as
with another number of processes) and the ``eval`` section (used after training only). Allowed
changes are printed and written to ``config.yaml``; any other difference refuses the resume with
the list of dotted paths, old -> new.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modalign.errors import ConfigError, OutputError, RunDirectoryError
from modalign.io import atomic_write_bytes, output_error, remove_stray_temp_files
from modalign.workflows.runlock import RunLock, note

LOCK = "run.lock"
# Everything a training run writes (deleted by --overwrite, nothing else is).
ARTIFACTS = (
    "config.yaml",
    "transforms",
    "checkpoints",
    "metrics.jsonl",
    "model",
    "report.json",
    "report.html",
    "eval",
)
MAY_CHANGE = (
    "trainer.max_steps",  # may only grow
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "trainer.threads",
    "trainer.device",
    "trainer.max_nonfinite_steps",
    "data.workers",  # loading only: shard positions resume with other workers too (shard_parts)
    "eval",
)
_ABSENT = object()


@dataclass(frozen=True)
class Change:
    """One config field that differs: its dotted path, the saved value and the new one."""

    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"


@dataclass
class RunDirectory:
    """A locked run directory and what the run does there (see the module docstring).

    Attributes:
        path: the directory.
        resume: continue from the newest checkpoint (False: start from step 0).
        changes: config fields changed on resume (all allowed ones).
    """

    path: Path
    lock: RunLock
    resume: bool
    changes: list[Change] = field(default_factory=list)

    def close(self) -> None:
        self.lock.release()

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_run(out: Path, config: dict[str, Any], *, resume: bool, overwrite: bool) -> RunDirectory:
    """Lock ``out`` for a training run of ``config`` (``model_dump(mode="json")``) and check it.

    Also removes temp files that killed writes left behind, and on resume writes the allowed
    config changes to ``config.yaml``. Reads no data.

    Raises:
        OutputError: ``out`` is (under) a file, or cannot be created or written.
        RunDirectoryError: ``out`` is in use, holds a run and neither flag allows using it, is
            not a run, or its saved config differs in a field that must match.
    """
    if resume and overwrite:
        raise RunDirectoryError(
            "pass either --resume (continue the run) or --overwrite (replace it), not both"
        )
    prepare_output_dir(out)
    lock = RunLock(out / LOCK)
    lock.acquire()
    try:
        run = _decide(out, config, resume=resume, overwrite=overwrite, lock=lock)
    except BaseException:
        lock.release()
        raise
    return run


def _decide(
    out: Path, config: dict[str, Any], *, resume: bool, overwrite: bool, lock: RunLock
) -> RunDirectory:
    stray = [
        p
        for d in (out, out / "checkpoints", out / "transforms", out / "model")
        for p in remove_stray_temp_files(d)
    ]
    if stray:
        note(f"removed {len(stray)} temp file(s) left by killed writes: {', '.join(str(p) for p in stray)}")
    entries = sorted(p.name for p in out.iterdir() if p.name != LOCK)
    is_run = (
        (out / "config.yaml").is_file()
        or (out / "checkpoints").is_dir()
        or (out / "transforms" / "config.json").is_file()
    )
    if entries and not is_run:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunDirectoryError(
            f"{out} is not empty ({shown}) and is not a modalign run (no config.yaml, checkpoints/ "
            "or transforms/): nothing was changed; choose a new or empty --out"
        )
    if not entries:
        if resume:
            note(f"nothing to resume in {out} yet: starting the run from step 0")
        return RunDirectory(out, lock, resume=False)
    if overwrite:
        note(f"--overwrite: deleting the earlier run in {out}")
        for name in ARTIFACTS:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        return RunDirectory(out, lock, resume=False)
    if not resume:
        raise RunDirectoryError(
            f"{out} already holds a run: pass --resume to continue it, --overwrite to replace it, "
            "or choose another --out"
        )
    from modalign.training.checkpoint import list_checkpoints  # imports torch

    ckpts = list_checkpoints(out / "checkpoints")
    if not ckpts and (out / "model").exists():
        raise RunDirectoryError(
            f"{out} holds a finished run whose checkpoints are gone ({out / 'checkpoints'} has none): "
            "it cannot be continued; pass --overwrite to train it again, or choose another --out"
        )
    saved = out / "config.yaml"
    if not saved.is_file():
        if ckpts:
            raise RunDirectoryError(
                f"cannot resume {out}: {saved} is missing, so the checkpoints cannot be checked "
                "against the config; pass --overwrite to start again, or choose another --out"
            )
        note(f"no checkpoint in {out} yet: starting the run from step 0")
        return RunDirectory(out, lock, resume=False)
    newest = int(ckpts[-1].name.split("_")[1].split(".")[0]) if ckpts else 0
    changes = check_resume_config(saved, config, checkpoint_step=newest)
    if changes:
        for c in changes:
            extra = ""
            if c.path == "trainer.max_steps":
                extra = f" (the learning-rate schedule stretches from step {newest} on)"
            note(f"resuming {out} with {c}{extra}")
        atomic_write_bytes(saved, yaml.safe_dump(config).encode())
    if not ckpts:
        note(f"no checkpoint in {out} yet: starting the run from step 0, exactly as a fresh run")
    return RunDirectory(out, lock, resume=bool(ckpts), changes=changes)


def check_resume_config(saved: Path, config: dict[str, Any], *, checkpoint_step: int) -> list[Change]:
    """The allowed differences between ``saved`` (a config.yaml) and ``config``; raise on others.

    Raises:
        RunDirectoryError: a field that must match differs (all of them are listed, old -> new),
            ``trainer.max_steps`` shrinks, or ``saved`` cannot be read or no longer validates.
    """
    from modalign.config import load_config

    try:
        old = load_config(raw=yaml.safe_load(saved.read_text())).model_dump(mode="json")
    except (OSError, yaml.YAMLError, ConfigError) as e:
        raise RunDirectoryError(
            f"cannot check the config of the run to resume: {saved}: {e}\n"
            "pass --overwrite to start the run again, or choose another --out"
        ) from None
    allowed: list[Change] = []
    refused: list[Change] = []
    for c in config_differences(old, config):
        ok = any(c.path == p or c.path.startswith(p + ".") for p in MAY_CHANGE)
        if c.path == "trainer.max_steps":
            ok = isinstance(c.new, int) and isinstance(c.old, int) and c.new > c.old
        (allowed if ok else refused).append(c)
    if refused:
        lines = "\n".join(f"  {c}" for c in refused)
        grow = (
            f" (trainer.max_steps may only grow; the checkpoint is at step {checkpoint_step})"
            if any(c.path == "trainer.max_steps" for c in refused)
            else ""
        )
        raise RunDirectoryError(
            f"cannot resume: the config differs from the run's {saved}{grow}:\n{lines}\n"
            "resume with the saved config, or start a new run (--overwrite, or another --out). "
            f"Fields that may change on resume: {', '.join(MAY_CHANGE)}"
        )
    return allowed


def config_differences(old: Any, new: Any, prefix: str = "") -> list[Change]:
    """Every leaf where two config dumps differ, as dotted paths (list items by index)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Change] = []
        for k in [*old, *(k for k in new if k not in old)]:
            path = f"{prefix}.{k}" if prefix else str(k)
            out += config_differences(old.get(k, _ABSENT), new.get(k, _ABSENT), path)
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for i in range(max(len(old), len(new))):
            a = old[i] if i < len(old) else _ABSENT
            b = new[i] if i < len(new) else _ABSENT
            out += config_differences(a, b, f"{prefix}.{i}")
        return out
    if old is _ABSENT or new is _ABSENT or old != new or type(old) is not type(new):
        return [Change(prefix, old, new)]
    return []


def prepare_output_dir(path: Path) -> None:
    """Create ``path`` if needed and check that files can be written in it (a probe file).

    Raises:
        OutputError: ``path`` or a parent is a file, or the directory cannot be created/written.
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise OutputError(
                    f"cannot write {path}: {p} is a file, not a directory; choose a directory (--out)"
                )
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise output_error(path, e) from None


def check_free_space(path: Path, needed: int, what: str) -> None:
    """Warn (stderr) when the file system of ``path`` has less than ``needed`` bytes free."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return
    if free < needed:
        note(
            f"{path} has {_mb(free)} free but {what} needs about {_mb(needed)}: the run may stop "
            "with 'No space left on device' (free some space; a stopped run continues with --resume)",
            kind="warning",
        )


def _show(v: Any) -> str:
    if v is _ABSENT:
        return "(absent)"
    return v if isinstance(v, str) else json.dumps(v)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
