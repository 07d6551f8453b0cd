"""pbe.eval.metrics: Frechet distance, CLIP features, region crop, mixture score, feature-file checks."""

import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pbe.eval import metrics as M
from pbe.eval.bench import white_bounds

# A tiny open_clip architecture (same code path as ViT-B-32: open_clip.create_model + our weights + our preprocessing)
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    arch = folder / "pbe-test-tiny-clip.json"
    arch.write_text(json.dumps(TINY_CLIP))
    weights = folder / "clip.safetensors"
    M.random_clip_weights(weights, arch=str(arch), seed=3)
    return M.ClipConfig(weights=str(weights), arch=str(arch), device="cpu", batch_size=3)


def photo(w, h, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------------------------- Frechet


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert abs(M.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) - closed) < 1e-6


def test_frechet_distance_matches_closed_form_for_commuting_full_covariances():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T + 0.5 * np.eye(5)  # S2 = 4 S1: sqrt(S1 S2) = 2 S1, distance = |dmu|^2 + tr(S1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    closed = ((mu1 - mu2) ** 2).sum() + np.trace(sigma)
    assert abs(M.frechet_distance(mu1, sigma, mu2, 4 * sigma) - closed) < 1e-6
    assert abs(M.frechet_distance(mu1, sigma, mu1, sigma)) < 1e-6


def test_frechet_distance_of_different_widths_is_an_error():
    with pytest.raises(ValueError, match="different widths"):
        M.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ----------------------------------------------------------------------------------------------- features


def test_features_match_open_clip_encode_image(tiny_clip, tmp_path):
    import open_clip
    from open_clip.transform import image_transform

    from pbe.checkpoints.tensor_io import read_safetensors

    paths = []
    for i, (w, h) in enumerate([(48, 40), (33, 70), (32, 32)]):
        paths.append(tmp_path / f"{i}.png")
        photo(w, h, i).save(paths[-1])
    ours = M.ClipFeatures(tiny_clip).images(paths)

    model = open_clip.create_model(M._open_clip_name(tiny_clip.arch), pretrained=None, force_quick_gelu=True)
    model.visual.load_state_dict(read_safetensors(tiny_clip.weights)[0])
    preprocess = image_transform(32, is_train=False)  # open_clip's own: bicubic, centre crop, CLIP mean / std
    with torch.no_grad():
        theirs = model.eval().encode_image(torch.stack([preprocess(Image.open(p)) for p in paths]))
    assert ours.shape == (3, 16)
    np.testing.assert_allclose(ours, theirs.double().numpy(), atol=1e-5, rtol=0)


def test_clip_weights_that_do_not_fit_the_architecture_are_refused(tiny_clip, tmp_path):
    from pbe.checkpoints.tensor_io import write_safetensors

    bad = tmp_path / "bad.safetensors"
    write_safetensors(bad, {"conv1.weight": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="do not fit"):
        M.load_clip_visual(M.ClipConfig(weights=str(bad), arch=tiny_clip.arch))
    with pytest.raises(ValueError, match="clip.weights is required"):
        M.load_clip_visual(M.ClipConfig(weights=None, arch=tiny_clip.arch))


@pytest.mark.slow
def test_vit_b_32_features_match_open_clip_encode_image(tmp_path):
    import open_clip
    from open_clip.transform import image_transform

    weights = tmp_path / "vit.safetensors"
    M.random_clip_weights(weights, seed=0)
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    photo(512, 512, 0).save(paths[0])
    photo(300, 400, 1).save(paths[1])
    ours = M.ClipFeatures(M.ClipConfig(weights=str(weights), device="cpu")).images(paths)
    torch.manual_seed(0)  # random_clip_weights draws the same initialisation
    model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True).eval()
    with torch.no_grad():
        theirs = model.encode_image(
            torch.stack([image_transform(224, is_train=False)(Image.open(p)) for p in paths])
        )
    assert ours.shape == (2, 512)
    np.testing.assert_allclose(ours, theirs.double().numpy(), atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------- region crop


@pytest.mark.parametrize(
    "box",  # (top, bottom, left, right) of the white box, exclusive ends, touching the borders
    [(0, 10, 0, 7), (20, 32, 25, 40), (0, 32, 0, 40), (5, 32, 0, 12), (0, 3, 38, 40)],
)
def test_region_crop_matches_a_hand_built_crop_at_the_borders(box):
    top, bottom, left, right = box
    mask = np.zeros((32, 40), np.uint8)
    mask[top:bottom, left:right] = 255
    # the authors' rule: first to last white row / column, upper bounds exclusive (the last ones are left out)
    assert white_bounds(mask) == (top, bottom - 1, left, right - 1)
    result = torch.randn(3, 32, 40)
    hand = result[:, top : bottom - 1, left : right - 1]
    same_size = M.region_crop(result, mask, hand.shape[1]) if hand.shape[1] == hand.shape[2] else None
    if same_size is not None:
        torch.testing.assert_close(same_size, hand, atol=1e-6, rtol=0)
    stretched = M.region_crop(result, mask, 24)
    from torchvision.transforms.v2 import functional as tvF

    expected = tvF.resize(
        hand, [24, 24], antialias=False
    )  # torchvision bilinear tensor resize, no antialiasing
    torch.testing.assert_close(stretched, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(stretched, F.interpolate(hand[None], (24, 24), mode="bilinear")[0])


def test_masks_without_a_usable_white_box_are_errors():
    with pytest.raises(ValueError, match="no white"):
        white_bounds(np.full((8, 8), 254, np.uint8))
    one_row = np.zeros((8, 8), np.uint8)
    one_row[3, 2:6] = 255
    with pytest.raises(ValueError, match="empty"):
        white_bounds(one_row)


# ----------------------------------------------------------------------------------------------- mixture


def _sklearn_with(mixture):
    from sklearn.mixture import GaussianMixture
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    gmm = GaussianMixture(n_components=len(mixture.weights), covariance_type="full")
    gmm.weights_, gmm.means_, gmm.covariances_ = mixture.weights, mixture.means, mixture.covariances
    gmm.precisions_cholesky_ = _compute_precision_cholesky(mixture.covariances, "full")
    return gmm


def test_mixture_fit_is_deterministic_and_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(loc, 1.0, size=(60, 5)) for loc in (-3, 0, 4)])
    a, b = M.fit_gmm(features, n_components=3, seed=7), M.fit_gmm(features, n_components=3, seed=7)
    for x, y in ((a.weights, b.weights), (a.means, b.means), (a.covariances, b.covariances)):
        np.testing.assert_array_equal(x, y)
    queries = rng.normal(0, 3, size=(20, 5))
    ours = a.log_likelihood(queries)
    np.testing.assert_allclose(ours, _sklearn_with(a).score_samples(queries), rtol=1e-10, atol=1e-8)
    expected_qs = np.clip(ours / 300, 0, 1).mean() * 100
    assert M.quality_score(ours) == pytest.approx(expected_qs)
    assert M.quality_score(np.array([-5.0, 150.0, 900.0])) == pytest.approx(100 * (0 + 0.5 + 1) / 3)


def test_gmm_pickle_is_converted_only_with_the_flag_and_npz_roundtrips(tmp_path):
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(1)
    features = rng.normal(size=(80, 4))
    gmm = GaussianMixture(n_components=2, covariance_type="full", random_state=0).fit(features)
    src = tmp_path / "coco2017_gmm_k20"
    src.write_bytes(pickle.dumps(gmm))
    with pytest.raises(ValueError, match="execute-pickle"):
        M.main(["convert-gmm", str(src), str(tmp_path / "g.npz")])
    with pytest.raises(ValueError, match=".npz only"):
        M.load_gmm(src)
    M.main(["convert-gmm", str(src), str(tmp_path / "g.npz"), "--execute-pickle"])
    mixture = M.load_gmm(tmp_path / "g.npz")
    np.testing.assert_allclose(mixture.log_likelihood(features), gmm.score_samples(features), rtol=1e-10)


# ----------------------------------------------------------------------------------------------- feature files


def test_feature_files_of_the_wrong_width_are_errors(tiny_clip, tmp_path):
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, features=np.zeros((5, 10)))
    with pytest.raises(ValueError, match="10-d but the CLIP model's output is 16-d"):
        M.read_stats(wrong, 16)
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.zeros(10), sigma=np.eye(10))
    with pytest.raises(ValueError, match="do not fit 16-d"):
        M.read_stats(stats, 16)
    mixture = M.Mixture(np.ones(1), np.zeros((1, 10)), np.eye(10)[None])
    with pytest.raises(ValueError, match="16-d but the mixture is 10-d"):
        mixture.log_likelihood(np.zeros((2, 16)))
    other = tmp_path / "other.npz"
    np.savez(other, mu=np.zeros(16), sigma=np.eye(16))
    with pytest.raises(ValueError, match="different widths"):
        M.main(["fid", str(wrong), str(other)])


def test_fid_command_on_feature_files(tmp_path):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(50, 4)), rng.normal(1.0, 2.0, size=(60, 4))
    M.write_features(tmp_path / "a.npz", a)
    M.write_features(tmp_path / "b.npz", b)
    out = M.main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz")])
    expected = M.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert out["fid"] == pytest.approx(expected, abs=1e-9)


# ----------------------------------------------------------------------------------------------- output files


def test_square_real_refuses_its_source_folder_as_output(tmp_path):
    photo(40, 30, 0).save(tmp_path / "a.jpg")
    photo(30, 40, 1).save(tmp_path / "b.png")
    before = sorted(p.name for p in tmp_path.iterdir())
    for out in (tmp_path, tmp_path / "." / ""):
        with pytest.raises(
            ValueError, match="is the source folder; the squared images need a folder of their own"
        ):
            M.main(["square-real", str(tmp_path), str(out), "--size", "16"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert M.main(["square-real", str(tmp_path), str(tmp_path / "square"), "--size", "16"]) == {"written": 2}
    assert Image.open(tmp_path / "square" / "a.png").size == (16, 16)


def test_features_overwrite_replaces_the_npz_pbe_wrote(tiny_clip, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        photo(40, 40, i).save(folder / f"{i}.png")
    clip = ["--clip-weights", tiny_clip.weights, "--clip-arch", tiny_clip.arch, "--device", "cpu"]
    out = tmp_path / "real.npz"
    M.main(["features", str(folder), str(out), *clip])
    first = np.load(out)["features"]
    photo(40, 40, 9).save(folder / "3.png")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=true"):
        M.main(["features", str(folder), str(out), *clip])
    assert M.main(["features", str(folder), str(out), *clip, "--overwrite"])["n"] == 4
    np.testing.assert_allclose(np.load(out)["features"][:3], first, atol=1e-5)  # batched differently
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    with pytest.raises(ValueError, match="must name a .npz file"):
        M.main(["features", str(folder), str(other), *clip, "--overwrite"])
    assert other.read_text() == "mine"
