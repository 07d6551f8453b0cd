"""data=objects (pbe.data.objects) on a tiny fetched-like folder drawn here: cut-outs in two training styles and a
reserved one, held-out code points and photos, and a demo photo that a manifest wrongly marks for training."""

import inspect
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image, ImageDraw
from training_helpers import compose

from pbe.data import SOURCES, ExemplarEditDataset, ObjectsSource, build_dataset
from pbe.data.augment import AugmentConfig
from pbe.data.objects import dominant_colour, heldout_scenes, on_white
from pbe.data.objects_fetch import MANIFEST_FIELDS
from pbe.training.datamodule import ExemplarDataModule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = AugmentConfig(image_size=32, exemplar_size=16)
SMALL = dict(min_size=48, max_size=64, object_cache_size=32, background_cache_size=64, num_samples=64)

RED, GREEN, BLUE = (220, 30, 30), (30, 180, 60), (40, 60, 220)
# colours that only held-out, reserved or demo material has: never in a training scene when colour_match=0
HELDOUT_OBJECT, RESERVED_STYLE, HELDOUT_PHOTO, DEMO_PHOTO = (
    (0, 255, 255),
    (255, 0, 255),
    (128, 0, 255),
    (0, 0, 255),
)
OBJECTS = {  # code point: (shape, colour, training styles, split)
    "1f534": ("disc", RED, ("flat", "outlined"), "train"),
    "1f53a": ("triangle", GREEN, ("flat", "outlined"), "train"),
    "1f7e6": ("square", BLUE, ("flat",), "train"),  # one training style only
    "2b50": ("triangle", HELDOUT_OBJECT, ("flat", "outlined"), "heldout"),
    "1f535": ("disc", HELDOUT_OBJECT, ("flat", "outlined"), "heldout"),
    "1f7e8": ("square", (255, 255, 0), ("flat",), "heldout"),
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cutout(shape: str, colour: tuple, outline: bool) -> Image.Image:
    """A small RGBA drawing, black under transparent pixels, trimmed to its alpha box (as the fetcher writes)."""
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    extra = {"outline": (0, 0, 0, 255), "width": 3} if outline else {}
    if shape == "disc":
        draw.ellipse((4, 4, 35, 35), fill=(*colour, 255), **extra)
    elif shape == "triangle":
        draw.polygon([(20, 3), (37, 34), (3, 34)], fill=(*colour, 255), **extra)
    else:
        draw.rectangle((6, 10, 33, 29), fill=(*colour, 255), **extra)
    return image.crop(image.getchannel("A").getbbox())


def photo(low: tuple, high: tuple, size=(96, 64)) -> Image.Image:
    """A smooth gradient between two colours (a solid colour when low == high)."""
    ramp = np.linspace(0, 1, size[0])[None, :, None]
    pixels = np.asarray(low) + (np.asarray(high) - np.asarray(low)) * ramp
    return Image.fromarray(np.broadcast_to(pixels, (size[1], size[0], 3)).round().astype(np.uint8))


def row(**values) -> dict:
    return {field: values.get(field) for field in MANIFEST_FIELDS}


def write_folder(root: Path) -> Path:
    rows = []
    for codepoint, (shape, colour, styles, split) in OBJECTS.items():
        for style in styles:
            path = f"objects/{style}/{codepoint}.png"
            rows.append((path, cutout(shape, colour, style == "outlined"), style, split))
        rows.append(
            (
                f"heldout_style/reserved/{codepoint}.png",
                cutout(shape, RESERVED_STYLE, False),
                "reserved",
                split,
            )
        )
    manifest = []
    for path, image, style, split in rows:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / path)
        codepoint = Path(path).stem
        manifest.append(
            row(
                path=path,
                kind="object",
                style=style,
                codepoint=codepoint,
                name=f"{OBJECTS[codepoint][0]} {codepoint}",
                category="Objects",
                split="reserved_style" if style == "reserved" else split,
                codepoint_split=split,
                width=image.width,
                height=image.height,
            )
        )
    photos = {
        "meadow": (photo((60, 90, 50), (150, 170, 90)), "train"),
        "sky": (photo((90, 110, 160), (180, 170, 150)), "train"),
        "wall": (photo(HELDOUT_PHOTO, HELDOUT_PHOTO), "heldout"),
        "astronaut": (
            photo(DEMO_PHOTO, DEMO_PHOTO),
            "train",
        ),  # a demo photo is never used, whatever the split
    }
    for name, (image, split) in photos.items():
        path = f"backgrounds/set/{name}.png"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / path)
        manifest.append(
            row(path=path, kind="background", name=name, split=split, width=96, height=64, source="set")
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in manifest))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("objects"))


def source(folder, **options) -> ObjectsSource:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the single-style warning (tested on its own)
        return ObjectsSource(folder, **{**SMALL, **options})


def near(pixels: np.ndarray, colour: tuple, tolerance: int = 3) -> bool:
    """Whether any (..., 3) pixel is within ``tolerance`` of ``colour`` in every channel."""
    return bool((np.abs(pixels.reshape(-1, 3).astype(int) - colour) <= tolerance).all(axis=1).any())


def hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def test_scene_i_of_epoch_e_is_a_function_of_seed_epoch_and_index(folder):
    a, b = source(folder), source(folder)
    first = [a.open(i) for i in (5, 2, 9)]
    again = [b.open(i) for i in (9, 2, 5)][::-1]  # another instance, another order
    for x, y in zip(first, again):
        assert torch.equal(x.image, y.image) and x.boxes == y.boxes and torch.equal(x.masks[0], y.masks[0])
        assert x.details == y.details
        assert (x.exemplar is None and y.exemplar is None) or torch.equal(x.exemplar, y.exemplar)
    b.set_epoch(1)
    assert not torch.equal(b.open(5).image, first[0].image)
    assert not torch.equal(source(folder, seed=1).open(5).image, first[0].image)


def test_the_dataset_passes_its_epoch_to_the_source(folder):
    dataset = ExemplarEditDataset(source(folder), TINY, seed=0)
    epoch0 = dataset[3]
    dataset.set_epoch(1)
    assert dataset.source.epoch == 1
    other = ExemplarEditDataset(source(folder), TINY, seed=0)
    other.set_epoch(1)
    assert torch.equal(dataset[3]["image"], other[3]["image"])
    assert not torch.equal(dataset[3]["image"], epoch0["image"])


def test_held_out_reserved_and_demo_material_never_appears_in_training_scenes(folder):
    objects = source(folder, colour_match=0.0, exemplar_on_white_p=0.5)
    assert {o.split for o in objects.objects} == {"train"}
    assert {o.style for o in objects.objects} == {"flat", "outlined"}
    assert [b.path for b in objects.backgrounds] == ["backgrounds/set/meadow.png", "backgrounds/set/sky.png"]
    for epoch in (0, 1):
        objects.set_epoch(epoch)
        for i in range(len(objects)):
            item = objects.open(i)
            assert item.details["codepoint"] in {"1f534", "1f53a", "1f7e6"}
            assert {item.details["style"], item.details["exemplar_style"]} <= {"flat", "outlined"}
            pixels = [hwc(item.image)] + ([hwc(item.exemplar)] if item.exemplar is not None else [])
            for image in pixels:
                for colour in (HELDOUT_OBJECT, RESERVED_STYLE, HELDOUT_PHOTO, DEMO_PHOTO):
                    assert not near(image, colour), (i, colour)


def test_the_box_is_the_pasted_alpha_box_and_opaque_pixels_are_the_object(folder):
    objects = source(folder, styles=["flat"], colour_match=0.0)
    colours = {cp: colour for cp, (_, colour, _, _) in OBJECTS.items()}
    for i in range(40):
        item = objects.open(i)
        coverage = item.masks[0].numpy()
        ys, xs = np.nonzero(coverage > 0)
        assert item.boxes == [(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)]
        assert 0 <= coverage.min() and coverage.max() <= 1 and coverage.max() > 0.99
        opaque = hwc(item.image)[coverage == 1]
        assert len(opaque) and np.abs(opaque.astype(int) - colours[item.details["codepoint"]]).max() <= 2
        x0, y0, x1, y1 = item.boxes[0]
        height, width = coverage.shape
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        area = (x1 - x0) * (y1 - y0) / (width * height)
        assert 0.02 <= area <= 0.5 + 1e-9


def test_exemplar_style_other_uses_another_styles_drawing_on_white(folder):
    objects = source(folder, exemplar_style="other", exemplar_on_white_p=1.0)
    for i in range(30):
        item = objects.open(i)
        codepoint, style = item.details["codepoint"], item.details["style"]
        others = [j for j, o in enumerate(objects.objects) if o.codepoint == codepoint and o.style != style]
        if not others:  # the blue square has one training style: it falls back to its own
            assert codepoint == "1f7e6" and item.details["same_style_fallback"]
            continue
        assert item.details["exemplar_style"] != style and not item.details["same_style_fallback"]
        assert torch.equal(item.exemplar, on_white(objects.cutouts[others[0]]))


def test_exemplar_style_other_crop_shows_the_other_drawing(folder):
    """Only the outlined style has black pixels: a crop exemplar of a flat scene shows them, the scene does not."""
    objects = source(folder, exemplar_style="other", exemplar_on_white_p=0.0, colour_match=0.0)
    seen = 0
    for i in range(40):
        item = objects.open(i)
        if item.details["style"] == "flat" and item.details["codepoint"] != "1f7e6":
            assert item.details["exemplar_style"] == "outlined"
            assert near(hwc(item.exemplar), (0, 0, 0), 40) and not near(hwc(item.image), (0, 0, 0), 40)
            seen += 1
    assert seen >= 5


def test_single_style_code_points_fall_back_with_a_warning_and_a_count(folder):
    with pytest.warns(UserWarning, match="1 of 3 code points have one training style"):
        objects = ObjectsSource(folder, exemplar_style="other", **SMALL)
    assert objects.single_style_codepoints == ["1f7e6"]
    fallbacks = sum(objects.open(i).details["same_style_fallback"] for i in range(len(objects)))
    assert fallbacks == objects.same_style_fallbacks > 0


def test_exemplar_on_white_is_the_object_alone_on_a_white_square(folder):
    objects = source(folder, exemplar_style="same", exemplar_on_white_p=1.0)
    item = objects.open(0)
    _, height, width = item.exemplar.shape
    assert height == width and (item.exemplar[:, 0, :] == 255).all() and (item.exemplar[:, :, 0] == 255).all()
    chosen = next(
        j
        for j, o in enumerate(objects.objects)
        if o.path.endswith(f"{item.details['style']}/{item.details['codepoint']}.png")
    )
    assert torch.equal(item.exemplar, on_white(objects.cutouts[chosen]))
    # same style, never on white: the dataset crops the scene itself, as for every other source
    assert source(folder, exemplar_style="same", exemplar_on_white_p=0.0).open(0).exemplar is None


def test_samples_through_the_dataset_use_the_given_exemplar(folder):
    objects = source(folder, exemplar_on_white_p=1.0)
    sample = ExemplarEditDataset(objects, AugmentConfig(image_size=32, exemplar_size=16, exemplar_aug=False))[
        0
    ]
    white = (torch.ones(3) - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor(
        [0.26862954, 0.26130258, 0.27577711]
    )
    assert torch.allclose(sample["exemplar"][:, 0, 0], white, atol=1e-4)  # the white square's corner
    assert sample["image"].shape == (3, 32, 32) and sample["meta"]["label"].startswith(
        ("disc", "triangle", "square")
    )


def test_recolour_p_works_with_the_objects_coverage(folder):
    config = AugmentConfig(image_size=32, exemplar_size=16, recolour_p=1.0)
    sample = ExemplarEditDataset(source(folder), config)[1]
    assert bool(sample["recoloured"]) and not torch.equal(sample["noisy_image"], sample["image"])


def test_dominant_colour_names_the_main_colour_not_outlines():
    assert dominant_colour(cutout("disc", RED, False)) == "red"
    assert dominant_colour(cutout("disc", RED, True)) == "red"
    assert dominant_colour(cutout("triangle", GREEN, True)) == "green"
    assert dominant_colour(cutout("square", BLUE, False)) == "blue"
    assert dominant_colour(cutout("square", (120, 70, 20), False)) == "brown"
    assert dominant_colour(cutout("disc", (245, 245, 245), True)) == "white"


def test_heldout_scenes_use_held_out_code_points_and_photos_only(folder):
    scenes = heldout_scenes(folder, 6, seed=3, size=64)
    assert {s.meta["codepoint"] for s in scenes} == {"2b50", "1f535", "1f7e8"}  # each once before repeats
    for scene in scenes:
        assert scene.meta["background"] == "backgrounds/set/wall.png" and scene.meta["style"] in {
            "flat",
            "outlined",
        }
        x0, y0, x1, y1 = scene.box
        assert (scene.mask[y0:y1, x0:x1] == 0).all() and scene.mask.sum() == 64 * 64 - (x1 - x0) * (y1 - y0)
        ys, xs = np.nonzero(scene.coverage.numpy() > 0)
        assert scene.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        roles = [c.role for c in scene.candidates]
        assert roles[0] == "same_object" and scene.candidates[0].style == scene.meta["style"]
        assert {c.codepoint for c in scene.candidates if c.role == "same_object"} == {scene.meta["codepoint"]}
        for c in scene.candidates:
            same = c.dominant_colour == scene.meta["dominant_colour"]
            assert (c.role == "other_colour") != same
        if scene.meta["dominant_colour"] == "cyan":
            assert roles.count("same_colour") == 1 and roles.count("other_colour") == 1
    again = heldout_scenes(folder, 6, seed=3, size=64)
    assert all(torch.equal(a.image, b.image) and a.meta == b.meta for a, b in zip(scenes, again))


def test_heldout_scenes_in_the_reserved_style_when_asked(folder):
    scenes = heldout_scenes(folder, 3, seed=0, styles=["reserved"], size=64)
    assert {s.meta["style"] for s in scenes} == {"reserved"}
    assert {s.meta["codepoint_split"] for s in scenes} == {"heldout"}
    assert all(s.meta["dominant_colour"] == "pink" for s in scenes)  # magenta falls in the pink hue bin
    with pytest.raises(ValueError, match="styles.*'cartoon'"):
        heldout_scenes(folder, 3, styles=["cartoon"])


def test_bad_folders_and_options_are_clear_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="data.source.root: no folder"):
        ObjectsSource(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="data.source.root: .* has no manifest.jsonl"):
        ObjectsSource(tmp_path)
    (tmp_path / "manifest.jsonl").write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines())
            if r["split"] != "train"
        )
    )
    with pytest.raises(ValueError, match="data.source.root: .* has no training object"):
        ObjectsSource(tmp_path)
    with pytest.raises(
        ValueError, match=r"data.source.styles: no training style 'cartoon'.*\['flat', 'outlined'\]"
    ):
        ObjectsSource(folder, styles=["cartoon"])
    with pytest.raises(ValueError, match="data.source.styles: 'reserved' is the reserved held-out style"):
        ObjectsSource(folder, styles=["flat", "reserved"])
    with pytest.raises(ValueError, match="data.source.exemplar_style must be one of"):
        ObjectsSource(folder, exemplar_style="others")
    with pytest.raises(ValueError, match="data.source.min_object_area and max_object_area"):
        ObjectsSource(folder, min_object_area=0.5, max_object_area=0.2)
    with pytest.raises(ValueError, match="data.source.exemplar_on_white_p"):
        ObjectsSource(folder, exemplar_on_white_p=1.5)


def compose_data(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return hydra_compose(config_name="preview", overrides=["data=objects", *overrides]).data


def test_config_keys_are_constructor_arguments_and_root_is_required():
    data = compose_data()
    assert data.source.kind == "objects" and type(SOURCES["objects"]) is type(ObjectsSource)
    assert set(data.source.keys()) - {"kind"} <= set(inspect.signature(ObjectsSource).parameters)
    with pytest.raises(ValueError, match="source.root"):
        build_dataset(data)


def test_the_training_datamodule_builds_batches_from_data_objects(folder):
    overrides = [f"data.source.root={folder}", *(f"data.source.{k}={v}" for k, v in SMALL.items())]
    # experiment=tiny sets data.source.num_scenes for its synthetic data; objects count num_samples instead
    c = OmegaConf.to_container(compose("data=objects", "~data.source.num_scenes", *overrides), resolve=True)
    datamodule = ExemplarDataModule(c["data"], c["loader"], seed=c["seed"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(1)
    assert datamodule.dataset.source.epoch == 1
    batch = next(iter(loader))
    size, exemplar = c["data"]["augment"]["image_size"], c["data"]["augment"]["exemplar_size"]
    assert batch["image"].shape == (2, 3, size, size) and batch["mask"].shape == (2, 1, size, size)
    assert batch["exemplar"].shape == (2, 3, exemplar, exemplar)
    assert all(torch.isfinite(batch[k]).all() for k in ("image", "mask", "masked_image", "exemplar"))


def test_the_preview_never_writes_over_a_file_of_the_objects_folder(folder):
    from omegaconf import OmegaConf

    from pbe.data.dataset import build_dataset
    from pbe.data.preview import data_files

    root = folder
    source = {"kind": "objects", "root": str(root), "num_samples": 4, "exemplar_style": "same"}
    cfg = OmegaConf.create({"source": source})
    files = {p.resolve() for p in data_files(cfg, build_dataset(cfg))}
    listed = {(root / json.loads(line)["path"]).resolve() for line in (root / "manifest.jsonl").open()}
    assert listed <= files and (root / "manifest.jsonl").resolve() in files  # held-out files too
