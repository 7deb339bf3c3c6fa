"""``modalign train``: config -> data -> model -> training -> saved model -> test report."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
import yaml

from modalign.config import ExperimentConfig
from modalign.data.dataset import SampleSet, check_presence, fit_transforms, split_rows
from modalign.data.loading import load_split, open_manifest
from modalign.data.manifest import Manifest, cell, ensure_extracted
from modalign.data.sources.pack import INDEX, shard_paths
from modalign.data.sources.shards import ShardBatches
from modalign.data.sources.stream import StreamedSamples, stream_split
from modalign.errors import ConfigError, OutputError, TrainingError
from modalign.evaluation.embedded import EmbeddedSplit, embed_streamed
from modalign.evaluation.evaluate import evaluate_model, manifest_prompts
from modalign.evaluation.report import print_table, write_report
from modalign.io import atomic_write_bytes
from modalign.model import MultimodalModel
from modalign.model import load as load_model
from modalign.model_io import load_safetensors
from modalign.training.checkpoint import list_checkpoints
from modalign.training.distributed import World, joined_from_env
from modalign.training.feature_cache import CachedFeatures, cache_frozen_features
from modalign.training.prediction import check_labels, prediction_loss
from modalign.training.shard_source import ShardSource
from modalign.training.teacher import add_teacher_embeddings, check_same_inputs, inherit_from_teacher
from modalign.training.trainer import Trainer
from modalign.workflows.build import (
    apply_tuning,
    build_fusion_spec,
    build_model,
    build_objective,
    build_sources,
    check_params,
)
from modalign.workflows.check import key_columns
from modalign.workflows.coverage import (
    coverage_problems,
    refuse,
    sample_coverage,
    split_coverage,
    task_columns,
)
from modalign.workflows.rundir import check_free_space, open_run


def run_training(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    manifest: Manifest | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` and return the test-split metrics (also in report.json).

    Writes ``config.yaml``, ``transforms/``, ``checkpoints/``, ``metrics.jsonl``, ``model/`` and
    ``report.json``. ``out_dir`` is locked while the run lasts and must be new or empty unless
    ``resume`` (continue from the newest checkpoint, with the saved transforms, after checking the
    config against the saved one; no checkpoint yet = a fresh run) or ``overwrite`` (delete the
    earlier run first): the rules are in :mod:`modalign.workflows.rundir`, checked before any data
    is read. ``manifest`` replaces ``cfg.data.manifest`` with rows already in memory
    (:meth:`Manifest.from_rows`).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank trains its slice of each global batch; rank 0
    alone locks and writes the run directory, evaluates and returns the metrics (other ranks: {}).
    """
    with joined_from_env(cfg.trainer.device) as world:
        return _run(cfg, Path(out_dir), resume, overwrite, show_progress, on_step, manifest, world)


def _run(
    cfg: ExperimentConfig,
    out: Path,
    resume: bool,
    overwrite: bool,
    show_progress: bool,
    on_step: Callable[[int, dict[str, float]], None] | None,
    manifest: Manifest | None,
    world: World,
) -> dict[str, Any]:
    check_params(cfg)  # before any data is read
    if not world.is_main:
        try:
            world.barrier()  # rank 0 has locked and checked the directory (an --overwrite run is gone)
        except RuntimeError:  # gloo/NCCL: the peer closed the connection
            raise TrainingError(
                f"process {world.rank}: process 0 stopped before training (its error is above)"
            ) from None
        resume = resume and bool(list_checkpoints(out / "checkpoints"))
        return _train(cfg, out, resume, False, on_step, manifest, world)
    with open_run(out, cfg.model_dump(mode="json"), resume=resume, overwrite=overwrite) as run:
        if world.size > 1 and manifest is None:  # extract once, before the other ranks read it
            ensure_extracted(cfg.data.manifest, cfg.data.archive)
        world.barrier()
        try:
            return _train(cfg, out, run.resume, show_progress, on_step, manifest, world)
        except OutputError as e:
            raise OutputError(
                f"{e}\nthe run in {out} is intact up to its newest checkpoint: continue it with --resume"
            ) from None


def _train(
    cfg: ExperimentConfig,
    out: Path,
    resume: bool,
    show_progress: bool,
    on_step: Callable[[int, dict[str, float]], None] | None,
    manifest: Manifest | None,
    world: World,
) -> dict[str, Any]:
    started = time.perf_counter()
    d = cfg.data
    if manifest is None:
        manifest = open_manifest(d.manifest, d.archive)
    transforms_dir = out / "transforms"
    teacher = load_model(cfg.model.teacher) if cfg.model.teacher is not None else None  # model or run dir
    if resume:  # from a checkpoint (open_run found one)
        model = MultimodalModel.from_config_dir(transforms_dir)  # fitted transforms and task classes
    else:
        train_rows = split_rows(manifest, d.split_column, d.train_split)
        if not train_rows:
            raise ConfigError(
                f"data.train_split={d.train_split!r} selects no rows of {d.manifest} "
                f"(column data.split_column={d.split_column!r})"
            )
        if d.test_split is not None and not split_rows(manifest, d.split_column, d.test_split):
            raise ConfigError(  # else the run would end with an empty report
                f"data.test_split={d.test_split!r} selects no rows of {d.manifest} "
                f"(column data.split_column={d.split_column!r}); name the test split, or set "
                "data.test_split: null to train without a test evaluation"
            )
        sources = build_sources(cfg)
        warnings = check_presence(manifest, sources, train_rows)  # a modality never in training
        errors, more = coverage_problems(cfg, split_coverage(cfg, manifest, sources))
        refuse(errors)  # a test split the evaluation cannot use: before training, not after it
        for warning in warnings + more:
            if world.is_main:
                print(warning, file=sys.stderr)
        fit_transforms(manifest, sources, train_rows)
        columns = {t.label_column for t in cfg.fusion.tasks} if cfg.fusion is not None else set()
        labels = {c: [cell(manifest.rows[i], c) for i in train_rows] for c in columns}
        torch.manual_seed(cfg.trainer.seed)  # model init is a function of the seed
        model = build_model(cfg, sources, build_fusion_spec(cfg, labels))
        if teacher is not None and cfg.model.inherit is not None:
            inherit = cfg.model.inherit
            inherit_from_teacher(model, teacher, inherit.every_k_layers, inherit.layers)
        if world.is_main:  # other ranks fitted the same transforms (deterministic) and write nothing
            # config.yaml first: from here on the directory holds a run (resumable, or --overwrite)
            atomic_write_bytes(out / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json")).encode())
            model.save_transforms(transforms_dir)
    if world.is_main:
        check_free_space(out, _bytes_needed(cfg, model, out), "this run")
    lr_scales = apply_tuning(cfg, model)
    sources = model.sources()
    if teacher is not None and cfg.model.teacher_on_augmented:
        check_same_inputs(model, teacher, "model.teacher_on_augmented feeds it the student's batches")
    if cfg.model.cache_frozen_features and not cfg.model.teacher_on_augmented:
        splits = [s for s in (d.train_split, d.val_split, d.test_split) if s is not None]
        rows = [i for s in splits for i in split_rows(manifest, d.split_column, s)]
        sources = cache_frozen_features(model, manifest, sources, rows, cfg.model.feature_cache_dir)
    keep = {d.label_column, cfg.eval.match_on}
    if model.fusion_spec is not None:
        keep |= {t.label_column for t in model.fusion_spec.tasks}
    common: dict[str, Any] = dict(
        split_column=d.split_column,
        id_column=d.id_column,
        keep_columns=sorted(c for c in keep if c is not None),
        scalar_columns=key_columns(cfg),  # a list-valued label is a bad row, not a crash in evaluation
        on_error=d.on_error,
        show_progress=show_progress,
    )
    train = _training_rows(cfg, manifest, sources, common, world)
    val, test = (_evaluation_rows(cfg, manifest, sources, common, s) for s in (d.val_split, d.test_split))
    cached = {s.name: s.transform for s in sources if isinstance(s.transform, CachedFeatures)}
    for split, samples in (("train", train), ("val", val), ("test", test)):
        if samples is not None:
            check_labels(model, cast(SampleSet, samples), split)  # streamed: its label columns
            if isinstance(samples, SampleSet):
                samples.collate_with.update(cached)  # evaluation collates with the model's sources
    if isinstance(test, SampleSet) and len(test):  # every test file of a modality may have been bad
        loaded = sample_coverage(test, d.test_split or "", task_columns(cfg))
        refuse([e for e in coverage_problems(cfg, {"test": loaded})[0] if e.reason != "empty_split"])

    if teacher is not None and not cfg.model.teacher_on_augmented:
        assert isinstance(train, SampleSet)  # a streamed split with a teacher is refused
        teacher_sources = add_teacher_embeddings(train, manifest, teacher)
        if val is not None:
            add_teacher_embeddings(cast(SampleSet, val), manifest, teacher)  # in memory with train
        sources = sources + teacher_sources
    objective = build_objective(cfg, teacher)
    f = cfg.fusion
    trainer = Trainer(
        model,
        objective,
        train,
        sources,
        out,
        cfg.trainer,
        val=val if val is not None and len(val) else None,
        prediction=prediction_loss(model, f.aux_weight) if f is not None else None,
        modality_dropout=dict(f.modality_dropout) if f is not None else None,
        show_progress=show_progress,
        on_step=on_step,
        world=world,
        lr_scales=lr_scales,
        teacher=teacher if cfg.model.teacher_on_augmented else None,
    )
    state = trainer.fit(resume=resume)
    if not world.is_main:
        return {}
    model.logit_scale = objective.logit_scale()
    if cfg.trainer.select_best and state.best_step > 0:
        model.load_state_dict(load_safetensors(trainer.best_path))
        best_objective = trainer.best_objective_path
        if best_objective.exists():
            objective.load_state_dict(load_safetensors(best_objective))
            model.logit_scale = objective.logit_scale()
        else:  # a run resumed from a version that kept only the best weights: scale unknown
            model.logit_scale = None
    model.save(out / "model")

    metrics: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    if test is not None and len(test):
        prompts = None
        text = cfg.eval.zeroshot_text or next(
            (n for n, m in cfg.modalities.items() if m.kind == "text"), None
        )
        if d.label_column is not None and text is not None:
            prompts = manifest_prompts(
                manifest,
                split_column=d.split_column,
                split=d.train_split,
                text_column=cfg.column(text),
                label_column=d.label_column,
            )
        evaluated: SampleSet | EmbeddedSplit = (
            test
            if isinstance(test, SampleSet)
            else embed_streamed(
                model, test, cfg.eval.batch_size, features=f is not None and f.input == "features"
            )
        )
        metrics, extras = evaluate_model(
            model,
            evaluated,
            match_on=cfg.eval.match_on,
            ks=cfg.eval.ks,
            label_column=d.label_column,
            zeroshot_text=text,
            class_prompts=prompts,
            batch_size=cfg.eval.batch_size,
            robustness=robustness_settings(cfg, seed=cfg.trainer.seed),
            higher_order=any(o.name == "symile" for o in cfg.objectives),
        )
        if show_progress:
            print_table(metrics, title=f"{d.test_split} split")
    metrics.update(skip_counts({"train": train, "val": val, "test": test}))
    meta = {
        "manifest": str(manifest.path),
        "split": d.test_split,
        "match_on": cfg.eval.match_on or "id",
        "n_test": len(evaluated) if test is not None and len(test) else 0,
        "train_seconds": logged_train_seconds(out, fallback=time.perf_counter() - started),
        "steps": cfg.trainer.max_steps,
        "best_step": state.best_step if state.best_step > 0 else None,
        "model_step": state.best_step if cfg.trainer.select_best and state.best_step > 0 else state.step,
    }
    write_report(out / "report.json", metrics, {**meta, **extras})
    return metrics


def streams(cfg: ExperimentConfig, manifest: Manifest) -> bool:
    """True when the run reads its splits on the fly (``data.source`` stream or shards, or auto
    above ``data.stream_above`` training rows) rather than preprocessing them into memory."""
    d = cfg.data
    if d.source != "auto":
        return d.source != "memory"
    return len(split_rows(manifest, d.split_column, d.train_split)) > d.stream_above


def _training_rows(
    cfg: ExperimentConfig, manifest: Manifest, sources: list[Any], common: dict[str, Any], world: World
) -> SampleSet | StreamedSamples | ShardSource:
    """The training split in memory, streamed from the manifest, or from shards (:func:`streams`)."""
    d = cfg.data
    if d.source == "shards":
        return shard_source(cfg, sources, common["keep_columns"], world)
    if not streams(cfg, manifest):
        return load_split(manifest, sources, d.train_split, **common)
    if cfg.model.teacher is not None:
        raise ConfigError("model.teacher needs the training split in memory: set data.source: memory")
    return stream_split(manifest, sources, d.train_split, workers=d.workers, **common)


def _evaluation_rows(
    cfg: ExperimentConfig, manifest: Manifest, sources: list[Any], common: dict[str, Any], split: str | None
) -> SampleSet | StreamedSamples | None:
    """The validation or test split (None when not configured): streamed from the manifest when the
    training split streams (also from shards), else in memory."""
    if split is None:
        return None
    if streams(cfg, manifest):
        return stream_split(manifest, sources, split, workers=cfg.data.workers, **common)
    return load_split(manifest, sources, split, **common)


def shard_source(cfg: ExperimentConfig, sources: list[Any], keep: list[str], world: World) -> ShardSource:
    """``data.shards`` read by this rank: its slice of every global batch, from its own shards."""
    d, t = cfg.data, cfg.trainer
    if d.shards is None:
        raise ConfigError(
            "data.source: shards needs data.shards (a directory written by `modalign data pack`)"
        )
    if t.batch_size == "full" or cfg.model.teacher is not None:
        raise ConfigError("data.source: shards needs a numeric trainer.batch_size and no model.teacher")
    paths = shard_paths(d.shards)
    index = json.loads((Path(d.shards) / INDEX).read_text())
    samples = int(index["split_counts"].get(str(d.train_split), 0))
    if index.get("split_column") != d.split_column or samples == 0:
        raise ConfigError(
            f"data.shards={d.shards} holds no rows of split {d.train_split!r} in column {d.split_column!r}"
        )
    reader = ShardBatches(
        paths,
        sources,
        world.local_rows(int(t.batch_size)),
        seed=t.seed,
        rank=world.rank,
        world_size=world.size,
        workers=d.workers,
        buffer_size=d.shuffle_buffer,
        id_column=d.id_column,
        keep_columns=keep,
        split_column=d.split_column,
        split=d.train_split,
    )
    return ShardSource(reader, samples, world)


def logged_train_seconds(run: Path, fallback: float) -> float:
    """Seconds spent in training steps over every --resume segment (the last ``metrics.jsonl``
    line's ``train_seconds``); ``fallback`` when the log has none (no step was run)."""
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        return round(float(json.loads(lines[-1])["train_seconds"]), 1)
    except (IndexError, ValueError, KeyError, TypeError):
        return round(fallback, 1)


def _bytes_needed(cfg: ExperimentConfig, model: MultimodalModel, out: Path) -> int:
    """About what the run still writes: checkpoints (weights + 2 Adam moments, EMA), the model."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    t = cfg.trainer
    ckpt = weights * (3 + (t.ema_decay is not None))
    kept = sum(p.stat().st_size for p in list_checkpoints(out / "checkpoints"))
    return max(0, ckpt * (t.keep_checkpoints + 1) + weights * (1 + t.select_best) - kept)


def skip_counts(splits: dict[str, SampleSet | StreamedSamples | ShardSource | None]) -> dict[str, float]:
    """``data/skipped/{split}/{reason}`` counts (only the non-zero ones)."""
    out: dict[str, float] = {}
    for split, s in splits.items():
        for reason, n in Counter(s.skipped if s is not None else {}).items():
            out[f"data/skipped/{split}/{reason}"] = float(n)
    return out


def robustness_settings(cfg: ExperimentConfig, seed: int = 0) -> dict[str, Any]:
    """Keywords of ``evaluate_predictions`` from the config's ``eval.robustness`` section."""
    r = cfg.eval.robustness
    return {
        "robustness": r.enabled,
        "max_subsets": r.max_subsets,
        "mcar_rates": r.mcar_rates,
        "mnar_drop": r.mnar_drop,
        "explain_samples": r.explain_samples,
        "seed": seed,
    }
