"""Regenerate the data previews shown in the README (needs scikit-image, a dev dependency).

    .venv/bin/python docs/make_previews.py

writes ``docs/preview_synthetic.png`` (the default synthetic data) and ``docs/preview_photos.png`` (a JSONL
manifest over four ``skimage.data`` photos with hand-picked boxes, each listed twice so that 8 samples show
two random draws per photo). Both go through ``python -m pbe.data.preview``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent

# Hand-picked pixel boxes (x0, y0, x1, y1) and labels on the skimage.data photos.
PHOTO_BOXES = {
    "astronaut": [
        ([145, 15, 305, 180], "face"),
        ([280, 340, 510, 512], "helmet"),
        ([350, 0, 465, 275], "shuttle"),
    ],
    "coffee": [([175, 15, 420, 250], "cup"), ([75, 60, 480, 390], "saucer"), ([315, 60, 425, 330], "spoon")],
    "chelsea": [([100, 20, 400, 300], "cat head"), ([131, 84, 208, 147], "eye")],
    "rocket": [([295, 125, 350, 425], "rocket"), ([0, 0, 95, 425], "tower"), ([548, 0, 630, 425], "tower")],
}


def write_photo_manifest(folder: Path, copies: int = 2) -> Path:
    """Save the photos as JPEG into ``folder`` and a manifest listing each ``copies`` times; return its path."""
    import skimage.data
    from PIL import Image

    lines = []
    for name, boxes in PHOTO_BOXES.items():
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.jpg", quality=92)
        entry = {
            "image": f"{name}.jpg",
            "boxes": [b for b, _ in boxes],
            "labels": [label for _, label in boxes],
        }
        lines.append(json.dumps(entry))
    manifest = folder / "photos.jsonl"
    manifest.write_text("\n".join(line for _ in range(copies) for line in lines) + "\n")
    return manifest


def preview(out: Path, *overrides: str) -> None:
    command = [sys.executable, "-m", "pbe.data.preview", "n=8", "per_row=2", "cell=160", "progress=false"]
    # the previews are regenerated: replace the ones in docs/
    subprocess.run([*command, f"out={out}", "overwrite=true", *overrides], cwd=REPO, check=True)


def main() -> None:
    preview(DOCS / "preview_synthetic.png", "data=synthetic")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_photo_manifest(Path(tmp))
        preview(DOCS / "preview_photos.png", "data=jsonl", f"data.source.manifest={manifest}")


if __name__ == "__main__":
    main()
