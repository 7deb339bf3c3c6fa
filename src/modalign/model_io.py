"""A MultimodalModel's directory: ``config.json`` (architecture and transforms), the transforms'
fitted state and ``model.safetensors``, written atomically and read back with named errors."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modalign.data.transforms import build_transform
from modalign.encoders import restore_kwargs
from modalign.errors import CheckpointError, ConfigError, DataError
from modalign.io import atomic_write_bytes, atomic_write_json
from modalign.model_specs import FusionSpec, ModalitySpec

if TYPE_CHECKING:
    from modalign.model import MultimodalModel

FORMAT = "modalign-model"
FORMAT_VERSION = 1
# what building from a hand-edited or foreign config.json raises, turned into CheckpointError
_BAD_DESCRIPTION = (ConfigError, DataError, LookupError, TypeError, AttributeError, ValueError, RuntimeError)


def describe(model: MultimodalModel) -> dict[str, Any]:
    """The JSON description saved as ``config.json`` (rebuilds the architecture)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "embed_dim": model.embed_dim,
        "head": model.head,
        "modalities": {
            s.name: {
                "kind": s.kind,
                "column": s.column,
                "encoder": s.encoder,
                "encoder_kwargs": s.encoder_kwargs,
                "transform": s.transform.settings(),
                "processor": s.transform.processor,
                "lora": s.lora,
            }
            for s in model.specs.values()
        },
        "fusion": None if model.fusion_spec is None else model.fusion_spec.describe(),
        "aligned": model.aligned,
        "logit_scale": model.logit_scale,
    }


def save_transforms(model: MultimodalModel, directory: str | Path) -> None:
    """Write config.json and the transforms' fitted state (no weights)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for s in model.specs.values():
        s.transform.save_state(directory, s.name)
    atomic_write_json(directory / "config.json", model.describe())


def save(model: MultimodalModel, directory: str | Path) -> None:
    """Write ``config.json``, ``model.safetensors`` and the transform files atomically.

    Weights are written from CPU copies, so the files load on any machine wherever the model ran.
    """
    from safetensors.torch import save

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if bad := nonfinite_tensors(state):
        raise CheckpointError(
            f"refusing to save to {directory}: non-finite (NaN/inf) weights in {list_names(bad)}"
        )
    model.save_transforms(directory)
    atomic_write_bytes(directory / "model.safetensors", save(state, metadata={"format": FORMAT}))


def from_config_dir(cls: type[MultimodalModel], directory: str | Path) -> MultimodalModel:
    """Rebuild the architecture and transforms from ``config.json`` (random weights)."""
    directory = Path(directory)
    try:
        desc = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{directory} is not a modalign model directory: {e}") from None
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise CheckpointError(f"{directory}/config.json is not a {FORMAT} config")
    try:
        specs = []
        for name, m in desc["modalities"].items():
            transform = build_transform(m["kind"], m["transform"], m.get("processor", ""))
            transform.load_state(directory, name)
            kwargs = restore_kwargs(m["encoder"], m["encoder_kwargs"], transform)
            specs.append(
                ModalitySpec(name, m["kind"], m["column"], m["encoder"], kwargs, transform, m.get("lora"))
            )
        fusion = desc.get("fusion")
        return cls(
            specs,
            desc["embed_dim"],
            desc["head"],
            None if fusion is None else FusionSpec.from_description(fusion),
            bool(desc.get("aligned", True)),
            _optional_float(desc.get("logit_scale")),
        )
    except CheckpointError:
        raise
    except _BAD_DESCRIPTION as e:
        # a config.json edited by hand or from another version: never a bare KeyError/TypeError
        raise CheckpointError(
            f"{directory}/config.json has a wrong structure or value ({type(e).__name__}: {e}); "
            "save the model again with this version of modalign"
        ) from None


def _optional_float(value: Any) -> float | None:
    if value is not None and not (isinstance(value, (int, float)) and float(value) > 0):
        raise ValueError(f"logit_scale must be a positive number or null, got {value!r}")
    return None if value is None else float(value)


def from_pretrained(
    cls: type[MultimodalModel], directory: str | Path, device: str | torch.device | None = None
) -> MultimodalModel:
    """Load a saved model, on the CPU, then moved to ``device`` when given ("cuda", "mps", ...).

    Raises:
        CheckpointError: a missing, truncated or foreign model directory, or non-finite
            (NaN/inf) weights (named).
        ConfigError: ``device`` is unknown or absent on this machine.
    """
    model = cls.from_config_dir(directory)
    path = Path(directory) / "model.safetensors"
    weights = load_safetensors(path)
    if bad := nonfinite_tensors(weights):
        raise CheckpointError(
            f"{path} holds non-finite (NaN/inf) weights in {list_names(bad)}: it comes from a "
            "diverged or damaged run; retrain (e.g. with a lower trainer.lr) or use an earlier copy"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:  # missing/unexpected keys or shape mismatch
        raise CheckpointError(f"weights in {directory} do not match its config.json: {e}") from None
    model._placed(device)
    model.eval()
    return model


def nonfinite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not _finite(v)]


def _finite(t: torch.Tensor) -> bool:
    # A NaN/inf element makes the sum non-finite, so a finite sum proves every element finite; a
    # non-finite sum may be an overflow of finite values, so only then is each element checked.
    return bool(t.detach().sum().isfinite()) or bool(t.detach().isfinite().all())


def list_names(names: Sequence[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning every failure into :class:`CheckpointError`."""
    from safetensors.torch import load

    try:
        return load(path.read_bytes())
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    except Exception as e:  # safetensors raises SafetensorError / ValueError on bad bytes
        raise CheckpointError(f"{path} is truncated or not a safetensors file: {e}") from None
