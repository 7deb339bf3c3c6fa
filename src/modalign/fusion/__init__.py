"""Fusion of per-modality features into predictions, robust to missing modalities.

Importing this package registers the fusion modules ``concat``, ``attention``, ``multimodn`` and
``lego`` under the registry kind ``"fusion"``.
"""

from modalign.fusion import attention, concat, lego, multimodn  # noqa: F401  (registers)
from modalign.fusion.base import FusionModule, FusionOutput
from modalign.fusion.heads import TaskHeads
from modalign.fusion.missing import modality_dropout, shuffled_order

__all__ = [
    "FusionModule",
    "FusionOutput",
    "TaskHeads",
    "build_fusion",
    "modality_dropout",
    "shuffled_order",
]


def build_fusion(name: str, dims: dict[str, int], **kwargs) -> FusionModule:
    """Construct the registered fusion ``name`` with ``dims`` and plain kwargs."""
    from modalign.registry import lookup

    return lookup("fusion", name)(dims, **kwargs)
