"""Builders: turn sections of an :class:`ExperimentConfig` into plain library objects."""

from __future__ import annotations

from modalign.config import ExperimentConfig
from modalign.data.dataset import ModalitySource
from modalign.data.transforms import Transform, build_transform
from modalign.encoders import encoder_kwargs
from modalign.errors import ConfigError
from modalign.model import ModalitySpec, MultimodalModel
from modalign.objectives import CombinedObjective
from modalign.registry import lookup


def build_sources(cfg: ExperimentConfig) -> list[ModalitySource]:
    """Unfitted transforms for every modality, keyed to its manifest column."""
    return [
        ModalitySource(name, cfg.column(name), build_transform(m.kind, m.transform.model_dump()))
        for name, m in cfg.modalities.items()
    ]


def build_model(cfg: ExperimentConfig, sources: list[ModalitySource]) -> MultimodalModel:
    """The model for ``cfg`` from *fitted* transforms (they give the encoders' input shapes)."""
    transforms: dict[str, Transform] = {s.name: s.transform for s in sources}
    specs = []
    for name, m in cfg.modalities.items():
        t = transforms[name]
        kwargs = encoder_kwargs(m.encoder_name, m.preset, dict(m.encoder_params), t.encoder_kwargs())
        specs.append(ModalitySpec(name, m.kind, cfg.column(name), m.encoder_name, kwargs, t))
    return MultimodalModel(specs, cfg.model.embed_dim, cfg.model.head)


def build_objective(cfg: ExperimentConfig) -> CombinedObjective:
    """The weighted sum of the configured objectives over the configured modalities."""
    names = list(cfg.modalities)
    objectives = {}
    for o in cfg.objectives:
        try:
            objectives[o.name] = lookup("objective", o.name)(names, **o.params)
        except TypeError as e:  # an unknown or missing keyword in objectives[].params
            raise ConfigError(f"objectives: {o.name}.params {dict(o.params)} are invalid: {e}") from None
    return CombinedObjective(objectives, {o.name: o.weight for o in cfg.objectives})
