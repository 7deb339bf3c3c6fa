"""Build the bundled icon archive `data/mdi_icons.tar.gz` from a prepared `mdi_icons` folder.

The source folder holds `pairs.jsonl` (one row per icon: `id`, `image`, `text`, `split`, ...) and
`images/*.png` (64x64 greyscale renderings of Material Design Icons, npm `@mdi/svg` 7.4.47,
Apache-2.0). This is a maintainer tool: by default it reads the team's prepared copy in
`../shared/data/mdi_icons` (outside the repository); pass another folder to build from elsewhere.
Users never run it: configs/mdi_icons.yaml extracts the committed archive on first use.

The manifest and the PNG files are copied byte for byte; the archive adds a README and the
Apache-2.0 text (the repository's `LICENSE`). Only images the manifest names are included.
Deterministic: sorted member names, mtime 0, owner 0/0, mode 0644, gzip mtime 0, so running it
twice gives the same bytes.

    python scripts/build_icons_data.py [SOURCE_DIR] [OUT_TAR]
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "mdi_icons"

README = """\
# mdi_icons: icon image <-> its name and aliases

7,188 pairs from Material Design Icons (Pictogrammers; npm `@mdi/svg` 7.4.47, `meta.json` + `svg/`),
deprecated icons left out (that removes every "Brand / Logo" icon). Image: the icon's SVG drawn
black on white as a 64x64 greyscale PNG. Text: the name, then its aliases in parentheses
("account plus (user plus, person add, ...)").

Columns of `pairs.jsonl`: `id`, `image` (PNG path relative to this folder), `name`, `aliases`,
`tags` (categories), `author`, `text`, `outline`, `base_id` (`id` without an `-outline` suffix),
`source`, `license`, `split`. `split` is decided by a hash of `base_id`, so an icon and its
outline twin always share a split: train 5,744 / val 703 / test 741.

Licence: Apache-2.0 (the "Pictogrammers Free License" of `@mdi/svg`); the text is in `LICENSE`.
Built by `scripts/build_icons_data.py` of the modalign repository.
"""


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(f"{FOLDER}/{name}")
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mdi_icons")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else ROOT / "data" / "mdi_icons.tar.gz")
    manifest = (src / "pairs.jsonl").read_bytes()
    rows = [json.loads(line) for line in manifest.decode().splitlines() if line.strip()]
    images = sorted({r["image"] for r in rows})
    missing = [p for p in images if not (src / p).is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} images named in pairs.jsonl are missing, e.g. {missing[0]}")
    files = {
        "LICENSE": (ROOT / "LICENSE").read_bytes(),
        "README.md": README.encode(),
        "pairs.jsonl": manifest,
        **{p: (src / p).read_bytes() for p in images},
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            _add(tar, name, files[name])
    with open(out, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    print(f"wrote {out}: {len(rows)} rows, {len(images)} images, {out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
