"""Build the bundled quickstart archive `data/fsdd_digits.tar.gz` from `../shared/data/fsdd_digits`.

Audio is re-encoded losslessly to FLAC (the samples are unchanged), images are written as 8x8
greyscale PNGs (values 0..16 scaled to 0..255), and `manifest.jsonl` has the columns
`id, image, audio, text, label, speaker, split`. Deterministic: run it twice, get the same bytes.

    python scripts/build_quickstart_data.py [SOURCE_DIR] [OUT_TAR]
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/fsdd_digits")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "data/fsdd_digits.tar.gz")
    images = np.load(src / "digits_images.npz")["images"]
    rows = list(csv.DictReader(open(src / "pairs.csv")))
    manifest = []
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("README.md", "LICENSE.md"):
            _add(
                tar,
                f"fsdd_digits/{name}",
                (Path(__file__).parent.parent / "data" / name).read_bytes(),
            )
        used: set[int] = set()
        for r in rows:
            stem = Path(r["audio"]).stem
            audio, rate = sf.read(src / r["audio"], dtype="int16")
            buf = io.BytesIO()
            sf.write(buf, audio, rate, format="FLAC", subtype="PCM_16")
            _add(tar, f"fsdd_digits/audio/{stem}.flac", buf.getvalue())
            idx = int(r["image_index"])
            if idx not in used:
                used.add(idx)
                png = io.BytesIO()
                pixels = (images[idx].astype(np.float32) * (255 / 16)).round().astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(png, format="PNG")
                _add(tar, f"fsdd_digits/images/{idx:04d}.png", png.getvalue())
            manifest.append(
                {
                    "id": stem,
                    "image": f"images/{idx:04d}.png",
                    "audio": f"audio/{stem}.flac",
                    "text": r["text"],
                    "label": int(r["label"]),
                    "speaker": r["speaker"],
                    "split": r["split"],
                }
            )
        body = "".join(json.dumps(m) + "\n" for m in manifest).encode()
        _add(tar, "fsdd_digits/manifest.jsonl", body)
    # mtime=0 keeps the archive byte-for-byte reproducible.
    with open(out, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    print(f"wrote {out}: {len(manifest)} rows, {len(used)} images, {out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
