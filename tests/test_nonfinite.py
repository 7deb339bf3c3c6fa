"""Nothing non-finite is trained on, saved, loaded, embedded or scored (issue 8, finding 1).

A diverging run stops with a TrainingError (exit code 2 from the CLI) before any non-finite update
is applied or saved; a saved model with a NaN weight is refused; NaN embeddings are refused; and
the metrics never count a NaN score or a tie as a hit (naive definitions written here).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_config
from typer.testing import CliRunner

import modalign
from modalign.cli import app
from modalign.config import TrainerConfig, load_config
from modalign.errors import CheckpointError, NonFiniteError, TrainingError
from modalign.evaluation.positives import KeyPositives
from modalign.evaluation.ranking import rank_candidates
from modalign.evaluation.retrieval import retrieval_metrics
from modalign.evaluation.zero_shot import zero_shot_metrics
from modalign.training import trainer as trainer_module
from modalign.training.checkpoint import list_checkpoints
from modalign.types import LossOutput
from modalign.workflows.train import run_training


def _all_finite(path: Path) -> bool:
    from safetensors.torch import load_file

    return all(bool(torch.isfinite(t).all()) for t in load_file(path).values() if t.is_floating_point())


# --- training ------------------------------------------------------------------------------------


def test_divergent_run_exits_2_and_writes_nothing_non_finite(dataset: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(dataset)))
    run = tmp_path / "run"
    diverge = ["trainer.lr=1e30", "trainer.warmup_steps=0", "trainer.grad_clip=null"]
    args = ["train", str(cfg), "--out", str(run)] + [a for s in diverge for a in ("--set", s)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "trainer.lr" in result.output and "non-finite" in result.output
    # step 1 applies a finite but huge update; step 2's loss is NaN and stops the run
    assert "step 2" in result.output
    assert not (run / "model" / "model.safetensors").exists()
    assert all(_all_finite(p) for p in list_checkpoints(run / "checkpoints"))


@pytest.fixture()
def lr_from(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``lr_from(k)``: the learning rate becomes 1e30 from 0-based step k on (a mid-run blow-up)."""
    original = trainer_module.lr_at

    def set_step(k: int) -> None:
        monkeypatch.setattr(
            trainer_module, "lr_at", lambda step, **kw: 1e30 if step >= k else original(step, **kw)
        )

    yield set_step


def test_divergence_keeps_the_last_good_checkpoint_and_resumes_from_it(
    dataset: Path, tmp_path: Path, lr_from: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(raw=tiny_config(dataset))  # checkpoint_every=3, max_steps=8
    lr_from(3)  # the 4th update blows the weights up (finite, ~1e30); the 5th loss is NaN
    with pytest.raises(TrainingError, match=r"step 5 .*loss is nan") as e:
        run_training(cfg, tmp_path / "run", show_progress=False)
    assert "trainer.lr" in str(e.value) and "trainer.grad_clip" in str(e.value)
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000003.safetensors"] and _all_finite(ckpts[0])
    assert not (tmp_path / "run" / "model").exists()
    monkeypatch.undo()  # the user fixes the learning rate and resumes from step 3
    run_training(cfg, tmp_path / "run", resume=True, show_progress=False)
    assert _all_finite(tmp_path / "run" / "model" / "model.safetensors")
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")][
        -1
    ] == "step_00000008.safetensors"


class _NanLoss:
    """Makes the training loss NaN at the given 1-based steps; records the trainer and snapshots."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, nan_steps: set[int]):
        self.nan_steps, self.calls = nan_steps, 0
        self.trainer: Any = None
        original = trainer_module.Trainer.loss

        def loss(trainer: Any, batch: Any) -> LossOutput:
            out = original(trainer, batch)
            if not trainer.model.training:  # validation
                return out
            self.trainer = trainer
            self.calls += 1
            if self.calls in self.nan_steps:
                return LossOutput(out.loss * float("nan"), out.metrics)
            return out

        monkeypatch.setattr(trainer_module.Trainer, "loss", loss)

    def snapshot(self) -> dict[str, torch.Tensor]:
        t = self.trainer
        state = {f"model/{k}": v.clone() for k, v in t.model.state_dict().items()}
        for i, s in t.optimizer.state.items():
            state.update({f"optim/{i}/{k}": torch.as_tensor(v).clone() for k, v in s.items()})
        return state


def test_a_non_finite_step_is_skipped_and_n_in_a_row_stop_training(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nan = _NanLoss(monkeypatch, {3, 5, 6})
    snaps: dict[int, dict[str, torch.Tensor]] = {}
    cfg = load_config(raw=tiny_config(dataset, max_nonfinite_steps=2))
    with pytest.raises(TrainingError, match=r"step 6 .*2 steps in a row") as e:
        run_training(
            cfg, tmp_path / "run", show_progress=False, on_step=lambda s, m: snaps.update({s: nan.snapshot()})
        )
    assert "trainer.max_nonfinite_steps=2" in str(e.value)
    # step 3 (NaN loss) changed nothing: neither the weights nor the optimizer state
    assert snaps[2].keys() == snaps[3].keys()
    assert all(torch.equal(snaps[2][k], snaps[3][k]) for k in snaps[2])
    assert not all(torch.equal(snaps[3][k], snaps[4][k]) for k in snaps[3])  # step 4 trained
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    assert [r["skipped"] for r in log] == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert math.isnan(log[2]["loss"]) and math.isfinite(log[3]["loss"])
    assert all(math.isfinite(r["grad_norm"]) for r in log if not r["skipped"])
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000003.safetensors"] and _all_finite(ckpts[0])


def test_the_default_limit_is_one_step_and_sixteen_with_fp16() -> None:
    limit = trainer_module.nonfinite_limit
    assert limit(TrainerConfig()) == 1
    assert limit(TrainerConfig(max_nonfinite_steps=3, precision="fp16", device="cuda")) == 3
    # 16 overflows in a row take the GradScaler from its initial 2**16 down to 1
    assert limit(TrainerConfig(precision="fp16", device="cuda")) == 16
    assert torch.amp.GradScaler("cpu").get_scale() == 2.0**16


# --- saved models, encode, evaluation ------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nonfinite") / "run"
    run_training(load_config(raw=tiny_config(dataset, max_steps=2)), out, show_progress=False)
    return out / "model"


def test_a_saved_model_with_one_nan_weight_is_refused(trained: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "model"
    shutil.copytree(trained, bad)
    tensors = load_file(bad / "model.safetensors")
    name = next(k for k in sorted(tensors) if k.startswith("towers.text") and tensors[k].ndim == 2)
    tensors[name].view(-1)[3] = float("nan")
    save_file(tensors, bad / "model.safetensors", metadata={"format": "modalign-model"})
    with pytest.raises(CheckpointError, match="non-finite") as e:
        modalign.load(bad)
    assert name in str(e.value) and str(bad) in str(e.value)
    modalign.load(trained)  # the untouched copy loads


def test_encode_and_evaluation_refuse_non_finite_embeddings(trained: Path, dataset: Path) -> None:
    from modalign.data.dataset import load_samples
    from modalign.data.manifest import read_manifest
    from modalign.evaluation.evaluate import embed_samples, evaluate_model

    model = modalign.load(trained)
    with torch.no_grad():
        p = next(p for n, p in model.tower("text").named_parameters() if p.ndim == 2)
        p.view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"'text'.*3 of 3") as e:
        model.encode(["a circle", "a cross", "a square"], modality="text")
    assert "towers.text" in str(e.value)  # names the non-finite weight
    manifest = read_manifest(dataset)
    samples = load_samples(manifest, model.sources(), list(range(6)))
    with pytest.raises(NonFiniteError, match=r"'text'.*6 of 6 rows.*s0"):
        embed_samples(model, samples)
    with pytest.raises(NonFiniteError, match="'text'"):
        evaluate_model(model, samples, match_on="label")
    assert np.isfinite(modalign.load(trained).encode(["a circle"], modality="text")).all()


# --- metrics: NaN scores rank last, ties go against the positive ---------------------------------


def naive_rank(scores: np.ndarray, positives: set[int]) -> int:
    """0-based position of the first scorable positive in the full ranking, -1 without positives.

    The ranking sorts finite scores high to low, equal scores by lower index first, and puts every
    non-finite score last; a positive with a non-finite score is never found (rank = len(scores)).
    """
    if not positives:
        return -1

    def key(c: int) -> tuple[bool, float, int]:
        s = float(scores[c])
        return (not math.isfinite(s), 0.0 if not math.isfinite(s) else -s, c)

    order = sorted(range(len(scores)), key=key)
    found = [i for i, c in enumerate(order) if c in positives and math.isfinite(float(scores[c]))]
    return found[0] if found else len(scores)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_with_nan_inf_and_ties_match_the_naive_ranking(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q = rng.integers(-2, 3, (29, 4)).astype(np.float32)  # small integers: exact, tie-rich scores
    c = rng.integers(-2, 3, (23, 4)).astype(np.float32)
    q[[1, 7]] = np.nan  # whole rows of NaN scores
    c[[0, 5, 11]] = np.nan  # NaN candidates, among them positives of some queries
    q[9, 2] = np.inf  # +inf, -inf and NaN (inf * 0) scores
    c[3, 1] = -np.inf
    qk = list(rng.integers(0, 8, 29))
    ck = list(rng.integers(0, 7, 23))
    got = rank_candidates(q, c, KeyPositives(qk, ck), normalize=False, chunk_bytes=24 * 23 * 5)
    with np.errstate(invalid="ignore"):
        scores = q.astype(np.float64) @ c.T.astype(np.float64)
    want = [naive_rank(scores[i], {j for j in range(23) if ck[j] == qk[i]}) for i in range(29)]
    has = got.n_positives > 0
    assert np.where(has, got.best_rank, -1).tolist() == want
    assert np.isnan(scores).any() and np.isinf(scores).any()


def test_nan_scores_are_never_hits_and_ties_go_to_the_lower_index() -> None:
    n = 12
    nan = np.full((n, 4), np.nan, np.float32)
    m = retrieval_metrics(nan, nan, [[i] for i in range(n)], ks=(1, 5, 10))
    assert (m["R@1"], m["R@5"], m["R@10"], m["median_rank"]) == (0.0, 0.0, 0.0, n + 1)  # never found
    same = np.ones((n, 4), np.float32)  # a collapsed model: all ties, ranks 0..n-1 by index
    ranks = rank_candidates(same, same, KeyPositives(range(n), range(n))).best_rank
    assert ranks.tolist() == list(range(n))
    # a positive tied with other positives only is first: the best-ranked positive counts
    keys = [0] * 3 + [1] * 3
    assert (
        rank_candidates(same[:6], same[:6], KeyPositives(keys, keys)).best_rank.tolist() == [0] * 3 + [3] * 3
    )


def naive_zero_shot(scores: np.ndarray, y: list[int], n_classes: int) -> tuple[float, float]:
    """Accuracy and mean per-class recall: a hit when the true class is first in the naive ranking."""
    hits = [yi >= 0 and naive_rank(s, {yi}) == 0 for s, yi in zip(scores, y)]
    per_class = [np.mean([h for h, yi in zip(hits, y) if yi == c]) for c in sorted(set(y)) if c >= 0]
    return float(np.mean(hits)), float(np.mean(per_class))


def test_zero_shot_never_counts_nan_rows_as_hits() -> None:
    rng = np.random.default_rng(5)
    protos = rng.integers(-2, 3, (4, 3)).astype(np.float64)
    protos[2] = protos[1]  # classes 1 and 2 always tie: class 1 wins (lower index, as argmax)
    protos[3, 0] = np.nan  # class 3 scores NaN for every sample
    emb = rng.integers(-2, 3, (40, 3)).astype(np.float64)
    emb[[0, 4, 8]] = np.nan  # NaN rows: argmax would pick class 0
    classes = ["a", "b", "c", "d"]
    y_idx = [int(v) for v in rng.integers(0, 4, 40)]
    y_idx[0] = y_idx[4] = 0
    y_idx[-1] = -1  # a label that is not a class
    labels = [classes[i] if i >= 0 else "zzz" for i in y_idx]
    m = zero_shot_metrics(emb, labels, classes, protos)
    with np.errstate(invalid="ignore"):
        scores = emb @ protos.T
    acc, recall = naive_zero_shot(scores, y_idx, 4)
    assert m["accuracy"] == pytest.approx(acc) and m["mean_per_class_recall"] == pytest.approx(recall)
    nan_only = zero_shot_metrics(np.full((5, 3), np.nan), ["a"] * 5, classes, protos)
    assert nan_only["accuracy"] == 0.0


def test_with_a_loss_scaler_a_skipped_step_backs_off_the_scale(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fp16 needs a GPU; a CPU GradScaler in an fp32 run takes the same code path (scale, unscale_)
    original_init = trainer_module.Trainer.__init__

    def with_scaler(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.scaler = torch.amp.GradScaler("cpu")

    monkeypatch.setattr(trainer_module.Trainer, "__init__", with_scaler)
    nan = _NanLoss(monkeypatch, {2, 4, 5})
    scales: dict[int, float] = {}
    snaps: dict[int, dict[str, torch.Tensor]] = {}

    def record(step: int, metrics: dict[str, float]) -> None:
        scales[step] = nan.trainer.scaler.get_scale()
        snaps[step] = nan.snapshot()

    cfg = load_config(raw=tiny_config(dataset, max_nonfinite_steps=2))
    with pytest.raises(TrainingError, match=r"step 5 .*2 steps in a row"):
        run_training(cfg, tmp_path / "run", show_progress=False, on_step=record)
    # each skip halves the scale and changes no weight; one skip alone does not stop training
    assert [scales[s] for s in range(1, 5)] == [2.0**16, 2.0**15, 2.0**15, 2.0**14]
    assert all(torch.equal(snaps[1][k], snaps[2][k]) for k in snaps[1])
    assert not all(torch.equal(snaps[2][k], snaps[3][k]) for k in snaps[2])  # step 3 trained
    assert all(torch.equal(snaps[3][k], snaps[4][k]) for k in snaps[3])
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000003.safetensors"] and _all_finite(ckpts[0])


def test_nonfinite_tensors_is_exact_for_huge_finite_weights() -> None:
    from modalign.model_io import nonfinite_tensors

    tensors = {
        "huge": torch.full((10,), 3e38),  # finite, but the sum overflows to inf
        "cancel": torch.tensor([3e38, 3e38, -3e38]),
        "nan": torch.tensor([1.0, float("nan")]),
        "inf": torch.tensor([float("-inf"), 1.0]),
        "half": torch.tensor([60000.0, 60000.0], dtype=torch.float16),  # sum overflows fp16
        "ints": torch.tensor([1, 2]),
    }
    assert nonfinite_tensors(tensors) == ["nan", "inf"]
