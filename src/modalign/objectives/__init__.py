"""Objectives: pure functions in :mod:`functional` plus registered ``nn.Module`` wrappers.

Registered names (``modalign.registry.names("objective")``): clip, siglip, dcl, dclw, cwcl, symile,
m3co, soft_clip, m2mix, uniformity, alignment, cross_uniformity, cua, cuaxu, affinity_distillation,
feature_distillation, momentum_itc.
"""

from modalign.objectives import contrastive, distill, mixup, regularizers, symile  # noqa: F401
from modalign.objectives.base import CombinedObjective, Objective
from modalign.objectives.distill import ema_update_
from modalign.objectives.symile import SymileObjective

__all__ = ["CombinedObjective", "Objective", "SymileObjective", "ema_update_"]
