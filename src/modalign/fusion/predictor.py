"""A self-contained prediction model over vector modalities: encoders -> fusion -> task heads.

:class:`FusionPredictor` is the small model the benchmarks and robustness evaluation train: one
MLP encoder per modality (or the raw features), any registered fusion module, multi-task heads,
optional unimodal auxiliary heads and the M3CoL contrastive term, modality dropout, and a
full-featured ``fit`` loop. It is one file because model, loss assembly and its tiny training loop
share the same configuration and are only useful together; the general :mod:`modalign.training`
trainer can drive the same ``forward``/``loss`` pair.

Recipes are configuration, not code:

* M3CoL: ``fusion="concat"``, ``aux_heads=True``, ``contrastive_weight=0.1``.
* MultiModN: ``fusion="multimodn"`` (per-step decoder losses and the state-change term are used
  automatically because the fusion output has ``states``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modalign.errors import CheckpointError, ConfigError, DataError
from modalign.fusion.base import FusionOutput
from modalign.fusion.contrastive import m3co_loss, sample_mixup, soft_clip_loss
from modalign.fusion.heads import TaskHeads, multistep_task_loss, probabilities, task_loss
from modalign.tasks import Target, TaskSpec, encode_targets
from modalign.fusion.missing import modality_dropout as drop_modalities
from modalign.io import atomic_write_bytes, atomic_write_json
from modalign.registry import lookup
from modalign.types import LossOutput

FORMAT = "modalign.fusion_predictor"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PredictorOutput:
    """Everything one forward pass computes.

    Attributes:
        logits: task -> (B, C) predictions of the fused representation.
        step_logits: task -> (S, B, C) predictions of every fusion state (MultiModN), else None.
        aux_logits: modality -> task -> (B, C) unimodal head predictions, or None.
        features: modality -> (B, F) encoder outputs (absent rows meaningless).
        present: modality -> (B,) effective masks (given mask, minus NaN rows, minus dropout).
        fusion: the fusion module's output.
    """

    logits: dict[str, torch.Tensor]
    step_logits: dict[str, torch.Tensor] | None
    aux_logits: dict[str, dict[str, torch.Tensor]] | None
    features: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    fusion: FusionOutput


class _Scaler(nn.Module):
    """Per-feature affine input normalisation fitted on training rows: (x - shift) / scale."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


def _mlp_encoder(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
    )


class _DeepTaskHeads(TaskHeads):
    """Task heads with ``depth`` hidden layers of width ``hidden`` (M3CoL's heads for depth 2).

    Head: Linear(in, h)-ReLU-Dropout, then ``depth - 1`` times Linear(h, h)-ReLU, then Linear(h, C).
    For depth 2 this is M3CoL's Linear-ReLU-Dropout-Linear-ReLU-Linear; ``forward`` is TaskHeads'.
    """

    def __init__(self, in_dim: int, tasks: Sequence[TaskSpec], hidden: int, dropout: float, depth: int):
        nn.Module.__init__(self)
        self.tasks = tuple(tasks)
        heads: dict[str, nn.Module] = {}
        for t in self.tasks:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
            for _ in range(depth - 1):
                layers += [nn.Linear(hidden, hidden), nn.ReLU()]
            heads[t.name] = nn.Sequential(*layers, nn.Linear(hidden, t.num_outputs))
        self.heads = nn.ModuleDict(heads)


def _task_heads(
    in_dim: int, tasks: Sequence[TaskSpec], hidden: int | None, dropout: float, depth: int
) -> TaskHeads:
    if depth == 1 or hidden is None:
        return TaskHeads(in_dim, tasks, hidden, dropout)
    return _DeepTaskHeads(in_dim, tasks, hidden, dropout, depth)


class FusionPredictor(nn.Module):
    """Encoders + fusion + task heads for modalities given as feature vectors (B, F_m).

    Args:
        input_dims: modality name -> raw input width.
        tasks: task specs (classification specs need ``classes``).
        fusion: registered fusion name (``concat``, ``attention``, ``multimodn``, ``lego``).
        fusion_kwargs: plain kwargs of the fusion module (besides ``dims``).
        encoder: ``mlp`` (Linear-ReLU-Dropout-Linear per modality) or ``identity`` (raw features).
        feature_dim: encoder output width F.
        encoder_hidden: encoder hidden width; None uses ``feature_dim``.
        encoder_dropout: dropout inside encoders.
        head_hidden: hidden width of task heads; None gives linear heads.
        head_dropout: dropout in task heads.
        head_depth: number of hidden layers (width ``head_hidden``) of every task head. 1 gives
            Linear-ReLU-Dropout-Linear; 2 gives M3CoL's Linear-ReLU-Dropout-Linear-ReLU-Linear
            (dropout only after the first layer). Needs ``head_hidden`` when above 1.
        aux_heads: add one unimodal head set per modality on its encoder features (M3CoL).
        aux_weight: weight of the unimodal head losses.
        contrastive_weight: λ of the M3Co / Soft-CLIP term between encoder features (0 = off).
        mixup_phase: fraction of training that uses M3Co before switching to Soft-CLIP.
        modality_dropout: modality -> drop rate applied in training mode.
        normalize: input scaling fitted by :meth:`fit`: ``standard``, ``minmax`` or None.
        input_dropout: dropout rate on the normalised input features of every modality in
            training mode (0 = off); regularises wide, few-sample inputs such as omics.
        prediction: what :meth:`predict` returns. ``fused``: the fusion head's output.
            ``ensemble``: per row, the mean of the fusion head's probabilities and those of the
            unimodal auxiliary heads of the modalities present in that row (M3CoL predicts from
            fused and unimodal heads); needs ``aux_heads=True``. Regression values are averaged
            the same way.

    Example:
        >>> tasks = [TaskSpec("y", "multiclass", classes=(0, 1))]
        >>> m = FusionPredictor({"a": 5, "b": 3}, tasks, fusion="multimodn")
        >>> x = {"a": np.random.randn(20, 5), "b": np.random.randn(20, 3)}
        >>> _ = m.fit(x, {"y": [0, 1] * 10}, epochs=2)
        >>> m.predict(x)["y"].shape
        (20, 2)
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        tasks: Sequence[TaskSpec],
        fusion: str = "concat",
        fusion_kwargs: Mapping[str, Any] | None = None,
        encoder: str = "mlp",
        feature_dim: int = 64,
        encoder_hidden: int | None = None,
        encoder_dropout: float = 0.0,
        head_hidden: int | None = None,
        head_dropout: float = 0.0,
        head_depth: int = 1,
        aux_heads: bool = False,
        aux_weight: float = 1.0,
        contrastive_weight: float = 0.0,
        mixup_phase: float = 0.33,
        modality_dropout: Mapping[str, float] | None = None,
        normalize: str | None = "standard",
        input_dropout: float = 0.0,
        prediction: str = "fused",
    ):
        super().__init__()
        if encoder not in ("mlp", "identity"):
            raise ConfigError(f"encoder must be 'mlp' or 'identity', got {encoder!r}")
        if normalize not in ("standard", "minmax", None):
            raise ConfigError(f"normalize must be 'standard', 'minmax' or None, got {normalize!r}")
        if not 0.0 <= input_dropout < 1.0:
            raise ConfigError(f"input_dropout must be in [0, 1), got {input_dropout}")
        if prediction not in ("fused", "ensemble"):
            raise ConfigError(f"prediction must be 'fused' or 'ensemble', got {prediction!r}")
        if prediction == "ensemble" and not aux_heads:
            raise ConfigError("prediction='ensemble' averages the unimodal heads; it needs aux_heads=True")
        if len(tasks) == 0:
            raise ConfigError("FusionPredictor needs at least one task")
        if isinstance(head_depth, bool) or not isinstance(head_depth, int) or head_depth < 1:
            raise ConfigError(f"head_depth must be an integer >= 1, got {head_depth!r}")
        if head_depth > 1 and head_hidden is None:
            raise ConfigError("head_depth > 1 needs head_hidden (the width of the hidden layers)")
        self.input_dims = dict(input_dims)
        self.names = tuple(self.input_dims)
        self.tasks = tuple(tasks)
        self.fusion_name = fusion
        self.fusion_kwargs = dict(fusion_kwargs or {})
        self.encoder_kind, self.feature_dim = encoder, feature_dim
        self.encoder_hidden, self.encoder_dropout = encoder_hidden, encoder_dropout
        self.head_hidden, self.head_dropout = head_hidden, head_dropout
        self.head_depth = head_depth
        self.aux_weight, self.contrastive_weight = aux_weight, contrastive_weight
        self.mixup_phase = mixup_phase
        self.dropout_rates = dict(modality_dropout or {})
        self.normalize = normalize
        self.input_dropout, self.prediction = input_dropout, prediction
        self.scalers = nn.ModuleDict({m: _Scaler(d) for m, d in self.input_dims.items()})
        if encoder == "mlp":
            hid = feature_dim if encoder_hidden is None else encoder_hidden
            self.encoders = nn.ModuleDict(
                {m: _mlp_encoder(d, hid, feature_dim, encoder_dropout) for m, d in self.input_dims.items()}
            )
            fdims = {m: feature_dim for m in self.names}
        else:
            self.encoders = nn.ModuleDict({m: nn.Identity() for m in self.names})
            fdims = dict(self.input_dims)
        _ensure_fusion_registered()
        self.fusion = lookup("fusion", fusion)(fdims, **self.fusion_kwargs)
        self.heads = _task_heads(self.fusion.output_dim, self.tasks, head_hidden, head_dropout, head_depth)
        self.aux = (
            nn.ModuleDict(
                {
                    m: _task_heads(fdims[m], self.tasks, head_hidden, head_dropout, head_depth)
                    for m in self.names
                }
            )
            if aux_heads
            else None
        )
        self.progress = 0.0  # fraction of training done; selects M3Co vs Soft-CLIP

    # ----------------------------------------------------------------------------- config / io
    def config(self) -> dict[str, Any]:
        """Plain kwargs that rebuild this model (saved as config.json)."""
        return {
            "input_dims": self.input_dims,
            "tasks": [t.to_dict() for t in self.tasks],
            "fusion": self.fusion_name,
            "fusion_kwargs": self.fusion_kwargs,
            "encoder": self.encoder_kind,
            "feature_dim": self.feature_dim,
            "encoder_hidden": self.encoder_hidden,
            "encoder_dropout": self.encoder_dropout,
            "head_hidden": self.head_hidden,
            "head_dropout": self.head_dropout,
            "head_depth": self.head_depth,
            "aux_heads": self.aux is not None,
            "aux_weight": self.aux_weight,
            "contrastive_weight": self.contrastive_weight,
            "mixup_phase": self.mixup_phase,
            "modality_dropout": self.dropout_rates,
            "normalize": self.normalize,
            "input_dropout": self.input_dropout,
            "prediction": self.prediction,
        }

    def save(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` atomically into ``directory``."""
        from safetensors.torch import save

        directory = Path(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(directory / "model.safetensors", save(state))
        atomic_write_json(
            directory / "config.json",
            {"format": FORMAT, "version": FORMAT_VERSION, "config": self.config()},
        )

    @classmethod
    def load(cls, directory: str | Path) -> FusionPredictor:
        """Rebuild a model saved by :meth:`save`.

        Raises:
            CheckpointError: missing files, a foreign format, or weights that do not fit.
        """
        from safetensors.torch import load

        directory = Path(directory)
        try:
            meta = json.loads((directory / "config.json").read_text())
            blob = (directory / "model.safetensors").read_bytes()
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read fusion predictor from {directory}: {e}") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{directory}/config.json is not a {FORMAT} config")
        if meta.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{directory}: unsupported version {meta.get('version')!r}")
        cfg = dict(meta["config"])
        cfg["tasks"] = [TaskSpec.from_dict(t) for t in cfg["tasks"]]
        model = cls(**cfg)
        try:
            model.load_state_dict(load(blob))
        except (RuntimeError, Exception) as e:
            raise CheckpointError(f"{directory}/model.safetensors does not fit its config: {e}") from e
        model.eval()
        return model

    # ----------------------------------------------------------------------------- model
    def forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        present: Mapping[str, torch.Tensor] | None = None,
        order: Sequence[str] | None = None,
    ) -> PredictorOutput:
        """Predict every task.

        Args:
            inputs: modality -> (B, F_m) raw features (NaN rows count as absent; omitted
                modalities are absent).
            present: modality -> (B,) bool; omitted means present where the input is not NaN.
            order: MultiModN step order for this call.

        Returns:
            PredictorOutput.
        """
        present = {} if present is None else present
        unknown = set(inputs) - set(self.names)
        if unknown:
            raise DataError(f"unknown modalities {sorted(unknown)}; known: {list(self.names)}")
        b = next(iter(inputs.values())).shape[0] if inputs else next(iter(present.values())).shape[0]
        dev = next(self.parameters()).device
        feats: dict[str, torch.Tensor] = {}
        mask: dict[str, torch.Tensor] = {}
        for m in self.names:
            x = inputs.get(m)
            if x is None:
                mask[m] = torch.zeros(b, dtype=torch.bool, device=dev)
                continue
            x = x.to(dev, torch.float32)
            p = present.get(m)
            pm = torch.ones(b, dtype=torch.bool, device=dev) if p is None else p.to(dev).bool()
            pm = pm & ~torch.isnan(x).any(dim=1)
            x = torch.where(pm[:, None], x, torch.zeros((), device=dev))
            mask[m] = pm
            z = self.scalers[m](x)  # (B, F_m)
            if self.input_dropout > 0:  # skipped at 0 so the default draws no extra random numbers
                z = nn.functional.dropout(z, self.input_dropout, self.training)
            feats[m] = self.encoders[m](z)  # (B, F)
        if self.training and self.dropout_rates:
            mask = drop_modalities(mask, self.dropout_rates)
        fkw = {} if order is None else {"order": order}
        fo: FusionOutput = self.fusion(feats, mask, **fkw)
        logits = self.heads(fo.fused)
        step_logits = self.heads(fo.states) if fo.states is not None else None
        aux = {m: self.aux[m](feats[m]) for m in feats} if self.aux is not None else None
        return PredictorOutput(logits, step_logits, aux, feats, mask, fo)

    def loss(self, out: PredictorOutput, targets: Mapping[str, Target]) -> LossOutput:
        """Training loss: task loss (per step for MultiModN) + regulariser + aux + contrastive."""
        fo = out.fusion
        if out.step_logits is not None and fo.step_mask is not None:
            compat = bool(getattr(self.fusion, "reference_compat", False))
            main = multistep_task_loss(self.tasks, out.step_logits, fo.step_mask, targets, compat)
        else:
            main = task_loss(self.tasks, out.logits, targets)
        total = main.loss
        metrics = dict(main.metrics)
        if fo.regularizer is not None:
            total = total + fo.regularizer
            metrics["regularizer"] = float(fo.regularizer.detach())
        if out.aux_logits is not None:
            for m, lg in out.aux_logits.items():
                aux = task_loss(self.tasks, lg, targets, row_mask=out.present[m], prefix=f"aux_{m}_")
                total = total + self.aux_weight * aux.loss
                metrics.update(aux.metrics)
        if self.contrastive_weight > 0 and len(out.features) >= 2:
            con = self._contrastive(out)
            total = total + self.contrastive_weight * con
            metrics["contrastive"] = float(con.detach())
        metrics["loss"] = float(total.detach())
        return LossOutput(total, metrics)

    def _contrastive(self, out: PredictorOutput) -> torch.Tensor:
        names = list(out.features)
        # Cyclic pairs 1->2, 2->3, ..., M->1 (for two modalities: both directions).
        pairs = [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))]
        total = next(iter(out.features.values())).new_zeros(())
        for a, b in pairs:
            both = (out.present[a] & out.present[b]).nonzero(as_tuple=True)[0]
            if both.numel() < 2:
                continue
            ea, eb = out.features[a][both], out.features[b][both]
            if self.progress < self.mixup_phase:
                perm, lam = sample_mixup(both.numel())
                total = total + m3co_loss(ea, eb, perm, lam)
            else:
                total = total + soft_clip_loss(ea, eb)
        return total

    # ----------------------------------------------------------------------------- training
    def fit_scalers(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Fit input normalisation on non-NaN training rows (no-op when ``normalize`` is None)."""
        for m in self.names:
            sc = self.scalers[m]
            assert isinstance(sc, _Scaler)  # for the type checker; built in __init__
            x = inputs.get(m)
            if self.normalize is None or x is None:
                continue
            x = np.asarray(x, dtype=np.float64)
            rows = x[~np.isnan(x).any(axis=1)]
            if len(rows) == 0:
                continue
            if self.normalize == "standard":
                shift, scale = rows.mean(0), rows.std(0)
            else:
                shift, scale = rows.min(0), rows.max(0) - rows.min(0)
            # Constant features would divide by zero; leave them unscaled.
            scale = np.where(scale > 1e-12, scale, 1.0)
            sc.shift.copy_(torch.as_tensor(shift, dtype=torch.float32))
            sc.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))

    def fit(
        self,
        inputs: Mapping[str, np.ndarray],
        labels: Mapping[str, Sequence[Any]],
        present: Mapping[str, np.ndarray] | None = None,
        epochs: int = 100,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
        seed: int = 0,
        ema_decay: float | None = None,
    ) -> list[dict[str, float]]:
        """Train with Adam; returns per-epoch mean metrics.

        Args:
            inputs: modality -> (N, F_m) arrays (NaN rows = absent).
            labels: label column -> N values (None/NaN = missing).
            present: optional modality -> (N,) bool arrays.
            epochs: passes over the data.
            lr: Adam learning rate.
            weight_decay: Adam weight decay.
            batch_size: None trains full batch (the M3CoL ROSMAP recipe).
            seed: seeds shuffling, dropout and mixup.
            ema_decay: when given, keep an exponential moving average of the weights
                (``avg = d·avg + (1-d)·w`` after every step) and load it at the end; reduces the
                run-to-run variance of small full-batch problems.

        Raises:
            DataError: a label outside the known classes (row and column named).
        """
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        self.fit_scalers(inputs)
        n = _num_rows(inputs)
        x = {m: torch.as_tensor(np.asarray(v, dtype=np.float32)) for m, v in inputs.items()}
        p = (
            None
            if present is None
            else {m: torch.as_tensor(np.asarray(v, dtype=bool)) for m, v in present.items()}
        )
        targets = encode_targets(self.tasks, labels)
        bs = n if batch_size is None else batch_size
        opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        history = []
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {ema_decay}")
        ema = None if ema_decay is None else [q.detach().clone() for q in self.parameters()]
        keep = 0.0 if ema_decay is None else ema_decay
        self.train()
        for epoch in range(epochs):
            self.progress = epoch / max(epochs, 1)
            perm = torch.randperm(n, generator=gen) if bs < n else torch.arange(n)
            sums: dict[str, float] = {}
            steps = 0
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                out = self(
                    {m: v[idx] for m, v in x.items()},
                    None if p is None else {m: v[idx] for m, v in p.items()},
                )
                lo = self.loss(out, {k: Target(t.y[idx], t.mask[idx]) for k, t in targets.items()})
                opt.zero_grad(set_to_none=True)
                lo.loss.backward()
                opt.step()
                if ema is not None:
                    with torch.no_grad():
                        for a, q in zip(ema, self.parameters(), strict=True):
                            a.lerp_(q, 1.0 - keep)
                for k, v in lo.metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
            history.append({k: v / steps for k, v in sums.items()})
            if not math.isfinite(history[-1].get("loss", 0.0)):
                raise DataError(f"training diverged at epoch {epoch} (loss is not finite); lower lr")
        if ema is not None:
            with torch.no_grad():
                for a, q in zip(ema, self.parameters(), strict=True):
                    q.copy_(a)
        self.progress = 1.0
        self.eval()
        return history

    @torch.no_grad()
    def predict(
        self,
        inputs: Mapping[str, np.ndarray],
        present: Mapping[str, np.ndarray] | None = None,
        batch_size: int = 1024,
    ) -> dict[str, np.ndarray]:
        """Task -> (N, C) probabilities (softmax/sigmoid) or (N, 1) regression values."""
        self.eval()
        n = _num_rows(inputs)
        chunks: dict[str, list[np.ndarray]] = {t.name: [] for t in self.tasks}
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            x = {m: torch.as_tensor(np.asarray(v[sl], dtype=np.float32)) for m, v in inputs.items()}
            p = (
                None
                if present is None
                else {m: torch.as_tensor(np.asarray(v[sl], dtype=bool)) for m, v in present.items()}
            )
            out = self(x, p)
            for t in self.tasks:
                chunks[t.name].append(self.output_probabilities(t, out).numpy())
        return {k: np.concatenate(v) for k, v in chunks.items()}

    def output_probabilities(self, spec: TaskSpec, out: PredictorOutput) -> torch.Tensor:
        """(B, C) probabilities of one task from a forward pass, as set by ``prediction``.

        ``fused``: the fusion head's probabilities. ``ensemble``: row i averages the fusion head
        and the unimodal heads of the modalities present in row i with equal weights, so a row
        with only one modality present averages two predictions and an all-absent row keeps the
        fusion head's (prior) prediction.
        """
        fused = probabilities(spec, out.logits[spec.name])  # (B, C)
        if self.prediction == "fused" or out.aux_logits is None:
            return fused
        total, count = fused.clone(), torch.ones_like(fused[:, :1])  # (B, C), (B, 1)
        for m, lg in out.aux_logits.items():
            w = out.present[m].to(fused.dtype)[:, None]  # (B, 1); absent rows add nothing
            total = total + w * probabilities(spec, lg[spec.name])
            count = count + w
        return total / count

    @torch.no_grad()
    def explain(self, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
        """MultiModN's per-step predictions for one sample.

        Args:
            sample: modality -> 1-D feature vector, or None when absent.

        Returns:
            One dict per step, first the prior (initial state) then each modality in order:
            ``{"step": name, "present": bool, "probabilities": {task: [..]},
            "contribution": {task: [..]}}``; contribution is the change from the previous step
            (zero for an absent modality).

        Raises:
            ConfigError: the fusion is not ``multimodn``.
        """
        if self.fusion_name != "multimodn":
            raise ConfigError(f"explain() needs multimodn fusion; this model uses {self.fusion_name!r}")
        self.eval()
        x = {
            m: torch.as_tensor(np.asarray(v, dtype=np.float32)).reshape(1, -1)
            for m, v in sample.items()
            if v is not None
        }
        out = self(x) if x else self({}, {m: torch.zeros(1, dtype=torch.bool) for m in self.names})
        assert out.step_logits is not None and out.fusion.step_mask is not None and out.fusion.order
        steps = ("prior",) + out.fusion.order
        result: list[dict[str, Any]] = []
        prev: dict[str, np.ndarray] = {}
        for t, name in enumerate(steps):
            probs = {
                spec.name: probabilities(spec, out.step_logits[spec.name][t, 0]).numpy()
                for spec in self.tasks
            }
            contrib = {k: (v - prev[k]) if k in prev else np.zeros_like(v) for k, v in probs.items()}
            result.append(
                {
                    "step": name,
                    "present": bool(out.fusion.step_mask[t, 0]),
                    "probabilities": {k: v.tolist() for k, v in probs.items()},
                    "contribution": {k: v.tolist() for k, v in contrib.items()},
                }
            )
            prev = probs
        return result


def _num_rows(inputs: Mapping[str, np.ndarray]) -> int:
    sizes = {m: len(v) for m, v in inputs.items()}
    if not sizes or len(set(sizes.values())) != 1:
        raise DataError(f"every modality needs the same number of rows, got {sizes}")
    return next(iter(sizes.values()))


def _ensure_fusion_registered() -> None:
    import modalign.fusion  # noqa: F401  (runs the @register decorators)
