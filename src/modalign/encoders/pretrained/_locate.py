"""Finding pretrained files offline: a local directory, a file, or an installed package.

Nothing here ever reaches the network: the hub switches are set before a hub library is first
imported (:func:`modalign.offline.offline_import`), and every loader is called with local files only.
A missing file or package raises :class:`ConfigError` saying what to install or where to put what.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch

from modalign.errors import ConfigError
from modalign.offline import offline_import


def model_dir(where: str, path: str | None, package: str | None, must_have: str = "config.json") -> Path:
    """The local directory of a pretrained model: ``path``, or the one an installed ``package`` ships.

    A package is asked for ``get_model_path()`` or ``MODEL_DIR``, else its own directory (or its
    ``model/`` subdirectory) is used when it holds ``must_have``.

    Raises:
        ConfigError: neither is given, the package is not installed, or the directory lacks
            ``must_have`` (``where`` names the config field).
    """
    if (path is None) == (package is None):
        raise ConfigError(f"{where}: give exactly one of path (a local model directory) or package")
    if path is not None:
        found = Path(path).expanduser()
        hint = "put the model's files there (e.g. save_pretrained(DIR)); nothing is downloaded"
    else:
        assert package is not None
        found = _package_dir(where, package)
        hint = f"reinstall the package {package!r}"
    if not (found / must_have).is_file():
        raise ConfigError(f"{where}: {found} has no {must_have}: {hint}")
    return found


def hf_local_model(
    where: str, path: str | None, package: str | None, load_weights: bool, what: str
) -> tuple[Path, Any]:
    """A Hugging Face ``AutoModel`` from a local directory (:func:`model_dir`), offline.

    ``load_weights`` False builds the architecture from its config only (a saved modalign model
    brings the weights). Returns the directory and the model.

    Raises:
        ConfigError: no directory, no ``transformers``, or files the library cannot read
            (``what`` names the model, e.g. "text").
    """
    directory = model_dir(where, path, package)
    transformers = offline_import("transformers")
    try:
        if load_weights:
            return directory, transformers.AutoModel.from_pretrained(str(directory), local_files_only=True)
        config = transformers.AutoConfig.from_pretrained(str(directory), local_files_only=True)
        return directory, transformers.AutoModel.from_config(config)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load a {what} model from {directory}: {e}") from None


def _package_dir(where: str, package: str) -> Path:
    try:
        mod = importlib.import_module(package)
    except ImportError:
        raise ConfigError(
            f"{where}: package {package!r} is not installed: pip install {package.replace('_', '-')} "
            "(or give path: a local model directory)"
        ) from None
    if callable(getattr(mod, "get_model_path", None)):
        return Path(mod.get_model_path())
    if getattr(mod, "MODEL_DIR", None) is not None:
        return Path(mod.MODEL_DIR)
    base = Path(mod.__file__ or ".").parent
    return base / "model" if (base / "model").is_dir() else base


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict; {} when it does not exist."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else {}


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch file read with ``weights_only=True`` (no pickle code).

    Raises:
        ConfigError: the file is missing or not a weights file.
    """
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist: put the model's weights there")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch/safetensors raise many types on foreign bytes
        raise ConfigError(f"cannot read weights {path}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def longest_layer_list(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers of the longest ``nn.ModuleList`` in ``module`` (a transformer's blocks)."""
    lists: list[torch.nn.ModuleList] = [m for m in module.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ConfigError(f"{type(module).__name__} has no list of layers: use trainable all/none/projector")
    best = lists[0]
    for m in lists[1:]:
        best = m if len(m) > len(best) else best
    return list(best)
