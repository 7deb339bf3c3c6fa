"""Contract of every registered encoder: shape, gradients, batch independence, presets."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from modalign.encoders import build_encoder, encoder_kwargs
from modalign.encoders.base import ModalityTower
from modalign.registry import names

INPUTS: dict[str, tuple[dict[str, Any], Any]] = {
    "image_cnn": ({"in_channels": 1, "image_size": 8}, lambda b: torch.randn(b, 1, 8, 8)),
    "image_vit": ({"in_channels": 3, "image_size": 16}, lambda b: torch.randn(b, 3, 16, 16)),
    "audio_cnn": ({"n_mels": 12}, lambda b: torch.randn(b, 12, 30)),
    "text_transformer": ({"vocab_size": 50, "max_length": 6}, lambda b: torch.randint(1, 50, (b, 6))),
    "tabular_mlp": (
        {"n_numeric": 3, "cardinalities": [4]},
        lambda b: torch.cat([torch.randn(b, 6), torch.randint(0, 4, (b, 1)).float()], dim=1),
    ),
    "mlp": ({"n_numeric": 3, "missing_flags": False}, lambda b: torch.randn(b, 3)),
    "identity": ({"n_numeric": 3}, lambda b: torch.randn(b, 6)),
    "timeseries_conv": ({"in_channels": 2}, lambda b: torch.randn(b, 9, 2)),
    "timeseries_gru": ({"in_channels": 2}, lambda b: torch.randn(b, 9, 2)),
}


# pretrained adapters load real weights: their contract is tested in tests/test_pretrained.py (timm
# and open_clip in tests/vision)
PRETRAINED = {"efficientnet_lite", "hf_text", "hf_vision", "sentence_transformers", "torchscript"}
PRETRAINED |= {"open_clip_image", "open_clip_text", "timm"}


def test_every_encoder_is_covered() -> None:
    assert set(names("encoder")) == set(INPUTS) | PRETRAINED


def test_identity_encoder_passes_the_scaled_numerics_and_drops_the_flags() -> None:
    x = torch.randn(4, 6)  # 3 scaled values, then 3 missing flags
    torch.testing.assert_close(build_encoder("identity", {"n_numeric": 3})(x), x[:, :3])


def test_mlp_encoder_is_linear_relu_dropout_linear_with_input_dropout() -> None:
    torch.manual_seed(0)
    enc = build_encoder(
        "mlp", {"n_numeric": 4, "hidden": 5, "output_dim": 3, "dropout": 0.5, "input_dropout": 0.5}
    )
    first, last = enc.net[0], enc.net[3]
    x = torch.randn(6, 8)  # values and missing flags
    enc.eval()  # no dropout: the definition with the weights written out
    want = torch.relu(x @ first.weight.T + first.bias) @ last.weight.T + last.bias
    torch.testing.assert_close(enc(x), want)
    enc.train()
    torch.manual_seed(1)
    got = enc(x)
    torch.manual_seed(1)  # same draws: input dropout first, then the hidden dropout
    z = torch.nn.functional.dropout(x, 0.5, True)
    h = torch.nn.functional.dropout(torch.relu(z @ first.weight.T + first.bias), 0.5, True)
    torch.testing.assert_close(got, h @ last.weight.T + last.bias)


@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_encoder_contract(name: str, preset: str) -> None:
    torch.manual_seed(0)
    shape_kwargs, make = INPUTS[name]
    encoder = build_encoder(name, encoder_kwargs(name, preset, {}, shape_kwargs)).eval()
    x = make(5)
    out = encoder(x)
    assert out.shape == (5, encoder.output_dim) and torch.isfinite(out).all()
    # each row is encoded independently of the others (no batch statistics)
    torch.testing.assert_close(encoder(x[2:3]), out[2:3], rtol=1e-4, atol=1e-5)
    tower = ModalityTower(encoder, embed_dim=8)
    present = torch.tensor([True, False, True, True, False])
    emb = tower(x, present)
    assert torch.allclose(emb[present].norm(dim=1), torch.ones(3), atol=1e-5)
    assert emb[~present].abs().sum() == 0
    emb.sum().backward()
    grads = [p.grad for p in tower.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_text_pooling_variants_ignore_padding() -> None:
    torch.manual_seed(0)
    for pooling in ("mean", "cls"):
        enc = build_encoder(
            "text_transformer", {"vocab_size": 30, "max_length": 8, "pooling": pooling}
        ).eval()
        ids = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0]])
        torch.testing.assert_close(enc(ids), enc(ids[:, :3]), rtol=1e-5, atol=1e-5)
