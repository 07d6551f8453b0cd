"""Training data: sources (Open Images, COCO, JSONL, synthetic scenes, objects) and the paper's augmentations."""

from pbe.data.augment import AugmentConfig
from pbe.data.dataset import SOURCES, ExemplarEditDataset, build_dataset, build_source
from pbe.data.objects import ObjectsSource
from pbe.data.sources import (
    CocoSource,
    JsonlSource,
    OpenImagesSource,
    SkippedSampleWarning,
    SourceImage,
    UnusableSample,
)
from pbe.data.synthetic import SyntheticSource

__all__ = [
    "SOURCES",
    "AugmentConfig",
    "CocoSource",
    "ExemplarEditDataset",
    "JsonlSource",
    "ObjectsSource",
    "OpenImagesSource",
    "SkippedSampleWarning",
    "SourceImage",
    "SyntheticSource",
    "UnusableSample",
    "build_dataset",
    "build_source",
]
