"""MultimodalModel: one tower per named modality, saved as config.json + model.safetensors (model_io.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from modalign import model_io
from modalign.data.dataset import ModalitySource
from modalign.encoders import Encoder, ModalityTower, build_encoder
from modalign.encoders.tuning import add_lora, keep_frozen_in_eval
from modalign.errors import CheckpointError, ConfigError, DataError, NonFiniteError
from modalign.fusion.heads import TaskHeads, probabilities
from modalign.model_inputs import embed_inputs, embed_payloads
from modalign.model_io import list_names, nonfinite_tensors
from modalign.model_specs import FusionSpec, ModalitySpec, Prediction
from modalign.tasks import decode_outputs
from modalign.types import Batch, EmbeddingBatch


class MultimodalModel(nn.Module):
    """Encoders for any number of named modalities into one space of dimension ``embed_dim``.

    Example:
        >>> model = modalign.load("runs/quickstart/model")
        >>> emb = model.encode(["three", "seven"], modality="text")  # (2, D) unit rows
    """

    def __init__(
        self,
        specs: Sequence[ModalitySpec],
        embed_dim: int,
        head: str = "linear",
        fusion: FusionSpec | None = None,
        aligned: bool = True,
        logit_scale: float | None = None,
    ):
        super().__init__()
        self.specs = {s.name: s for s in specs}
        # False when no contrastive objective shaped the space (a fusion-only model): cross-modal
        # retrieval and zero-shot scores would be meaningless, so evaluation skips them.
        self.aligned = aligned
        # s = 1/τ the saved weights were trained at (CombinedObjective.logit_scale; None: no
        # learned scale, or a model saved before it was recorded); a distillation teacher's targets
        # use it (affinity_distillation teacher_scale: teacher)
        self.logit_scale = logit_scale
        self.embed_dim = embed_dim
        self.head = head
        self.towers = nn.ModuleDict({s.name: ModalityTower(_encoder(s), embed_dim, head) for s in specs})
        for s in specs:
            if s.lora is not None:
                add_lora(self.tower(s.name), **s.lora)
        self.fusion_spec = fusion
        if fusion is not None:
            from modalign.fusion import build_fusion

            self.fusion = build_fusion(fusion.name, {n: embed_dim for n in self.specs}, **fusion.params)
            heads: dict[str, Any] = {
                "hidden": fusion.head_hidden,
                "dropout": fusion.head_dropout,
                "depth": fusion.head_depth,
            }
            self.task_heads = TaskHeads(self.fusion.output_dim, fusion.tasks, **heads)
            if fusion.aux_heads:
                self.aux_heads = nn.ModuleDict(
                    {n: TaskHeads(embed_dim, fusion.tasks, **heads) for n in self.specs}
                )

    def train(self, mode: bool = True) -> MultimodalModel:
        """Train mode, except for frozen modules: they stay in eval mode (BatchNorm statistics and
        dropout untouched, see :mod:`modalign.encoders.tuning`)."""
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self)
        return self

    @property
    def modalities(self) -> list[str]:
        return list(self.specs)

    @property
    def device(self) -> torch.device:
        """Where the parameters are (the CPU for a model without any)."""
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _placed(self, device: str | torch.device | None) -> torch.device:
        """The device to run on: ``device`` (the model moves there and stays), else the model's."""
        if device is not None:
            try:
                self.to(device)
            except (RuntimeError, AssertionError, ValueError) as e:  # unknown or absent device
                raise ConfigError(f"cannot run the model on device {device!r}: {e}") from None
        return self.device

    def tower(self, name: str) -> ModalityTower:
        """The encoder + projection of modality ``name``."""
        return cast(ModalityTower, self.towers[name])

    def sources(self) -> list[ModalitySource]:
        return [s.source() for s in self.specs.values()]

    def forward(self, batch: Batch) -> EmbeddingBatch:
        """Embed every modality of ``batch``: ``emb[name]`` (B, D), zeros where absent.

        ``features[name]`` holds the same rows before normalisation (fusion on features, M3Co).
        """
        emb, feats = {}, {}
        for name in self.specs:
            if name in batch.inputs:
                emb[name], feats[name] = self.tower(name).embed(batch.inputs[name], batch.present[name])
        return EmbeddingBatch(emb, {n: batch.present[n] for n in emb}, feats)

    def fuse(self, emb: EmbeddingBatch) -> Prediction:
        """Task predictions from modality embeddings; absent modalities are skipped, not zeroed.

        Raises:
            ConfigError: the model has no fusion section.
        """
        if self.fusion_spec is None:
            raise ConfigError("this model has no fusion/tasks; train it with a `fusion:` section")
        x = emb.emb
        if self.fusion_spec.input == "features":
            if emb.features is None:
                raise ConfigError("fusion.input=features needs the towers' features; embed with model(batch)")
            x = emb.features
        dev = self.device  # embeddings may come from elsewhere (e.g. CPU arrays in evaluation)
        x = {m: v.to(dev) for m, v in x.items()}
        present = {m: emb.present[m].to(dev) for m in x}
        out = self.fusion(x, present)
        logits = self.task_heads(out.fused)
        steps = self.task_heads(out.states) if out.states is not None else None
        aux = None
        if self.fusion_spec.aux_heads:
            aux = {m: self.aux_heads[m](e) for m, e in x.items() if m in self.aux_heads}
        return Prediction(logits, steps, aux, out)

    def task_probabilities(
        self, pred: Prediction, present: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Task -> (B, C) probabilities (softmax / sigmoid) or (B, 1) values of a fused pass.

        ``fusion.prediction="fused"``: the fusion head's output. ``"ensemble"``: row i averages
        the fusion head and the auxiliary heads of the modalities present in row i with equal
        weights (M3CoL predicts from fused and unimodal heads); a row with no modality keeps the
        fusion head's (prior) prediction.
        """
        assert self.fusion_spec is not None
        out = {}
        for t in self.fusion_spec.tasks:
            fused = probabilities(t, pred.logits[t.name])  # (B, C)
            if self.fusion_spec.prediction == "fused" or pred.aux_logits is None:
                out[t.name] = fused
                continue
            total, count = fused.clone(), torch.ones_like(fused[:, :1])  # (B, C), (B, 1)
            for m, lg in pred.aux_logits.items():
                w = present[m].to(fused.device, fused.dtype)[:, None]  # (B, 1); absent rows add nothing
                total = total + w * probabilities(t, lg[t.name])
                count = count + w
            out[t.name] = total / count
        return out

    @torch.no_grad()
    def predict(
        self,
        inputs: Mapping[str, Sequence[Any]],
        batch_size: int = 64,
        base_dir: str | Path | None = None,
        device: str | torch.device | None = None,
    ) -> dict[str, np.ndarray]:
        """Task outputs for N samples given as ``{modality: [payload or None, ...]}``.

        Modalities left out, or ``None`` entries, are absent for that sample: the model predicts
        from what is there (the prior when nothing is). Returns task -> (N, C) probabilities
        (softmax / sigmoid) or (N, 1) regression values, as CPU arrays. ``device`` works as in
        :meth:`encode`.
        """
        with self._evaluating():
            emb = embed_inputs(self, inputs, batch_size, base_dir, self._placed(device))
            probs = self.task_probabilities(self.fuse(emb), emb.present)
        return {k: v.cpu().numpy() for k, v in probs.items()}

    @property
    def class_names(self) -> dict[str, list[Any] | None]:
        """Task -> its classes in output order (the columns of :meth:`predict`); None for
        regression. Empty for a model without a fusion section."""
        tasks = self.fusion_spec.tasks if self.fusion_spec is not None else ()
        return {t.name: None if t.classes is None else list(t.classes) for t in tasks}

    def predict_labels(
        self,
        inputs: Mapping[str, Sequence[Any]],
        batch_size: int = 64,
        base_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        threshold: float = 0.5,
    ) -> dict[str, list[Any]]:
        """:meth:`predict`, decoded: task -> per sample the most probable class (multiclass), the
        classes with probability >= ``threshold`` (multilabel) or the value (regression)."""
        probs = self.predict(inputs, batch_size, base_dir, device)
        assert self.fusion_spec is not None  # predict refused a model without tasks
        return {t.name: decode_outputs(t, probs[t.name], threshold) for t in self.fusion_spec.tasks}

    @torch.no_grad()
    def explain(self, sample: Mapping[str, Any], base_dir: str | Path | None = None) -> dict[str, Any]:
        """MultiModN's interpretability output for one sample: the prediction after each step.

        Returns ``{"order": [...], "steps": [{"after": None | modality, "evaluated": bool,
        "<task>": [probabilities]}, ...]}``; step 0 is the prior (initial state), and a step whose
        modality is absent carries the previous state over (``evaluated`` False).

        Raises:
            ConfigError: the fusion has no sequential states (only ``multimodn`` has them).
        """
        with self._evaluating():
            emb = embed_inputs(self, {m: [v] for m, v in sample.items()}, 1, base_dir, self.device)
            return self.explain_embedded(emb)

    @torch.no_grad()
    def explain_embedded(self, emb: EmbeddingBatch) -> dict[str, Any]:
        """:meth:`explain` for one already-embedded sample (a batch of one row)."""
        pred = self.fuse(emb)
        out = pred.fusion
        if pred.step_logits is None or out.states is None or out.step_mask is None:
            raise ConfigError(f"fusion {self.fusion.__class__.__name__} has no per-step predictions")
        assert self.fusion_spec is not None and out.order is not None
        steps = []
        for t in range(out.states.shape[0]):
            row: dict[str, Any] = {"after": None if t == 0 else out.order[t - 1]}
            row["evaluated"] = bool(out.step_mask[t, 0])
            for task in self.fusion_spec.tasks:
                row[task.name] = probabilities(task, pred.step_logits[task.name][t, 0]).tolist()
            steps.append(row)
        return {"order": list(out.order), "steps": steps}

    @torch.inference_mode()
    def encode(
        self,
        inputs: Sequence[Any],
        modality: str,
        batch_size: int = 64,
        base_dir: str | Path | None = None,
        device: str | torch.device | None = None,
    ) -> np.ndarray:
        """Embed raw inputs of one modality: (N, D) float32 L2-normalised rows (a CPU array).

        Args:
            inputs: what the modality's kind takes: file paths (relative to ``base_dir``, default
                the working directory), strings for text, arrays or PIL images for images,
                arrays or ``(array, sample_rate)`` for audio, dicts or number lists for tabular.
            modality: the modality *name* (e.g. "caption").
            batch_size: rows per forward pass.
            device: where to run, e.g. "cpu", "cuda", "cuda:1", "mps"; the model moves there and
                stays. None runs where the model is. Inputs are read and collated on the CPU.

        Raises:
            DataError: an input cannot be read (names its position and the file).
            ConfigError: ``device`` is unknown or absent on this machine.
            NonFiniteError: a row embeds to NaN/inf (names the rows and any non-finite weight).
        """
        if modality not in self.specs:
            raise DataError(
                f"unknown modality {modality!r}; this model has {self.modalities}", column=modality
            )
        if isinstance(inputs, (str, bytes)):
            raise DataError("encode expects a list of inputs, got a single string", column=modality)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        dev = self._placed(device)
        with self._evaluating():
            emb, _, _ = embed_payloads(
                self, modality, list(inputs), batch_size, base, allow_missing=False, device=dev
            )
        return emb.cpu().numpy()

    def nonfinite_error(
        self, modality: str, rows: Sequence[object], n: int, what: str, where: str
    ) -> NonFiniteError:
        """The error for ``rows`` (positions or sample ids, ``where`` says which) of ``n`` ``what``
        that embed to NaN/inf.

        Names the model's non-finite weights when there are some (then every row fails), else
        points at the inputs.
        """
        weights = nonfinite_tensors(self.state_dict())
        cause = (
            f"the model's weights are non-finite ({list_names(weights)}): load or train a sound model"
            if weights
            else "check those inputs for NaN/inf values (or a model that overflows on them)"
        )
        first = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        return NonFiniteError(
            f"modality {modality!r}: {len(rows)} of {n} {what} embed to non-finite values (NaN/inf), "
            f"first {where} {first}; non-finite embeddings are never scored: {cause}"
        )

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode inside, the previous mode restored after."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    # --- artifact (model_io.py) -------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The JSON description saved as ``config.json`` (rebuilds the architecture)."""
        return model_io.describe(self)

    def save_transforms(self, directory: str | Path) -> None:
        """Write config.json and the transforms' fitted state (no weights)."""
        model_io.save_transforms(self, directory)

    def save(self, directory: str | Path) -> None:
        """Write ``config.json``, ``model.safetensors`` and the transform files atomically.

        Weights are written from CPU copies, so the files load on any machine wherever the model ran.
        """
        model_io.save(self, directory)

    @classmethod
    def from_config_dir(cls, directory: str | Path) -> MultimodalModel:
        """Rebuild the architecture and transforms from ``config.json`` (random weights)."""
        return model_io.from_config_dir(cls, directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device | None = None
    ) -> MultimodalModel:
        """Load a saved model, on the CPU, then moved to ``device`` when given ("cuda", "mps", ...).

        Raises:
            CheckpointError: a missing, truncated or foreign model directory, or non-finite
                (NaN/inf) weights (named).
            ConfigError: ``device`` is unknown or absent on this machine.
        """
        return model_io.from_pretrained(cls, directory, device)


def _encoder(spec: ModalitySpec) -> Encoder:
    try:
        return build_encoder(spec.encoder, spec.encoder_kwargs)
    except TypeError as e:  # an unknown or missing keyword in encoder_params
        raise ConfigError(
            f"modalities.{spec.name}.encoder_params: {spec.encoder} rejects them: {e}"
        ) from None


def load(path: str | Path, device: str | torch.device | None = None) -> MultimodalModel:
    """Load a model directory written by ``MultimodalModel.save`` (or ``modalign train``).

    ``path`` may also be a run directory (``modalign train --out RUN``): its ``RUN/model`` is loaded.
    It is read on the CPU (whatever device it was trained on) and moved to ``device`` when given.

    Raises:
        CheckpointError: neither ``path`` nor ``path/model`` holds a model (says which was looked
            for, and that an unfinished run has checkpoints but no model yet).
    """
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        path = path / "model"  # a run directory
    elif not (path / "config.json").is_file():
        if (path / "checkpoints").is_dir():
            raise CheckpointError(
                f"{path} is a run directory without a finished model ({path / 'model'} is missing): "
                f"finish the run with `modalign train CONFIG --out {path} --resume`"
            )
        raise CheckpointError(
            f"no model in {path}: expected {path / 'config.json'} (a model directory) or "
            f"{path / 'model' / 'config.json'} (a run directory written by modalign train)"
        )
    return MultimodalModel.from_pretrained(path, device)
