"""Distillation on the icon set: teacher vs distilled student vs the same student from scratch.

Run: ``python benchmarks/distill_student.py`` from the repository root. ``--teacher RUN_DIR`` reuses
a finished ``modalign train configs/mdi_icons.yaml --out RUN_DIR`` run (its saved config must be
that file's, its test figures are read from its ``report.json``) instead of training the teacher
here; ``--steps N`` trains the two students for N steps instead of their config's (1000),
``--teacher-steps N`` the teacher instead of its config's 500; ``--seed N`` sets both students'
``trainer.seed``; ``--json PATH`` writes the figures. On a 2-core machine shared with
other jobs the two students took 37 minutes (distilled 24, scratch 13); training the teacher here
adds its own run (over an hour for 500 steps on that machine).

Protocol, fixed before looking at results: the bundled icon set and its splits, test R@1/5/10 in
both directions with the same id as the only positive.

* teacher: ``configs/mdi_icons.yaml`` trained from scratch (its config's steps);
* distilled student: ``configs/icons_student.yaml`` (at most a quarter of the teacher's parameters,
  TinyCLIP weight inheritance from the teacher and the objectives and teacher settings of that
  config);
* scratch student: the same student architecture, steps and seed, CLIP only, random initialisation.
Both students train for the same number of steps. Targets: the student has <= 1/4 of the
teacher's parameters, keeps >= 90% of its text->image R@10 and beats the scratch student.

Disclosed: the student's recipe (affinities at the teacher's own logit scale 17.73 instead of 50,
1000 steps instead of 500) was chosen after looking at these figures: seed-0 runs against a 500-step
teacher, ranked by validation R@10, their test figures seen too (teacher embedded once vs on
augmented batches, 500 vs 1000 steps). The claim is the run with ``--seed 1``, not looked at
before the choice:
``--teacher`` = a 500-step ``mdi_icons.yaml`` run (1,572,512 parameters, test text->image R@1/5/10
0.372/0.556/0.628), students 381,968 parameters (0.243), distilled 0.331/0.530/0.594 (94.6% of the
teacher's R@10), scratch 0.220/0.401/0.495 (+9.9 points). Seed 0 (selection run): 0.341/0.532/0.599
vs scratch 0.479 (test; validation R@10 0.590 vs 0.477). Seed 2 (run after the claim, same
settings): 0.329/0.516/0.582 (92.6%) vs scratch 0.231/0.435/0.505.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _icons import ROOT, table, write_json

import modalign
from modalign.config import ExperimentConfig, load_config
from modalign.workflows.train import run_training

KS = (1, 5, 10)
SAME_RUN = ("modalities", "model", "objectives", "trainer")  # sections a reused teacher must match


def trained(cfg: ExperimentConfig, out: Path) -> tuple[dict[str, float], float]:
    """Train ``cfg`` into ``out``; the test report and the wall seconds."""
    t0 = time.perf_counter()
    report = run_training(cfg, out, show_progress=False)
    return report, time.perf_counter() - t0


def reused_teacher(run: Path, cfg: ExperimentConfig) -> dict[str, float]:
    """The test report of a finished teacher run, after checking it trained ``cfg``."""
    # validated, so fields added (with defaults) since that run was saved compare equal
    saved = load_config(run / "config.yaml").model_dump(mode="json")
    want = cfg.model_dump(mode="json")
    saved["trainer"].pop("threads", None), want["trainer"].pop("threads", None)  # same model either way
    for section in SAME_RUN:
        if saved[section] != want[section]:
            raise SystemExit(
                f"--teacher {run}: its {section} section differs from configs/mdi_icons.yaml "
                "with these --teacher-steps"
            )
    report: dict[str, float] = json.loads((run / "report.json").read_text())
    return report


def tower_params(path: Path) -> tuple[int, dict[str, int]]:
    """All parameters of a saved model, and those of each modality's tower."""
    model = modalign.load(path)
    towers = {m: sum(p.numel() for p in model.tower(m).parameters()) for m in model.specs}
    return sum(p.numel() for p in model.parameters()), towers


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--steps", type=int, default=None, help="students' steps (default: their config's)")
    parser.add_argument("--teacher-steps", type=int, default=None, help="teacher's steps (default: 500)")
    parser.add_argument("--teacher", default=None, help="a finished mdi_icons.yaml run to reuse")
    parser.add_argument("--seed", type=int, default=None, help="students' trainer.seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="distill_student_"))

    def steps(n: int | None, seed: int | None = None) -> list[str]:
        sets = [f"trainer.threads={args.threads}"] + ([] if seed is None else [f"trainer.seed={seed}"])
        if n is None:
            return sets
        return [*sets, f"trainer.max_steps={n}", f"trainer.warmup_steps={max(1, n // 5)}"]

    teacher_cfg = load_config(ROOT / "configs/mdi_icons.yaml", steps(args.teacher_steps))
    if args.teacher is None:
        teacher_dir = work / "teacher"
        teacher_report, teacher_s = trained(teacher_cfg, teacher_dir)
    else:
        teacher_dir = Path(args.teacher)
        teacher_report, teacher_s = reused_teacher(teacher_dir, teacher_cfg), float("nan")
    student = ROOT / "configs/icons_student.yaml"
    runs = {
        "student, distilled (icons_student.yaml)": load_config(
            student, [*steps(args.steps, args.seed), f"model.teacher={teacher_dir}"]
        ),
        "student, from scratch": load_config(
            student,
            [
                *steps(args.steps, args.seed),
                "model.teacher=null",
                "model.inherit=null",
                "model.teacher_on_augmented=false",
                "objectives=[{name: clip}]",
            ],
        ),
    }
    results: dict[str, tuple[dict[str, float], float, Path]] = {
        "teacher (mdi_icons.yaml)": (teacher_report, teacher_s, teacher_dir)
    }
    for (name, cfg), out in zip(runs.items(), ("distilled", "scratch")):
        report, seconds = trained(cfg, work / out)
        results[name] = (report, seconds, work / out)

    rows, figures = [], {}
    for name, (report, seconds, path) in results.items():
        params, towers = tower_params(path)
        t2i = [report[f"retrieval/text->image/R@{k}"] for k in KS]
        i2t = [report[f"retrieval/image->text/R@{k}"] for k in KS]
        rows.append([name, params, towers["image"], towers["text"], *t2i, i2t[-1], seconds])
        figures[name] = {
            "params": params,
            "tower_params": towers,
            "text->image": t2i,
            "image->text": i2t,
            "seconds": seconds,
        }
    teacher, distilled, scratch = rows
    print("icon test split (positive = same id); R@k text->image, then image->text R@10")
    header = ["model", "params", "image tower", "text tower", "R@1", "R@5", "R@10", "i->t R@10", "train s"]
    print(table(header, rows))
    if args.teacher is not None:
        print(f"teacher reused from {args.teacher} (its report.json; not trained in this run)")
    ratio = distilled[1] / teacher[1]
    kept = distilled[6] / teacher[6]
    print(f"student / teacher parameters: {ratio:.3f} (target <= 0.25)")
    print(f"distilled student keeps {100 * kept:.1f}% of the teacher's text->image R@10 (target >= 90%)")
    print(f"distilled - scratch student text->image R@10: {100 * (distilled[6] - scratch[6]):+.1f} points")
    figures["param_ratio"], figures["kept_R@10"] = ratio, kept
    figures["args"] = vars(args)
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
