"""The ``trainer`` section: optimisation, checkpoints, devices and precision."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from modalign.config._base import _Frozen


class TrainerConfig(_Frozen):
    max_steps: int = Field(1000, gt=0, description="optimizer steps")
    batch_size: int | Literal["full"] = Field(
        128, description="rows per step; 'full' (or any size >= the training set) = one batch in data order"
    )
    optimizer: Literal["adamw", "adam"] = Field(
        "adamw",
        description="adamw: decoupled decay on matrices only; adam: L2 decay on every parameter "
        "(torch.optim.Adam, as the M3CoL reference)",
    )
    ema_decay: float | None = Field(
        None, ge=0, lt=1, description="keep an EMA of the weights (avg = d*avg + (1-d)*w) and save it"
    )
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.1, ge=0, description="weight decay (see optimizer)")
    betas: tuple[float, float] = Field((0.9, 0.98), description="Adam betas, each in [0, 1)")
    eps: float = Field(1e-6, gt=0, description="Adam epsilon")
    warmup_steps: int = Field(100, ge=0, description="linear warm-up steps before the cosine decay")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of lr")
    grad_clip: float | None = Field(1.0, gt=0, description="max global grad norm; null disables")
    seed: int = Field(0, description="seeds model init, data order, dropout and augmentation")
    checkpoint_every: int = Field(200, gt=0, description="steps between checkpoints (and at the end)")
    keep_checkpoints: int = Field(2, gt=0, description="newest checkpoints kept")
    val_every: int = Field(200, gt=0, description="steps between validation losses (and at the end)")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null = torch default")
    select_best: bool = Field(
        False, description="save the weights with the lowest validation loss as the model"
    )
    accumulation: Literal["none", "cached"] = Field(
        "none",
        description="cached: exact large-batch gradients from micro-batches (GradCache with RNG replay)",
    )
    micro_batch_size: int | None = Field(
        None, gt=0, description="rows per encoder pass with accumulation=cached"
    )
    device: str = Field(
        "auto",
        description="auto (cuda if available, else mps if available, else cpu), cpu, cuda, cuda:N or mps",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="fp32, or autocast of forward passes and losses to bf16 / fp16 (fp16 adds loss "
        "scaling and needs a GPU)",
    )
    max_nonfinite_steps: int | None = Field(
        None,
        gt=0,
        description="stop with an error after this many steps in a row with a non-finite loss or "
        "gradient (each is skipped, never applied to the weights); null = 1, or 16 with "
        "precision=fp16, whose loss scaler skips overflowing steps while halving its scale from 2**16",
    )

    @field_validator("batch_size")
    @classmethod
    def _batch_of_two(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 2:
            raise ValueError("batch_size must be >= 2 (contrastive losses need negatives) or 'full'")
        return v

    @field_validator("betas")
    @classmethod
    def _betas_below_one(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"Adam betas must each be in [0, 1), got {list(v)}")
        return v

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        # resolved (auto) and checked against the machine by training/devices.py: no torch here
        if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is None:
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v

    @model_validator(mode="after")
    def _accumulation_needs_micro_batches(self) -> TrainerConfig:
        if self.accumulation == "cached" and self.micro_batch_size is None:
            raise ValueError("trainer.accumulation=cached needs trainer.micro_batch_size")
        return self

    @model_validator(mode="after")
    def _fp16_needs_a_gpu(self) -> TrainerConfig:
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError(
                "trainer.precision=fp16 needs a GPU but trainer.device=cpu; "
                "use trainer.precision=bf16 (or fp32) on a CPU"
            )
        return self
