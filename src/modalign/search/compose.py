"""One query vector from several modalities' embeddings: a weighted sum, or Symile's product.

- ``sum``: ``q = Σ_m w_m e_m`` then L2-normalised; ranking by ``<q, c>`` is ranking by the
  weighted sum of the per-modality cosines ``Σ_m w_m <e_m, c>``.
- ``symile``: ``q = ⊙_m e_m`` (elementwise product), so ``<q, c> = Σ_d Π_m e_{m,d} c_d``, the
  multilinear inner product (MIP) Symile trains (*Contrasting with Symile: Simple Model-Agnostic
  Representation Learning for Unlimited Modalities*, NeurIPS 2024, arXiv 2411.01053). The index
  scores unit vectors, so the product is normalised for the search and the hits' scores are
  multiplied back by its norm: they are the MIP itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modalign.errors import ConfigError

MODES = ("sum", "symile")


def compose(
    embeddings: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None, mode: str = "sum"
) -> tuple[np.ndarray, float]:
    """``(unit query (D,), score scale)`` from ``{name: unit embedding (D,)}``.

    Hits scored against the unit query, times ``scale``, give the composed score: the weighted sum
    of cosines up to a positive factor (``sum``; scale 1), or the exact MIP (``symile``).

    Raises:
        ConfigError: no embedding, an unknown mode, a weight for a modality not queried, weights
            with ``symile`` (the product has none), or a composed vector of zero.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown query combination {mode!r}; choose one of {', '.join(MODES)}")
    if not embeddings:
        raise ConfigError("a query needs at least one of text, image or audio")
    weights = dict(weights or {})
    unknown = set(weights) - set(embeddings)
    if unknown:
        raise ConfigError(f"weights for {sorted(unknown)}: the query has only {sorted(embeddings)}")
    if mode == "symile" and weights:
        raise ConfigError("symile multiplies the modalities' embeddings: weights do not apply")
    vectors = [np.asarray(embeddings[m], dtype=np.float64).reshape(-1) for m in sorted(embeddings)]
    if mode == "sum":
        q = sum(weights.get(m, 1.0) * v for m, v in zip(sorted(embeddings), vectors))
    else:
        q = np.prod(np.stack(vectors), axis=0)
    norm = float(np.linalg.norm(q))
    if norm == 0.0 or not np.isfinite(norm):
        raise ConfigError("the composed query is the zero vector (weights cancel out); change the weights")
    return (np.asarray(q) / norm).astype(np.float32), (norm if mode == "symile" else 1.0)
