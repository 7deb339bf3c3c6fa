"""modalign: align, fuse, distill, retrieve and evaluate any number of modalities.

The public API is ``__all__``; everything heavy is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Hit",
    "Index",
    "MultimodalModel",
    "__version__",
    "evaluate_samples",
    "load",
    "load_config",
    "run_training",
]

if TYPE_CHECKING:
    from modalign.config import load_config
    from modalign.evaluation.evaluate import evaluate_samples
    from modalign.model import MultimodalModel, load
    from modalign.search import Hit, Index
    from modalign.workflows.train import run_training

_LAZY = {
    "Hit": "modalign.search",
    "Index": "modalign.search",
    "MultimodalModel": "modalign.model",
    "load": "modalign.model",
    "load_config": "modalign.config",
    "evaluate_samples": "modalign.evaluation.evaluate",
    "run_training": "modalign.workflows.train",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import modalign` (and `modalign --help`) does not import torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modalign' has no attribute {name!r}")
