"""Symile's binary-XOR experiment: higher-order information that pairwise CLIP cannot see.

Run: ``python benchmarks/symile_xor.py`` (one seed; about 5 minutes on a busy 2-core CPU, the
28 pairwise InfoNCE terms of the baseline dominate); ``--seeds 0 1 2`` for several seeds;
``--json PATH`` writes every figure as one JSON object.

Why CLIP is not exactly 0.5: its predictions are a threshold of a *linear* function of the seven
query bits, and such functions have a small nonzero correlation with their parity on uniform bits;
no pairwise signal is involved (every pair of variables is independent).

Data (Saporta et al., arXiv 2411.01053, Sec. 5.1): ``a, …, g ~ Bernoulli(0.5)`` i.i.d. and
``h = a ⊕ … ⊕ g``. Any 7 of the 8 variables are independent, so every *pair* is independent and a
pairwise objective has nothing to learn; only the joint distribution of all 8 carries information.
Task: predict ``a`` from ``b..h`` by scoring the two possible encodings of ``a ∈ {0, 1}``.

Models: one ``Linear(1, D)`` encoder per variable (``D = 16``), unit-normalised outputs; AdamW lr
0.1, learnable logit scale ``θ₀ = −0.3``, 10,000 training samples, batch 1,000, 50 epochs: the
recipe of Symile's ``examples/binary_xor.py`` (which keeps the epoch with the best validation loss;
we keep the last). With this recipe Symile can stall at chance for some seeds (loss stuck at
``log B``, scale shrinking), so run several seeds.
Scores: Symile ``MIP(r_b, …, r_h, r_a(c))``; pairwise CLIP
``Σ_q ⟨r_q, r_a(c)⟩`` (the paper's ``Σ_{q<q'} ⟨r_q, r_q'⟩`` term does not depend on the candidate).
The CLIP baseline here *averages* the 28 pairwise InfoNCE losses (the paper sums them; with AdamW
only the scale of the gradient differs).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from modalign.objectives.contrastive import ClipObjective
from modalign.objectives.symile import SymileObjective
from modalign.types import EmbeddingBatch

NAMES = [f"v{k}" for k in range(8)]  # v0 = a (the target), v7 = h = XOR of the others


def make_data(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 8) float bits; the last column is the XOR of the first seven."""
    bits = torch.randint(0, 2, (n, 7), generator=generator)
    xor = bits.sum(1, keepdim=True) % 2
    return torch.cat([bits, xor], 1).float()


class Encoders(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.enc = nn.ModuleList(nn.Linear(1, dim) for _ in NAMES)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            name: F.normalize(enc(x[:, k : k + 1]), dim=1)
            for k, (name, enc) in enumerate(zip(NAMES, self.enc, strict=True))
        }


def accuracy(model: Encoders, objective: str, x: torch.Tensor) -> float:
    with torch.no_grad():
        emb = model(x)
        candidates = model(torch.tensor([[0.0] * 8, [1.0] * 8]))["v0"]  # (2, D): a = 0, a = 1
        queries = [emb[name] for name in NAMES[1:]]
        if objective == "symile":
            prod = queries[0]
            for q in queries[1:]:
                prod = prod * q
            scores = prod @ candidates.T  # (N, 2)
        else:
            scores = torch.stack(queries).sum(0) @ candidates.T
        pred = scores.argmax(1).float()
        return float((pred == x[:, 0]).float().mean())


def train(objective: str, seed: int, args: argparse.Namespace) -> dict:
    g = torch.Generator().manual_seed(seed)
    train_x = make_data(args.train, g)
    test_x = make_data(args.test, g)
    torch.manual_seed(seed)
    model = Encoders(args.dim)
    init_temperature = math.exp(0.3)  # θ₀ = log(1/τ) = −0.3
    if objective == "symile":
        loss_fn: nn.Module = SymileObjective(NAMES, negatives="n", init_temperature=init_temperature)
    else:
        loss_fn = ClipObjective(NAMES, init_temperature=init_temperature)
    opt = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=args.lr)
    start = time.perf_counter()
    last = float("nan")
    for _ in range(args.epochs):
        order = torch.randperm(args.train, generator=g)
        for i in range(0, args.train, args.batch):
            x = train_x[order[i : i + args.batch]]
            out = loss_fn(EmbeddingBatch(model(x), {}))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            loss_fn.clamp_()
            last = float(out.loss.detach())
    return {
        "objective": objective,
        "seed": seed,
        "test_accuracy": accuracy(model, objective, test_x),
        "train_accuracy": accuracy(model, objective, train_x),
        "final_loss": last,
        "logit_scale": float(loss_fn.scale().detach()),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runs = [train(obj, seed, args) for obj in ("symile", "clip") for seed in args.seeds]
    print(f"{'objective':>10} {'seed':>5} {'test acc':>9} {'train acc':>10} {'loss':>8} {'scale':>8}")
    for r in runs:
        print(
            f"{r['objective']:>10} {r['seed']:>5} {r['test_accuracy']:>9.4f} "
            f"{r['train_accuracy']:>10.4f} {r['final_loss']:>8.4f} {r['logit_scale']:>8.3f} "
            f"{r['seconds']:>8.1f}"
        )
    summary = {}
    for obj in ("symile", "clip"):
        accs = [r["test_accuracy"] for r in runs if r["objective"] == obj]
        summary[obj] = {
            "mean_test_accuracy": sum(accs) / len(accs),
            "min": min(accs),
            "max": max(accs),
        }
    print("\nmean test accuracy predicting a from b..h (chance 0.5):")
    for obj, s in summary.items():
        print(f"  {obj:>7}: {s['mean_test_accuracy']:.4f}  (min {s['min']:.4f}, max {s['max']:.4f})")
    ratio = summary["symile"]["mean_test_accuracy"] / summary["clip"]["mean_test_accuracy"]
    print(f"  symile / clip accuracy ratio: {ratio:.3f}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"config": vars(args) | {"json": str(args.json)}, "runs": runs, "summary": summary},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
