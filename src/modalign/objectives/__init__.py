"""Objectives: pure functions in :mod:`functional` plus registered ``nn.Module`` wrappers."""

from modalign.objectives import contrastive  # noqa: F401  (registers objectives)
from modalign.objectives.base import CombinedObjective, Objective

__all__ = ["CombinedObjective", "Objective"]
