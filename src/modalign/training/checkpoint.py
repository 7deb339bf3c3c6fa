"""Training checkpoints: one safetensors file per step, written atomically, no pickle.

A checkpoint holds the model and objective weights, the optimizer state, every device's torch RNG
state (``rng/torch`` for the CPU, ``rng/cuda/{i}``, ``rng/mps``) and the data position (epoch, batch
within epoch); scalars (optimizer step counts, the fp16 loss scaler) go into the safetensors metadata
as JSON. Tensors are written from the CPU and read onto the CPU, then copied into the model's
parameters wherever they live (the optimizer moves its state to its parameters' device), so a run
checkpointed on a GPU resumes on a CPU-only machine. Any failure to read one (missing, truncated,
foreign) is a :class:`CheckpointError`; a resumed run skips a damaged newest checkpoint for the
previous good one (:func:`load_newest_checkpoint`).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modalign.errors import CheckpointError
from modalign.io import atomic_write_bytes
from modalign.training.devices import rng_states, set_rng_states

KIND = "modalign-checkpoint"
_NAME = re.compile(r"^step_(\d{8})\.safetensors$")


@dataclass(frozen=True)
class TrainState:
    """Where training stands: the next step to run and the data position it reads."""

    step: int
    epoch: int
    batch_in_epoch: int
    best_val: float = math.inf  # lowest validation loss so far, and the step that reached it
    best_step: int = 0


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.safetensors"


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in ``directory``, oldest step first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    directory: Path,
    state: TrainState,
    model: torch.nn.Module,
    objective: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    keep: int,
    extra: dict[str, torch.Tensor] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    """Write the checkpoint of ``state`` atomically and delete all but the newest ``keep``.

    ``extra`` holds more named tensors to restore with the run (e.g. the weight average);
    ``scaler`` is the fp16 loss scaler, whose state (all scalars) goes into the metadata.
    """
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model/{k}"] = v
    for k, v in objective.state_dict().items():
        tensors[f"objective/{k}"] = v
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    for k, v in (extra or {}).items():
        tensors[f"extra/{k}"] = v
    for k, v in rng_states().items():
        tensors[f"rng/{k}"] = v
    meta = {
        "kind": KIND,
        "state": {
            "step": state.step,
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "best_val": state.best_val,
            "best_step": state.best_step,
        },
        "param_groups": opt["param_groups"],
        "optim_scalars": scalars,
    }
    if scaler is not None:
        meta["grad_scaler"] = scaler.state_dict()
    tensors = {k: _cpu_copy(v) for k, v in tensors.items()}
    path = checkpoint_path(directory, state.step)
    atomic_write_bytes(path, save(tensors, metadata={"modalign": json.dumps(meta)}))
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def save_weights(path: Path, model: torch.nn.Module) -> None:
    """The model's weights alone, atomically (the best-validation copy)."""
    from safetensors.torch import save

    state = {k: _cpu_copy(v) for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={"kind": "modalign-weights"}))


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    objective: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    extra: dict[str, torch.Tensor] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> TrainState:
    """Restore model, objective, optimizer, RNGs (and ``scaler``) from ``path``; returns the state.

    ``extra`` (a dict) is filled with the tensors saved as ``extra`` by :func:`save_checkpoint`, on
    the CPU. RNG states of devices this machine lacks are skipped; a checkpoint without scaler
    state (written in fp32/bf16) leaves ``scaler`` as it is.
    """
    tensors, meta = _read(path)
    return _restore(path, tensors, meta, model, objective, optimizer, extra, scaler)


def load_newest_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    objective: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    extra: dict[str, torch.Tensor] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> TrainState:
    """:func:`load_checkpoint` of the newest readable checkpoint in ``directory``.

    A newer file that cannot be read (truncated, damaged, foreign) is skipped with a warning on
    stderr and renamed ``*.corrupt`` (kept for inspection, no longer listed), so training goes on
    from the previous good checkpoint. A readable checkpoint that does not fit the model is an
    error, not skipped: every older one would not fit either.

    Raises:
        CheckpointError: no checkpoint in ``directory`` can be read (each one's reason is listed),
            or the newest readable one does not match the model.
    """
    bad: list[tuple[Path, CheckpointError]] = []
    for path in reversed(list_checkpoints(directory)):
        try:
            tensors, meta = _read(path)
            _state(meta, path)
        except CheckpointError as e:
            bad.append((path, e))
            continue
        state = _restore(path, tensors, meta, model, objective, optimizer, extra, scaler)
        for damaged, reason in bad:
            aside = damaged.with_name(damaged.name + ".corrupt")
            try:
                damaged.replace(aside)
            except OSError:
                aside = damaged
            print(
                f"warning: {damaged.name} cannot be read ({reason}); resuming from {path.name} "
                f"(step {state.step}) instead; the damaged file is kept as {aside}",
                file=sys.stderr,
            )
        return state
    if not bad:
        raise CheckpointError(f"no checkpoint in {directory}")
    reasons = "\n".join(f"  {reason}" for _, reason in bad)
    raise CheckpointError(
        f"no readable checkpoint in {directory}:\n{reasons}\n"
        "move them away to start from step 0, or restore a good copy"
    )


def read_checkpoint_state(path: Path) -> TrainState:
    """Read and check a whole checkpoint file without a model; returns its :class:`TrainState`.

    Raises:
        CheckpointError: the file is missing, truncated, damaged or not a modalign checkpoint.
    """
    _, meta = _read(path)
    return _state(meta, path)


def _restore(
    path: Path,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    model: torch.nn.Module,
    objective: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    extra: dict[str, torch.Tensor] | None,
    scaler: torch.amp.GradScaler | None,
) -> TrainState:
    if extra is not None:
        extra.update(_strip(tensors, "extra/"))
    try:
        model.load_state_dict(_strip(tensors, "model/"))
        objective.load_state_dict(_strip(tensors, "objective/"))
        opt_state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim/"):
                _, idx, key = k.split("/", 2)
                opt_state.setdefault(int(idx), {})[key] = v
        for idx, scalars in meta["optim_scalars"].items():
            opt_state.setdefault(int(idx), {}).update(scalars)
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        set_rng_states(_strip(tensors, "rng/"))
        if scaler is not None and meta.get("grad_scaler"):
            scaler.load_state_dict(meta["grad_scaler"])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} does not match this model/config: {e}") from None
    return _state(meta, path)


def _state(meta: dict[str, Any], path: Path) -> TrainState:
    try:
        s = meta["state"]
        return TrainState(
            step=int(s["step"]),
            epoch=int(s["epoch"]),
            batch_in_epoch=int(s["batch_in_epoch"]),
            best_val=float(s.get("best_val", math.inf)),
            best_step=int(s.get("best_step", 0)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has no valid training state ({type(e).__name__}: {e})") from None


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load

    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header["__metadata__"]["modalign"])
    except Exception as e:  # SafetensorError, ValueError, KeyError: all mean "not ours / damaged"
        raise CheckpointError(
            f"{path} is truncated or not a modalign checkpoint ({type(e).__name__}: {e})"
        ) from None
    if meta.get("kind") != KIND:
        raise CheckpointError(f"{path} is not a modalign checkpoint")
    return tensors, meta


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    # a fresh contiguous CPU tensor: safetensors writes host memory, and no view of a live
    # parameter may change while the bytes are being written
    return t.detach().to("cpu", copy=True).contiguous()


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def json_tensor(obj: Any) -> torch.Tensor:
    """``obj`` as JSON bytes in a uint8 tensor (checkpoint files hold tensors only)."""
    return torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8)


def tensor_json(t: torch.Tensor) -> Any:
    """The object :func:`json_tensor` stored."""
    return json.loads(bytes(t.tolist()).decode())
