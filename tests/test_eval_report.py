"""``modalign eval`` end to end: report.json keys, CIs and chance, report.html content, browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CHROMIUM_ARGS, tiny_config
from typer.testing import CliRunner

from modalign.cli import app
from modalign.evaluation.html import format_seconds

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    root = tmp_path_factory.mktemp("evalrun")
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(dataset)))
    result = CliRunner().invoke(
        app, ["train", str(cfg), "--out", str(root / "run"), "--set", "trainer.max_steps=6"]
    )
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture(scope="module")
def evaluated(run: Path, dataset: Path) -> Path:
    out = run.parent / "eval"
    args = ["eval", str(run / "model"), "--data", str(dataset), "--match-on", "label", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--linear-probe", "--corruptions"])
    assert result.exit_code == 0, result.output
    return out


def test_report_json_has_every_metric_with_ci_and_chance(evaluated: Path, run: Path) -> None:
    report = json.loads((evaluated / "report.json").read_text())
    trained = json.loads((run / "report.json").read_text())
    d = "retrieval/image->text"
    for key in (
        "R@1",
        "R@5",
        "R@10",
        "median_rank",
        "n_queries",
        "mean_rank",
        "MRR@10",
        "nDCG@10",
        "MAP@100",
    ):
        assert isinstance(report[f"{d}/{key}"], float), key
    assert report[f"{d}/R@1"] == trained[f"{d}/R@1"]  # same model, split and semantics as training
    # match_on label, 4 balanced classes, 16 test rows: 4 positives among 16 candidates
    assert report["chance"][f"{d}/R@1"] == pytest.approx(4 / 16)
    assert report["chance"]["zeroshot/image/accuracy"] == pytest.approx(1 / 4)
    lo, hi = report["ci95"][f"{d}/R@1"]
    assert lo <= report[f"{d}/R@1"] <= hi
    assert 0 <= report["geometry/image-text/gap"] <= 2 and "geometry/audio/uniformity" in report
    assert {"lp_acc1", "lp_mean_per_class_recall", "weight_decay"} <= {
        k.rpartition("/")[2] for k in report if k.startswith("linear_probe/image/")
    }
    lo, hi = report["ci95"]["linear_probe/image/lp_acc1"]  # bootstrap over test samples
    assert 0 <= lo <= report["linear_probe/image/lp_acc1"] <= hi <= 1
    assert report["chance"]["linear_probe/image/lp_acc1"] == pytest.approx(1 / 4)  # 4 classes
    assert "linear_probe/image/weight_decay" not in report["ci95"]
    assert (evaluated / "per_query.npz").is_file()
    table = {
        k.removeprefix("robustness/corruption/") for k in report if k.startswith("robustness/corruption/")
    }
    for name in ("none", "image_noise", "image_blur", "audio_noise", "audio_clip", "audio_truncate"):
        assert f"{name}/zeroshot/image/accuracy" in table or f"{name}/zeroshot/audio/accuracy" in table, name
    assert table >= {"none/zeroshot/image/accuracy", "none/zeroshot/audio/accuracy"}
    assert "image_noise/image->text/R@1" in table and "audio_truncate/audio->image/R@5" in table
    assert report["robustness/corruption/none/image->text/R@1"] == report["retrieval/image->text/R@1"]
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert trained["meta"]["train_seconds"] == pytest.approx(last["train_seconds"], abs=0.05)


def test_zero_shot_only_with_a_label_column(run: Path, dataset: Path, tmp_path: Path) -> None:
    # a run configured without data.label_column, evaluated with positives matched on the text
    bare = tmp_path / "bare"
    shutil.copytree(run / "model", bare / "model")
    out = tmp_path / "out"
    args = ["eval", str(bare / "model"), "--data", str(dataset), "--match-on", "text", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert not [k for k in report if k.startswith("zeroshot/")]  # sentences are not classes
    result = CliRunner().invoke(app, [*args, "--label-column", "label"])
    assert result.exit_code == 0, result.output
    plain = json.loads((out / "report.json").read_text())
    assert "zeroshot/image/accuracy" in plain
    # prompt ensembling: templates around each class text change the prototypes, not the keys
    templates = ["--prompt-template", "{}", "--prompt-template", "a picture of {} here"]
    result = CliRunner().invoke(app, [*args, "--label-column", "label", *templates])
    assert result.exit_code == 0, result.output
    ensembled = json.loads((out / "report.json").read_text())
    assert ensembled["zeroshot/image/accuracy"] is not None
    assert ensembled["retrieval/image->text/R@1"] == plain["retrieval/image->text/R@1"]


def test_report_html_is_self_contained_with_ordered_columns(evaluated: Path) -> None:
    page = (evaluated / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # every image/audio is a data URI
    header = re.search(r"<th>query → target</th>(.*?)</tr>", page).group(1)  # type: ignore[union-attr]
    cols = re.findall(r"<th>(.*?)</th>", header)
    assert cols[:3] == ["R@1", "R@5", "R@10"]
    assert "chance 0.2500" in page and "<audio controls" in page and "Confusion matrix" in page
    for title in (
        "Recall@k curves",
        "PCA",
        "Embedding geometry",
        "Linear probe",
        "training and validation loss",
    ):
        assert title in page, title


def test_seconds_read_as_durations() -> None:
    assert [format_seconds(s) for s in (3.25, 662.2, 7500)] == ["3.2 s", "11 min 02 s", "2 h 05 min"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")
def test_report_opens_in_headless_chromium_without_console_errors(evaluated: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto((evaluated / "report.html").as_uri())
        page.wait_for_load_state("load")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        n_images = page.locator("img").count()
        loaded = page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        browser.close()
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert n_images >= 5 and loaded
    assert shot.stat().st_size > 10_000 and np.frombuffer(shot.read_bytes()[:8], np.uint8).tolist()[1:4] == [
        80,
        78,
        71,
    ]


def test_corruptions_do_what_they_say() -> None:
    import torch

    from modalign.evaluation.corruptions import corrupt_image, corrupt_waveform

    g = torch.Generator().manual_seed(0)
    flat = torch.full((1, 8, 8), 0.7)
    assert torch.allclose(corrupt_image(flat, "image_blur", g), flat)  # blur keeps a constant image
    edge = torch.zeros(1, 8, 8)
    edge[:, :, 4:] = 1
    blurred = corrupt_image(edge, "image_blur", g)
    assert 0 < blurred[0, 0, 3] < 0.5 < blurred[0, 0, 4] < 1  # the edge is smoothed
    noisy = corrupt_image(torch.zeros(1, 64, 64), "image_noise", g)
    assert float(noisy.std()) == pytest.approx(0.5, rel=0.05)
    rng = np.random.default_rng(0)
    w = np.sin(np.linspace(0, 200, 8000)).astype(np.float32)
    noise = corrupt_waveform(w, "audio_noise", rng) - w
    assert 10 * np.log10(np.mean(w**2) / np.mean(noise**2)) == pytest.approx(10, abs=0.3)
    assert np.abs(corrupt_waveform(w, "audio_clip", rng)).max() == pytest.approx(0.2 * np.abs(w).max())
    cut = corrupt_waveform(w, "audio_truncate", rng)
    assert (cut[4000:] == 0).all() and (cut[:4000] == w[:4000]).all()


def test_train_seconds_add_up_over_resume_segments(dataset: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(dataset, max_steps=4)))
    run = tmp_path / "run"
    assert CliRunner().invoke(app, ["train", str(cfg), "--out", str(run)]).exit_code == 0
    first = json.loads((run / "report.json").read_text())["meta"]["train_seconds"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    result = CliRunner().invoke(
        app, ["train", str(cfg), "--out", str(run), "--resume", "--set", "trainer.max_steps=8"]
    )
    assert result.exit_code == 0, result.output
    after = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    total = json.loads((run / "report.json").read_text())["meta"]["train_seconds"]
    assert after[:4] == lines  # the first segment's log is kept
    assert after[4]["train_seconds"] > lines[3]["train_seconds"]  # the second segment continues its clock
    # the report rounds to 0.1 s: compare it with the log, and the log's (ms) clocks with each other
    assert first == pytest.approx(lines[-1]["train_seconds"], abs=0.05)
    assert total == pytest.approx(after[-1]["train_seconds"], abs=0.05)
    assert after[-1]["train_seconds"] > lines[-1]["train_seconds"]


def test_blind_pairs_against_the_model_itself_list_every_pair_and_score_mmvp_style(
    run: Path, dataset: Path, tmp_path: Path
) -> None:
    from modalign.data.loading import load_split, open_manifest
    from modalign.data.manifest import cell
    from modalign.evaluation.evaluate import embed_samples
    from modalign.model import load

    out = tmp_path / "blind"
    model_dir = str(run / "model")
    args = ["eval", model_dir, "--data", str(dataset), "--out", str(out), "--blind-pairs", model_dir]
    # the model as its own reference: cos > -1 here and < 1 there holds for every two distinct
    # items, and every pair disagrees by exactly 0, so the first pairs in row-major order are kept
    result = CliRunner().invoke(app, [*args, "--blind-thresholds", "-1", "1", "--blind-max-pairs", "7"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    model = load(run / "model")
    manifest = open_manifest(dataset)
    samples = load_split(manifest, model.sources(), "test", show_progress=False)
    emb = embed_samples(model, samples)
    texts = [cell(manifest.rows[r], "text") for r in samples.rows]
    ids = list(samples.ids)
    for item in ("image", "audio"):
        rows = [i for i in range(len(ids)) if samples.present(item)[i] and samples.present("text")[i]]
        want = [(i, j) for a, i in enumerate(rows) for j in rows[a + 1 :] if texts[i] != texts[j]][:7]
        assert report["meta"]["blind_pairs"][f"{item}->text"] == [[ids[i], ids[j]] for i, j in want]

        def p_own(x: int, y: int, t: int, item: str = item) -> float:
            """MMVP: softmax over the two items of 100 cos(item, statement t), for item x."""
            e, s = emb[item].astype(np.float64), emb["text"][t].astype(np.float64)
            logits = 100 * np.array([e[x] @ s, e[y] @ s])
            return float(np.exp(logits[0] - logits.max()) / np.exp(logits - logits.max()).sum())

        right = [p_own(i, j, i) > 0.5 and p_own(j, i, j) > 0.5 for i, j in want]
        key = f"blind_pairs/{item}->text"
        assert report[f"{key}/n_pairs"] == 7
        assert report[f"{key}/score"] == pytest.approx(100 * np.mean(right))
        assert report["chance"][f"{key}/score"] == 25.0 and f"{key}/score" in report["ci95"]
    assert "CLIP-blind pairs" in (out / "report.html").read_text()
    bad = CliRunner().invoke(app, [*args, "--blind-thresholds", "2", "0.6"])
    assert bad.exit_code == 2 and "--blind-thresholds: hi = 2.0 is not a cosine" in bad.output
