"""Shared pieces of the serving tests: a tiny saved model, an index of the synthetic images, a client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modalign.config import load_config
from modalign.data.dataset import fit_transforms, split_rows
from modalign.data.manifest import read_manifest
from modalign.model import MultimodalModel


@dataclass
class Served:
    """A model, the index it embedded and what the tests compare against."""

    model_dir: Path
    model: MultimodalModel
    index_dir: Path
    index: Any
    root: Path  # corpus root (the dataset folder)
    ids: list[str]
    vectors: np.ndarray  # (N, D) what was indexed, unit rows
    metadata: list[dict[str, Any]]


def tiny_model(dataset: Path, out: Path) -> MultimodalModel:
    """The untrained image/audio/text model of the shared tiny config, saved to ``out``."""
    from conftest import tiny_config

    from modalign.workflows.build import build_model, build_sources

    cfg = load_config(raw=tiny_config(dataset))
    manifest = read_manifest(dataset)
    sources = build_sources(cfg)
    fit_transforms(manifest, sources, split_rows(manifest, "split", "train"))
    model = build_model(cfg, sources)
    model.save(out)
    return MultimodalModel.from_pretrained(out)


_BUILT: dict[Path, Served] = {}


def shared_served(dataset: Path, tmp_path_factory: Any) -> Served:
    """One :class:`Served` per dataset for the whole session (the tests only read it)."""
    if dataset not in _BUILT:
        _BUILT[dataset] = build_served(dataset, tmp_path_factory.mktemp("served"))
    return _BUILT[dataset]


def build_served(dataset: Path, work: Path) -> Served:
    from modalign.search import Index

    model = tiny_model(dataset, work / "model")
    rows = [json.loads(line) for line in dataset.read_text().splitlines()]
    ids = [r["id"] for r in rows]
    meta = [{"image": r["image"], "label": r["label"], "split": r["split"], "text": r["text"]} for r in rows]
    vectors = model.encode([r["image"] for r in rows], "image", base_dir=dataset.parent)
    info = {"modality": "image", "corpus_root": str(dataset.parent), "media_column": "image"}
    index = Index.build(work / "index", vectors, ids, meta, kind="flat", info=info)
    return Served(work / "model", model, work / "index", index, dataset.parent, ids, vectors, meta)


def brute_force(
    vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> list[int]:
    """Row numbers of the k best cosine scores (ties: lower row first), optionally among ``allowed``."""
    q = query / np.linalg.norm(query)
    scores = vectors.astype(np.float64) @ q.astype(np.float64)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    order = sorted(range(len(scores)), key=lambda r: (-scores[r], r))
    return [r for r in order if np.isfinite(scores[r])][:k]


def assert_brute_force_results(
    results: list[dict[str, Any]],
    served: Served,
    query: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    exclude: int | None = None,
) -> None:
    """``results`` are a correct top-k: the same ids as brute force except where scores tie
    within float32 rounding, every score is the item's true cosine, every item passes the filter."""
    if exclude is not None:
        allowed = np.ones(len(served.ids), bool) if allowed is None else allowed.copy()
        allowed[exclude] = False
    expected = brute_force(served.vectors, query, k, allowed)
    q = query / np.linalg.norm(query)
    row = {i: r for r, i in enumerate(served.ids)}
    got = [row[h["id"]] for h in results]
    assert len(got) == len(expected)
    true = served.vectors[got] @ q
    np.testing.assert_allclose([h["score"] for h in results], true, atol=1e-5)
    np.testing.assert_allclose(true, served.vectors[expected] @ q, atol=1e-5)  # same score at each rank
    if allowed is not None:
        assert all(allowed[r] for r in got)
    for g, e in zip(got, expected):  # ids differ only inside a tie
        if g != e:
            assert abs(float(served.vectors[g] @ q) - float(served.vectors[e] @ q)) < 1e-5


class ServerThread:
    """A real uvicorn server on a free 127.0.0.1 port, in a thread, for browser and load tests."""

    def __init__(self, app: Any):
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
