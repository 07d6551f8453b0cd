"""Builds DIR: fetch and check the packages, write the objects and backgrounds, then the notes and the manifest.

Output layout::

    DIR/objects/<style>/<codepoint>.png          RGBA cut-outs of the training styles (split train | heldout)
    DIR/heldout_style/noto/<codepoint>.png       the reserved style: never for training (split reserved_style)
    DIR/backgrounds/<package>/<name>.jpg|png     real photographs
    DIR/licences/<manager>-<package>.txt         each package's licence or copyright file
    DIR/manifest.jsonl                           one line per file above (MANIFEST_FIELDS)
    DIR/sources.json                             packages (version, licence, sha256 of the archive), counts
    DIR/ATTRIBUTION.md                           who made what, under which licence
    DIR/cache/                                   downloaded archives and what was unpacked from them

DIR must be new, empty, or an earlier output of this command (anything else in it is refused before work). Every
file is written atomically (`pbe.files`); ATTRIBUTION.md, sources.json and the manifest are written last, so a run
that stops early leaves whole files and the previous run's manifest. A rerun skips every file that the previous
manifest lists with the same sha256 (when sources.json's recipe, i.e. the packages and settings, is unchanged); any
other file is made again and rewritten only if its bytes differ. Files the previous manifest listed and the new one
does not (after a change of filter or photo list) are deleted; nothing else in DIR is ever deleted.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path, PurePosixPath

from PIL import Image
from tqdm import tqdm

from pbe.data.objects_fetch.clients import (
    Download,
    FetchError,
    cached_download,
    fetch_archive,
    require_clients,
    sha256_file,
    unpack,
)
from pbe.data.objects_fetch.config import DEMO_PHOTOS, FetchConfig, Package, Photo, PhotoSet, Style
from pbe.data.objects_fetch.emoji import (
    Emoji,
    index_style_files,
    read_emoji_metadata,
    select_objects,
)
from pbe.data.objects_fetch.images import (
    FontGlyphs,
    Rasteriser,
    encode_png,
    finish_object,
    object_from_raster,
    object_from_svg,
    open_font,
    prepare_photo,
    rasteriser_version,
    resvg_rasteriser,
)
from pbe.data.objects_fetch.split import codepoint_split, ranked_split
from pbe.files import check_folder_writable, write_file

MANIFEST_FIELDS = (
    "path",
    "kind",  # object | background
    "style",  # objects: fluent_3d | twemoji | openmoji | noto
    "codepoint",  # objects: canonical key, e.g. 1f43b-200d-2744
    "emoji",
    "name",
    "short_name",
    "category",
    "subcategory",
    "split",  # train | heldout | reserved_style (every Noto file)
    "codepoint_split",  # objects: the code point's own split (also for the reserved style)
    "width",
    "height",
    "grayscale",  # backgrounds
    "source",  # backgrounds: the photo set (folder under backgrounds/)
    "source_package",
    "source_manager",
    "source_version",
    "source_file",
    "licence",
    "attribution",
    "sha256",
)
RESERVED = "reserved_style"
# The top-level names this command writes in DIR; a folder holding anything else is refused (it is not ours).
OUTPUT_NAMES = frozenset(
    {
        "cache",
        "objects",
        "heldout_style",
        "backgrounds",
        "licences",
        "manifest.jsonl",
        "sources.json",
        "ATTRIBUTION.md",
    }
)

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _row(**values) -> dict:
    unknown = set(values) - set(MANIFEST_FIELDS)
    assert not unknown, unknown
    return {name: values.get(name) for name in MANIFEST_FIELDS}


# --- the output folder ----------------------------------------------------------------------------------------------


@dataclass
class Outputs:
    """The files under DIR: skips what the previous manifest vouches for, (re)writes the rest atomically."""

    root: Path
    previous: dict[str, dict]  # path -> manifest row of the previous run with the same recipe
    written: int = 0
    unchanged: int = 0

    def verified(self, relative: str) -> dict | None:
        """The previous row of a file that is still there with the same sha256, else None."""
        row = self.previous.get(relative)
        path = self.root / relative
        if row is None or not path.is_file() or sha256_file(path) != row["sha256"]:
            return None
        self.unchanged += 1
        return row

    def put(self, relative: str, data: bytes) -> str:
        """Write ``data`` at ``relative`` unless the file already holds exactly it; its sha256."""
        path = self.root / relative
        digest = _sha256(data)
        if path.is_file() and sha256_file(path) == digest:
            self.unchanged += 1
        else:
            write_file(path, data, overwrite=True, label="objects")
            self.written += 1
        return digest


def check_output_folder(root: Path) -> None:
    """DIR must be new, empty, or an earlier output of this command (resumed or refreshed); never a user's folder."""
    if root.exists() and not root.is_dir():
        raise FetchError(f"{root} is a file; name a folder")
    if root.is_dir():
        foreign = sorted(
            p.name for p in root.iterdir() if p.name not in OUTPUT_NAMES and not p.name.startswith(".")
        )
        if foreign:
            raise FetchError(
                f"{root} holds files this command did not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder, or an earlier output of "
                "`python -m pbe.data.fetch objects`"
            )
    check_folder_writable(root, label="objects")


def read_manifest_rows(root: Path) -> dict[str, dict]:
    """The rows of DIR/manifest.jsonl by path (nothing when it is missing or unreadable)."""
    try:
        lines = (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return {}
    return {row["path"]: row for row in rows if isinstance(row, dict) and "path" in row and "sha256" in row}


def previous_recipe(root: Path) -> str | None:
    try:
        return json.loads((root / "sources.json").read_text(encoding="utf-8")).get("recipe")
    except (OSError, ValueError, AttributeError):
        return None


def remove_stale(root: Path, previous: dict[str, dict], rows: list[dict]) -> int:
    """Delete the files that the previous manifest listed (so this command wrote them) and the new one does not
    (an emoji the filter now drops, a photo no longer listed); the number deleted."""
    current = {row["path"] for row in rows}
    removed = 0
    for relative in sorted(set(previous) - current):
        parts = PurePosixPath(relative).parts
        ours = (
            len(parts) > 1 and parts[0] in ("objects", "heldout_style", "backgrounds") and ".." not in parts
        )
        path = root / relative
        if ours and path.is_file() and not path.is_symlink():
            path.unlink()
            removed += 1
    return removed


# --- fetching -------------------------------------------------------------------------------------------------------


def fetch_packages(config: FetchConfig, cache: Path, log: Log) -> dict[Package, tuple[Download, Path]]:
    """Every package downloaded (or found in the cache) and unpacked: {package: (download, unpacked folder)}.
    All clients that are needed are checked before the first download."""
    cached = {package: cached_download(package, cache) for package in config.packages}
    require_clients([package for package, found in cached.items() if found is None])
    fetched = {}
    for package, download in cached.items():
        if download is None:
            log(f"fetching {package.manager} {package.spec}")
            download = fetch_archive(package, cache, config.client_timeout_s)
        fetched[package] = (download, unpack(download, cache))
    return fetched


def _first_match(folder: Path, pattern: str) -> Path | None:
    matches = sorted(
        p for p in folder.rglob("*") if fnmatch.fnmatchcase(p.relative_to(folder).as_posix(), pattern)
    )
    return matches[0] if matches else None


def check_arrivals(config: FetchConfig, fetched: dict[Package, tuple[Download, Path]]) -> None:
    """Fail with one line when a package lacks what this command expects of it."""
    problems = []
    metadata = fetched[config.metadata][1] / "package" / "emoji.json"
    if not metadata.is_file():
        problems.append(f"{config.metadata.spec} has no package/emoji.json")
    for style in config.styles:
        folder = fetched[style.package][1]
        if style.kind == "font":
            if _first_match(folder, style.files) is None:
                problems.append(f"{style.package.spec} has no {style.files}")
            continue
        count = len(index_style_files(folder, style.files))
        if count < style.min_files:
            problems.append(
                f"{style.package.spec} has {count} {style.files} files, expected at least {style.min_files}"
            )
    for photo_set in config.photo_sets:
        folder = fetched[photo_set.package][1]
        missing = [photo.member for photo in photo_set.photos if not (folder / photo.member).is_file()]
        if missing:
            problems.append(f"{photo_set.package.spec} lacks {', '.join(missing[:3])}")
    if problems:
        raise FetchError("; ".join(problems))


def load_metadata(config: FetchConfig, fetched: dict[Package, tuple[Download, Path]]) -> list[Emoji]:
    path = fetched[config.metadata][1] / "package" / "emoji.json"
    try:
        return read_emoji_metadata(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise FetchError(
            f"{config.metadata.spec}: cannot read package/emoji.json ({type(e).__name__}: {e})"
        ) from None


# --- objects --------------------------------------------------------------------------------------------------------


@dataclass
class StyleResult:
    rows: list[dict] = field(default_factory=list)
    absent: int = 0  # kept code points this style does not draw
    empty: int = 0  # files that drew nothing
    unreadable: list[str] = field(default_factory=list)  # source files that could not be decoded or rendered


@dataclass(frozen=True)
class ObjectFile:
    """An object PNG in DIR: where it came from, its size and its sha256."""

    source: str
    width: int
    height: int
    sha256: str


# emoji -> (source file, a function making its image), or None when the style does not draw that emoji
ObjectMaker = Callable[[Emoji], "tuple[str, Callable[[], Image.Image | None]] | None"]


def _object_maker(
    style: Style, folder: Path, config: FetchConfig, rasterise: Rasteriser | None
) -> ObjectMaker:
    """How one style's images are made, by kind: a bitmap file, an SVG file, or a glyph of a colour font."""
    size = config.images.object_size
    if style.kind == "font":
        glyphs = FontGlyphs(open_font(_first_match(folder, style.files), config.images.noto_font_size))

        def from_font(emoji: Emoji):
            glyph = glyphs.render(emoji.text)
            return None if glyph is None else (style.files, lambda: finish_object(glyph, size))

        return from_font
    index = index_style_files(folder, style.files)

    def from_file(emoji: Emoji):
        path = index.get(emoji.codepoint)
        if path is None:
            return None
        source = path.relative_to(folder).as_posix()
        if style.kind == "svg":
            return source, lambda: object_from_svg(
                path.read_bytes(), size, config.images.svg_max_canvas, rasterise
            )
        return source, lambda: object_from_raster(path.read_bytes(), size)

    return from_file


def _make_object(
    maker: ObjectMaker, emoji: Emoji, relative: str, outputs: Outputs, result: StyleResult
) -> ObjectFile | None:
    """Make and write one object; None (counted in ``result``) when the style lacks it or it cannot be made."""
    found = maker(emoji)
    if found is None:
        result.absent += 1
        return None
    source, make = found
    try:
        image = make()
    except (OSError, ValueError) as e:  # a file the decoder or the rasteriser refuses: left out, and reported
        result.unreadable.append(f"{source} ({e})")
        return None
    if image is None:
        result.empty += 1
        return None
    return ObjectFile(source, image.width, image.height, outputs.put(relative, encode_png(image)))


def _object_row(
    emoji: Emoji, style: Style, version: str, relative: str, made: ObjectFile, config: FetchConfig
) -> dict:
    split = codepoint_split(emoji.codepoint, config.split)
    return _row(
        path=relative,
        kind="object",
        style=style.name,
        codepoint=emoji.codepoint,
        emoji=emoji.text,
        name=emoji.name,
        short_name=emoji.short_name,
        category=emoji.category,
        subcategory=emoji.subcategory,
        split=RESERVED if style.reserved else split,
        codepoint_split=split,
        width=made.width,
        height=made.height,
        source_package=style.package.name,
        source_manager=style.package.manager,
        source_version=version,
        source_file=made.source,
        licence=style.package.licence,
        attribution=style.package.attribution,
        sha256=made.sha256,
    )


def build_style(
    style: Style,
    emojis: list[Emoji],
    fetched: tuple[Download, Path],
    config: FetchConfig,
    outputs: Outputs,
    rasterise: Rasteriser | None,
    progress: bool,
) -> StyleResult:
    """The objects of one style: each kept emoji it draws, reused when verified, else made and written."""
    download, folder = fetched
    maker = _object_maker(style, folder, config, rasterise)
    result = StyleResult()
    for emoji in tqdm(emojis, desc=f"objects {style.name}", unit="img", disable=not progress, leave=False):
        relative = f"{style.folder}/{emoji.codepoint}.png"
        previous = outputs.verified(relative)
        if previous is not None:
            made = ObjectFile(
                previous["source_file"], previous["width"], previous["height"], previous["sha256"]
            )
        else:
            made = _make_object(maker, emoji, relative, outputs, result)
        if made is not None:
            result.rows.append(_object_row(emoji, style, download.version, relative, made, config))
    return result


# --- backgrounds ----------------------------------------------------------------------------------------------------


def is_demo_photo(photo: Photo) -> bool:
    """The project's demo and evaluation photos (astronaut, coffee, chelsea, rocket) are never training data."""
    names = {photo.name.lower(), PurePosixPath(photo.member).stem.lower()}
    return bool(names & DEMO_PHOTOS)


def training_photos(photo_set: PhotoSet) -> list[Photo]:
    return [photo for photo in photo_set.photos if not is_demo_photo(photo)]


def background_key(photo_set: PhotoSet, photo: Photo) -> str:
    return f"{photo_set.folder}/{photo.name}"


def background_splits(config: FetchConfig) -> dict[str, str]:
    keys = [background_key(s, photo) for s in config.photo_sets for photo in training_photos(s)]
    return ranked_split(keys, config.split)


def build_photo_set(
    photo_set: PhotoSet,
    fetched: tuple[Download, Path],
    splits: dict[str, str],
    config: FetchConfig,
    outputs: Outputs,
    progress: bool,
) -> list[dict]:
    download, folder = fetched
    rows = []
    for photo in tqdm(
        training_photos(photo_set), desc=f"backgrounds {photo_set.folder}", disable=not progress, leave=False
    ):
        suffix = ".png" if photo.member.lower().endswith(".png") else ".jpg"
        relative = f"backgrounds/{photo_set.folder}/{photo.name}{suffix}"
        previous = outputs.verified(relative)
        if previous is not None:
            width, height, grayscale, digest = (
                previous[k] for k in ("width", "height", "grayscale", "sha256")
            )
        else:
            prepared = prepare_photo(
                (folder / photo.member).read_bytes(),
                config.images.background_short_side,
                config.images.jpeg_quality,
            )
            width, height, grayscale = prepared.width, prepared.height, prepared.grayscale
            digest = outputs.put(relative, prepared.data)
        rows.append(
            _row(
                path=relative,
                kind="background",
                name=photo.name,
                split=splits[background_key(photo_set, photo)],
                width=width,
                height=height,
                grayscale=grayscale,
                source=photo_set.folder,
                source_package=photo_set.package.name,
                source_manager=photo_set.package.manager,
                source_version=download.version,
                source_file=photo.member,
                licence=photo.licence,
                attribution=photo.author,
                sha256=digest,
            )
        )
    return rows


# --- notes ----------------------------------------------------------------------------------------------------------


def recipe_of(config: FetchConfig, fetched: dict[Package, tuple[Download, Path]]) -> str:
    """A fingerprint of everything the output files depend on: settings, packages' versions and bytes, tools."""
    parts = {
        "config": asdict(config),
        "archives": sorted(download.sha256 for download, _ in fetched.values()),
        "rasteriser": rasteriser_version(),
        "pillow": package_version("pillow"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _used_for(package: Package, config: FetchConfig) -> str:
    if package == config.metadata:
        return "emoji names and categories"
    for style in config.styles:
        if style.package == package:
            return f"objects, style {style.name}" + (
                " (reserved held-out style, never for training)" if style.reserved else ""
            )
    return "background photos"


def copy_licences(fetched: dict[Package, tuple[Download, Path]], outputs: Outputs) -> dict:
    """DIR/licences/<manager>-<package>.txt from each package's licence file; {package name: path}."""
    copied = {}
    for package, (_, folder) in fetched.items():
        if package.licence_file is None:
            continue
        found = _first_match(folder, package.licence_file)
        if found is not None:
            relative = f"licences/{package.manager}-{package.slug}.txt"
            outputs.put(relative, found.read_bytes())
            copied[package.name] = relative
    return copied


def count_rows(rows: list[dict]) -> dict:
    objects = [row for row in rows if row["kind"] == "object"]
    backgrounds = [row for row in rows if row["kind"] == "background"]
    by_style: dict[str, Counter] = {}
    by_category: dict[str, Counter] = {}
    for row in objects:
        by_style.setdefault(row["style"], Counter())[row["split"]] += 1
        by_category.setdefault(row["category"], Counter())[row["style"]] += 1
    by_source: dict[str, Counter] = {}
    for row in backgrounds:
        by_source.setdefault(row["source"], Counter())[row["split"]] += 1
    return {
        "objects_by_style_and_split": {k: dict(sorted(v.items())) for k, v in sorted(by_style.items())},
        "objects_by_category_and_style": {k: dict(sorted(v.items())) for k, v in sorted(by_category.items())},
        "code_points": dict(
            Counter(split for split in {r["codepoint"]: r["codepoint_split"] for r in objects}.values())
        ),
        "backgrounds_by_source_and_split": {k: dict(sorted(v.items())) for k, v in sorted(by_source.items())},
    }


def sources_document(
    config: FetchConfig,
    fetched: dict[Package, tuple[Download, Path]],
    root: Path,
    recipe: str,
    counts: dict,
    dropped: Counter,
    licences: dict,
) -> dict:
    packages = []
    for package, (download, _) in fetched.items():
        packages.append(
            {
                "manager": package.manager,
                "name": package.name,
                "version": download.version,
                "licence": package.licence,
                "attribution": package.attribution,
                "homepage": package.homepage,
                "used_for": _used_for(package, config),
                "archive": download.archive.relative_to(root).as_posix(),
                "sha256": download.sha256,
                "size": download.size,
                "licence_file": licences.get(package.name),
            }
        )
    return {
        "generated_by": "python -m pbe.data.fetch objects",
        "recipe": recipe,
        "rasteriser": rasteriser_version(),
        "object_size": config.images.object_size,
        "split": asdict(config.split),
        "reserved_styles": [style.name for style in config.styles if style.reserved],
        "excluded_demo_photos": sorted(DEMO_PHOTOS),
        "packages": packages,
        "counts": counts,
        "dropped_emoji": dict(sorted(dropped.items())),
    }


def attribution_markdown(sources: dict, config: FetchConfig) -> str:
    lines = [
        "# Attribution",
        "",
        "Made by `python -m pbe.data.fetch objects`. Each file's own licence and attribution is in manifest.jsonl;",
        "licence texts are in licences/. A file made from a package keeps that package's licence: share-alike",
        "terms (CC BY-SA) carry over to it, and attribution terms (CC BY) need the attribution below.",
        "",
    ]
    reserved = [style.folder + "/" for style in config.styles if style.reserved]
    if reserved:
        lines += [
            f"Files under {', '.join(reserved)} are a reserved evaluation style: never use them for training.",
            "",
        ]
    lines += ["## Packages", ""]
    for package in sources["packages"]:
        lines.append(
            f"- **{package['name']}** {package['version']} ({package['manager']}), {package['licence']}: "
            f"{package['attribution']}. Used for {package['used_for']}. <{package['homepage']}>"
        )
    lines += ["", "## Background photos", ""]
    for photo_set in config.photo_sets:
        for photo in training_photos(photo_set):
            lines.append(f"- {photo_set.folder}/{photo.name}: {photo.author}, {photo.licence}")
    return "\n".join(lines) + "\n"


def manifest_bytes(rows: list[dict]) -> bytes:
    """One JSON object per line, sorted by path (the same rows give the same bytes)."""
    ordered = sorted(rows, key=lambda row: row["path"])
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ordered).encode()


# --- the command ----------------------------------------------------------------------------------------------------


@dataclass
class Summary:
    root: Path
    rows: list[dict]
    counts: dict
    dropped: Counter
    written: int
    unchanged: int
    removed: int


def fetch_objects(
    out_dir: str | Path,
    config: FetchConfig | None = None,
    *,
    progress: bool = True,
    rasterise: Rasteriser | None = None,
    log: Log = _stderr,
) -> Summary:
    """Fetch every package of ``config``, check them, and build DIR (see the module's docstring)."""
    config = config or FetchConfig()
    root = Path(out_dir)
    check_output_folder(root)
    if rasterise is None and any(style.kind == "svg" for style in config.styles):
        rasterise = resvg_rasteriser()
    fetched = fetch_packages(config, root / "cache", log)
    check_arrivals(config, fetched)

    emojis = load_metadata(config, fetched)
    kept, dropped = select_objects(emojis, config.object_filter)
    recipe = recipe_of(config, fetched)
    previous = read_manifest_rows(root)
    outputs = Outputs(root, previous if previous_recipe(root) == recipe else {})
    rows: list[dict] = []
    for style in config.styles:
        result = build_style(style, kept, fetched[style.package], config, outputs, rasterise, progress)
        log(
            f"{style.name}: {len(result.rows)} objects ({result.absent} of the kept code points not in this style"
            + (f", {result.empty} empty" if result.empty else "")
            + (
                f", {len(result.unreadable)} unreadable: {'; '.join(result.unreadable[:3])}"
                if result.unreadable
                else ""
            )
            + ")"
        )
        rows += result.rows
    splits = background_splits(config)
    for photo_set in config.photo_sets:
        rows += build_photo_set(photo_set, fetched[photo_set.package], splits, config, outputs, progress)

    licences = copy_licences(fetched, outputs)
    counts = count_rows(rows)
    sources = sources_document(config, fetched, root, recipe, counts, dropped, licences)
    outputs.put("ATTRIBUTION.md", attribution_markdown(sources, config).encode())
    outputs.put("sources.json", (json.dumps(sources, indent=2, ensure_ascii=False) + "\n").encode())
    outputs.put("manifest.jsonl", manifest_bytes(rows))
    removed = remove_stale(root, previous, rows)
    return Summary(root, rows, counts, dropped, outputs.written, outputs.unchanged, removed)
