"""The small-model report: the ablation's paired comparison (pure functions) and the automatic-mask scores."""

import numpy as np
import pytest

from pbe.recipes.small.scorecard import paired_difference, paired_table


def test_paired_difference_is_the_mean_and_standard_error_of_per_edit_differences():
    base = np.array([10.0, 20.0, 30.0, 40.0])
    other = np.array([12.0, 21.0, 35.0, 42.0])  # differences 2, 1, 5, 2
    out = paired_difference(base, other)
    assert out["mean"] == pytest.approx(2.5)
    assert out["se"] == pytest.approx(np.std([2, 1, 5, 2], ddof=1) / 2)
    # a shift shared by every edit has no uncertainty, however spread the scores are
    assert paired_difference(base, base + 3)["se"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="paired"):
        paired_difference(base, other[:3])


def test_paired_table_lists_every_model_after_the_first():
    scores = {
        "small": {},
        "variant": {
            "paired_vs_first": {
                "colour_error_exemplar": {"mean": 5.43, "se": 2.03},
                "shape_accuracy": {"mean": -0.025, "se": 0.03},
            }
        },
    }
    table = paired_table(scores).splitlines()
    assert table[0].startswith("| vs small |") and len(table) == 3
    assert table[2] == "| variant | +5.4 +- 2.0 | -0.025 +- 0.030 |"


def test_mask_iou_scores_the_default_rule_and_the_options_on_the_same_scenes(one_torch_thread):
    from pbe.assets import backgrounds_dir, small_model_path
    from pbe.recipes.small.evaluate import MASK_OPTIONS, load_pipeline, mask_iou

    scores = mask_iou(load_pipeline(small_model_path()), 4, str(backgrounds_dir()), seed=4)
    assert scores["scenes"] == 4
    keys = ["iou_object", "iou_box", *(f"iou_object_{name}" for name in MASK_OPTIONS)]
    assert sorted(keys) == sorted(k for k in scores if k != "scenes")
    for key in keys:
        assert 0.0 <= scores[key] <= 1.0, key
    # the options change the mask (another rule on the same map), so the scores differ; with the committed weights
    # the image-guided mask finds these held-out objects far better than DiffEdit's latent-pixel blocks
    assert scores["iou_object_bilinear_one_region"] != scores["iou_object"]
    assert scores["iou_object_guided_one_region"] > max(0.4, scores["iou_object"] + 0.1)
