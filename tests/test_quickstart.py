"""The README's main command on the bundled data reaches the issue's accuracy bars."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_reaches_the_accuracy_bars(tmp_path: Path) -> None:
    run = tmp_path / "quickstart"
    cmd = [sys.executable, "-m", "modalign", "train", "configs/quickstart.yaml", "--out", str(run)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    report = json.loads((run / "report.json").read_text())
    assert report["meta"]["n_test"] == 300
    assert report["zeroshot/image/accuracy"] >= 0.97, report
    assert report["zeroshot/audio/accuracy"] >= 0.93, report
    assert report["retrieval/audio->image/R@1"] >= 0.90, report
    # the README's Python example on the trained model
    import modalign

    model = modalign.load(run / "model")
    text = model.encode(["three", "seven"], modality="text")
    audio = model.encode([str(ROOT / "data/fsdd_digits/audio/3_george_0.flac")], modality="audio")
    scores = audio @ text.T
    assert text.shape == (2, 64) and scores[0, 0] > scores[0, 1]
