"""Pure loss functions on tensors: the functional core of every objective.

Conventions: rows of every embedding matrix are unit vectors ``(B, D)`` and row i of every
modality is sample i; ``logit_scale`` is the *scale* ``s = 1/τ``, already exponentiated (the
modules store ``θ = log s``, as CLIP does: Radford et al., *Learning Transferable Visual Models From
Natural Language Supervision*, arXiv 2103.00020); ``temperature`` arguments are ``τ``.
Every function accepts a ``present`` mask ``(B,)``: absent rows are deleted before anything is
computed, so they are neither anchors nor candidates.

The implementations live in small private modules grouped by family; this module is the one
public import point.
"""

from modalign.objectives._distill import affinity_distillation, feature_distillation, momentum_itc
from modalign.objectives._geometry import alignment, cross_uniformity, uniformity
from modalign.objectives._higher_order import mip, mip_scores, symile
from modalign.objectives._mixup import m2mix, m3co, m3co_targets, slerp, soft_clip
from modalign.objectives._pairwise import (
    cwcl,
    cwcl_weights,
    dcl,
    info_nce,
    pair_mask,
    siglip,
    soft_cross_entropy,
    zero_loss,
)

__all__ = [
    "affinity_distillation",
    "alignment",
    "cross_uniformity",
    "cwcl",
    "cwcl_weights",
    "dcl",
    "feature_distillation",
    "info_nce",
    "m2mix",
    "m3co",
    "m3co_targets",
    "mip",
    "mip_scores",
    "momentum_itc",
    "pair_mask",
    "siglip",
    "slerp",
    "soft_clip",
    "soft_cross_entropy",
    "symile",
    "uniformity",
    "zero_loss",
]
