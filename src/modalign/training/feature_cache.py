"""Frozen-feature cache: the outputs of frozen encoders, computed once per sample and reused.

A tower whose encoder has no trainable parameter (``trainable: projector`` or ``none``, no LoRA)
and whose transform does not augment computes the same features in every epoch, so they are
computed once, before training, and the training step runs only the projectors. Evaluation of
the same run reuses them too (the loaded splits collate them).

On disk (``model.feature_cache_dir``) features are kept per *namespace* (a directory named by the
hash of the encoder's identity: registered name, keywords, the digest of its weights, and the
processor's settings) and keyed inside it by the SHA-256 of the input's content (a file's bytes,
a text's value; the processed tensor for in-memory arrays), so a second run, another split or an
evaluation reuses them without decoding the inputs again, and a changed transform or changed
weights miss. Each batch of new features is one safetensors shard written atomically under a
name derived from its keys: two runs at once at worst write the same shard twice, never a torn
file; an unreadable shard is ignored (its features are computed again).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from modalign.data.dataset import ModalitySource
from modalign.data.manifest import Manifest
from modalign.data.transforms._files import resolve_file
from modalign.data.transforms.base import Transform
from modalign.errors import DataError
from modalign.io import atomic_write_bytes, atomic_write_json
from modalign.model import MultimodalModel
from modalign.types import ENCODER_FEATURES


class CachedFeatures(Transform):
    """Reads a payload's cached (F,) encoder features; collates ``{ENCODER_FEATURES: (B, F)}``.

    A payload without features (its input failed to load) is loaded with the original transform,
    which raises the same :class:`DataError` it always did.
    """

    def __init__(self, original: Transform, features: dict[str, torch.Tensor], dim: int):
        self.kind, self.original, self.features, self.dim = original.kind, original, features, dim

    def load(self, payload: Any, base_dir: Path) -> torch.Tensor | None:
        found = self.features.get(payload_key(payload, base_dir))
        return found if found is not None else self.original.load(payload, base_dir)

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.dim)

    def collate(self, items: Sequence[torch.Tensor | None]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {ENCODER_FEATURES: torch.stack([self.placeholder() if x is None else x for x in items])}


class FeatureStore:
    """Features of one encoder identity: in memory, and in ``directory`` when given."""

    def __init__(self, directory: Path | None, identity: dict[str, Any]):
        self.directory = directory
        self.items: dict[str, torch.Tensor] = {}
        if directory is None:
            return
        from safetensors.torch import load_file

        if not (directory / "identity.json").is_file():
            atomic_write_json(directory / "identity.json", identity)
        for shard in sorted(directory.glob("*.safetensors")):
            try:
                self.items.update(load_file(str(shard)))
            except Exception as e:  # a foreign or damaged file: recompute instead
                print(f"warning: feature cache shard {shard} is unreadable ({e}); ignored", file=sys.stderr)

    def put(self, new: dict[str, torch.Tensor]) -> None:
        self.items.update(new)
        if self.directory is None or not new:
            return
        from safetensors.torch import save

        name = hashlib.sha256("".join(sorted(new)).encode()).hexdigest()[:32]
        data = save({k: v.contiguous() for k, v in new.items()})
        atomic_write_bytes(self.directory / f"{name}.safetensors", data)


def frozen_modalities(model: MultimodalModel) -> list[str]:
    """Modalities whose encoder is frozen and whose transform does not augment (cacheable)."""
    out = []
    for name, spec in model.specs.items():
        encoder = model.tower(name).encoder
        frozen = not any(p.requires_grad for p in encoder.parameters())
        if frozen and spec.lora is None and not spec.transform.augments():
            out.append(name)
    return out


def cache_frozen_features(
    model: MultimodalModel,
    manifest: Manifest,
    sources: Sequence[ModalitySource],
    rows: Sequence[int],
    cache_dir: Path | None,
    batch_size: int = 64,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[ModalitySource]:
    """Compute (or read) the frozen encoders' features of ``rows``; returns sources that load them.

    Args:
        rows: manifest rows whose payloads are embedded (every split that will be loaded).
        cache_dir: root of the on-disk cache; None keeps features in memory for this run only.
        progress: called with ``(modality, done, total)`` while features are computed.
    """
    frozen = set(frozen_modalities(model))
    out = []
    for src in sources:
        if src.name not in frozen:
            out.append(src)
            continue
        tower = model.tower(src.name)
        identity = encoder_identity(model, src.name)
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
        store = FeatureStore(None if cache_dir is None else Path(cache_dir) / digest, identity)
        features = _features(tower.encoder, src, manifest, rows, store, batch_size, progress)
        out.append(ModalitySource(src.name, src.column, CachedFeatures(src.transform, features, _dim(tower))))
    return out


def encoder_identity(model: MultimodalModel, name: str) -> dict[str, Any]:
    """What the cached features depend on: encoder name and keywords, weights digest, processor."""
    spec = model.specs[name]
    kwargs = {k: v for k, v in spec.encoder_kwargs.items() if k not in ("load_weights", "path", "package")}
    settings = {k: v for k, v in spec.transform.settings().items() if k != "path"}
    return {
        "encoder": spec.encoder,
        "encoder_kwargs": kwargs,
        "weights": weights_digest(model.tower(name).encoder),
        "processor": spec.transform.processor or spec.kind,
        "processor_settings": settings,
    }


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tensor_digest(x: torch.Tensor) -> str:
    """SHA-256 of a processed input tensor (its shape, dtype and bytes)."""
    t = x.detach().cpu().contiguous()
    data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(f"{tuple(t.shape)}:{t.dtype}".encode() + data).hexdigest()


def content_digest(payload: Any, base_dir: Path, kind: str) -> str | None:
    """SHA-256 of what a manifest cell holds: a file's bytes (image/audio/time-series paths), else
    the cell's JSON value; None for values without a JSON form (arrays, images: their processed
    tensor is hashed instead).

    Raises:
        DataError: a file path that does not resolve to a readable file.
    """
    if kind in ("image", "audio", "timeseries") and isinstance(payload, (str, Path)):
        path = resolve_file(payload, base_dir)
        try:
            return hashlib.sha256(b"file:" + path.read_bytes()).hexdigest()
        except OSError as e:
            raise DataError(f"cannot read ({e})", reason="missing_file", path=str(path)) from None
    try:
        text = json.dumps(payload, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(b"value:" + text.encode()).hexdigest()


def payload_key(payload: Any, base_dir: Path) -> str:
    """An in-run key of a manifest cell (its JSON text; file paths made absolute)."""
    return json.dumps([str(base_dir), payload], sort_keys=True, default=str)


@torch.no_grad()
def _features(
    encoder: torch.nn.Module,
    src: ModalitySource,
    manifest: Manifest,
    rows: Sequence[int],
    store: FeatureStore,
    batch_size: int,
    progress: Callable[[str, int, int], None] | None,
) -> dict[str, torch.Tensor]:
    """payload key -> (F,) features of every loadable payload of ``rows`` (bad ones left out)."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out: dict[str, torch.Tensor] = {}
    todo: list[tuple[str, str, torch.Tensor]] = []  # (payload key, content hash, processed input)

    def flush() -> None:
        if not todo:
            return
        x = src.transform.collate([t for _, _, t in todo])
        x = {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
        feats = encoder(x).float().cpu()  # (b, F)
        new = {h: f.clone() for (_, h, _), f in zip(todo, feats)}
        store.put(new)
        for key, h, _ in todo:
            out[key] = new[h]
        todo.clear()

    payloads = {
        payload_key(p, manifest.base_dir): p for i in rows if (p := src.payload(manifest.rows[i])) is not None
    }
    for n, (key, payload) in enumerate(payloads.items()):
        try:
            h = content_digest(payload, manifest.base_dir, src.transform.kind)
            if h is not None and h in store.items:  # a hit: the input is not even decoded
                out[key] = store.items[h]
                continue
            x = src.transform.load(payload, manifest.base_dir)
        except DataError:
            continue  # reported when the split is loaded
        if x is None:
            continue
        h = h if h is not None else tensor_digest(x)
        if h in store.items:
            out[key] = store.items[h]
        else:
            todo.append((key, h, x))
            if len(todo) == batch_size:
                flush()
        if progress is not None:
            progress(src.name, n + 1, len(payloads))
    flush()
    encoder.train(was_training)
    return out


def _dim(tower: torch.nn.Module) -> int:
    return int(tower.encoder.output_dim)  # type: ignore[union-attr, arg-type]
