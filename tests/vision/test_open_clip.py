"""The open_clip adapters against open_clip itself: a tiny CLIP built, saved and reloaded by
open_clip's own factory (``local-dir:``) is the reference for ``open_clip_image``/``open_clip_text``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _peers import need
from PIL import Image

import modalign
from modalign.config import load_config
from modalign.errors import ConfigError
from modalign.workflows.build import apply_tuning, build_model, build_sources

open_clip = need("open_clip")
safetensors_torch = need("safetensors.torch")

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PREPROCESS = {"mean": [0.4, 0.45, 0.5], "std": [0.2, 0.25, 0.3], "interpolation": "bicubic"}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """open_clip's local model directory: config + random weights saved as safetensors."""
    d = tmp_path_factory.mktemp("tiny_clip")
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY, "preprocess_cfg": PREPROCESS}))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{d}", load_weights=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors_torch.save_file(state, str(d / "open_clip_model.safetensors"))
    return d


def _model(modalities: dict[str, Any], **model: Any) -> modalign.MultimodalModel:
    cfg = load_config(raw={"data": {"manifest": "x.jsonl"}, "modalities": modalities, "model": model})
    return build_model(cfg, build_sources(cfg))


def _towers(clip_dir: Path, **extra: Any) -> dict[str, Any]:
    params = {
        "config": str(clip_dir / "open_clip_config.json"),
        "weights": str(clip_dir / "open_clip_model.safetensors"),
    }
    return {
        "image": {"kind": "image", "encoder": "open_clip_image", "encoder_params": params, **extra},
        "text": {"kind": "text", "encoder": "open_clip_text", "encoder_params": params, **extra},
    }


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    # square, and shorter side resized to 32 with a whole-pixel longer side (where a fraction, torchvision
    # truncates it and modalign rounds: the crop may then sit one pixel apart)
    sizes = [(32, 32), (40, 50), (96, 64), (64, 80)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


TEXTS = ["a red circle", "The quick brown fox jumps over the lazy dog.", "x", " ".join(["word"] * 40)]


def test_open_clip_adapters_equal_open_clip_and_survive_save_and_load(clip_dir: Path, tmp_path: Path) -> None:
    ref, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{clip_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{clip_dir}")
    ref.eval()
    images = _images()
    with torch.no_grad():
        want_img = ref.encode_image(torch.stack([preprocess(i) for i in images]), normalize=True).numpy()
        want_txt = ref.encode_text(tokenizer(TEXTS), normalize=True).numpy()

    model = _model(_towers(clip_dir), embed_dim=16, head="none").eval()
    t = model.specs["image"].transform
    assert (t.size, t.mean, t.std, t.interpolation) == (32, (0.4, 0.45, 0.5), (0.2, 0.25, 0.3), "bicubic")
    # the same pixels as open_clip's preprocessing (Pillow resize on both sides)
    ours_px = torch.stack([t.load(i, Path()) for i in images])
    torch.testing.assert_close(ours_px, torch.stack([preprocess(i) for i in images]), atol=1e-5, rtol=0)
    got_img = model.encode(images, modality="image", batch_size=3)
    got_txt = model.encode(TEXTS, modality="text", batch_size=3)
    np.testing.assert_allclose(got_img, want_img, atol=2e-5)
    np.testing.assert_allclose(got_txt, want_txt, atol=2e-5)
    # a text longer than the context length is truncated, as open_clip's tokenizer does (end token kept)
    ids = model.specs["text"].transform.load(TEXTS[3], Path())
    torch.testing.assert_close(ids, tokenizer([TEXTS[3]])[0])
    assert ids.shape == (16,) and int(ids[-1]) == tokenizer.eot_token_id

    # a saved model needs neither the config nor the weights file
    model.save(tmp_path / "m")
    moved = tmp_path / "moved"
    clip_dir.rename(moved)
    try:
        again = modalign.load(tmp_path / "m")
        np.testing.assert_allclose(again.encode(images, modality="image"), got_img, atol=1e-6)
        np.testing.assert_allclose(again.encode(TEXTS, modality="text"), got_txt, atol=1e-6)
    finally:
        moved.rename(clip_dir)
    tower = again.tower("text").encoder
    assert tower.clip.visual is None and not any("visual" in n for n, _ in tower.named_parameters())


def test_open_clip_towers_tune_their_last_blocks(clip_dir: Path) -> None:
    cfg = load_config(
        raw={
            "data": {"manifest": "x.jsonl"},
            "modalities": _towers(clip_dir, trainable={"last_n_blocks": 1}),
            "model": {"embed_dim": 8},
        }
    )
    model = build_model(cfg, build_sources(cfg))
    apply_tuning(cfg, model)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".resblocks.1." in n for n in trained) and not any(".resblocks.0." in n for n in trained)
    assert {n.split(".")[1] for n in trained} == {"image", "text"}


def test_open_clip_bad_files_give_config_errors(clip_dir: Path, tmp_path: Path) -> None:
    cfg = str(clip_dir / "open_clip_config.json")
    cases = [
        ({"config": cfg, "weights": str(tmp_path / "none.safetensors")}, "does not exist"),
        ({"config": cfg}, "give weights"),
        ({"config": str(tmp_path / "no.json"), "weights": "w"}, "cannot read the model config"),
        ({"model": "No-Such-Model", "weights": "w"}, "has no model"),
        ({"weights": "w"}, "exactly one of model"),
    ]
    (tmp_path / "other.json").write_text(json.dumps({"embed_dim": 8}))
    cases.append(({"config": str(tmp_path / "other.json"), "weights": "w"}, "not an open_clip model config"))
    wrong = {**TINY, "embed_dim": 8}
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    weights = str(clip_dir / "open_clip_model.safetensors")
    cases.append(({"config": str(tmp_path / "wrong.json"), "weights": weights}, "cannot load weights"))
    for params, message in cases:
        with pytest.raises(ConfigError, match=message):
            _model({"image": {"kind": "image", "encoder": "open_clip_image", "encoder_params": params}})
