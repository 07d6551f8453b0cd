"""Benchmark items: the COCOEE folder layout or a JSONL manifest, checked before any model work.

COCOEE layout (the paper's test set, and what `make_synthetic_bench` writes):

    BENCH/id_list.npy                      int64 ids, in benchmark order
    BENCH/GT_3500/{id:012d}_GT.png         source image
    BENCH/Mask_bbox_3500/{id:012d}_mask.png  white (255) = edit
    BENCH/Ref_3500/{id:012d}_ref.png       reference (exemplar)

(any `GT_*`, `Mask_bbox_*`, `Ref_*` folder names are accepted, one of each). A JSONL manifest has one object per line,
`{"id": ..., "image": PATH, "mask": PATH, "reference": PATH}`, paths relative to the manifest's folder.

Every problem is an error raised before editing starts (never a skip): a missing folder or file, an id without its
mask or reference, a file that is not a readable image (empty, truncated, not an image), an image smaller than the
model needs, a mask with no white (255) pixel, a mask whose box crop would be empty, a mask of another size than its
image, duplicate ids.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class BenchItem:
    id: str  # the result file stem: zero-padded to 12 digits for integer ids, as the authors name them
    image: Path
    mask: Path
    reference: Path


def item_name(raw_id) -> str:
    """File stem of an item: integer ids zero-padded to 12 digits (COCOEE), other ids used as they are."""
    if isinstance(raw_id, bool):
        raise ValueError(f"item id {raw_id!r}: expected an integer or a string")
    if isinstance(raw_id, int | np.integer):
        if raw_id < 0:
            raise ValueError(f"item id {raw_id}: integer ids must be >= 0")
        return str(int(raw_id)).zfill(12)
    if isinstance(raw_id, str) and SAFE_NAME.match(raw_id):
        return raw_id
    raise ValueError(
        f"item id {raw_id!r}: expected a non-negative integer or a string of letters, digits, '_', '.', '-'"
    )


def item_seed(seed: int, item_id: str) -> int:
    """The seed of one item: a 63-bit number from sha256("<run seed>/<item id>").

    It depends on nothing but the run seed and the item, so results do not depend on batch order, world size or
    which items were already done. (The authors seed once and draw noise batch after batch, so their exact noise
    depends on the order of batches; results therefore differ from theirs draw for draw, not in distribution.)
    """
    digest = hashlib.sha256(f"{int(seed)}/{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _one_folder(root: Path, pattern: str, what: str) -> Path:
    found = sorted(p for p in root.glob(pattern) if p.is_dir())
    if len(found) != 1:
        raise FileNotFoundError(
            f"bench: {root} must hold exactly one {pattern} folder ({what}); found "
            f"{[p.name for p in found] or 'none'}"
        )
    return found[0]


def read_cocoee(root: Path) -> list[BenchItem]:
    ids_file = root / "id_list.npy"
    if not ids_file.is_file():
        raise FileNotFoundError(f"bench: {root} has no id_list.npy (the COCOEE list of item ids)")
    ids = np.load(ids_file, allow_pickle=False)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"bench: {ids_file} must be a 1-d integer array, got {ids.dtype} {ids.shape}")
    gt = _one_folder(root, "GT_*", "source images")
    masks = _one_folder(root, "Mask_bbox_*", "masks")
    refs = _one_folder(root, "Ref_*", "references")
    items = []
    for raw in ids.tolist():
        name = item_name(raw)
        items.append(
            BenchItem(name, gt / f"{name}_GT.png", masks / f"{name}_mask.png", refs / f"{name}_ref.png")
        )
    return items


def read_manifest(path: Path) -> list[BenchItem]:
    items = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"bench: {path} line {number} is not JSON ({e})") from None
            missing = [k for k in ("id", "image", "mask", "reference") if k not in row]
            if not isinstance(row, dict) or missing:
                raise ValueError(
                    f"bench: {path} line {number} lacks {missing}; expected id, image, mask, reference"
                )
            paths = [path.parent / row[k] for k in ("image", "mask", "reference")]
            items.append(BenchItem(item_name(row["id"]), *paths))
    return items


def white_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the authors' crop: from the first to the last pixel equal to 255 in raster
    order, upper bounds exclusive (for a box mask: its first to last white row and column, the last ones left out).

    Raises ValueError when the mask has no 255 pixel or the crop is empty (a box one pixel tall or wide).
    """
    flat = np.flatnonzero(np.asarray(mask).ravel() == 255)
    if flat.size == 0:
        raise ValueError("mask has no white (255) pixel: nothing to edit and no region to score")
    (top, left), (bottom, right) = (np.unravel_index(i, mask.shape) for i in (flat[0], flat[-1]))
    if bottom <= top or right <= left:
        raise ValueError(
            f"mask's region crop rows {top}:{bottom}, columns {left}:{right} is empty (a box must span at least "
            "two rows and two columns)"
        )
    return int(top), int(bottom), int(left), int(right)


def read_mask(path: Path) -> np.ndarray:
    """The mask as the authors read it: 8-bit grayscale (cv2.IMREAD_GRAYSCALE; PIL's "L" conversion)."""
    with Image.open(path) as img:
        return np.array(img.convert("L"))


def readable_size(item: BenchItem, what: str, path: Path) -> tuple[int, int]:
    """(width, height) of an image file whose header and structure PIL verifies (cheap: no pixels are decoded)."""
    try:
        with Image.open(path) as img:
            size = img.size
            img.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if path.stat().st_size == 0:
            reason = "empty (0 bytes)"
        elif isinstance(e, UnidentifiedImageError):
            reason = "not an image PIL can read"
        else:
            reason = f"damaged or truncated ({e})"
        raise ValueError(f"bench: item {item.id}: {what} {path} is {reason}") from None
    return size


def check_item(item: BenchItem, min_side: int) -> None:
    """One item's files exist and are readable images; its image is at least `min_side` pixels a side; its mask
    matches the image's size and has a non-empty white box."""
    sizes = {}
    for what, path in (("image", item.image), ("mask", item.mask), ("reference", item.reference)):
        if not path.is_file():
            raise FileNotFoundError(f"bench: item {item.id} has no {what}: {path} not found")
        sizes[what] = readable_size(item, what, path)
    width, height = sizes["image"]
    if min(width, height) < min_side:
        raise ValueError(
            f"bench: item {item.id}: image {item.image} is {width}x{height} pixels; the model needs at least "
            f"{min_side}x{min_side} (one latent pixel of its autoencoder)"
        )
    if sizes["mask"] != (width, height):
        raise ValueError(
            f"bench: item {item.id}: mask is {sizes['mask'][0]}x{sizes['mask'][1]} but image is {width}x{height}"
        )
    try:
        white_bounds(read_mask(item.mask))
    except (OSError, ValueError) as e:
        raise ValueError(f"bench: item {item.id}: {item.mask}: {e}") from None


def check_items(items: list[BenchItem], min_side: int = 1) -> None:
    """Ids are unique and every item passes `check_item`."""
    if not items:
        raise ValueError("bench: no items")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"bench: item id {item.id} appears twice")
        seen.add(item.id)
        check_item(item, min_side)


def load_bench(path: str | Path, limit: int | None = None, min_side: int = 1) -> list[BenchItem]:
    """Items of a COCOEE-layout folder or a JSONL manifest (the first `limit` of them), all checked (images at least
    `min_side` pixels a side)."""
    path = Path(path).expanduser()
    if path.is_dir():
        items = read_cocoee(path)
    elif path.is_file() and path.suffix == ".jsonl":
        items = read_manifest(path)
    elif path.exists():
        raise ValueError(f"bench: {path} is neither a COCOEE-layout folder nor a .jsonl manifest")
    else:
        raise FileNotFoundError(f"bench: {path} not found (a COCOEE-layout folder or a .jsonl manifest)")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer or null, got {limit!r}")
        items = items[:limit]
    check_items(items, min_side)
    return items


def result_path(out: Path, item: BenchItem) -> Path:
    return out / "results" / f"{item.id}.png"


def meta_path(out: Path, item: BenchItem) -> Path:
    return out / "meta" / f"{item.id}.json"
