"""The training loop: AdamW, warm-up + cosine, clipping, logging, validation, exact resume.

One process on the CPU or one device (``trainer.device``), or one of the ranks of a ``torchrun``
launch (:mod:`modalign.training.distributed`: each rank its slice of the global batch, objectives
on the gathered batch, averaged gradients, rank 0 writes), in fp32 or with autocast to bf16/fp16
(``trainer.precision``; fp16 adds a GradScaler). The model and objective move to the device once;
each batch is collated (or loaded by a streamed source's workers) and augmented per sample on the
CPU and moved once per step. Data order is a pure
function of (seed, epoch), every device's torch RNG (dropout) is checkpointed, and the learning
rate is a function of the step, so a run resumed from a checkpoint on the same device ends with
bit-identical weights to an uninterrupted one.

Non-finite guard: a step whose loss or gradient norm is NaN/inf is skipped (no optimizer step, no
weight-average update; with fp16 the GradScaler backs off its scale), and ``max_nonfinite_steps``
such steps in a row raise :class:`TrainingError`; so do non-finite weights, which are checked
after a skipped step and before every checkpoint or best-weights file is written. An update that
leaves the weights finite but huge shows up as a NaN loss on the next step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modalign.config import TrainerConfig
from modalign.data.augment import augment_per_sample, sample_seed
from modalign.data.dataset import ModalitySource, SampleSet, collate
from modalign.data.sources.stream import StreamedSamples
from modalign.encoders.tuning import lr_groups
from modalign.errors import TrainingError
from modalign.fusion.missing import modality_dropout
from modalign.io import atomic_write_bytes
from modalign.model import nonfinite_tensors
from modalign.objectives import CombinedObjective
from modalign.training.checkpoint import (
    TrainState,
    json_tensor,
    list_checkpoints,
    load_newest_checkpoint,
    save_checkpoint,
    save_weights,
    tensor_json,
)
from modalign.training.devices import autocast, check_precision, resolve_device
from modalign.training.distributed import GatheredObjective, RankStreamModel, World, rows_stream
from modalign.training.ema import WeightAverage
from modalign.training.grad_cache import cached_backward
from modalign.training.progress import TrainingProgress
from modalign.training.schedule import lr_at
from modalign.training.shard_source import ShardSource
from modalign.types import Batch, EmbeddingBatch, LossOutput

FAILED_KEY = "source/failed"  # checkpoint tensor: a streamed split's rows that failed to load (JSON)


class Trainer:
    """Train ``model`` with ``objective`` on preprocessed samples.

    Args:
        model: the model (its ``forward(batch)`` gives an :class:`EmbeddingBatch`).
        objective: the weighted objectives over the embeddings.
        train: training samples; ``sources`` are their modalities' transforms.
        out_dir: run directory; ``checkpoints/`` and ``metrics.jsonl`` are written there.
        config: the ``trainer`` section (every default lives in :class:`TrainerConfig`); its
            ``device`` and ``precision`` place ``model`` and ``objective`` (moved here, once).
        val: validation samples, in memory or streamed (mean loss every ``config.val_every`` steps).
        prediction: ``loss(emb, batch)`` of the prediction tasks of a fusion model, or None.
        modality_dropout: modality -> training-time drop rate.
        show_progress: Rich progress bar.
        on_step: called after every step with ``(step, metrics)``; an exception it raises stops
            training (tests use it to simulate a crash).
        world: this process among the ranks of a ``torchrun`` launch (default: the initialised
            process group, else one process). ``config.batch_size`` is the global batch; each rank
            takes its slice and the objective sees the gathered global batch
            (:mod:`modalign.training.distributed`); only rank 0 writes files.
        lr_scales: modality -> learning-rate multiplier of its tower (others: 1).
        teacher: a frozen model run on every (augmented) batch; its embeddings join the
            objectives' inputs as ``{name}.teacher`` (distillation on the student's views).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: CombinedObjective,
        train: SampleSet | StreamedSamples | ShardSource,
        sources: Sequence[ModalitySource],
        out_dir: Path,
        config: TrainerConfig | None = None,
        *,
        val: SampleSet | StreamedSamples | None = None,
        prediction: Callable[[EmbeddingBatch, Batch], LossOutput] | None = None,
        modality_dropout: dict[str, float] | None = None,
        show_progress: bool = True,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        world: World | None = None,
        lr_scales: dict[str, float] | None = None,
        teacher: nn.Module | None = None,
    ):
        self.config = cfg = config if config is not None else TrainerConfig()
        self.model, self.objective = model, objective
        self.train_set, self.val_set, self.sources = train, val, list(sources)
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.best_path = self.ckpt_dir / "best.safetensors"
        self.best_objective_path = self.ckpt_dir / "best_objective.safetensors"  # its logit scale
        self.max_steps, self.seed = cfg.max_steps, cfg.seed
        # "full" (or a size >= the training set): one batch of every row, in data order.
        full = cfg.batch_size == "full" or int(cfg.batch_size) >= len(train)
        self.batch_size = len(train) if full else int(cfg.batch_size)
        self.full_batch = full
        self.world = world if world is not None else World.current()
        self.world.local_rows(self.batch_size)  # ConfigError unless the ranks split it evenly
        self.loss_fn: Callable[[EmbeddingBatch], LossOutput] = (
            GatheredObjective(objective, self.world) if self.world.size > 1 else objective
        )
        self.embed: Callable[[Batch], EmbeddingBatch] = RankStreamModel(model, self.world)
        self.show_progress, self.on_step = show_progress, on_step
        self.micro_batch_size = cfg.micro_batch_size if cfg.accumulation == "cached" else None
        self.prediction, self.modality_dropout = prediction, modality_dropout or {}
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        check_precision(self.device, cfg.precision)  # fp16 on a CPU is refused here (ConfigError)
        model.to(self.device)
        objective.to(self.device)  # learnable loss-side state (logit scale, bias)
        self.teacher = teacher.to(self.device).eval().requires_grad_(False) if teacher is not None else None
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        self.params = [p for p in [*model.parameters(), *objective.parameters()] if p.requires_grad]
        self.optimizer = _optimizer(cfg, model, objective, lr_groups(model, lr_scales or {}))
        self.ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay is not None else None

    # --- data order ---------------------------------------------------------------------------

    def _batches_per_epoch(self) -> int:
        return max(1, len(self.train_set) // self.batch_size)

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if self.full_batch:  # a whole-set batch: shuffling would only permute its rows
            return torch.arange(len(self.train_set))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train_set), generator=g)

    def _batches(self, state: TrainState) -> Generator[tuple[TrainState, Batch, list[int]], None, None]:
        """This rank's slice of the batches from ``state`` on, with the position *after* each
        (drop-last epochs) and the per-sample augmentation seeds of its rows. A streamed training
        split (``data.source``) loads the same rows in DataLoader workers."""
        if isinstance(self.train_set, SampleSet):
            for (position, seeds), idx in self._plan(state):
                yield position, collate(self.train_set, idx, self.sources), seeds
        elif isinstance(self.train_set, ShardSource):  # each rank reads its own shards
            yield from self.train_set.batches(state, self.seed)
        else:
            for (position, seeds), batch in self.train_set.batches(self._plan(state)):
                yield position, batch, seeds

    def _plan(self, state: TrainState) -> Iterator[tuple[tuple[TrainState, list[int]], list[int]]]:
        epoch, k = state.epoch, state.batch_in_epoch
        per_epoch, b = self._batches_per_epoch(), min(self.batch_size, len(self.train_set))
        while True:
            order = self._epoch_order(epoch)
            while k < per_epoch:
                idx = self.world.my_rows(order[k * b : (k + 1) * b].tolist())
                k += 1
                yield (TrainState(0, epoch, k), [sample_seed(self.seed, epoch, i) for i in idx]), idx
            epoch, k = epoch + 1, 0

    # --- loop -----------------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> TrainState:
        """Train to ``max_steps`` (from the newest checkpoint when ``resume``); returns the end state."""
        state = TrainState(step=0, epoch=0, batch_in_epoch=0)
        torch.manual_seed(self.seed)  # dropout/mixup streams are a function of the seed
        if resume and list_checkpoints(self.ckpt_dir):
            extra: dict[str, torch.Tensor] = {}
            state = load_newest_checkpoint(  # a damaged newest file: the previous good one
                self.ckpt_dir, self.model, self.objective, self.optimizer, extra, scaler=self.scaler
            )
            if self.ema is not None:  # checkpoint tensors are read onto the CPU
                self.ema.load_state_dict(
                    {k: v.to(self.device) for k, v in _strip_prefix(extra, "ema/").items()}
                )
            if isinstance(self.train_set, ShardSource):  # the shard readers' exact positions
                self.train_set.load_state_tensors(extra)
            elif isinstance(self.train_set, StreamedSamples) and FAILED_KEY in extra:
                saved = tensor_json(extra[FAILED_KEY])
                self.train_set.failed.update({int(k): v for k, v in saved.items()})
        self.world.broadcast_state([self.model, self.objective])  # every rank starts from rank 0's
        main = self.world.is_main  # only rank 0 writes logs, checkpoints and best weights
        if main:
            self._trim_metrics(state.step)
        # seconds of training steps, summed over --resume segments (the kept log's last value)
        seconds_before, started = self._logged_seconds(), time.perf_counter()
        batches = self._batches(state)
        streak = 0  # steps in a row skipped for a non-finite loss or gradient
        with (
            self._progress(state.step) as advance,
            open(self.out_dir / "metrics.jsonl" if main else os.devnull, "a") as log,
        ):
            while state.step < self.max_steps:
                position, batch, seeds = next(batches)
                t0 = time.perf_counter()
                metrics = self._train_step(state.step, batch, seeds)
                rows = len(batch) * self.world.size
                metrics["samples_per_s"] = rows / max(time.perf_counter() - t0, 1e-9)
                state = dataclasses.replace(
                    state, step=state.step + 1, epoch=position.epoch, batch_in_epoch=position.batch_in_epoch
                )
                streak = streak + 1 if metrics["skipped"] else 0
                if streak:
                    self._check_divergence(state.step, metrics, streak)
                if self.val_set is not None and (
                    state.step % self.config.val_every == 0 or state.step == self.max_steps
                ):
                    metrics["val/loss"] = self.validate()
                    if metrics["val/loss"] < state.best_val:
                        state = dataclasses.replace(state, best_val=metrics["val/loss"], best_step=state.step)
                        if self.config.select_best and main:
                            self._check_finite_weights(state.step, "the best-validation weights")
                            save_weights(self.best_path, self.model)
                            save_weights(self.best_objective_path, self.objective)
                metrics["train_seconds"] = round(seconds_before + time.perf_counter() - started, 3)
                log.write(json.dumps({"step": state.step, **metrics}) + "\n")
                log.flush()
                checkpoint = state.step % self.config.checkpoint_every == 0 or state.step == self.max_steps
                extra = self._checkpoint_extra() if checkpoint else {}  # collective with shards
                if main and checkpoint:
                    self._check_finite_weights(state.step, "its checkpoint")
                    save_checkpoint(
                        self.ckpt_dir,
                        state,
                        self.model,
                        self.objective,
                        self.optimizer,
                        self.config.keep_checkpoints,
                        extra=extra,
                        scaler=self.scaler,
                    )
                advance(metrics)
                if self.on_step is not None:
                    self.on_step(state.step, metrics)
        batches.close()  # stops a streamed source's DataLoader workers
        self._join_failed()
        if self.ema is not None:
            self.ema.copy_to(self.model)
        self._check_finite_weights(state.step, "the model")
        return state

    def _checkpoint_extra(self) -> dict[str, torch.Tensor]:
        """Checkpoint tensors besides the model, objective and optimizer: weight average, readers."""
        extra = {} if self.ema is None else _prefixed(self.ema.state_dict(), "ema/")
        if isinstance(self.train_set, ShardSource):
            extra.update(self.train_set.state_tensors())
        elif isinstance(self.train_set, StreamedSamples):  # rows that failed before, for the report
            extra[FAILED_KEY] = json_tensor(self.world.union(self.train_set.failed))
        return extra

    def _join_failed(self) -> None:
        """Every rank's training rows that failed to load, on every rank (each loads its own rows)."""
        if isinstance(self.train_set, (StreamedSamples, ShardSource)):
            self.train_set.failed.update(self.world.union(self.train_set.failed))

    def _train_step(self, step: int, batch: Batch, seeds: Sequence[int] | None = None) -> dict[str, float]:
        """One optimizer step; returns the step's metrics (``skipped`` 1.0 for a non-finite step).

        A step whose loss or gradient norm is NaN/inf leaves the weights, the optimizer state and
        the weight average as they were (with fp16 the scaler still backs off its scale).
        """
        cfg = self.config
        lr = lr_at(
            step,
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            max_steps=cfg.max_steps,
            min_lr_ratio=cfg.min_lr_ratio,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.model.train()
        out = self.backward(batch, seeds)
        self.world.average_gradients(self.params)  # identity in one process
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled one
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            if cfg.grad_clip is not None
            else _grad_norm(self.params)
        )
        loss = self.world.all_mean(float(out.loss.detach()))  # differs by rank only with prediction tasks
        finite = math.isfinite(loss) and math.isfinite(grad_norm)
        if finite:
            self._optimizer_step()
        elif self.scaler is not None:
            self.scaler.update()  # backs off the scale (unscale_ recorded the inf); no step
        self.optimizer.zero_grad(set_to_none=True)
        if finite:
            self.objective.clamp_()
            if self.ema is not None:
                self.ema.update(self.model)
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "skipped": float(not finite), **out.metrics}

    def backward(self, batch: Batch, seeds: Sequence[int] | None = None) -> LossOutput:
        """Loss of ``batch`` with its gradients accumulated into ``.grad``.

        With ``accumulation="cached"`` the encoders run on micro-batches and the gradient is still
        exactly the full batch's (every negative counted; see ``grad_cache.cached_backward``).
        ``batch`` may be on the CPU: augmentation and modality dropout draw from the CPU RNG there,
        then the batch moves to the trainer's device. The forward passes and the loss run under
        ``trainer.precision``'s autocast; with fp16 the accumulated gradients are loss-scaled.
        ``seeds`` (one per row, from ``fit``) augment every row under its own seed, the same on
        any rank; without them the batch is augmented at once from the global RNG.
        """
        batch = self._augment(batch, seeds)
        if self.modality_dropout:
            with rows_stream(batch.ids, self.world):  # ranks draw for their own rows
                present = modality_dropout(batch.present, self.modality_dropout, keep_one=True)
            batch = dataclasses.replace(batch, present=present)
        batch = batch.to(self.device)  # the step's one host-to-device copy
        if self.micro_batch_size is None or self.micro_batch_size >= len(batch):
            with self._autocast():
                out = self.loss(batch)
            self._scaled(out.loss).backward()
            return out
        return cached_backward(
            self.embed,
            batch.split(self.micro_batch_size),
            self.loss_fn,
            forward_context=self._autocast,
            scale=self._scaled,
        )

    def _autocast(self) -> Any:
        """Autocast of forward passes and losses to ``trainer.precision`` (off for fp32)."""
        return autocast(self.device, self.config.precision)

    def _scaled(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to backpropagate: scaled by the fp16 GradScaler, else unchanged."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def _optimizer_step(self) -> None:
        """``optimizer.step()``; with fp16 through the scaler (skipped on inf/NaN gradients)."""
        if self.scaler is None:
            self.optimizer.step()
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _augment(self, batch: Batch, seeds: Sequence[int] | None = None) -> Batch:
        """Each modality's training-time augmentation (identity for most transforms), per sample
        under ``seeds`` when given. Dict inputs (a pretrained model's tokens, cached encoder
        features) are not augmented."""
        inputs = dict(batch.inputs)
        for s in self.sources:
            x = batch.inputs[s.name]
            # augments() False: augment is the identity (no RNG draw), so the per-row loop of
            # augment_per_sample (a reseed and a copy of every row) is skipped
            if isinstance(x, torch.Tensor) and s.transform.augments():
                augmented = (
                    s.transform.augment(x) if seeds is None else augment_per_sample(s.transform, x, seeds)
                )
                inputs[s.name] = augmented
        return dataclasses.replace(batch, inputs=inputs)

    def loss(self, batch: Batch) -> LossOutput:
        """Contrastive objectives on the embeddings plus, with fusion, the prediction tasks.

        With several ranks, the objectives see the global batch in training mode; in eval mode
        (validation, where every rank evaluates the whole validation set) only ``batch``.
        """
        objective = self.loss_fn if self.model.training else self.objective
        emb = self.embed(batch)
        if self.teacher is not None:
            with torch.no_grad():
                taught = self.teacher(batch)
            batch = dataclasses.replace(
                batch,
                inputs={**batch.inputs, **{f"{n}.teacher": e for n, e in taught.emb.items()}},
                present={**batch.present, **{f"{n}.teacher": p for n, p in taught.present.items()}},
            )
        extra = {
            k: v for k, v in batch.inputs.items() if k.endswith(".teacher") and isinstance(v, torch.Tensor)
        }
        if extra:  # frozen teacher embeddings computed once (training/teacher.py)
            present = {**emb.present, **{k: batch.present[k] for k in extra}}
            emb = EmbeddingBatch({**emb.emb, **extra}, present, emb.features)
        if self.prediction is None:
            return objective(emb)
        pred = self.prediction(emb, batch)  # first: heads draw dropout before the objectives' mixup
        out = objective(emb)
        return LossOutput(
            pred.loss + out.loss, {**out.metrics, **{f"task/{k}": v for k, v in pred.metrics.items()}}
        )

    @torch.no_grad()
    def validate(self) -> float:
        """Mean objective over fixed, in-order validation batches (eval mode)."""
        self.model.eval()
        total, count = 0.0, 0
        for batch in self._val_batches():
            with self._autocast():
                total += float(self.loss(batch.to(self.device)).loss)
            count += 1
        self.model.train()
        return total / max(count, 1)

    def _val_batches(self) -> Iterator[Batch]:
        """Full validation batches in row order (the last partial one is left out). A streamed
        split (``data.source``) loads the same rows in DataLoader workers, batch by batch, and
        leaves out the rows that fail to load, as the in-memory split does before batching."""
        val = self.val_set
        assert val is not None
        if not isinstance(val, SampleSet):
            yield from val.full_batches(self.batch_size)
            return
        n, b = len(val), min(self.batch_size, len(val))
        yield from (collate(val, list(range(k, k + b)), self.sources) for k in range(0, n - b + 1, b))

    # --- non-finite guard -----------------------------------------------------------------------

    def _check_divergence(self, step: int, metrics: dict[str, float], streak: int) -> None:
        """After a skipped step: stop when the weights are non-finite or the streak reaches the limit."""
        self._check_finite_weights(step, "anything more")
        limit = nonfinite_limit(self.config)
        if streak < limit:
            return
        steps = "1 step" if streak == 1 else f"{streak} steps"
        values = (("loss", metrics["loss"]), ("gradient norm", metrics["grad_norm"]))
        which = " and ".join(f"the {name} is {v}" for name, v in values if not math.isfinite(v))
        raise TrainingError(
            f"training diverged at step {step} of {self.max_steps}: {which}, non-finite for {steps} "
            f"in a row (trainer.max_nonfinite_steps={limit}); no non-finite update was applied. "
            f"{self._kept_and_fix()}"
        )

    def _check_finite_weights(self, step: int, what: str) -> None:
        """Raise before ``what`` is written when a weight of the model or objective is NaN/inf."""
        bad = nonfinite_tensors(self.model.state_dict())
        bad += [f"objective.{k}" for k in nonfinite_tensors(self.objective.state_dict())]
        if bad:
            names = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise TrainingError(
                f"training diverged at step {step} of {self.max_steps}: the weights are non-finite "
                f"(NaN/inf) in {names}; refusing to write {what}. {self._kept_and_fix()}"
            )

    def _kept_and_fix(self) -> str:
        cfg = self.config
        ckpts = list_checkpoints(self.ckpt_dir)
        kept = f"the last checkpoint, {ckpts[-1]}, is kept" if ckpts else "no checkpoint was written yet"
        clip = "null" if cfg.grad_clip is None else f"{cfg.grad_clip:g}"
        return (
            f"Nothing non-finite was saved: {kept}. Fix: lower trainer.lr (now {cfg.lr:g}), set or "
            f"lower trainer.grad_clip (now {clip}), or lengthen trainer.warmup_steps "
            f"(now {cfg.warmup_steps}), then train again."
        )

    # --- helpers --------------------------------------------------------------------------------

    def _trim_metrics(self, step: int) -> None:
        """Drop log lines of steps after ``step`` (they are about to be run again)."""
        path = self.out_dir / "metrics.jsonl"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            return
        keep = [ln for ln in path.read_text().splitlines() if _logged_step(ln) <= step]
        atomic_write_bytes(path, "".join(ln + "\n" for ln in keep).encode())

    def _logged_seconds(self) -> float:
        """``train_seconds`` of the last line of ``metrics.jsonl`` (0 for a new run)."""
        path = self.out_dir / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        try:
            return float(json.loads(lines[-1]).get("train_seconds", 0.0)) if lines else 0.0
        except (ValueError, TypeError, AttributeError):
            return 0.0

    def _progress(self, start: int) -> Any:
        return TrainingProgress(start, self.max_steps, enabled=self.show_progress)


def nonfinite_limit(config: TrainerConfig) -> int:
    """Non-finite steps in a row that stop training: ``max_nonfinite_steps``, else 1 (16 with fp16).

    With fp16 the GradScaler skips every step whose scaled gradient overflows and halves its scale,
    from 2**16: 16 skips in a row bring it down to 1, where the true gradient itself is non-finite.
    """
    if config.max_nonfinite_steps is not None:
        return config.max_nonfinite_steps
    return 16 if config.precision == "fp16" else 1


def _grad_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of the gradients (what ``clip_grad_norm_`` returns), without clipping."""
    norms = [
        torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float32) for p in params if p.grad is not None
    ]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def _logged_step(line: str) -> float:
    """The step of a metrics line; a line torn by a crash (not JSON) sorts last, so it is dropped."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _optimizer(
    cfg: TrainerConfig, model: nn.Module, objective: nn.Module, scales: dict[int, float]
) -> torch.optim.Optimizer:
    """AdamW with decoupled decay on matrices only, or Adam with L2 decay on every parameter.

    ``scales`` (``id(param) -> lr multiplier``) splits the groups further; each keeps ``lr_scale``.
    """
    # The fused kernel (one pass over each parameter) on the CPU and CUDA: the same update, ~5x
    # faster than the per-parameter loop on the CPU (benchmarks/train_throughput.py).
    device = next(iter(model.parameters()), torch.zeros(())).device
    fused = True if device.type in ("cpu", "cuda") else None
    if cfg.optimizer == "adam":
        params = [p for p in [*model.parameters(), *objective.parameters()] if p.requires_grad]
        groups = _scaled_groups([{"params": params, "weight_decay": cfg.weight_decay}], scales)
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)
    groups = _scaled_groups(_param_groups(model, objective, cfg.weight_decay), scales)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)


def _scaled_groups(groups: list[dict[str, Any]], scales: dict[int, float]) -> list[dict[str, Any]]:
    """Each group split by learning-rate multiplier (groups without scaled parameters unchanged)."""
    if not scales:
        return groups
    out = []
    for g in groups:
        by_scale: dict[float, list[nn.Parameter]] = {}
        for p in g["params"]:
            by_scale.setdefault(scales.get(id(p), 1.0), []).append(p)
        out += [{**g, "params": ps, "lr_scale": s} for s, ps in by_scale.items()]
    return out


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in tensors.items()}


def _strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _param_groups(model: nn.Module, objective: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: 1-D params (norms, biases) and loss-side params are exempt."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    no_decay += [p for p in objective.parameters() if p.requires_grad]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
