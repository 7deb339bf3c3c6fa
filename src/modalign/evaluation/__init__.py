"""Evaluation: retrieval, zero-shot classification, uncertainty and reports.

Public metric functions work on plain arrays (imported on first use, so importing the package
does not import torch): :func:`retrieval_metrics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["retrieval_metrics"]

if TYPE_CHECKING:
    from modalign.evaluation.retrieval import retrieval_metrics


def __getattr__(name: str) -> Any:
    if name == "retrieval_metrics":
        from modalign.evaluation.retrieval import retrieval_metrics

        return retrieval_metrics
    raise AttributeError(f"module 'modalign.evaluation' has no attribute {name!r}")
