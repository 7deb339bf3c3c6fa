"""Build the bundled prediction demo sets `data/rosmap.tar.gz` and `data/breast_cancer.tar.gz`.

* ROSMAP (MOGONET release, MIT): three omics views of 200 features each, `mrna`, `meth`, `mirna`,
  as list columns; label 0 = normal control, 1 = Alzheimer's disease; splits train 245 / test 106
  exactly as released. Values are kept at float32 precision.
* Breast cancer (scikit-learn's copy of the UCI Wisconsin Diagnostic set, CC BY 4.0): its 30
  features split into three "modalities" `mean`, `error`, `worst` (10 each); label 0 = malignant,
  1 = benign; a stratified 70/30 train/test split with seed 0 (no validation split).

Deterministic: the same inputs give the same bytes.

    python scripts/build_tabular_demo_data.py [ROSMAP_DIR]
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "data"


def _write_tar(out: Path, folder: str, files: dict[str, bytes]) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    with open(out, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _floats(x: np.ndarray) -> list[float]:
    return [float(v) for v in x.astype(np.float32)]


def rosmap(src: Path) -> None:
    rows = []
    for split, tag in (("train", "tr"), ("test", "te")):
        views = [np.loadtxt(src / f"{k}_{tag}.csv", delimiter=",") for k in (1, 2, 3)]
        labels = np.loadtxt(src / f"labels_{tag}.csv", delimiter=",").astype(int)
        for i, y in enumerate(labels):
            rows.append(
                {
                    "id": f"{split}-{i:03d}",
                    "mrna": _floats(views[0][i]),
                    "meth": _floats(views[1][i]),
                    "mirna": _floats(views[2][i]),
                    "label": int(y),
                    "split": split,
                }
            )
    readme = (
        "ROSMAP multi-omics (mRNA, DNA methylation, miRNA; 200 features each), AD vs NC, "
        "from the MOGONET release (github.com/txWang/MOGONET, ROSMAP/, commit "
        "32d9066b7fe289b3f7cdb496a5668834079c274c), MIT licence (LICENSE). Wang et al., Nature "
        "Communications 12, 3445 (2021).\n"
    )
    _write_tar(
        OUT / "rosmap.tar.gz",
        "rosmap",
        {
            "manifest.jsonl": _jsonl(rows),
            "README.md": readme.encode(),
            "LICENSE": (src / "LICENSE").read_bytes(),
        },
    )


def breast_cancer() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x, y = data.data, data.target
    train_idx, _ = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=0)
    train = set(train_idx.tolist())
    rows = [
        {
            "id": f"bc-{i:03d}",
            "mean": _floats(x[i, :10]),
            "error": _floats(x[i, 10:20]),
            "worst": _floats(x[i, 20:]),
            "label": int(y[i]),
            "split": "train" if i in train else "test",
        }
        for i in range(len(y))
    ]
    readme = (
        "Breast Cancer Wisconsin (Diagnostic), W. Wolberg, W. Street, O. Mangasarian, UCI Machine "
        "Learning Repository, CC BY 4.0, as shipped in scikit-learn (load_breast_cancer). The 30 "
        "features are split into three modalities: mean, error, worst. Label 0 = malignant, "
        "1 = benign. Split: stratified 70/30, seed 0.\n"
    )
    _write_tar(
        OUT / "breast_cancer.tar.gz",
        "breast_cancer",
        {"manifest.jsonl": _jsonl(rows), "README.md": readme.encode()},
    )


if __name__ == "__main__":
    rosmap(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/rosmap"))
    breast_cancer()
