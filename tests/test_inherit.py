"""TinyCLIP weight inheritance and the teacher run on the student's augmented batches."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

import modalign
from modalign.config import load_config
from modalign.encoders import build_encoder
from modalign.errors import ConfigError
from modalign.training.inherit import inherit_weights
from modalign.workflows.train import run_training


def _text(width: int, depth: int) -> torch.nn.Module:
    return build_encoder(
        "text_transformer", {"vocab_size": 30, "max_length": 6, "width": width, "depth": depth, "heads": 2}
    ).eval()


def test_every_kth_layer_and_leading_width_slices() -> None:
    torch.manual_seed(0)
    teacher, student = _text(16, 4), _text(8, 2)
    left = inherit_weights(student, teacher.state_dict(), every_k=2)
    assert left == []
    t, s = teacher.blocks.layers, student.blocks.layers
    torch.testing.assert_close(s[1].linear1.weight, t[2].linear1.weight[:32, :8], atol=0, rtol=0)
    torch.testing.assert_close(s[0].norm2.bias, t[0].norm2.bias[:8], atol=0, rtol=0)
    # q, k and v are each sliced: student rows 8..15 (its k) are the teacher's k rows 16..23
    w_t, w_s = t[2].self_attn.in_proj_weight, s[1].self_attn.in_proj_weight
    torch.testing.assert_close(w_s[8:16], w_t[16:24, :8], atol=0, rtol=0)
    torch.testing.assert_close(student.tok.weight, teacher.tok.weight[:, :8], atol=0, rtol=0)
    # explicit layers
    inherit_weights(student, teacher.state_dict(), layers=[3, 1])
    torch.testing.assert_close(s[0].linear2.weight, t[3].linear2.weight[:8, :32], atol=0, rtol=0)
    with pytest.raises(ConfigError, match="needs more"):
        inherit_weights(student, teacher.state_dict(), layers=[3])


def test_inheriting_the_same_architecture_reproduces_the_teacher() -> None:
    torch.manual_seed(0)
    teacher, student = _text(16, 2), _text(16, 2)
    ids = torch.randint(1, 30, (3, 6))
    assert not torch.allclose(student(ids), teacher(ids))
    inherit_weights(student, teacher.state_dict())
    torch.testing.assert_close(student(ids), teacher(ids), atol=0, rtol=0)


def test_student_inherits_from_a_saved_teacher_and_distils_on_augmented_batches(
    dataset: Path, tmp_path: Path
) -> None:
    raw = tiny_config(dataset, max_steps=3)
    raw["eval"]["robustness"] = {"enabled": False}
    run_training(load_config(raw=raw), tmp_path / "teacher", show_progress=False)
    teacher = modalign.load(tmp_path / "teacher")

    student = tiny_config(dataset, max_steps=3)
    student["eval"]["robustness"] = {"enabled": False}
    student["modalities"]["image"]["encoder_params"] = {"widths": [4, 8]}
    student["modalities"]["image"]["transform"]["random_shift"] = 1
    student["modalities"]["image"]["lr_scale"] = 0.0  # keeps the inherited image weights as they start
    student["model"].update(
        {"teacher": str(tmp_path / "teacher"), "inherit": {"every_k_layers": 1}, "teacher_on_augmented": True}
    )
    student["objectives"] = [{"name": "clip"}, {"name": "affinity_distillation", "params": {"alpha": 0.5}}]
    run_training(load_config(raw=student), tmp_path / "student", show_progress=False)
    got = modalign.load(tmp_path / "student").state_dict()
    want = teacher.state_dict()
    key = "towers.image.encoder.net.6.weight"  # stage 2 first conv: (8, 4, 3, 3) of (16, 8, 3, 3)
    torch.testing.assert_close(got[key], want[key][:8, :4], atol=0, rtol=0)
    log = [json.loads(x) for x in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["affinity_distillation/loss"]) for r in log)

    other = json.loads(json.dumps(student))
    other["modalities"]["text"]["transform"]["vocab_size"] = 30  # another tokenizer
    with pytest.raises(ConfigError, match="'text'"):
        run_training(load_config(raw=other), tmp_path / "bad", show_progress=False)
