"""Builders: turn sections of an :class:`ExperimentConfig` into plain library objects."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import modalign.fusion  # noqa: F401  (registers the fusion modules)
from modalign.config import ExperimentConfig
from modalign.data.dataset import ModalitySource
from modalign.data.transforms import Transform
from modalign.encoders import build_processor, encoder_kwargs
from modalign.encoders.tuning import set_trainable
from modalign.errors import ConfigError
from modalign.model import MultimodalModel
from modalign.model_specs import FusionSpec, ModalitySpec
from modalign.objectives import CombinedObjective
from modalign.registry import lookup
from modalign.tasks import TaskSpec, infer_classes


def build_sources(cfg: ExperimentConfig) -> list[ModalitySource]:
    """Unfitted transforms for every modality, keyed to its manifest column.

    A pretrained encoder brings its own processor (tokenizer, input size and normalisation); the
    kind's default transform is for from-scratch encoders.
    """
    return [
        ModalitySource(
            name,
            cfg.column(name),
            build_processor(
                m.encoder_name,
                m.kind,
                dict(m.encoder_params),
                m.transform.model_dump(),
                m.transform.model_dump(exclude_unset=True),
            ),
        )
        for name, m in cfg.modalities.items()
    ]


def build_fusion_spec(cfg: ExperimentConfig, train_labels: Mapping[str, Sequence[Any]]) -> FusionSpec | None:
    """The fusion section with task classes resolved from the training labels when not given."""
    f = cfg.fusion
    if f is None:
        return None
    tasks = []
    for t in f.tasks:
        spec = TaskSpec(t.name, t.kind, t.column, t.classes, t.weight)
        tasks.append(infer_classes(spec, train_labels.get(t.label_column, [])))
    return FusionSpec(
        f.name,
        dict(f.params),
        tuple(tasks),
        head_hidden=f.head_hidden,
        aux_heads=f.aux_heads,
        head_depth=f.head_depth,
        head_dropout=f.head_dropout,
        input=f.input,
        prediction=f.prediction,
    )


def build_model(
    cfg: ExperimentConfig, sources: list[ModalitySource], fusion: FusionSpec | None = None
) -> MultimodalModel:
    """The model for ``cfg`` from *fitted* transforms (they give the encoders' input shapes)."""
    transforms: dict[str, Transform] = {s.name: s.transform for s in sources}
    specs = []
    for name, m in cfg.modalities.items():
        t = transforms[name]
        kwargs = encoder_kwargs(m.encoder_name, m.preset, dict(m.encoder_params), t.encoder_kwargs())
        lora = None if m.lora is None else m.lora.model_dump()
        specs.append(ModalitySpec(name, m.kind, cfg.column(name), m.encoder_name, kwargs, t, lora))
    return MultimodalModel(specs, cfg.model.embed_dim, cfg.model.head, fusion, aligned=bool(cfg.objectives))


def apply_tuning(cfg: ExperimentConfig, model: MultimodalModel) -> dict[str, float]:
    """Freeze what each modality's ``trainable`` says; returns modality -> learning-rate multiplier."""
    for name, m in cfg.modalities.items():
        t = m.trainable
        set_trainable(model.tower(name), t if isinstance(t, str) else t.model_dump())
    return {name: m.lr_scale for name, m in cfg.modalities.items() if m.lr_scale != 1.0}


# objective params that may say "teacher": the loaded teacher's logit scale (or its 1/s)
TEACHER_SCALE_PARAMS = {"teacher_scale": lambda s: s, "init_temperature": lambda s: 1.0 / s}


def build_objective(cfg: ExperimentConfig, teacher: MultimodalModel | None = None) -> CombinedObjective:
    """The weighted sum of the configured objectives over the configured modalities.

    ``teacher_scale: teacher`` / ``init_temperature: teacher`` take the scale ``s`` the teacher was
    trained at (``teacher.logit_scale``, saved in its model directory) and ``1/s``. Without a
    ``teacher`` (checking a config before the teacher is loaded) they stand at ``s = 1``.
    """
    names = list(cfg.modalities)
    objectives = {}
    for o in cfg.objectives:
        cls = lookup("objective", o.name)
        params = _teacher_params(cfg, o.name, dict(o.params), teacher)
        if "total_steps" in inspect.signature(cls).parameters:  # schedules over the whole run
            params.setdefault("total_steps", cfg.trainer.max_steps)
        try:
            objectives[o.name] = cls(names, **params)
        except TypeError as e:  # an unknown or missing keyword in objectives[].params
            raise ConfigError(f"objectives: {o.name}.params {dict(o.params)} are invalid: {e}") from None
    return CombinedObjective(objectives, {o.name: o.weight for o in cfg.objectives})


def _teacher_params(
    cfg: ExperimentConfig, name: str, params: dict[str, Any], teacher: MultimodalModel | None
) -> dict[str, Any]:
    """``params`` with every ``"teacher"`` value of TEACHER_SCALE_PARAMS resolved."""
    asked = [k for k in TEACHER_SCALE_PARAMS if params.get(k) == "teacher"]
    if not asked:
        return params
    where = f"objectives: {name}.params.{asked[0]}: teacher"
    if cfg.model.teacher is None:
        raise ConfigError(f"{where} needs a teacher model: set model.teacher to its run or model directory")
    scale = 1.0 if teacher is None else teacher.logit_scale
    if scale is None:
        raise ConfigError(
            f"{where}: the teacher {cfg.model.teacher} saved no logit scale (a model saved before "
            "modalign recorded it, or trained without a learned scale); give the number instead, "
            "e.g. the last clip/logit_scale in the teacher run's metrics.jsonl"
        )
    return {**params, **{k: TEACHER_SCALE_PARAMS[k](scale) for k in asked}}


def check_params(cfg: ExperimentConfig) -> None:
    """Check encoder, fusion and objective params against their constructors, before any data is read.

    Unknown keywords fail with the accepted ones and close matches; objectives are built once, so
    their value checks run too. Keywords the data provides (input shapes) are not the user's.

    Raises:
        ConfigError: naming the config field.
    """
    for name, m in cfg.modalities.items():
        _check_keywords(
            f"modalities.{name}.encoder_params", lookup("encoder", m.encoder_name), m.encoder_params
        )
    if cfg.fusion is not None:
        _check_keywords("fusion.params", lookup("fusion", cfg.fusion.name), cfg.fusion.params, skip=1)
    for i, o in enumerate(cfg.objectives):
        _check_keywords(f"objectives.{i}.params", lookup("objective", o.name), o.params, skip=1)
    build_objective(cfg)


def _check_keywords(where: str, cls: Any, params: Mapping[str, Any], skip: int = 0) -> None:
    """``params`` must be keywords of ``cls`` (its first ``skip`` positional ones are not the user's)."""
    sig = list(inspect.signature(cls).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig):
        return
    accepted = [p.name for p in sig if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"{where}: {cls.__name__} has no parameter {key!r}{hint} (accepted: {', '.join(accepted)})"
            )
