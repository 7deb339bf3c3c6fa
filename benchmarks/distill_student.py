"""Distillation on the icon set: teacher vs distilled student vs the same student from scratch.

Run: ``python benchmarks/distill_student.py`` (``--steps N`` trains all three models for N steps
instead of the configs' 500; ``--json PATH`` writes the figures). Protocol, fixed before looking at
results: the bundled icon set and its splits, test R@1/5/10 in both directions with the same id
as the only positive.

* teacher: ``configs/mdi_icons.yaml`` trained from scratch;
* distilled student: ``configs/icons_student.yaml`` (about a quarter of the teacher's parameters,
  TinyCLIP weight inheritance from the teacher, affinity mimicking on its augmented batches, CLIP);
* scratch student: the same student architecture, CLIP only, random initialisation, same steps.
Targets: the student has <= 1/4 of the teacher's parameters, keeps >= 90% of its text->image R@10
and beats the scratch student.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _icons import ROOT, table, write_json

import modalign
from modalign.config import load_config
from modalign.workflows.train import run_training

KS = (1, 5, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="distill_student_"))
    common = [f"trainer.threads={args.threads}"]
    if args.steps is not None:
        common += [f"trainer.max_steps={args.steps}", f"trainer.warmup_steps={max(1, args.steps // 5)}"]
    runs = {
        "teacher (mdi_icons.yaml)": load_config(ROOT / "configs/mdi_icons.yaml", common),
        "student, distilled (icons_student.yaml)": load_config(
            ROOT / "configs/icons_student.yaml", [*common, f"model.teacher={work / 'teacher'}"]
        ),
        "student, from scratch": load_config(
            ROOT / "configs/icons_student.yaml",
            [
                *common,
                "model.teacher=null",
                "model.inherit=null",
                "model.teacher_on_augmented=false",
                "objectives=[{name: clip}]",
            ],
        ),
    }
    rows, figures = [], {}
    params = {}
    for (name, cfg), out in zip(runs.items(), ("teacher", "distilled", "scratch")):
        t0 = time.perf_counter()
        report = run_training(cfg, work / out, show_progress=False)
        seconds = time.perf_counter() - t0
        params[name] = sum(p.numel() for p in modalign.load(work / out).parameters())
        t2i = [report[f"retrieval/text->image/R@{k}"] for k in KS]
        i2t = [report[f"retrieval/image->text/R@{k}"] for k in KS]
        rows.append([name, params[name], *t2i, i2t[-1], seconds])
        figures[name] = {"params": params[name], "text->image": t2i, "image->text": i2t, "seconds": seconds}
    teacher, distilled, scratch = rows
    print("icon test split (positive = same id); R@k text->image, last column image->text R@10")
    print(table(["model", "params", "R@1", "R@5", "R@10", "i->t R@10", "train s"], rows))
    ratio = distilled[1] / teacher[1]
    kept = distilled[4] / teacher[4]
    print(f"student / teacher parameters: {ratio:.3f} (target <= 0.25)")
    print(f"distilled student keeps {100 * kept:.1f}% of the teacher's text->image R@10 (target >= 90%)")
    print(f"distilled - scratch student text->image R@10: {100 * (distilled[4] - scratch[4]):+.1f} points")
    figures["param_ratio"], figures["kept_R@10"] = ratio, kept
    figures["args"] = vars(args)
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
