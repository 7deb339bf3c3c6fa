"""Training throughput and peak memory: modalign vs open_clip on the same tiny CLIP, batch and data.

Run: ``python benchmarks/train_throughput.py`` (``--steps 200 --batch-size 128 --threads 1
--rounds 2``; ``--json PATH`` writes the figures; a few minutes on a busy 2-core CPU). open_clip
imports torchvision, so the script needs ``.venv-vision`` (``bash scripts/setup_vision.sh``): when
open_clip does not import in the running interpreter, it re-runs itself with
``.venv-vision/bin/python`` and says so. Both sides then run on the same torch.

Protocol (fixed before any number was looked at):

- Model: one open_clip model config (ViT image tower: 32 px, patch 4, width 128, 4 layers; text
  tower: context 32, CLIP BPE vocabulary, width 128, 4 layers; embed_dim 64), fp32, CPU. Its random
  initial weights (seed 0) are written once as ``open_clip_model.safetensors`` beside
  ``open_clip_config.json``, and both sides start from that file: open_clip through
  ``create_model("local-dir:...")``, modalign through its ``open_clip_image``/``open_clip_text``
  encoders (``trainable: all``, ``head: none``, ``embed_dim: 64``: the identical architecture).
- Data: the icon set's training split (5,744 image–name pairs, ``data/mdi_icons.tar.gz``). Inputs
  are open_clip's evaluation preprocessing (resize to 32 px, bicubic, OpenAI mean/std; no
  augmentation on either side) and open_clip's tokenizer. open_clip gets them as tensors in memory
  (prepared once by this script with open_clip's own ``preprocess``/tokenizer, then a ``DataLoader``
  over a ``TensorDataset``, seeded random order, no workers); modalign reads the manifest through
  its own pipeline (in-memory source), as ``modalign train`` does. Batch orders differ (each side's
  own seeded shuffle).
- Training: ``--steps`` steps of ``--batch-size``, AdamW (lr 5e-4, betas 0.9/0.98, eps 1e-6, weight
  decay 0.1 on matrices only), linear warm-up 20 steps then cosine to 0, no gradient clipping,
  CLIP loss with a learnable logit scale initialised to 1/0.07 and clamped to [1, 100],
  ``--threads`` torch threads. open_clip side: ``open_clip_train.train.train_one_epoch`` (its
  training loop, one epoch of ``--steps`` batches) with ``open_clip.create_loss`` (``ClipLoss``),
  ``open_clip_train.scheduler.cosine_lr`` and the optimizer built as ``open_clip_train/main.py``
  builds it (restated: that part of main() is not callable alone). modalign side:
  ``modalign.workflows.train.run_training`` (the CLI's loop; it also logs every step and writes the
  end-of-run checkpoint).
- Throughput: samples/s over steps 11 .. steps-1 (the first 10 steps are warm-up; the last step is
  left out because modalign's carries its end-of-run checkpoint), from per-step timestamps: the end
  of modalign's steps (``on_step``), the start of open_clip's next step (its scheduler call). Each
  side runs in a fresh subprocess, ``--rounds`` times, sides alternating; the best round counts.
  Added after the first run had been seen: the same window in the process's CPU time (``per CPU
  s``), less sensitive to other processes on a shared machine than the wall clock.
- Memory: the subprocess's peak resident set (``VmHWM``), whole and above its resident set after
  imports (``train MB``: data, model, optimizer, activations); the largest round counts. The ratio
  target is on ``train MB``.
  Changed after the first runs had been seen (issue 12, two defects of the above, both against
  modalign; the first protocol's figures are still printed, as ``train MB v1`` and ``peak MB v1``):
  (1) the import baseline was not symmetric: the open_clip side imports open_clip (and torchvision
  with it) before its resident set is read, while modalign imports open_clip lazily, when it builds
  its encoders, so ~220 MB of library imports counted as modalign's training memory. Now the
  modalign side imports open_clip, the library its encoders use, before its resident set is read.
  (2) the peak was read at the end of the subprocess, after the validation loss, and on modalign's
  side after the end-of-run checkpoint, the saved model and ``modalign.load``. Now both peaks are
  read at the end of step ``steps-1``, the end of the throughput window (``on_step`` / the start
  of open_clip's last step), so they cover data, model, optimizer and the training steps alone.
- Loss: the CLIP loss of each side's final weights (at its final logit scale) on the icon
  validation split (5 fixed batches of 128, open_clip's preprocessing), computed by one function
  (``open_clip.loss.ClipLoss``) on both; and the mean training loss of the last 10 steps.
- Targets (issue 12): modalign >= 1.3x open_clip's throughput at <= 0.8x its peak memory, the loss
  after the steps within 2% of open_clip's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VISION_PYTHON = ROOT / ".venv-vision" / "bin" / "python"
MANIFEST, ARCHIVE = ROOT / "data/mdi_icons/pairs.jsonl", ROOT / "data/mdi_icons.tar.gz"
TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "patch_size": 4, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}
LR, WEIGHT_DECAY, WARMUP, WARM_STEPS, VAL_BATCHES = 5e-4, 0.1, 20, 10, 5


def _memory() -> dict[str, float]:
    """Resident and peak resident set of this process, MB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def _clocks() -> tuple[float, float]:
    """(wall clock, this process's CPU time) in seconds."""
    return time.perf_counter(), time.process_time()


def _split(split: str) -> tuple[Any, Any]:
    """(images (N, 3, 32, 32), tokens (N, 32)) of a split, with open_clip's preprocessing and tokenizer."""
    import open_clip
    import torch
    from PIL import Image

    from modalign.data.loading import open_manifest

    manifest = open_manifest(MANIFEST, ARCHIVE)
    rows = [r for r in manifest.rows if r.get("split") == split]
    base = MANIFEST.parent
    cfg = {**open_clip.transform.PreprocessCfg().__dict__, "size": TINY["vision_cfg"]["image_size"]}
    preprocess = open_clip.image_transform(cfg["size"], is_train=False, mean=cfg["mean"], std=cfg["std"])
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=TINY["text_cfg"]["context_length"])
    images = torch.stack([preprocess(Image.open(base / r["image"]).convert("RGB")) for r in rows])
    return images, tokenizer([r["text"] for r in rows])


def _val_loss(work: Path, embed: Any, scale: float) -> float:
    """CLIP loss of ``embed(images, tokens) -> (image rows, text rows)`` on the fixed validation batches."""
    import torch
    from open_clip.loss import ClipLoss

    images, tokens = torch.load(work / "val.pt", weights_only=True)
    n = len(images) // VAL_BATCHES
    total = 0.0
    with torch.no_grad():
        for i in range(VAL_BATCHES):
            a, b = embed(images[i * n : (i + 1) * n], tokens[i * n : (i + 1) * n])
            total += float(ClipLoss()(a, b, torch.tensor(scale)))
    return total / VAL_BATCHES


def _prepare(work: Path, batch: int) -> None:
    """Initial weights and the preprocessed training and validation tensors, once for every run."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    init = work / "init"
    init.mkdir()
    (init / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{init}", load_weights=False)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(init / "open_clip_model.safetensors")
    )
    torch.save(_split("train"), work / "train.pt")
    images, tokens = _split("val")
    keep = VAL_BATCHES * batch
    torch.save((images[:keep], tokens[:keep]), work / "val.pt")


def _open_clip_side(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import open_clip
    import torch
    from open_clip_train.params import parse_args
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset

    torch.set_num_threads(args.threads)
    after_imports = _memory()["VmRSS"]
    images, tokens = torch.load(work / "train.pt", weights_only=True)
    init = f"local-dir:{work / 'init'}"
    model = open_clip.create_model(init, precision="fp32", device="cpu", output_dict=True)
    oargs = parse_args(
        ["--batch-size", str(args.batch_size), "--lr", str(LR), "--wd", str(WEIGHT_DECAY)]
        + ["--warmup", str(WARMUP), "--beta1", "0.9", "--beta2", "0.98", "--eps", "1e-6"]
        + ["--precision", "fp32", "--log-every-n-steps", str(10**9)]
    )
    oargs.device, oargs.world_size, oargs.rank, oargs.local_rank, oargs.distill = "cpu", 1, 0, 0, False
    oargs.wandb = False  # main.py derives it from --report-to
    # the optimizer as open_clip_train/main.py builds it
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in named if exclude(n, p) and p.requires_grad], "weight_decay": 0.0},
            {
                "params": [p for n, p in named if not exclude(n, p) and p.requires_grad],
                "weight_decay": oargs.wd,
            },
        ],
        lr=oargs.lr,
        betas=(oargs.beta1, oargs.beta2),
        eps=oargs.eps,
    )
    schedule = cosine_lr(optimizer, oargs.lr, oargs.warmup, args.steps)
    starts: list[tuple[float, float]] = []
    peaks: list[float] = []

    def scheduler(step: int) -> None:
        starts.append(_clocks())
        if step == args.steps - 1:  # the start of the last step: the end of the timed window
            peaks.append(_memory()["VmHWM"])
        schedule(step)

    loss_fn = open_clip.create_loss(oargs)
    losses: list[float] = []

    def loss(**kw: Any) -> Any:
        out = loss_fn(**kw)
        losses.append(float(sum(v.detach() for v in out.values())))
        return out

    generator = torch.Generator().manual_seed(0)
    sampler = RandomSampler(range(len(images)), num_samples=args.steps * args.batch_size, generator=generator)
    loader = DataLoader(
        TensorDataset(images, tokens), batch_size=args.batch_size, sampler=sampler, drop_last=True
    )
    loader.num_batches, loader.num_samples = args.steps, args.steps * args.batch_size  # type: ignore[attr-defined]
    data = {"train": argparse.Namespace(dataloader=loader, set_epoch=lambda epoch: None)}
    train_one_epoch(model, data, loss, 0, optimizer, None, scheduler, None, oargs)
    ends = starts[1:] + [_clocks()]  # a step ends where the next one starts
    model.eval()
    val = _val_loss(
        work,
        lambda x, t: (model.encode_image(x, True), model.encode_text(t, True)),
        model.logit_scale.exp().item(),
    )
    imports = {"after_imports": after_imports, "after_imports_v1": after_imports}
    return _result(args, ends, losses, val, model.logit_scale.exp().item(), imports, peaks)


def _modalign_side(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    import modalign
    from modalign.config import load_config
    from modalign.training.checkpoint import list_checkpoints
    from modalign.workflows.train import run_training

    torch.set_num_threads(args.threads)
    after_imports_v1 = _memory()["VmRSS"]
    import open_clip  # noqa: F401  (modalign's open_clip encoders import it when they are built)

    after_imports = _memory()["VmRSS"]
    params = {
        "config": str(work / "init/open_clip_config.json"),
        "weights": str(work / "init/open_clip_model.safetensors"),
    }
    tower = {"encoder_params": params, "trainable": "all"}
    raw = {
        "data": {"manifest": str(MANIFEST), "archive": str(ARCHIVE), "val_split": None, "test_split": None},
        "modalities": {
            "image": {"kind": "image", "encoder": "open_clip_image", **tower},
            "text": {"kind": "text", "encoder": "open_clip_text", **tower},
        },
        "model": {"embed_dim": TINY["embed_dim"], "head": "none", "cache_frozen_features": False},
        "objectives": [{"name": "clip"}],
        "trainer": {
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "warmup_steps": WARMUP,
            "grad_clip": None,
            "checkpoint_every": args.steps,
            "val_every": args.steps,
            "select_best": False,
            "threads": args.threads,
            "seed": 0,
        },
    }
    ends: list[tuple[float, float]] = []
    losses: list[float] = []
    peaks: list[float] = []

    def on_step(step: int, metrics: dict[str, float]) -> None:
        ends.append(_clocks())
        losses.append(metrics["loss"])
        if step == args.steps - 1:  # the end of the timed window
            peaks.append(_memory()["VmHWM"])

    out = work / f"modalign-{os.getpid()}"
    run_training(load_config(raw=raw), out, show_progress=False, on_step=on_step)
    newest = load_file(str(list_checkpoints(out / "checkpoints")[-1]))
    scale = float(
        next(v for k, v in newest.items() if k.startswith("objective/") and k.endswith("log_scale")).exp()
    )
    model = modalign.load(out / "model").eval()
    ones = lambda x: torch.ones(len(x), dtype=torch.bool)  # noqa: E731
    val = _val_loss(
        work, lambda x, t: (model.tower("image")(x, ones(x)), model.tower("text")(t, ones(t))), scale
    )
    imports = {"after_imports": after_imports, "after_imports_v1": after_imports_v1}
    return _result(args, ends, losses, val, scale, imports, peaks)


def _result(
    args: argparse.Namespace,
    ends: list[tuple[float, float]],
    losses: list[float],
    val: float,
    scale: float,
    imports: dict[str, float],
    peaks: list[float],
) -> dict[str, Any]:
    """The figures of one side's run; ``imports``: its resident set after imports (and under the
    first protocol), ``peaks``: its peak resident set at the end of the timed window."""
    if len(ends) != args.steps or len(losses) != args.steps or len(peaks) != 1:
        raise RuntimeError(f"expected {args.steps} steps, saw {len(ends)} step ends and {len(losses)} losses")
    timed = args.steps - 1 - WARM_STEPS  # steps WARM_STEPS+1 .. steps-1
    seconds, cpu_seconds = (b - a for a, b in zip(ends[WARM_STEPS - 1], ends[args.steps - 2]))
    mem = _memory()
    return {
        "samples_per_s": timed * args.batch_size / seconds,
        "samples_per_cpu_s": timed * args.batch_size / cpu_seconds,
        "timed_steps": timed,
        "seconds": seconds,
        "peak_rss_mb": peaks[0],
        "train_mb": peaks[0] - imports["after_imports"],
        "peak_rss_mb_v1": mem["VmHWM"],  # the first protocol: at the end of the process
        "train_mb_v1": mem["VmHWM"] - imports["after_imports_v1"],
        "val_loss": val,
        "last10_train_loss": sum(losses[-10:]) / 10,
        "logit_scale": scale,
    }


def _child(side: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--side", side, "--work", str(work)]
    cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the {side} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--side", choices=("modalign", "open_clip"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side is not None:
        run = _modalign_side if args.side == "modalign" else _open_clip_side
        print(json.dumps(run(args, Path(args.work))))
        return
    try:
        import open_clip  # noqa: F401
        import open_clip_train.train  # noqa: F401
    except Exception as e:  # noqa: BLE001  (torchvision built for another torch raises RuntimeError)
        if not VISION_PYTHON.is_file() or Path(sys.prefix).resolve() == VISION_PYTHON.parents[1].resolve():
            raise SystemExit(
                f"open_clip does not import ({e}); create .venv-vision: bash scripts/setup_vision.sh"
            ) from None
        print(
            f"open_clip does not import here ({type(e).__name__}); re-running with {VISION_PYTHON}",
            flush=True,
        )
        os.execv(str(VISION_PYTHON), [str(VISION_PYTHON), __file__, *sys.argv[1:]])
    import open_clip
    import torch
    from _icons import table, write_json

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _prepare(work, args.batch_size)
        results: dict[str, list[dict[str, Any]]] = {"modalign": [], "open_clip": []}
        for r in range(args.rounds):
            for side in ("open_clip", "modalign") if r % 2 == 0 else ("modalign", "open_clip"):
                results[side].append(_child(side, args, work))
                print(
                    f"round {r + 1}, {side}: {results[side][-1]['samples_per_s']:.0f} samples/s", flush=True
                )
    best = {s: max(rs, key=lambda x: x["samples_per_s"]) for s, rs in results.items()}
    mem = {s: max(x["train_mb"] for x in rs) for s, rs in results.items()}
    peak = {s: max(x["peak_rss_mb"] for x in rs) for s, rs in results.items()}
    mem_v1 = {s: max(x["train_mb_v1"] for x in rs) for s, rs in results.items()}
    peak_v1 = {s: max(x["peak_rss_mb_v1"] for x in rs) for s, rs in results.items()}
    first = {s: rs[0] for s, rs in results.items()}  # losses are deterministic: any round
    cpu = {s: max(x["samples_per_cpu_s"] for x in rs) for s, rs in results.items()}
    rows = [
        [
            s,
            best[s]["samples_per_s"],
            cpu[s],
            peak[s],
            mem[s],
            peak_v1[s],
            mem_v1[s],
            first[s]["val_loss"],
            first[s]["last10_train_loss"],
            first[s]["logit_scale"],
        ]
        for s in ("modalign", "open_clip")
    ]
    ratios = {
        "throughput": best["modalign"]["samples_per_s"] / best["open_clip"]["samples_per_s"],
        "throughput_cpu": cpu["modalign"] / cpu["open_clip"],
        "train_mb": mem["modalign"] / mem["open_clip"],
        "peak_rss": peak["modalign"] / peak["open_clip"],
        "train_mb_v1": mem_v1["modalign"] / mem_v1["open_clip"],
        "peak_rss_v1": peak_v1["modalign"] / peak_v1["open_clip"],
        "val_loss": first["modalign"]["val_loss"] / first["open_clip"]["val_loss"],
    }
    setup = (
        f"{args.steps} steps of {args.batch_size}, {args.threads} thread(s), best of {args.rounds} rounds; "
        f"torch {torch.__version__}, open_clip {open_clip.__version__}"
    )
    print(setup)
    header = ["side", "samples/s", "per CPU s", "peak MB", "train MB", "peak MB v1", "train MB v1"]
    header += ["val loss", "last-10 loss", "scale"]
    print(table(header, rows))
    print(
        f"modalign / open_clip: throughput {ratios['throughput']:.2f}x (target >= 1.3; per CPU second "
        f"{ratios['throughput_cpu']:.2f}x), train memory "
        f"{ratios['train_mb']:.2f}x (target <= 0.8), peak RSS {ratios['peak_rss']:.2f}x, val loss "
        f"{ratios['val_loss']:.3f} (target within 2%); first protocol (v1): train memory "
        f"{ratios['train_mb_v1']:.2f}x, peak RSS {ratios['peak_rss_v1']:.2f}x"
    )
    write_json(args.json, {"setup": setup, "results": results, "ratios": ratios})


if __name__ == "__main__":
    main()
