"""`python -m pbe.data.fetch objects`: everything but the network, on tiny fake packages drawn here.

The registries' clients are replaced by a fetcher that serves archives (npm .tgz, wheels) built in the test, and the
SVG rasteriser by a function that draws an ellipse, so these tests need neither network nor resvg-py (one test uses
resvg-py when it is installed). The real fetch is marked slow.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pbe.data import fetch as fetch_cli
from pbe.data.objects_fetch import build, clients, config, emoji, images, sheet, split
from pbe.data.objects_fetch.build import MANIFEST_FIELDS, fetch_objects, training_photos
from pbe.data.objects_fetch.clients import FetchError
from pbe.data.objects_fetch.config import (
    DEMO_PHOTOS,
    FetchConfig,
    ImageConfig,
    Package,
    Photo,
    PhotoSet,
    SplitConfig,
    Style,
)

# --- a tiny fake world ----------------------------------------------------------------------------------------------

EMOJI_JSON = [
    {
        "unified": "1F34E",
        "name": "RED APPLE",
        "short_name": "apple",
        "category": "Food & Drink",
        "subcategory": "food-fruit",
    },
    {
        "unified": "1F43B-200D-2744-FE0F",
        "name": "POLAR BEAR",
        "short_name": "polar_bear",
        "category": "Animals & Nature",
        "subcategory": "animal-mammal",
    },
    {
        "unified": "2602-FE0F",
        "name": "UMBRELLA",
        "short_name": "umbrella",
        "category": "Travel & Places",
        "subcategory": "sky & weather",
    },
    {
        "unified": "1F697",
        "name": "AUTOMOBILE",
        "short_name": "car",
        "category": "Travel & Places",
        "subcategory": "transport-ground",
    },
    {
        "unified": "1F1EA-1F1EC",
        "name": "Egypt Flag",
        "short_name": "flag-eg",
        "category": "Flags",
        "subcategory": "country-flag",
    },
    {
        "unified": "0023-FE0F-20E3",
        "name": "HASH KEY",
        "short_name": "hash",
        "category": "Symbols",
        "subcategory": "keycap",
    },
    {
        "unified": "1F550",
        "name": "CLOCK FACE ONE OCLOCK",
        "short_name": "clock1",
        "category": "Travel & Places",
        "subcategory": "time",
    },
    {
        "unified": "1F468-200D-1F373",
        "name": "MALE COOK",
        "short_name": "male-cook",
        "category": "People & Body",
        "subcategory": "person-role",
    },
    {
        "unified": "1F600",
        "name": "GRINNING FACE",
        "short_name": "grinning",
        "category": "Smileys & Emotion",
        "subcategory": "face-smiling",
    },
    {
        "unified": "2665-FE0F",
        "name": "BLACK HEART SUIT",
        "short_name": "hearts",
        "category": "Activities",
        "subcategory": "game",
    },
    {
        "unified": "1F303",
        "name": "NIGHT WITH STARS",
        "short_name": "night",
        "category": "Travel & Places",
        "subcategory": "place-other",
    },
]
KEPT = {"1f34e", "1f43b-200d-2744", "2602", "1f697"}


def _package(manager, name, version, keep, licence_file=None, licence="MIT"):
    return Package(
        manager,
        name,
        version,
        licence,
        f"made by the {name} authors",
        "https://example.invalid",
        keep,
        licence_file,
    )


METADATA = _package(
    "npm", "fake-emoji-data", "1.0.0", ("package/emoji.json", "package/LICENSE"), "package/LICENSE"
)
RASTER = Style(
    "raster3d",
    _package("npm", "@fake/raster-3d", "1.1.0", ("package/assets/*.webp",)),
    files="package/assets/*.webp",
    kind="raster",
    folder="objects/raster3d",
)
VECTOR = Style(
    "vector",
    _package("npm", "fake-svg", "2.0.0", ("package/*.svg",), licence="CC-BY-4.0"),
    files="package/*.svg",
    kind="svg",
    folder="objects/vector",
)
RESERVED_STYLE = Style(
    "reserved",
    _package("pypi", "fake-reserved", "3.0.0", ("fake_reserved/png/*.png",), licence="Apache-2.0"),
    files="fake_reserved/png/*.png",
    kind="raster",
    folder="heldout_style/reserved",
    reserved=True,
)
PHOTOS = PhotoSet(
    package=_package("pypi", "fake-photos", "0.1.0", ("data/*",)),
    photos=(
        Photo("data/astronaut.png", "moonwalk", "NASA", "public domain"),  # a demo photo under another name
        Photo("data/coffee.png", "coffee", "R. M.", "CC0-1.0"),
        Photo("data/chelsea.png", "chelsea", "S. v. d. W.", "CC0-1.0"),
        Photo("data/rocket.jpg", "rocket", "SpaceX", "public domain"),
        Photo("data/camera.png", "camera", "L. V.", "CC0-1.0"),
        Photo("data/big.jpg", "big", "B. G.", "CC-BY-4.0"),
    ),
    folder="fake-photos",
)
TEST_CONFIG = FetchConfig(
    metadata=METADATA,
    styles=(RASTER, VECTOR, RESERVED_STYLE),
    photo_sets=(PHOTOS,),
    images=ImageConfig(object_size=32, svg_max_canvas=128, background_short_side=24),
)
DEMO_NAMES = {"astronaut", "coffee", "chelsea", "rocket"}


def _rgba(size=(40, 30), box=(6, 8, 26, 18), colour=(200, 30, 30, 255)) -> Image.Image:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
    return image


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    return path


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 36 36"><circle cx="18" cy="18" r="9" fill="#d22"/></svg>'


def fake_rasteriser(svg: bytes, box: int) -> Image.Image:
    """Stands in for resvg: an ellipse half the box wide and a quarter high, centred."""
    image = Image.new("RGBA", (box, box), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse(
        (box // 4, box * 3 // 8, box * 3 // 4 - 1, box * 5 // 8 - 1), fill=(20, 90, 200, 255)
    )
    return image


def build_registry(folder: Path) -> dict[str, Path]:
    """The fake packages as archives, by package name."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {
        "package/emoji.json": json.dumps(EMOJI_JSON).encode(),
        "package/LICENSE": b"MIT licence text\n",
    }
    raster_names = ["1f34e", "1f43b-200d-2744-fe0f", "2602-fe0f", "1f1ea-1f1ec", "0023-fe0f-20e3", "1f550"]
    raster = {f"package/assets/{n}.webp": _encoded(_rgba(), "WEBP", lossless=True) for n in raster_names}
    raster["package/README.md"] = b"not unpacked: no keep pattern names it\n"
    raster["package/assets/1f697.webp"] = b"not an image"  # a broken file: left out and reported
    vector = {f"package/{n}.svg": SVG for n in ["1f34e", "1f43b-200d-2744-fe0f", "2602", "1f697", "1f600"]}
    reserved = {f"fake_reserved/png/{n}.png": _encoded(_rgba(), "PNG") for n in ["1F34E", "2602", "1F697"]}
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    photos = {
        f"data/{name}": _encoded(photo, "PNG")
        for name in ["astronaut.png", "coffee.png", "chelsea.png", "camera.png"]
    }
    photos["data/rocket.jpg"] = _encoded(photo, "JPEG")
    photos["data/big.jpg"] = _encoded(photo.resize((64, 48)), "JPEG")
    return {
        "fake-emoji-data": _tgz(folder / "fake-emoji-data-1.0.0.tgz", metadata),
        "@fake/raster-3d": _tgz(folder / "fake-raster-3d-1.1.0.tgz", raster),
        "fake-svg": _tgz(folder / "fake-svg-2.0.0.tgz", vector),
        "fake-reserved": _wheel(folder / "fake_reserved-3.0.0-py3-none-any.whl", reserved),
        "fake-photos": _wheel(folder / "fake_photos-0.1.0-py3-none-any.whl", photos),
    }


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Every client serves the fake archives; `registry.calls` lists the packages fetched."""
    archives = build_registry(tmp_path / "registry")
    calls: list[str] = []

    def fetch(package, folder, timeout):
        calls.append(package.name)
        target = folder / archives[package.name].name
        shutil.copyfile(archives[package.name], target)
        return target, package.version

    for manager in ("npm", "pypi", "debian"):
        monkeypatch.setitem(clients.FETCHERS, manager, fetch)
    monkeypatch.setattr(clients.shutil, "which", lambda name: f"/fake/bin/{name}")
    fetch.calls = calls
    fetch.archives = archives
    return fetch


def run(out: Path, cfg: FetchConfig = TEST_CONFIG, rasterise=fake_rasteriser):
    return fetch_objects(out, cfg, progress=False, rasterise=rasterise, log=lambda message: None)


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


# --- code points, filter, split -------------------------------------------------------------------------------------


def test_every_style_naming_reduces_to_one_key():
    for name in ("1F43B-200D-2744-FE0F", "1f43b-200d-2744-fe0f", "1f43b-200d-2744", "1F43B_200D_2744"):
        assert emoji.canonical_codepoint(name) == "1f43b-200d-2744"
    assert emoji.canonical_codepoint("a9") == emoji.canonical_codepoint("00A9-FE0F") == "00a9"


def test_filter_keeps_paintable_objects_only(tmp_path):
    path = tmp_path / "emoji.json"
    path.write_text(json.dumps(EMOJI_JSON))
    kept, dropped = emoji.select_objects(emoji.read_emoji_metadata(path), config.ObjectFilter())
    assert {e.codepoint for e in kept} == KEPT
    assert dropped == {
        "flag": 1,
        "keycap": 1,
        "clock face": 1,
        "people sequence": 1,
        "category Smileys & Emotion": 1,
        "card-suit symbol": 1,
        "scene, not an object": 1,
    }
    bear = next(e for e in kept if e.name == "polar bear")
    assert bear.text == "\U0001f43b\u200d\u2744\ufe0f" and bear.category == "Animals & Nature"


@pytest.mark.parametrize(
    "codepoints",
    ["1F37A-1F3FD", "1F469-200D-1F373", "1F91D-200D-1F9D1", "1F3F4-E0067-E0062-E0065-E006E-E0067-E007F"],
)
def test_filter_drops_people_skin_tones_and_flags_whatever_their_category(codepoints):
    e = emoji.Emoji(emoji.canonical_codepoint(codepoints), "", "x", "x", "Food & Drink", "drink")
    assert emoji.drop_reason(e, config.ObjectFilter()) is not None


def test_split_holds_out_a_tenth_of_code_points_by_key_alone():
    keys = [f"{cp:x}" for cp in range(0x1F300, 0x1F300 + 4000)]
    cfg = SplitConfig()
    splits = [split.codepoint_split(key, cfg) for key in keys]
    assert 0.085 < splits.count("heldout") / len(keys) < 0.115
    assert splits == [split.codepoint_split(key, cfg) for key in reversed(keys)][::-1]  # order-independent
    assert splits != [split.codepoint_split(key, SplitConfig(salt="other")) for key in keys]
    ranked = split.ranked_split(keys[:46], cfg)
    assert list(ranked.values()).count("heldout") == 5  # ceil(10% of 46): backgrounds always get some


# --- the whole command on fake packages -----------------------------------------------------------------------------


def test_fetch_writes_objects_backgrounds_manifest_and_notes(tmp_path, registry):
    out = tmp_path / "out"
    summary = run(out)
    rows = manifest(out)
    assert all(list(row) == list(MANIFEST_FIELDS) for row in rows)
    objects = [row for row in rows if row["kind"] == "object"]
    by_style = {
        style: {r["codepoint"] for r in objects if r["style"] == style}
        for style in ("raster3d", "vector", "reserved")
    }
    assert by_style == {
        "raster3d": {"1f34e", "1f43b-200d-2744", "2602"},  # its flag, keycap and clock face are left out
        "vector": KEPT,  # its grinning face is left out
        "reserved": {"1f34e", "2602", "1f697"},
    }
    for row in objects:
        path = out / row["path"]
        assert path.parent.name == row["style"] and path.name == f"{row['codepoint']}.png"
        with Image.open(path) as image:
            assert image.mode == "RGBA" and image.size == (row["width"], row["height"])
            assert image.getchannel("A").getbbox() == (0, 0, *image.size)  # trimmed to the object
            assert max(image.size) <= 32
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        assert row["source_package"] and row["source_version"] and row["licence"] and row["attribution"]
        assert row["name"] and row["category"] and row["emoji"]
    raster_apple = next(r for r in objects if r["style"] == "raster3d" and r["codepoint"] == "1f34e")
    assert (raster_apple["width"], raster_apple["height"]) == (20, 10)  # a bitmap is trimmed, never upscaled
    assert raster_apple["source_file"] == "package/assets/1f34e.webp"
    assert raster_apple["source_package"] == "@fake/raster-3d" and raster_apple["source_version"] == "1.1.0"
    vector_apple = next(r for r in objects if r["style"] == "vector" and r["codepoint"] == "1f34e")
    assert max(vector_apple["width"], vector_apple["height"]) == 32  # a drawing is rendered at the final size
    assert summary.written == len([p for p in out.rglob("*") if p.is_file() and "cache" not in p.parts])

    sources = json.loads((out / "sources.json").read_text())
    for package in sources["packages"]:
        archive = out / package["archive"]
        assert (
            hashlib.sha256(archive.read_bytes()).hexdigest()
            == package["sha256"]
            == hashlib.sha256(registry.archives[package["name"]].read_bytes()).hexdigest()
        )
        assert package["version"] and package["licence"] and package["attribution"]
    assert sources["reserved_styles"] == ["reserved"]
    assert (out / "licences" / "npm-fake-emoji-data.txt").read_text() == "MIT licence text\n"
    attribution = (out / "ATTRIBUTION.md").read_text()
    assert "heldout_style/reserved/" in attribution and "never use them for training" in attribution
    unpacked = next((out / "cache" / "unpacked" / "npm").glob("fake-raster-3d-1.1.0-*"))
    assert not list(unpacked.rglob("README.md"))  # only the members a package's keep patterns name


def test_an_unreadable_file_is_left_out_and_reported(tmp_path, registry):
    messages: list[str] = []
    fetch_objects(
        tmp_path / "out", TEST_CONFIG, progress=False, rasterise=fake_rasteriser, log=messages.append
    )
    assert any(
        "raster3d: 3 objects" in m and "1 unreadable: package/assets/1f697.webp" in m for m in messages
    )


def test_split_is_per_code_point_in_every_style_and_the_reserved_style_is_marked(tmp_path, registry):
    out = tmp_path / "out"
    run(out)
    objects = [row for row in manifest(out) if row["kind"] == "object"]
    for row in objects:
        assert row["codepoint_split"] == split.codepoint_split(row["codepoint"], TEST_CONFIG.split)
        if row["style"] == "reserved":
            assert row["split"] == "reserved_style" and row["path"].startswith("heldout_style/reserved/")
        else:
            assert row["split"] == row["codepoint_split"] and row["path"].startswith("objects/")
    assert {row["split"] for row in objects if row["path"].startswith("objects/")} <= {"train", "heldout"}


def test_demo_photos_are_never_backgrounds(tmp_path, registry):
    out = tmp_path / "out"
    run(out)
    backgrounds = [row for row in manifest(out) if row["kind"] == "background"]
    assert {row["name"] for row in backgrounds} == {"camera", "big"}
    assert not {Path(row["source_file"]).stem for row in backgrounds} & DEMO_NAMES
    assert not [p for p in (out / "backgrounds").rglob("*") if p.stem in DEMO_NAMES | {"moonwalk"}]
    big = next(row for row in backgrounds if row["name"] == "big")
    assert (big["width"], big["height"]) == (32, 24) and big["path"].endswith(".jpg")  # short side 24
    assert {row["split"] for row in backgrounds} == {"train", "heldout"}  # ceil(10% of 2) = 1 held out
    # the default configuration names none of them, and would drop them if it did
    assert DEMO_PHOTOS == DEMO_NAMES
    for photo_set in FetchConfig().photo_sets:
        names = {p.name for p in photo_set.photos} | {Path(p.member).stem for p in photo_set.photos}
        assert not names & DEMO_NAMES
        assert training_photos(photo_set) == list(photo_set.photos)
    assert training_photos(PHOTOS) == [p for p in PHOTOS.photos if p.name in ("camera", "big")]


def test_rerun_skips_what_is_complete_and_repairs_what_is_not(tmp_path, registry):
    out = tmp_path / "out"
    first = run(out)
    fetched_once = list(registry.calls)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = run(out)
    assert registry.calls == fetched_once  # nothing fetched again: the cache is verified by sha256
    assert second.written == 0 and second.unchanged == first.written
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    damaged = out / "objects" / "vector" / "2602.png"
    damaged.write_bytes(b"not a png")
    third = run(out)
    assert third.written == 1 and damaged.read_bytes() == before[damaged]

    archive = next((out / "cache" / "downloads" / "npm").glob("fake-svg-*.tgz"))
    archive.write_bytes(b"truncated")  # a cached archive that no longer matches its record is fetched again
    run(out)
    assert registry.calls == [*fetched_once, "fake-svg"]


def test_an_interrupted_run_leaves_whole_files_and_resumes(tmp_path, registry):
    out = tmp_path / "out"
    calls = 0

    def interrupted(svg, box):
        nonlocal calls
        calls += 1
        if calls > 4:
            raise KeyboardInterrupt
        return fake_rasteriser(svg, box)

    with pytest.raises(KeyboardInterrupt):
        run(out, rasterise=interrupted)
    assert not (out / "manifest.jsonl").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary file or folder left
    for png in out.rglob("*.png"):
        with Image.open(png) as image:
            image.load()
    run(out)
    clean = tmp_path / "clean"
    run(clean)
    assert (out / "manifest.jsonl").read_bytes() == (clean / "manifest.jsonl").read_bytes()


def test_a_filter_change_removes_only_files_this_command_listed(tmp_path, registry):
    out = tmp_path / "out"
    run(out)
    mine = out / "objects" / "vector" / "my_notes.txt"
    mine.write_text("mine")
    narrower = replace(TEST_CONFIG, object_filter=config.ObjectFilter(categories=("Food & Drink",)))
    summary = run(out, narrower)
    assert summary.removed == 7  # the bear, umbrella and car in each style that drew them
    assert {row["codepoint"] for row in manifest(out) if row["kind"] == "object"} == {"1f34e"}
    assert not (out / "objects" / "vector" / "1f697.png").exists() and mine.read_text() == "mine"


def test_a_folder_of_other_files_is_refused(tmp_path, registry):
    out = tmp_path / "out"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"a user's photo")
    with pytest.raises(FetchError, match="holiday.jpg"):
        run(out)
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]


def test_contact_sheet_shows_every_style(tmp_path, registry):
    out = tmp_path / "out"
    run(out)
    assert sheet.main([str(out), str(tmp_path / "sheet.png"), "--cell", "24", "--colours", "64"]) == 0
    with Image.open(tmp_path / "sheet.png") as image:
        assert image.mode == "P" and image.width == 24 * 18


# --- clients and errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["npm", "apt-get", "dpkg-deb"])
def test_a_missing_client_is_one_error_line_naming_it(tmp_path, monkeypatch, capsys, missing):
    monkeypatch.setattr(
        clients.shutil, "which", lambda name: None if name == missing else f"/fake/bin/{name}"
    )
    monkeypatch.setattr(build, "resvg_rasteriser", lambda: fake_rasteriser)
    for manager in ("npm", "pypi", "debian"):  # were a client consulted, the test would fail loudly
        monkeypatch.setitem(
            clients.FETCHERS, manager, lambda *a: pytest.fail("fetched before checking clients")
        )
    out = tmp_path / "out"
    assert fetch_cli.main(["objects", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing} not found on PATH") and err.count("\n") == 1
    assert not (out / "cache" / "downloads").exists() or not any((out / "cache" / "downloads").rglob("*.*"))


def test_pip_missing_is_named(monkeypatch):
    monkeypatch.setattr(clients.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FetchError, match=r"^pip is not installed"):
        clients.require_clients([TEST_CONFIG.styles[2].package])


# What npm prints when the registry cannot be reached: a JSON report on stdout (with --json), noise on stderr.
NPM_JSON_REPORT = (
    """echo '{"error": {"code": "ENOTFOUND", "summary": "request to https://registry.npmjs.org/fake-emoji-data"""
    """ failed, reason: getaddrinfo ENOTFOUND registry.npmjs.org"}}'\n"""
)
NPM_STDERR = """echo 'npm error code ENOTFOUND' >&2
echo 'npm error     at ClientRequest.<anonymous> (index.js:130:14)' >&2
echo 'npm error A complete log of this run can be found in: /root/.npm/_logs/debug-0.log' >&2
"""


@pytest.mark.parametrize("json_report", [True, False])
def test_an_unreachable_registry_is_one_error_line_naming_the_package(tmp_path, monkeypatch, json_report):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\n" + NPM_STDERR + (NPM_JSON_REPORT if json_report else "") + "exit 1\n")
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    out = tmp_path / "out"
    with pytest.raises(FetchError) as caught:
        run(out, FetchConfig(metadata=METADATA, styles=(), photo_sets=()))
    message = str(caught.value)
    assert message.startswith("npm pack fake-emoji-data@1.0.0 failed (exit code 1): ")
    expected = "getaddrinfo ENOTFOUND registry.npmjs.org" if json_report else "npm error code ENOTFOUND"
    assert message.endswith(expected)  # npm's own summary; never a stack frame or the log file's path
    assert "\n" not in message
    assert [p.name for p in (out / "cache" / "downloads" / "npm").iterdir()] == []  # nothing half-written


def test_unpacking_keeps_listed_members_and_refuses_paths_outside(tmp_path):
    archive = _tgz(
        tmp_path / "pkg-1.0.tgz",
        {"package/a.svg": b"<svg/>", "package/../../evil.svg": b"x", "package/b.txt": b"b"},
    )
    package = _package("npm", "pkg", "1.0", ("package/*.svg", "*evil.svg"))
    download = clients.Download(package, "1.0", archive, clients.sha256_file(archive), archive.stat().st_size)
    folder = clients.unpack(download, tmp_path / "cache")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "package/a.svg"
    ]
    assert not (tmp_path / "evil.svg").exists()


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_debian_archives_are_unpacked_with_dpkg_deb(tmp_path):
    tree = tmp_path / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    for folder in (tree, tree / "DEBIAN"):
        folder.chmod(0o755)
    (tree / "DEBIAN" / "control").write_text(
        "Package: fake-wallpapers\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.invalid>\n"
        "Description: test\n"
    )
    photos = tree / "usr" / "share" / "backgrounds"
    photos.mkdir(parents=True)
    (photos / "Lake.jpg").write_bytes(_encoded(Image.new("RGB", (8, 6), "blue"), "JPEG"))
    (photos / "Lake-small.jpg").symlink_to("Lake.jpg")
    (photos / "Host.jpg").symlink_to(tmp_path / "outside.jpg")  # a link out of the package is never followed
    (tmp_path / "outside.jpg").write_bytes(b"a file of the machine, not of the package")
    (photos / "Logo.png").write_bytes(_encoded(Image.new("RGB", (8, 6), "red"), "PNG"))
    archive = tmp_path / "fake-wallpapers_1.0-1_all.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(tree), str(archive)],
        check=True,
        capture_output=True,
    )
    package = _package("debian", "fake-wallpapers", None, ("usr/share/backgrounds/*.jpg",))
    download = clients.Download(
        package, "1.0-1", archive, clients.sha256_file(archive), archive.stat().st_size
    )
    folder = clients.unpack(download, tmp_path / "cache")
    kept = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert kept == ["usr/share/backgrounds/Lake-small.jpg", "usr/share/backgrounds/Lake.jpg"]


def test_nothing_is_fetched_on_import(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a client ran on import"))
    for module in (config, clients, emoji, split, images, build, fetch_cli):
        name = f"fresh_{module.__name__}"
        spec = importlib.util.spec_from_file_location(name, module.__file__)
        fresh = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, fresh)  # (dataclasses look their module up there)
        spec.loader.exec_module(fresh)  # runs the module's code afresh, leaving the loaded module alone


def test_the_default_configuration_is_complete():
    cfg = FetchConfig()
    assert [s.name for s in cfg.styles if s.reserved] == ["noto"]
    for style in cfg.styles:
        assert style.folder.startswith("heldout_style/" if style.reserved else "objects/")
    for package in cfg.packages:
        assert package.licence and package.attribution and package.keep
        assert package.version is not None or package.manager == "debian"  # npm and PyPI keep old versions
        assert not any(word in package.name.lower() for word in ("apple", "facebook"))
    for photo_set in cfg.photo_sets:
        for photo in photo_set.photos:
            assert any(fnmatch.fnmatchcase(photo.member, p) for p in photo_set.package.keep)
            assert photo.licence and photo.author
    # names and categories come from emoji-datasource, never from a Google or Noto package; of its archive only the
    # metadata is unpacked (it also carries sprite sheets)
    assert cfg.metadata.name == "emoji-datasource"
    assert all(member.startswith("package/") and "img" not in member for member in cfg.metadata.keep)


# --- pixels ---------------------------------------------------------------------------------------------------------


def test_objects_are_trimmed_and_transparent_pixels_cleared():
    image = _rgba(size=(50, 40), box=(10, 5, 30, 35))
    image.putpixel((0, 0), (255, 255, 255, 0))  # an invisible colour
    result = images.finish_object(image, size=16)
    assert result.size == (11, 16)
    pixels = np.asarray(images.finish_object(image, size=64))
    assert pixels.shape == (30, 20, 4) and pixels[..., 3].min() == 255
    assert images.finish_object(Image.new("RGBA", (8, 8)), 16) is None


def test_font_glyphs_refuse_a_sequence_drawn_as_several_glyphs():
    glyphs = images.FontGlyphs(ImageFont.load_default(size=40))
    assert glyphs.render("A").getchannel("A").getbbox() is not None
    assert glyphs.render("AB") is None  # what a font without a ZWJ sequence's ligature would draw


def test_svg_renders_at_the_final_size_with_fake_rasteriser():
    result = images.object_from_svg(SVG, 40, 400, fake_rasteriser)
    assert max(result.size) == 40


def test_svg_renders_with_resvg_keeping_alpha():
    pytest.importorskip("resvg_py")
    result = images.object_from_svg(SVG, 64, 512, images.resvg_rasteriser())
    alpha = np.asarray(result.getchannel("A"))
    assert result.size == (64, 64) and alpha[0, 0] == 0 and alpha[32, 32] == 255
    assert 0 < (alpha[(alpha > 0) & (alpha < 255)]).size  # antialiased edge


# --- the real thing -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_fetch_of_a_small_subset(tmp_path):
    """npm, pip and the registries for real: Twemoji and scikit-learn's photos only (needs network and resvg-py)."""
    pytest.importorskip("resvg_py")
    cfg = replace(FetchConfig(), styles=(config.TWEMOJI,), photo_sets=(config.SKLEARN_PHOTOS,))
    summary = fetch_objects(tmp_path / "out", cfg, progress=False)
    counts = summary.counts["objects_by_style_and_split"]["twemoji"]
    assert counts["train"] > 500 and counts["heldout"] > 40
    assert summary.counts["backgrounds_by_source_and_split"]["scikit-learn"] == {"heldout": 1, "train": 1}
