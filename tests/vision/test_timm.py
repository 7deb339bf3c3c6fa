"""The timm adapter against timm itself: a tiny timm model, random weights saved by the test, its own
forward and its own evaluation transform as the reference."""

from __future__ import annotations

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

timm = need("timm")
safetensors_torch = need("safetensors.torch")


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_vit with a classifier (as a pretrained checkpoint would have it), random weights."""
    torch.manual_seed(0)
    net = timm.create_model("test_vit", pretrained=False, num_classes=10)
    file = tmp_path_factory.mktemp("timm") / "test_vit.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(file))
    return file


def _cfg(modality: dict[str, Any], **model: Any) -> Any:
    return load_config(
        raw={"data": {"manifest": "x.jsonl"}, "modalities": {"image": modality}, "model": model}
    )


def _model(modality: dict[str, Any], **model: Any) -> modalign.MultimodalModel:
    cfg = _cfg(modality, **model)
    return build_model(cfg, build_sources(cfg))


def test_timm_adapter_equals_timm_and_its_eval_transform(vit_weights: Path, tmp_path: Path) -> None:
    ref = timm.create_model("test_vit", pretrained=False, num_classes=0).eval()
    ref.load_state_dict(safetensors_torch.load_file(str(vit_weights)), strict=False)
    data = timm.data.resolve_model_data_config(ref)
    preprocess = timm.data.create_transform(**data, is_training=False)
    rng = np.random.default_rng(0)
    sizes = [(160, 160), (168, 252), (336, 224)]  # whole-pixel resizes to 168 (see the open_clip test)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    x = torch.stack([preprocess(i) for i in images])
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref(x), dim=-1).numpy()

    params = {"model": "test_vit", "weights": str(vit_weights)}
    model = _model({"kind": "image", "encoder": "timm", "encoder_params": params}, embed_dim=64, head="none")
    t = model.specs["image"].transform
    assert (t.size, t.crop_pct, t.interpolation) == (160, 0.95, "bicubic")
    torch.testing.assert_close(torch.stack([t.load(i, Path()) for i in images]), x, atol=1e-5, rtol=0)
    got = model.eval().encode(images, modality="image", batch_size=2)
    np.testing.assert_allclose(got, want, atol=2e-5)
    model.save(tmp_path / "m")
    np.testing.assert_allclose(modalign.load(tmp_path / "m").encode(images, modality="image"), got, atol=1e-6)


def test_timm_last_blocks_follow_timm_layer_groups(vit_weights: Path) -> None:
    # timm's coarse groups of a ViT: the stem, one per block, the final norm joined to the last block
    params = {"model": "test_vit", "weights": str(vit_weights)}
    depth = len(timm.create_model("test_vit").blocks)
    for n, want in (
        (1, {f"blocks.{depth - 1}", "norm"}),
        (2, {f"blocks.{depth - 2}", f"blocks.{depth - 1}", "norm"}),
    ):
        modality = {
            "kind": "image",
            "encoder": "timm",
            "encoder_params": params,
            "trainable": {"last_n_blocks": n},
        }
        cfg = _cfg(modality)
        model = build_model(cfg, build_sources(cfg))
        apply_tuning(cfg, model)
        trained = [
            n.split(".net.", 1)[1] for n, p in model.named_parameters() if p.requires_grad and ".net." in n
        ]
        assert {
            ".".join(t.split(".")[:2]) if t.startswith("blocks.") else t.split(".")[0] for t in trained
        } == want
    with pytest.raises(ConfigError, match="last_n_blocks must be in"):
        modality = {
            "kind": "image",
            "encoder": "timm",
            "encoder_params": params,
            "trainable": {"last_n_blocks": 99},
        }
        cfg = _cfg(modality)
        apply_tuning(cfg, build_model(cfg, build_sources(cfg)))


def test_timm_bad_files_give_config_errors(vit_weights: Path, tmp_path: Path) -> None:
    other = tmp_path / "resnet.safetensors"
    net = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    safetensors_torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(other))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    cases = [
        ({"model": "test_vit", "weights": str(tmp_path / "none.safetensors")}, "does not exist"),
        ({"model": "test_vit"}, "give weights"),
        ({"model": "no_such_model_x", "weights": str(vit_weights)}, "timm cannot build"),
        ({"weights": str(vit_weights)}, "give model"),
        ({"model": "test_vit", "weights": str(other)}, "do not fit"),
        ({"model": "test_vit", "weights": str(tmp_path / "junk.pt")}, "cannot read weights"),
    ]
    for params, message in cases:
        with pytest.raises(ConfigError, match=message):
            _model({"kind": "image", "encoder": "timm", "encoder_params": params})
