"""Hydra data configs: each composes into a working dataset, ablations are one override, bad input is a ValueError."""

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from pbe.data import SOURCES, AugmentConfig, build_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["data.augment.image_size=32", "data.augment.exemplar_size=16"]


# The pipeline runs in DataLoader workers, which use one thread; tiny ops crawl with more on a busy machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def compose_data(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name="preview", overrides=list(overrides)).data


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    Image.radial_gradient("L").convert("RGB").resize((64, 48)).save(folder / "photo1.jpg")
    return folder


def test_paper_augment_file_matches_the_dataclass_defaults():
    assert dict(compose_data().augment) == dataclasses.asdict(AugmentConfig())


@pytest.mark.parametrize(
    "option, key, value",
    [
        ("no_exemplar_aug", "exemplar_aug", False),
        ("rect_mask_only", "bezier_p", 0.0),
        ("no_square_crop", "square_crop", False),
        ("no_box_extension", "box_extension", False),
    ],
)
def test_each_ablation_is_one_override_that_changes_one_key(option, key, value):
    ablated = dict(compose_data(f"data/augment={option}").augment)
    paper = dataclasses.asdict(AugmentConfig())
    assert ablated[key] == value
    assert {k for k in paper if paper[k] != ablated[k]} == {key}


def test_single_keys_override_directly():
    data = compose_data("data.augment.exemplar_aug=false", "data.augment.bezier_p=0.0")
    dataset = build_dataset(data)
    assert not dataset.config.exemplar_aug and dataset.config.bezier_p == 0.0


def test_default_data_is_synthetic_and_builds():
    dataset = build_dataset(compose_data(*SMALL, "data.source.min_size=32", "data.source.max_size=48"))
    assert type(dataset.source) is SOURCES["synthetic"]
    assert dataset[0]["image"].shape == (3, 32, 32)


def test_jsonl_config_builds_from_a_manifest_override(photo):
    (photo / "m.jsonl").write_text(json.dumps({"image": "photo1.jpg", "boxes": [[10, 10, 40, 30]]}) + "\n")
    dataset = build_dataset(compose_data("data=jsonl", f"data.source.manifest={photo / 'm.jsonl'}", *SMALL))
    assert len(dataset) == 1 and dataset[0]["exemplar"].shape == (3, 16, 16)


def test_openimages_config_builds_from_csv_overrides(photo):
    header = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
    (photo / "boxes.csv").write_text(f"{header}\nphoto1,xclick,/m/x,1,0.2,0.7,0.1,0.8,0,0,0,0,0\n")
    overrides = [
        f"data.source.box_csv={photo / 'boxes.csv'}",
        f"data.source.image_dir={photo}",
        "data.source.progress=false",
    ]
    dataset = build_dataset(compose_data("data=openimages", *overrides, *SMALL))
    assert dataset[0]["meta"]["label"] == "/m/x"


def test_coco_config_builds_from_json_overrides(photo):
    coco = {
        "images": [{"id": 1, "file_name": "photo1.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [8, 8, 30, 20], "iscrowd": 0}],
        "categories": [{"id": 3, "name": "blob"}],
    }
    (photo / "instances.json").write_text(json.dumps(coco))
    overrides = [f"data.source.annotations={photo / 'instances.json'}", f"data.source.image_dir={photo}"]
    dataset = build_dataset(compose_data("data=coco", *overrides, *SMALL))
    assert dataset[0]["meta"]["label"] == "blob"


def test_missing_required_path_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="data.source.manifest"):
        build_dataset(compose_data("data=jsonl"))


@pytest.mark.parametrize("name", ["synthetic", "openimages", "coco", "jsonl"])
def test_config_source_keys_are_constructor_arguments(name):
    source = compose_data(f"data={name}").source  # keys only: required paths are still '???'
    assert source.kind == name
    assert set(source.keys()) - {"kind"} <= set(inspect.signature(SOURCES[name]).parameters)


def test_unknown_source_kind_lists_the_valid_kinds():
    with pytest.raises(
        ValueError, match=r"source.kind.*\['coco', 'jsonl', 'objects', 'openimages', 'synthetic'\]"
    ):
        build_dataset({"source": {"kind": "laion"}})


def test_unknown_source_key_lists_the_valid_keys():
    with pytest.raises(ValueError, match="num_scene.*valid keys.*num_scenes"):
        build_dataset({"source": {"kind": "synthetic", "num_scene": 3}})


def test_unknown_top_level_and_augment_keys_are_rejected():
    with pytest.raises(ValueError, match="data: unknown keys"):
        build_dataset({"source": {"kind": "synthetic"}, "augmentation": {}})
    with pytest.raises(ValueError, match="augment: unknown keys"):
        build_dataset({"source": {"kind": "synthetic"}, "augment": {"flip": 0.5}})
