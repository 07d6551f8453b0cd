"""QS, the quality score: CLIP features scored by a Gaussian mixture fitted on real images.

The authors' mixture has 20 full-covariance components; each image's log-likelihood s counts as clip(s / 300, 0, 1),
and QS is their mean times 100. Mixtures are stored as plain .npz (weights, means, covariances); the authors'
scikit-learn pickle is converted once with `convert_gmm_pickle` (which runs the pickle, so only on request).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import linalg

from pbe.eval.feature_files import check_features, check_output, npz_writer
from pbe.files import write_file

QS_SCALE = 300.0  # the authors' max_number: clip(s / 300, 0, 1)


@dataclass
class Mixture:
    """A Gaussian mixture with full covariances (what the authors' coco2017_gmm_k20 is)."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, D)
    covariances: np.ndarray  # (K, D, D)

    def __post_init__(self):
        k = self.weights.shape[0]
        if self.weights.ndim != 1 or self.means.ndim != 2 or self.means.shape[0] != k:
            raise ValueError(
                f"mixture: weights {self.weights.shape} and means {self.means.shape} do not agree"
            )
        d = self.means.shape[1]
        if self.covariances.shape != (k, d, d):
            raise ValueError(f"mixture: covariances {self.covariances.shape}; expected {(k, d, d)}")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """Per-row log p(x) = logsumexp_k [log w_k + log N(x; mu_k, S_k)] (scikit-learn's score_samples)."""
        x = check_features(x, self.dim, "quality score", "the mixture")
        d = self.dim
        per_component = np.empty((x.shape[0], self.weights.shape[0]))
        for k, (w, mu, cov) in enumerate(zip(self.weights, self.means, self.covariances, strict=True)):
            chol = linalg.cholesky(cov, lower=True)
            y = linalg.solve_triangular(chol, (x - mu).T, lower=True)
            log_det = 2.0 * np.log(np.diag(chol)).sum()
            per_component[:, k] = np.log(w) - 0.5 * (d * np.log(2 * np.pi) + log_det + (y * y).sum(axis=0))
        top = per_component.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(per_component - top).sum(axis=1, keepdims=True)))[:, 0]


def quality_score(log_likelihood: np.ndarray) -> float:
    """The authors' QS: mean of clip(s / 300, 0, 1), times 100."""
    return float(np.clip(np.asarray(log_likelihood) / QS_SCALE, 0, 1).mean() * 100)


def fit_gmm(features: np.ndarray, n_components: int = 20, seed: int = 0) -> Mixture:
    """scikit-learn GaussianMixture (full covariance, as the authors' GIQA-style fit), deterministic for `seed`."""
    from sklearn.mixture import GaussianMixture

    features = check_features(features, None, "fit-gmm")
    if features.shape[0] < n_components:
        raise ValueError(f"fit-gmm: {features.shape[0]} feature rows for {n_components} components")
    gmm = GaussianMixture(n_components=n_components, covariance_type="full", random_state=seed)
    gmm.fit(features)
    return Mixture(gmm.weights_.copy(), gmm.means_.copy(), gmm.covariances_.copy())


def save_gmm(mixture: Mixture, path: str | Path, overwrite: bool = False) -> None:
    content = npz_writer(weights=mixture.weights, means=mixture.means, covariances=mixture.covariances)
    write_file(path, content, overwrite=overwrite, suffixes=(".npz",))


def load_gmm(path: str | Path) -> Mixture:
    """A mixture from .npz only (weights, means, covariances); pickles are refused (see convert-gmm)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"mixture file not found: {path}")
    if path.suffix != ".npz":
        raise ValueError(
            f"{path}: mixtures are read from .npz only; convert a scikit-learn pickle once with "
            "`python -m pbe.eval.metrics convert-gmm PICKLE OUT.npz --execute-pickle`"
        )
    with np.load(path, allow_pickle=False) as f:
        missing = {"weights", "means", "covariances"} - set(f.files)
        if missing:
            raise ValueError(f"{path}: lacks {sorted(missing)} (expected weights, means, covariances)")
        return Mixture(*(np.asarray(f[k], np.float64) for k in ("weights", "means", "covariances")))


def mixture_from_sklearn(gmm) -> Mixture:
    """Full covariances from a fitted scikit-learn GaussianMixture of any covariance_type."""
    kind = getattr(gmm, "covariance_type", None)
    weights, means, cov = (
        np.asarray(getattr(gmm, a), np.float64) for a in ("weights_", "means_", "covariances_")
    )
    k, d = means.shape
    if kind == "full":
        full = cov
    elif kind == "tied":
        full = np.broadcast_to(cov, (k, d, d)).copy()
    elif kind == "diag":
        full = np.stack([np.diag(c) for c in cov])
    elif kind == "spherical":
        full = np.stack([c * np.eye(d) for c in cov])
    else:
        raise ValueError(f"not a fitted scikit-learn GaussianMixture (covariance_type={kind!r})")
    return Mixture(weights, means, full)


def convert_gmm_pickle(
    src: str | Path, dst: str | Path, execute_pickle: bool, overwrite: bool = False
) -> Mixture:
    """One-time conversion of the authors' pickled GaussianMixture to .npz. Unpickling runs code from the file:
    it is done only with execute_pickle=True, for a file you trust."""
    if not execute_pickle:
        raise ValueError(
            "convert-gmm unpickles SRC, which executes code stored in the file; pass --execute-pickle to confirm "
            "you trust it"
        )
    import pickle

    src = Path(src).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"convert-gmm: {src} not found")
    check_output(dst, ".npz", overwrite, inputs=[src])
    with open(src, "rb") as f:
        gmm = pickle.load(f)  # noqa: S301 -- explicit, flagged opt-in
    mixture = mixture_from_sklearn(gmm)
    save_gmm(mixture, dst, overwrite=overwrite)
    return mixture
