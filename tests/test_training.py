"""End-to-end training: artifacts, exact resume, bad rows, bad configs, checkpoints, round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config, write_jsonl
from PIL import Image

import modalign
from modalign.config import TrainerConfig, load_config
from modalign.errors import CheckpointError, ConfigError, DataError
from modalign.training.checkpoint import list_checkpoints
from modalign.workflows.train import run_training


class Crash(RuntimeError):
    pass


def train(manifest: Path, out: Path, **trainer: object) -> dict:
    cfg = load_config(raw=tiny_config(manifest, **trainer))
    return run_training(cfg, out, show_progress=False)


def test_train_writes_artifacts_and_report(dataset: Path, tmp_path: Path) -> None:
    metrics = train(dataset, tmp_path / "run")
    run = tmp_path / "run"
    for name in (
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer-text.json",
        "metrics.jsonl",
        "report.json",
        "report.html",
        "config.yaml",
    ):
        assert (run / name).is_file(), name
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [
        "step_00000006.safetensors",
        "step_00000008.safetensors",
    ]  # keep_checkpoints=2
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    report = json.loads((run / "report.json").read_text())
    for q, t in [("audio", "image"), ("image", "audio"), ("text", "image"), ("image", "text")]:
        for k in ("R@1", "R@5", "R@10", "median_rank"):
            assert f"retrieval/{q}->{t}/{k}" in report
    assert "zeroshot/image/accuracy" in report and "zeroshot/audio/accuracy" in report
    extra = {"meta": report["meta"], "ci95": report["ci95"], "chance": report["chance"]}
    assert report == {**{k: v for k, v in metrics.items()}, **extra}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resumed_run_is_bit_identical(dataset: Path, tmp_path: Path, precision: str) -> None:
    # bf16: autocast of forward passes and losses on the CPU, also in validation (step 4, 8)
    assert_resume_is_bit_identical(dataset, tmp_path, device="cpu", precision=precision)


def assert_resume_is_bit_identical(dataset: Path, tmp_path: Path, **trainer: object) -> None:
    # batch 8 over 48 training rows: 6 batches per epoch, so the step-3 checkpoint is mid-epoch
    # and steps 7-8 run in the second epoch; text dropout makes the RNG state matter.
    settings = dict(max_steps=8, batch_size=8, checkpoint_every=3, **trainer)

    def crash_at_5(step: int, metrics: dict) -> None:
        if step == 5:
            raise Crash

    raw = tiny_config(dataset, **settings)
    raw["modalities"]["image"]["transform"]["random_shift"] = 1  # augmentation draws from the RNG too
    cfg = load_config(raw=raw)
    with pytest.raises(Crash):
        run_training(cfg, tmp_path / "cut", show_progress=False, on_step=crash_at_5)
    assert list_checkpoints(tmp_path / "cut" / "checkpoints")[-1].name == "step_00000003.safetensors"
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as log:
        log.write('{"step": 6, "lo')  # a line torn by the crash
    run_training(cfg, tmp_path / "cut", resume=True, show_progress=False)
    run_training(cfg, tmp_path / "full", show_progress=False)
    a = (tmp_path / "full" / "model" / "model.safetensors").read_bytes()
    b = (tmp_path / "cut" / "model" / "model.safetensors").read_bytes()
    assert a == b
    log = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))  # steps 4-5 were logged once, not twice
    full = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log] == [r["loss"] for r in full]


def test_second_run_into_the_same_directory_needs_resume(dataset: Path, tmp_path: Path) -> None:
    train(dataset, tmp_path / "run", max_steps=3)
    with pytest.raises(ConfigError, match="--resume"):
        train(dataset, tmp_path / "run", max_steps=3)


def _with_bad_rows(dataset: Path, tmp_path: Path) -> Path:
    rows = [json.loads(x) for x in dataset.read_text().splitlines()]
    for r in rows:
        r["image"], r["audio"] = str(dataset.parent / r["image"]), str(dataset.parent / r["audio"])
    rows[2]["image"] = str(tmp_path / "gone.png")
    rows[5]["text"] = " "
    rows[9]["audio"] = str(tmp_path / "gone.wav")
    write_jsonl(tmp_path / "bad.jsonl", rows)
    return tmp_path / "bad.jsonl"


def test_bad_rows_are_skipped_and_counted(dataset: Path, tmp_path: Path) -> None:
    metrics = train(_with_bad_rows(dataset, tmp_path), tmp_path / "run", max_steps=2)
    assert metrics["data/skipped/train/missing_file"] == 2
    assert metrics["data/skipped/train/empty_text"] == 1


def test_bad_rows_fail_fast_when_asked(dataset: Path, tmp_path: Path) -> None:
    raw = tiny_config(_with_bad_rows(dataset, tmp_path), max_steps=2)
    raw["data"]["on_error"] = "fail"
    with pytest.raises(DataError) as e:
        run_training(load_config(raw=raw), tmp_path / "run", show_progress=False)
    assert e.value.row == 2 and e.value.column == "image" and "gone.png" in str(e.value)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("trainer.batch_size=1", "trainer.batch_size"),
        ("data.on_error=ignore", "data.on_error"),
        ("modalities.image.kind=video", "modalities.image.kind"),
        ("modalities.audio.transform.n_mels=-3", "modalities.audio.transform.n_mels"),
        ("trainer.unknown_field=3", "trainer.unknown_field"),
        ("trainer.device=gpu", "trainer.device"),
        ("trainer.device=cuda:x", "trainer.device"),
        ("trainer.precision=fp8", "trainer.precision"),
    ],
)
def test_invalid_config_names_the_field(dataset: Path, tmp_path: Path, override: str, field: str) -> None:
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(dataset)))
    with pytest.raises(ConfigError) as e:
        load_config(path, [override])
    assert field in str(e.value)


def test_unknown_names_list_the_available_ones(dataset: Path, tmp_path: Path) -> None:
    raw = tiny_config(dataset)
    raw["objectives"] = [{"name": "clipp"}]
    with pytest.raises(ConfigError, match="did you mean clip"):
        run_training(load_config(raw=raw), tmp_path / "run", show_progress=False)


def test_truncated_and_foreign_checkpoints_raise_checkpoint_error(dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(raw=tiny_config(dataset, max_steps=3, checkpoint_every=3))
    run_training(cfg, tmp_path / "run", show_progress=False)
    ckpt = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        run_training(cfg, tmp_path / "run", resume=True, show_progress=False)
    torch.save({"weights": torch.zeros(3)}, ckpt)  # a pickle, never unpickled by us
    with pytest.raises(CheckpointError):
        run_training(cfg, tmp_path / "run", resume=True, show_progress=False)
    weights = tmp_path / "run" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        modalign.load(tmp_path / "run" / "model")


def test_save_load_round_trip_and_encode_inputs(dataset: Path, tmp_path: Path) -> None:
    train(dataset, tmp_path / "run", max_steps=2)
    model = modalign.load(tmp_path / "run" / "model")
    root = dataset.parent
    images = [f"images/{i}.png" for i in range(5)]
    a = model.encode(images, modality="image", base_dir=root)
    assert a.shape == (5, 16) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    pil = [Image.open(root / p) for p in images]
    arrays = [np.asarray(p) for p in pil]
    assert np.array_equal(model.encode(pil, modality="image"), a)
    assert np.array_equal(model.encode(arrays, modality="image"), a)
    # other batch sizes change float summation order only
    assert np.allclose(model.encode(images, modality="image", batch_size=2, base_dir=root), a, atol=1e-5)
    texts = ["a circle", "a cross"]
    t = model.encode(texts, modality="text")
    wav = model.encode([str(root / "audio/0.wav")], modality="audio")
    again = modalign.load(tmp_path / "run" / "model")
    assert np.array_equal(again.encode(images, modality="image", base_dir=root), a)
    assert np.array_equal(again.encode(texts, modality="text"), t)
    assert np.array_equal(again.encode([str(root / "audio/0.wav")], modality="audio"), wav)
    with pytest.raises(DataError, match="unknown modality"):
        model.encode(["x"], modality="caption")
    with pytest.raises(DataError) as e:
        model.encode(["ok", "  "], modality="text")
    assert e.value.row == 1


def test_cached_accumulation_gives_the_full_batch_gradient(dataset: Path, tmp_path: Path) -> None:
    from modalign.data.dataset import collate, fit_transforms, load_samples
    from modalign.data.manifest import read_manifest
    from modalign.training.trainer import Trainer
    from modalign.workflows.build import build_model, build_objective, build_sources

    raw = tiny_config(dataset)
    # dropout off: a full batch and its micro-batches draw different masks by design (the
    # replay of masks inside cached_backward is tested in tests/objectives)
    raw["modalities"]["text"]["encoder_params"]["dropout"] = 0.0
    cfg = load_config(raw=raw)
    manifest = read_manifest(dataset)
    sources = build_sources(cfg)
    fit_transforms(manifest, sources, range(24))
    samples = load_samples(manifest, sources, range(24))
    batch = collate(samples, list(range(24)), sources)
    grads = []
    for micro in (None, 5):  # 5 does not divide 24: uneven last micro-batch
        torch.manual_seed(0)
        model, objective = build_model(cfg, sources), build_objective(cfg)
        model.double()
        objective.double()
        fp64 = type(batch)(
            {k: v.double() if v.is_floating_point() else v for k, v in batch.inputs.items()},
            batch.present,
            batch.ids,
            batch.labels,
        )
        trainer = Trainer(
            model,
            objective,
            samples,
            sources,
            tmp_path,
            TrainerConfig(accumulation="cached", micro_batch_size=micro) if micro else TrainerConfig(),
            show_progress=False,
        )
        model.train()
        trainer.backward(fp64)
        params = [*model.named_parameters(), *objective.named_parameters()]
        grads.append({n: p.grad.clone() for n, p in params if p.grad is not None})
    full, cached = grads
    assert full.keys() == cached.keys() and any(k.endswith("log_scale") for k in full)
    for name in full:
        torch.testing.assert_close(cached[name], full[name], rtol=1e-9, atol=1e-12, msg=name)


def test_two_modalities_of_one_kind_are_two_named_encoders(dataset: Path, tmp_path: Path) -> None:
    raw = tiny_config(dataset, max_steps=2)
    raw["modalities"]["sketch"] = {**raw["modalities"]["image"], "column": "image", "preset": "tiny"}
    raw["objectives"] = [{"name": "clip", "params": {"anchor": "text"}}]
    metrics = run_training(load_config(raw=raw), tmp_path / "run", show_progress=False)
    model = modalign.load(tmp_path / "run" / "model")
    assert sorted(model.modalities) == ["audio", "image", "sketch", "text"]
    assert model.towers["image"] is not model.towers["sketch"]
    assert "retrieval/sketch->image/R@1" in metrics
    log = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    # anchored objective: only pairs with the text modality
    assert {k for k in log if k.startswith("clip/") and "-" in k} == {
        "clip/text-image",
        "clip/text-audio",
        "clip/text-sketch",
    }


def test_symile_training_reports_higher_order_retrieval(dataset: Path, tmp_path: Path) -> None:
    raw = tiny_config(dataset, max_steps=2)
    raw["objectives"] = [{"name": "symile"}]
    metrics = run_training(load_config(raw=raw), tmp_path / "run", show_progress=False)
    for key in ("retrieval/image+audio->text/R@1", "retrieval/audio+text->image/median_rank"):
        assert key in metrics, sorted(metrics)


def test_bad_encoder_params_name_the_modality(dataset: Path, tmp_path: Path) -> None:
    raw = tiny_config(dataset, max_steps=1)
    raw["modalities"]["image"]["encoder_params"] = {"widths": [8], "colour": True}
    with pytest.raises(ConfigError, match="modalities.image.encoder_params"):
        run_training(load_config(raw=raw), tmp_path / "run", show_progress=False)


def test_affinity_distillation_from_a_saved_teacher(dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from modalign.data.loading import load_split, open_manifest
    from modalign.training.teacher import add_teacher_embeddings
    from modalign.workflows.build import build_objective

    train(dataset, tmp_path / "teacher", max_steps=3, select_best=False)
    teacher = modalign.load(tmp_path / "teacher" / "model")
    # the carried teacher embeddings are exactly what the teacher encodes from the raw files
    manifest = open_manifest(dataset)
    samples = load_split(manifest, teacher.sources(), "val", show_progress=False)
    add_teacher_embeddings(samples, manifest, teacher)
    paths = [manifest.rows[i]["image"] for i in samples.rows]
    want = teacher.encode(paths, modality="image", base_dir=manifest.base_dir)
    got = torch.stack([t for t in samples.data["image.teacher"] if t is not None]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # float32, batching may differ

    raw = tiny_config(dataset, max_steps=3)
    raw["modalities"]["image"]["encoder_params"] = {"widths": [4, 8]}  # a smaller student
    raw["model"]["teacher"] = str(tmp_path / "teacher" / "model")
    raw["objectives"] = [
        {"name": "affinity_distillation", "params": {"alpha": 0.5}},
        {"name": "feature_distillation"},
    ]
    run_training(load_config(raw=raw), tmp_path / "student", show_progress=False)
    log = [json.loads(x) for x in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["affinity_distillation/loss"]) for r in log) and "val/loss" in log[-1]
    assert all(0.0 <= r["feature_distillation/loss"] <= 2.0 for r in log)  # 1 - cos of unit rows

    # "teacher" scale params: the scale saved with the teacher (its final checkpoint's; select_best off)
    ckpt = load_file(tmp_path / "teacher" / "checkpoints" / "step_00000003.safetensors")
    scale = float(ckpt["objective/objectives.clip.scale.log_scale"].exp())
    assert teacher.logit_scale == pytest.approx(scale, rel=1e-6) and scale != pytest.approx(1 / 0.07)
    raw["objectives"][0]["params"] = {"teacher_scale": "teacher", "init_temperature": "teacher"}
    cfg = load_config(raw=raw)
    built = build_objective(cfg, teacher).objectives["affinity_distillation"]
    assert built.teacher_scale == teacher.logit_scale
    assert float(built.scale()) == pytest.approx(teacher.logit_scale, rel=1e-6)
    run_training(cfg, tmp_path / "student2", show_progress=False)  # resolved from the teacher's directory
    teacher.logit_scale = None  # e.g. a model saved before the scale was recorded
    with pytest.raises(ConfigError, match="teacher_scale: teacher: the teacher .* saved no logit scale"):
        build_objective(cfg, teacher)
    with pytest.raises(ConfigError, match="needs a teacher model: set model.teacher"):
        build_objective(load_config(raw={**raw, "model": {"embed_dim": 16}}))

    raw["model"]["embed_dim"] = 2 * raw["model"]["embed_dim"]  # not the teacher's: named, not a shape error
    with pytest.raises(ConfigError, match="model.embed_dim"):
        run_training(load_config(raw=raw), tmp_path / "wide", show_progress=False)


def test_select_best_keeps_the_lowest_validation_loss(dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cfg = load_config(
        raw=tiny_config(
            dataset,
            max_steps=12,  # the validation loss is lowest before the end (step 6 here)
            val_every=2,
            checkpoint_every=2,
            keep_checkpoints=10,
            select_best=True,
            lr=0.05,
        )
    )
    run_training(cfg, tmp_path / "run", show_progress=False)
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = {r["step"]: r["val/loss"] for r in log if "val/loss" in r}
    best = min(val, key=lambda k: (val[k], k))  # the first step reaching the minimum
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["meta"]["best_step"] == best == report["meta"]["model_step"]
    saved = load_file(tmp_path / "run" / "model" / "model.safetensors")
    ckpt = load_file(tmp_path / "run" / "checkpoints" / f"step_{best:08d}.safetensors")
    for k, v in saved.items():
        assert torch.equal(v, ckpt[f"model/{k}"]), k
    # the logit scale saved with the model is the one its weights were trained at (the best step's)
    scale = float(ckpt["objective/objectives.clip.scale.log_scale"].exp())
    assert modalign.load(tmp_path / "run" / "model").logit_scale == pytest.approx(scale, rel=1e-6)


# --- devices and precision -------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ACCELERATED = torch.cuda.is_available() or torch.backends.mps.is_available()


def test_fp16_on_a_cpu_is_a_config_error(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trainer.precision=fp16") as e:
        load_config(raw=tiny_config(dataset, device="cpu", precision="fp16"))
    assert "trainer.device=cpu" in str(e.value) and "bf16" in str(e.value)
    if not ACCELERATED:  # device auto resolves to the CPU here: refused before the first step
        cfg = load_config(raw=tiny_config(dataset, precision="fp16"))
        with pytest.raises(ConfigError, match="trainer.precision=fp16 needs a GPU"):
            run_training(cfg, tmp_path / "run", show_progress=False)
        assert not list_checkpoints(tmp_path / "run" / "checkpoints")


@pytest.mark.skipif(ACCELERATED, reason="forces fp16 onto the CPU that device auto resolves to")
@pytest.mark.parametrize("accumulation", [{}, {"accumulation": "cached", "micro_batch_size": 5}])
def test_fp16_loss_scaling_resumes_bit_identically(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accumulation: dict
) -> None:
    # The GradScaler path, checked without a GPU: CPU autocast can run fp16, which users are
    # refused only because it is slow and untested at scale. The scaler's state must be in the
    # checkpoints for the resumed run to skip/grow exactly like the uninterrupted one.
    from safetensors import safe_open

    import modalign.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "check_precision", lambda device, precision: None)
    assert_resume_is_bit_identical(dataset, tmp_path, device="auto", precision="fp16", **accumulation)
    with safe_open(str(list_checkpoints(tmp_path / "cut" / "checkpoints")[-1]), "pt") as f:
        scaler = json.loads(f.metadata()["modalign"])["grad_scaler"]
    assert scaler["scale"] > 1000 and scaler["_growth_tracker"] > 0
    log = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    # clipped after unscaling, not at scale 2**16 (a step that overflowed fp16 is skipped: inf)
    assert all(0 < r["grad_norm"] < 100 for r in log if not r["skipped"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_a_missing_gpu_is_a_config_error(dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(raw=tiny_config(dataset, device="cuda:0"))
    with pytest.raises(ConfigError, match="trainer.device=cuda:0 but CUDA is not available"):
        run_training(cfg, tmp_path / "run", show_progress=False)


def _trainer_gradients(
    dataset: Path, tmp_path: Path, settings: dict[str, object]
) -> tuple[dict[str, torch.Tensor], float]:
    """Parameter gradients and loss of one ``Trainer.backward`` on 24 fixed rows."""
    from modalign.data.dataset import collate, fit_transforms, load_samples
    from modalign.data.manifest import read_manifest
    from modalign.training.trainer import Trainer
    from modalign.workflows.build import build_model, build_objective, build_sources

    raw = tiny_config(dataset)
    raw["modalities"]["text"]["encoder_params"]["dropout"] = 0.0  # same masks in every variant
    cfg = load_config(raw=raw)
    manifest = read_manifest(dataset)
    sources = build_sources(cfg)
    fit_transforms(manifest, sources, range(24))
    samples = load_samples(manifest, sources, range(24))
    torch.manual_seed(0)
    model, objective = build_model(cfg, sources), build_objective(cfg)
    trainer = Trainer(
        model, objective, samples, sources, tmp_path, TrainerConfig(**settings), show_progress=False
    )
    model.train()
    out = trainer.backward(collate(samples, list(range(24)), sources))
    params = [*model.named_parameters(), *objective.named_parameters()]
    return {n: p.grad.clone() for n, p in params if p.grad is not None}, float(out.loss.detach())


def test_bf16_autocast_is_active_and_cached_accumulation_follows_it(dataset: Path, tmp_path: Path) -> None:
    fp32, loss32 = _trainer_gradients(dataset, tmp_path, dict(device="cpu"))
    bf16, loss16 = _trainer_gradients(dataset, tmp_path, dict(device="cpu", precision="bf16"))
    cached, loss_c = _trainer_gradients(
        dataset,
        tmp_path,
        dict(device="cpu", precision="bf16", accumulation="cached", micro_batch_size=5),
    )
    assert fp32.keys() == bf16.keys() == cached.keys()

    def rel(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        num = sum(float((a[k].float() - b[k].float()).norm() ** 2) for k in a) ** 0.5
        return num / sum(float(b[k].float().norm() ** 2) for k in b) ** 0.5

    # autocast really ran: bf16 rounding moves loss and gradient (fp32 runs agree to ~1e-7)
    assert loss16 != loss32 and loss16 == pytest.approx(loss32, rel=1e-3)
    assert rel(bf16, fp32) > 1e-2
    # GradCache under autocast: micro-batches of 5 give the one-pass bf16 loss and, up to the
    # bf16 rounding of per-micro-batch weight gradients (eps 2**-8), its gradient
    assert loss_c == pytest.approx(loss16, rel=1e-5)
    assert rel(cached, bf16) < 1e-2


def test_a_saved_model_loads_and_encodes_on_a_chosen_device(dataset: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    train(dataset, tmp_path / "run", max_steps=2, device="cpu")
    model = modalign.load(tmp_path / "run" / "model", device="cpu")
    assert model.device == torch.device("cpu")
    texts, images = ["a circle", "a cross"], [f"images/{i}.png" for i in range(3)]
    default = modalign.load(tmp_path / "run" / "model")
    for modality, inputs in (("text", texts), ("image", images)):
        got = model.encode(inputs, modality=modality, device="cpu", base_dir=dataset.parent)
        assert got.dtype == np.float32
        assert np.array_equal(got, default.encode(inputs, modality=modality, base_dir=dataset.parent))
    model.save(tmp_path / "again")
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (
        tmp_path / "run" / "model" / "model.safetensors"
    ).read_bytes()
    ckpt = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    with safe_open(str(ckpt), "pt") as f:
        rng = sorted(k for k in f.keys() if k.startswith("rng/"))
    assert rng == ["rng/torch"]  # a CPU run never initialised CUDA: no CUDA state to keep
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device 'cuda'"):
            model.encode(texts, modality="text", device="cuda")
        assert model.device == torch.device("cpu")  # left where it was


@pytest.mark.skipif(torch.cuda.is_available(), reason="the real CUDA path is tested below")
def test_checkpoints_keep_every_cuda_rng_state_and_the_loss_scaler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No GPU here: torch.cuda is faked so the bookkeeping of per-device states is still checked.
    from modalign.training.checkpoint import TrainState, load_checkpoint, save_checkpoint

    model, objective = torch.nn.Linear(3, 2), torch.nn.Module()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    scaler.scale(torch.ones(()))  # materialise the scale
    states = [torch.full((8,), i, dtype=torch.uint8) for i in (1, 2)]
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    path = save_checkpoint(tmp_path, TrainState(1, 0, 1), model, objective, optimizer, 1, scaler=scaler)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # resumed with one GPU of two
    restored: dict[int, torch.Tensor] = {}
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.__setitem__(i, s.clone()))
    fresh = torch.amp.GradScaler("cpu")
    load_checkpoint(path, model, objective, optimizer, scaler=fresh)
    assert list(restored) == [0] and torch.equal(restored[0], states[0])
    assert fresh.state_dict() == scaler.state_dict()


@needs_cuda
def test_a_model_trained_on_cuda_loads_on_the_cpu(dataset: Path, tmp_path: Path) -> None:
    train(dataset, tmp_path / "run", max_steps=2, device="cuda")
    on_gpu = modalign.load(tmp_path / "run" / "model", device="cuda")
    on_cpu = modalign.load(tmp_path / "run" / "model")
    assert on_gpu.device.type == "cuda" and on_cpu.device.type == "cpu"
    texts, images = ["a circle", "a cross"], [f"images/{i}.png" for i in range(3)]
    for modality, inputs in (("text", texts), ("image", images)):
        want = on_gpu.encode(inputs, modality=modality, base_dir=dataset.parent)
        got = on_cpu.encode(inputs, modality=modality, base_dir=dataset.parent)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        # the same CPU model, sent to the GPU for one call
        again = on_cpu.encode(inputs, modality=modality, base_dir=dataset.parent, device="cuda")
        np.testing.assert_allclose(again, want, rtol=1e-4, atol=1e-5)
    # a CUDA checkpoint (CUDA RNG and optimizer state included) resumes on the CPU
    cfg = load_config(raw=tiny_config(dataset, max_steps=3, checkpoint_every=2, device="cpu"))
    run_training(cfg, tmp_path / "run", resume=True, show_progress=False)
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_resumed_run_is_bit_identical_on_cuda(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    # bit-exact only with deterministic kernels (cuBLAS workspace, cuDNN algorithms)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        assert_resume_is_bit_identical(dataset, tmp_path, device="cuda", precision=precision)
    finally:
        torch.use_deterministic_algorithms(False)
