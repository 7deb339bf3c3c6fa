"""Which parameters of a tower train: ``trainable`` levels, LoRA adapters, frozen modules in eval mode.

``trainable`` per modality:
    ``all``: every parameter (from-scratch default). ``projector``: the encoder is frozen, the
    projection head trains (LiT-style frozen towers with trained projectors). ``none``: the whole
    tower is frozen. ``{"last_n_blocks": N}``: the projector and the encoder's last N blocks
    (:meth:`Encoder.layer_blocks`) train, the rest is frozen.
LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685) adds a
trainable low-rank update ``W + (alpha / r) B A`` to the encoder's ``nn.Linear`` layers through
``peft``; B starts at zero, so the adapted model starts as the pretrained one. Adapters train
unless ``trainable`` is ``none`` (``projector`` + LoRA: frozen weights, trained adapters).

Frozen modules stay in eval mode while the rest trains (:func:`keep_frozen_in_eval`): a frozen
BatchNorm keeps its running statistics and a frozen block's dropout stays off, so a frozen
encoder computes exactly what it computed before training (and its outputs can be cached).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from modalign.encoders.base import ModalityTower
from modalign.errors import ConfigError

LEVELS = ("all", "projector", "none")


def set_trainable(tower: ModalityTower, trainable: str | dict[str, int]) -> None:
    """Set ``requires_grad`` of ``tower``'s parameters by ``trainable`` (see module docstring)."""
    if isinstance(trainable, dict):
        n = int(trainable["last_n_blocks"])
        blocks = tower.encoder.layer_blocks()
        if not 1 <= n <= len(blocks):
            raise ConfigError(
                f"trainable.last_n_blocks must be in [1, {len(blocks)}] for this encoder, got {n}"
            )
        _requires_grad(tower.encoder, False)
        for block in blocks[-n:]:
            _requires_grad(block, True)
        _requires_grad(tower.head, True)
    elif trainable in LEVELS:
        _requires_grad(tower.encoder, trainable == "all")
        _requires_grad(tower.head, trainable != "none")
    else:
        raise ConfigError(
            f"trainable must be all, projector, none or {{last_n_blocks: N}}, got {trainable!r}"
        )
    for name, p in tower.encoder.named_parameters():
        if "lora_" in name:  # adapters follow the weights they adapt
            p.requires_grad_(trainable != "none")


def add_lora(tower: ModalityTower, r: int, alpha: float, dropout: float, targets: tuple[str, ...]) -> None:
    """Inject LoRA adapters into ``tower``'s encoder (in place; state-dict keys change).

    Args:
        targets: names of the ``nn.Linear`` modules to adapt (their last name part); empty = all
            plain ``nn.Linear`` layers (attention output projections that torch fuses are left out).
    """
    from modalign.offline import offline_import

    peft = offline_import("peft")
    linears = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, m in tower.encoder.named_modules()
            if type(m) is nn.Linear and name
        }
    )
    chosen = list(targets) if targets else linears
    if not chosen or (targets and not set(targets) <= set(linears)):
        raise ConfigError(f"lora.targets {list(targets)} are not linear layers of this encoder ({linears})")
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=chosen)
    peft.inject_adapter_in_model(config, tower.encoder)


def keep_frozen_in_eval(module: nn.Module) -> None:
    """Put every submodule whose parameters are all frozen into eval mode (not its trainable siblings)."""
    for child in module.children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            child.eval()
        else:
            keep_frozen_in_eval(child)


def lr_groups(model: nn.Module, scales: dict[str, float]) -> dict[int, float]:
    """``id(parameter) -> lr multiplier`` of the towers named in ``scales`` (others: 1)."""
    towers: Any = getattr(model, "towers", {})
    return {id(p): scales[name] for name in scales if name in towers for p in towers[name].parameters()}


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)
