"""Per-frame adaptive selection of the long-wavelength correction model (docs/science.md 3.2-3.4).

A frame's InSAR-minus-GNSS residuals ``r_i`` at its **training** stations are fitted by each
candidate model, each candidate is scored by weighted cross-validated RMSE, and the simplest
model within one standard error of the best is chosen (and it must beat the constant offset).
The chosen model is refitted on all training stations and returned as a
:class:`FittedCorrection`, which predicts the correction ``c`` at any point (``v_adj = v + c``)
and records the whole CV table for the product's attrs.

Candidates (``MODEL_ORDER``, simplest first): P0 offset, P1 plane, P2 quadratic, GP
(universal kriging: P1 mean + Matern-3/2 + white noise, length scale 50-1000 km), P3 cubic, SVR
(RBF, inner-CV grid), RF (random forest), GB (gradient boosting). Tree models (RF, GB) are
piecewise constant; their surface is smoothed by a 20 km Gaussian low-pass so the correction has
no short wavelengths that could absorb subsidence bowls. P2, P3, GP and SVR are clamped outside
the convex hull of the stations: the hull-boundary value plus the P1 trend.

Holdout stations never enter any fit because this module never sees them: the caller splits
stations with :func:`split_holdout_stations` and passes only the training stations to
:func:`select_and_fit`; :func:`evaluate_holdout` scores the fitted correction on the others.

:func:`select_and_fit` is three steps that can run apart: :func:`plan_selection` (the station
screen, the CV scheme and folds: a small picklable :class:`SelectionPlan`),
:func:`score_candidate` (one candidate's squared CV errors on some or all repeats, a pure
function: the ``adjust`` stage runs it as Dask tasks) and :func:`finish_selection` (the
one-standard-error choice and the refit). By default (``lean=True``) the CV of the tree
candidates grows scikit-learn's own trees without the estimators' per-tree bookkeeping and
evaluates their smoothed surface at the held-out stations only
(:mod:`ncp_subsidence.models.trees`), and the SVR's fits call libsvm as ``SVR`` does without its
per-call checks (:mod:`ncp_subsidence.models.svr`): the same models, CV values equal to
rounding, about 5x less time per frame; each path is checked against the estimators once per
process and falls back to them on any difference. ``lean=False`` is the reference path. The
chosen model is always refitted with the estimators.

References
----------
Mi, J., Wu, Z., Wang, X., Bai, L., Li, Z., Lu, Z. (2026). Mapping wide-area land subsidence from
groundwater use in the North China plain by machine learning-based InSAR adjustment. Remote Sens.
Environ. doi:10.1016/j.rse.2025.115226.
Hastie, T., Tibshirani, R., Friedman, J. (2009). The Elements of Statistical Learning, 2nd ed.,
section 7.10 (cross-validation and the one-standard-error rule).
Rasmussen, C. E., Williams, C. K. I. (2006). Gaussian Processes for Machine Learning. MIT Press.
Roberts, D. R. et al. (2017). Cross-validation strategies for data with temporal, spatial,
hierarchical, or phylogenetic structure. Ecography 40, 913-929 (spatial-block CV).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sklearn
from numpy.typing import ArrayLike, NDArray
from scipy.interpolate import RegularGridInterpolator
from scipy.spatial import cKDTree
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.model_selection import KFold
from sklearn.svm import SVR
from threadpoolctl import threadpool_limits

from ncp_subsidence.choices import CV_SCHEMES
from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels.adjust import (
    ConvexHull2D,
    fit_polynomial,
    gaussian_smooth_km,
    gaussian_smooth_matrix,
    local_coordinates_km,
    polynomial_design,
    reject_outliers,
)
from ncp_subsidence.models.svr import LeanSVR, lean_svr_matches_sklearn
from ncp_subsidence.models.trees import (
    boosting_boxes,
    forest_boxes,
    lean_trees_match_sklearn,
    smoothed_at,
)

__all__ = [
    "CLAMPED_MODELS",
    "MIN_STATIONS",
    "MODEL_ORDER",
    "TREE_MODELS",
    "FittedCorrection",
    "ModelSettings",
    "SelectionPlan",
    "evaluate_holdout",
    "finish_selection",
    "no_fit_attrs",
    "plan_selection",
    "score_candidate",
    "select_and_fit",
    "split_holdout_stations",
]

logger = logging.getLogger(__name__)

MODEL_ORDER: tuple[str, ...] = ("P0", "P1", "P2", "GP", "P3", "SVR", "RF", "GB")
"""Candidate ids from simplest to most complex (the one-standard-error tie order)."""
MIN_STATIONS: dict[str, int] = {
    "P0": 1,
    "P1": 3,
    "P2": 8,
    "P3": 14,
    "GP": 8,
    "RF": 15,
    "GB": 15,
    "SVR": 10,
}
"""Minimum number of training stations per model (docs/science.md 3.2 step 4)."""
TREE_MODELS = frozenset({"RF", "GB"})
"""Piecewise-constant models whose surfaces are low-pass filtered."""
CLAMPED_MODELS = frozenset({"P2", "P3", "GP", "SVR"})
"""Models clamped outside the stations' convex hull (P0 and P1 extrapolate exactly)."""


@dataclass(frozen=True)
class ModelSettings:
    """Hyperparameters of the candidates (docs/science.md 3.2-3.3 defaults).

    Attributes
    ----------
    ridge_p2, ridge_p3 : float
        Dimensionless ridge of the quadratic and cubic fits.
    gp_length_bounds_km : (float, float)
        Matern length-scale bounds; the lower bound keeps the GP to long wavelengths.
    gp_length_init_km : float
    gp_nu : float
        Matern smoothness (1.5 = Matern-3/2).
    gp_restarts : int
        Extra optimizer restarts of the marginal likelihood (seeded; 0 = one start from
        ``gp_length_init_km``, which keeps LOO affordable).
    rf_n_estimators, rf_max_depth, rf_min_samples_leaf : int
    gb_n_estimators, gb_max_depth : int
    gb_learning_rate, gb_subsample : float
    svr_c, svr_epsilon, svr_gamma : tuple of float
        Inner-CV grid. Targets are standardised, so epsilon is in units of the residual
        standard deviation; inputs are scaled to [-1, 1], so gamma is in 1/scaled-units^2.
    svr_inner_folds : int
    tree_smooth_sigma_km : float
        Gaussian low-pass of tree-model surfaces (20 km).
    tree_grid_km : float
        Spacing of the internal km grid on which tree surfaces are smoothed.
    kfold_splits, kfold_repeats : int
        Repeated k-fold used when n > ``loo_max_n`` (5 x 10).
    loo_max_n : int
        Leave-one-out up to this many stations (30).
    block_km : float
        Spatial-block size for clustered networks (50 km).
    cluster_nn_km, cluster_fraction : float
        The network is clustered when more than ``cluster_fraction`` of stations have their
        nearest neighbour closer than ``cluster_nn_km`` (10 km, 0.5).
    """

    ridge_p2: float = 1e-6
    ridge_p3: float = 1e-3
    gp_length_bounds_km: tuple[float, float] = (50.0, 1000.0)
    gp_length_init_km: float = 150.0
    gp_nu: float = 1.5
    gp_restarts: int = 0
    rf_n_estimators: int = 200
    rf_max_depth: int = 4
    rf_min_samples_leaf: int = 3
    gb_n_estimators: int = 200
    gb_learning_rate: float = 0.05
    gb_max_depth: int = 2
    gb_subsample: float = 0.8
    svr_c: tuple[float, ...] = (1.0, 10.0, 100.0)
    svr_epsilon: tuple[float, ...] = (0.05, 0.2)
    svr_gamma: tuple[float, ...] = (0.25, 1.0, 4.0)
    svr_inner_folds: int = 3
    tree_smooth_sigma_km: float = 20.0
    tree_grid_km: float = 4.0
    kfold_splits: int = 5
    kfold_repeats: int = 10
    loo_max_n: int = 30
    block_km: float = 50.0
    cluster_nn_km: float = 10.0
    cluster_fraction: float = 0.5


# --------------------------------------------------------------------------------------------
# candidate models: each is fitted on (x_km, y_km, r, w) and predicts at any (x_km, y_km)
# --------------------------------------------------------------------------------------------

Predict = Callable[[NDArray[np.float64], NDArray[np.float64]], NDArray[np.float64]]


@dataclass
class _Fitted:
    predict: Predict
    trend: NDArray[np.float64]  # P1 coefficients in scaled coordinates
    notes: list[str] = field(default_factory=list)


def _on_points(at: Callable[[NDArray[np.float64]], NDArray[np.float64]]) -> Predict:
    """A :data:`Predict` from ``at``, which maps query points ``q`` (n, 2) = (x_km, y_km) to
    values (n,); the result takes the shape of ``x``. Each call makes a new function (models
    attach their details to it as attributes)."""

    def predict(xq: NDArray[np.float64], yq: NDArray[np.float64]) -> NDArray[np.float64]:
        shape = np.shape(xq)
        return at(np.column_stack([np.ravel(xq), np.ravel(yq)])).reshape(shape)

    return predict


def _poly_predictor(coef: NDArray[np.float64], degree: int, scale: float) -> Predict:
    return _on_points(lambda q: polynomial_design(q[:, 0] / scale, q[:, 1] / scale, degree) @ coef)


def _fit_gp(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    scale: float,
    s: ModelSettings,
    seed: int,
    trend: NDArray[np.float64],
) -> tuple[Predict, list[str]]:
    """Universal kriging: P1 mean removed, GP on the rest; noise >= sigma_i via ``alpha``."""
    mean = _poly_predictor(trend, 1, scale)
    res = r - mean(x, y)
    var0 = max(float(np.average(res**2, weights=w)), 1e-2)
    lo, hi = s.gp_length_bounds_km
    kernel = ConstantKernel(var0, (1e-3, 1e4)) * Matern(
        length_scale=min(max(s.gp_length_init_km, lo), hi), length_scale_bounds=(lo, hi), nu=s.gp_nu
    ) + WhiteKernel(noise_level=0.1, noise_level_bounds=(1e-5, 1e2))
    gpr = GaussianProcessRegressor(
        kernel=kernel,
        alpha=1.0 / w,
        n_restarts_optimizer=s.gp_restarts,
        random_state=seed,
        normalize_y=False,
    )
    xy = np.column_stack([x, y])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category=ConvergenceWarning)
        gpr.fit(xy, res)
    notes = [f"GP: {w_.message}" for w_ in caught if issubclass(w_.category, ConvergenceWarning)]

    predict = _on_points(lambda q: gpr.predict(q) + mean(q[:, 0], q[:, 1]))
    predict.kernel_ = str(gpr.kernel_)  # type: ignore[attr-defined]
    return predict, notes


def _fit_svr(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    scale: float,
    s: ModelSettings,
    seed: int,
    lean: bool = False,
) -> Predict:
    """RBF SVR on scaled coordinates and standardised targets; C, epsilon, gamma by inner CV.

    ``lean``: the fits through :class:`~ncp_subsidence.models.svr.LeanSVR` (the same libsvm
    models without scikit-learn's per-call checks); the caller checks
    :func:`~ncp_subsidence.models.svr.lean_svr_matches_sklearn` first.
    """
    make: Any = LeanSVR if lean else functools.partial(SVR, kernel="rbf")
    xy = np.column_stack([x, y]) / scale
    mu = float(np.average(r, weights=w))
    sd = float(np.sqrt(np.average((r - mu) ** 2, weights=w)))
    sd = sd if sd > 1e-9 else 1.0
    z = (r - mu) / sd
    n = r.size
    k = min(s.svr_inner_folds, n)
    splits = list(KFold(n_splits=k, shuffle=True, random_state=seed).split(xy))
    best, best_err = (s.svr_c[0], s.svr_epsilon[0], s.svr_gamma[0]), np.inf
    for c in s.svr_c:
        for eps in s.svr_epsilon:
            for gam in s.svr_gamma:
                err = 0.0
                for tr, te in splits:
                    m = make(C=c, epsilon=eps, gamma=gam)
                    m.fit(xy[tr], z[tr], sample_weight=w[tr] / np.mean(w[tr]))
                    err += float(np.sum(w[te] * (z[te] - m.predict(xy[te])) ** 2))
                if err < best_err:
                    best, best_err = (c, eps, gam), err
    model = make(C=best[0], epsilon=best[1], gamma=best[2])
    model.fit(xy, z, sample_weight=w / np.mean(w))

    predict = _on_points(lambda q: model.predict(q / scale) * sd + mu)
    predict.params_ = {"C": best[0], "epsilon": best[1], "gamma": best[2]}  # type: ignore[attr-defined]
    return predict


def _tree_grid(
    x: NDArray[np.float64], y: NDArray[np.float64], s: ModelSettings
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The km grid (``gx`` (nx,), ``gy`` (ny,)) on which a tree surface fitted to stations at
    ``x``, ``y`` is smoothed: their bounding box plus ``4 sigma``, ``tree_grid_km`` spacing."""
    h = s.tree_grid_km
    margin = 4.0 * s.tree_smooth_sigma_km
    gx = np.arange(x.min() - margin, x.max() + margin + h, h)
    gy = np.arange(y.min() - margin, y.max() + margin + h, h)
    return gx, gy


def _fit_tree(
    model_id: str,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    s: ModelSettings,
    seed: int,
) -> Predict:
    """RF or GB on (x, y) km, then the 20 km Gaussian low-pass on a fixed internal km grid.

    The grid covers the stations' bounding box plus ``4 sigma``: beyond the stations a tree is
    constant along each axis, so clipping query points to the grid gives the smoothed surface
    everywhere, independently of which points are asked (blockwise application is exact).
    """
    if model_id == "RF":
        est: Any = RandomForestRegressor(
            n_estimators=s.rf_n_estimators,
            max_depth=s.rf_max_depth,
            min_samples_leaf=s.rf_min_samples_leaf,
            random_state=seed,
            n_jobs=1,
        )
    else:
        est = GradientBoostingRegressor(
            n_estimators=s.gb_n_estimators,
            learning_rate=s.gb_learning_rate,
            max_depth=s.gb_max_depth,
            subsample=s.gb_subsample,
            random_state=seed,
        )
    est.fit(np.column_stack([x, y]), r, sample_weight=w)
    sig, h = s.tree_smooth_sigma_km, s.tree_grid_km
    gx, gy = _tree_grid(x, y, s)
    xx, yy = np.meshgrid(gx, gy)
    raw = est.predict(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    smooth = gaussian_smooth_km(raw, sig, dy_km=h, dx_km=h)
    interp = RegularGridInterpolator((gy, gx), smooth, method="linear")

    predict = _on_points(
        lambda q: interp(
            np.column_stack([np.clip(q[:, 1], gy[0], gy[-1]), np.clip(q[:, 0], gx[0], gx[-1])])
        )
    )
    predict.raw = _on_points(est.predict)  # type: ignore[attr-defined]
    return predict


def _clamped(
    base: Predict, hull: ConvexHull2D, trend: NDArray[np.float64], scale: float
) -> Predict:
    """Outside the hull: value at the nearest hull point plus the P1 trend difference."""
    if hull.degenerate:
        return base
    t = _poly_predictor(trend, 1, scale)

    def predict(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        out = np.asarray(base(x, y), dtype=np.float64).copy()
        outside = ~hull.contains(x, y)
        if outside.any():
            xo, yo = x[outside], y[outside]
            xh, yh = hull.nearest_boundary(xo, yo)
            out[outside] = base(xh, yh) + t(xo, yo) - t(xh, yh)
        return out

    return predict


def _fit_model(
    model_id: str,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    scale: float,
    s: ModelSettings,
    seed: int,
    lean: bool = False,
) -> _Fitted:
    """Fit one candidate on training stations; the returned predictor includes smoothing (trees)
    and hull clamping (P2, P3, GP, SVR), exactly as used for the product. ``lean``: SVR fits
    through :class:`~ncp_subsidence.models.svr.LeanSVR` (CV only; the product's refit uses
    scikit-learn's estimators)."""
    n = r.size
    trend = (
        fit_polynomial(x / scale, y / scale, r, w, degree=1)
        if n >= 3
        else np.array([float(np.average(r, weights=w)), 0.0, 0.0])
    )
    notes: list[str] = []
    if model_id == "P0":
        base = _poly_predictor(np.array([float(np.average(r, weights=w))]), 0, scale)
    elif model_id in ("P1", "P2", "P3"):
        deg = int(model_id[1])
        ridge = {1: 0.0, 2: s.ridge_p2, 3: s.ridge_p3}[deg]
        base = _poly_predictor(
            fit_polynomial(x / scale, y / scale, r, w, degree=deg, ridge=ridge), deg, scale
        )
    elif model_id == "GP":
        base, notes = _fit_gp(x, y, r, w, scale, s, seed, trend)
    elif model_id == "SVR":
        base = _fit_svr(x, y, r, w, scale, s, seed, lean=lean)
    elif model_id in TREE_MODELS:
        base = _fit_tree(model_id, x, y, r, w, s, seed)
    else:
        raise DataError(f"unknown candidate model {model_id!r}; choose from {list(MODEL_ORDER)}")
    if model_id in CLAMPED_MODELS:
        pred = _clamped(base, ConvexHull2D(x, y), trend, scale)
        for attr in ("kernel_", "params_"):
            if hasattr(base, attr):
                setattr(pred, attr, getattr(base, attr))
        base = pred
    return _Fitted(base, trend, notes)


# --------------------------------------------------------------------------------------------
# cross-validation
# --------------------------------------------------------------------------------------------


def _is_clustered(x: NDArray[np.float64], y: NDArray[np.float64], s: ModelSettings) -> bool:
    if x.size < 3:
        return False
    d, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
    return bool(np.mean(d[:, 1] < s.cluster_nn_km) > s.cluster_fraction)


def _cv_splits(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    cv: str,
    seed: int,
    s: ModelSettings,
) -> tuple[str, list[list[tuple[NDArray[np.int64], NDArray[np.int64]]]]]:
    """Return the scheme actually used and the folds, grouped by repeat."""
    n = x.size
    idx = np.arange(n)
    if cv == "auto":
        if _is_clustered(x, y, s):
            cv = "spatial_block"
        else:
            cv = "loo" if n <= s.loo_max_n else "kfold"
    if cv == "spatial_block":
        bx = np.floor((x - x.min()) / s.block_km).astype(np.int64)
        by = np.floor((y - y.min()) / s.block_km).astype(np.int64)
        _, block = np.unique(np.column_stack([bx, by]), axis=0, return_inverse=True)
        block = np.ravel(block)
        if np.unique(block).size >= 3:
            folds = [(idx[block != b], idx[block == b]) for b in np.unique(block)]
            return "spatial_block", [folds]
        logger.info("spatial-block CV needs >= 3 blocks of %.0f km; using LOO", s.block_km)
        cv = "loo"
    if cv == "loo":
        return "loo", [[(np.delete(idx, i), np.array([i])) for i in range(n)]]
    if cv == "kfold":
        k = min(s.kfold_splits, n)
        reps = []
        for rep in range(s.kfold_repeats):
            kf = KFold(n_splits=k, shuffle=True, random_state=seed + rep)
            reps.append([(tr, te) for tr, te in kf.split(x)])
        return f"kfold{k}x{s.kfold_repeats}", reps
    raise DataError(f"unknown cv scheme {cv!r}; use one of {list(CV_SCHEMES)}")


def _lean_tree_predict(
    model_id: str,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    xq: NDArray[np.float64],
    yq: NDArray[np.float64],
    s: ModelSettings,
    seed: int,
    smoothing: dict[int, NDArray[np.float64]],
) -> NDArray[np.float64]:
    """The tree model fitted on ``(x, y, r, w)`` at ``(xq, yq)``, as :func:`_fit_tree` predicts
    it (to rounding), through :mod:`ncp_subsidence.models.trees`: the same trees, the smoothed
    surface computed at the grid nodes around the points only. ``smoothing`` caches
    :func:`gaussian_smooth_matrix` per grid length."""
    if model_id == "RF":
        boxes = forest_boxes(
            x,
            y,
            r,
            w,
            n_estimators=s.rf_n_estimators,
            max_depth=s.rf_max_depth,
            min_samples_leaf=s.rf_min_samples_leaf,
            seed=seed,
        )
    else:
        boxes = boosting_boxes(
            x,
            y,
            r,
            w,
            n_estimators=s.gb_n_estimators,
            learning_rate=s.gb_learning_rate,
            max_depth=s.gb_max_depth,
            subsample=s.gb_subsample,
            seed=seed,
        )
    gx, gy = _tree_grid(x, y, s)
    for size in (gx.size, gy.size):
        if size not in smoothing:
            smoothing[size] = gaussian_smooth_matrix(size, s.tree_smooth_sigma_km, s.tree_grid_km)
    return smoothed_at(boxes, gx, gy, smoothing[gx.size], smoothing[gy.size], xq, yq)


def _cv_squared_errors(
    model_id: str,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    scale: float,
    s: ModelSettings,
    seed: int,
    repeats: Sequence[list[tuple[NDArray[np.int64], NDArray[np.int64]]]],
    *,
    lean: bool = True,
) -> tuple[NDArray[np.float64], list[str]]:
    """Squared CV errors ``(r - prediction)^2`` at every station, one row per repeat.

    With ``lean`` (default), RF and GB folds go through :func:`_lean_tree_predict` (the same
    trees and the same smoothed surface, ~10x faster) when
    :func:`~ncp_subsidence.models.trees.lean_trees_match_sklearn`, and SVR folds fit
    :class:`~ncp_subsidence.models.svr.LeanSVR` (the same libsvm models, ~5x faster) when
    :func:`~ncp_subsidence.models.svr.lean_svr_matches_sklearn`; otherwise, and for the other
    candidates, each fold refits :func:`_fit_model` with scikit-learn's estimators (the
    reference path).

    Returns
    -------
    sq : ndarray, shape (len(repeats), n), (mm/yr)^2
    notes : list of str, the fits' notes (GP convergence warnings) in fold order
    """
    n = r.size
    sq = np.zeros((len(repeats), n))
    notes: list[str] = []
    lean_tree = lean and model_id in TREE_MODELS and lean_trees_match_sklearn()
    lean_svr = lean and model_id == "SVR" and lean_svr_matches_sklearn()
    smoothing: dict[int, NDArray[np.float64]] = {}
    for k, folds in enumerate(repeats):
        pred = np.full(n, np.nan)
        for tr, te in folds:
            if lean_tree:
                pred[te] = _lean_tree_predict(
                    model_id, x[tr], y[tr], r[tr], w[tr], x[te], y[te], s, seed, smoothing
                )
                continue
            fitted = _fit_model(model_id, x[tr], y[tr], r[tr], w[tr], scale, s, seed, lean=lean_svr)
            pred[te] = fitted.predict(x[te], y[te])
            notes.extend(fitted.notes)
        sq[k] = (r - pred) ** 2
    return sq, notes


def _cv_summary(sq: NDArray[np.float64], w: NDArray[np.float64]) -> tuple[float, float]:
    """Weighted CV RMSE (docs/science.md 3.2 step 5) and its standard error (delta method)
    from the squared errors ``sq`` (n_repeats, n) of :func:`_cv_squared_errors`."""
    n = w.size
    e = w * sq.mean(axis=0) / np.mean(w)  # per-station weighted squared error
    mse = float(np.mean(e))
    rmse = math.sqrt(mse)
    se_mse = float(np.std(e, ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    se = se_mse / (2.0 * rmse) if rmse > 0 else 0.0
    return rmse, se


def _cv_score(
    model_id: str,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    scale: float,
    s: ModelSettings,
    seed: int,
    repeats: list[list[tuple[NDArray[np.int64], NDArray[np.int64]]]],
    *,
    lean: bool = True,
) -> tuple[float, float, list[str]]:
    """Weighted CV RMSE, its standard error and the fits' notes, every repeat in turn."""
    sq, notes = _cv_squared_errors(model_id, x, y, r, w, scale, s, seed, repeats, lean=lean)
    rmse, se = _cv_summary(sq, w)
    return rmse, se, notes


# --------------------------------------------------------------------------------------------
# the fitted correction
# --------------------------------------------------------------------------------------------


def _json_float(v: float | None) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return float(v)


@dataclass
class FittedCorrection:
    """The selected correction surface of one frame and the record of how it was chosen.

    Attributes
    ----------
    model_id : str, one of :data:`MODEL_ORDER`
    cv_table : dict
        Per candidate: ``cv_rmse`` and ``se`` (mm/yr, None when not evaluated), ``n`` (training
        stations), ``min_n`` and ``status`` ('ok', 'insufficient stations ...',
        'not requested', 'error: ...'), ``notes`` (e.g. recorded GP ConvergenceWarnings).
    cv_scheme : str, 'loo' | 'kfold5x10' | 'spatial_block' | 'none'
    n_train : int, stations used in the fit (after outlier rejection)
    keep : ndarray of bool, shape (n_input,), False for rejected stations
    origin : (lon0, lat0) or None, centre of the local km coordinates, degrees
    scale_km : float, coordinates are divided by this for polynomial and SVR features
    smoothed : bool, True for tree models (20 km Gaussian low-pass)
    hull : ConvexHull2D of the training stations, km
    """

    model_id: str
    cv_table: dict[str, dict[str, Any]]
    cv_scheme: str
    n_train: int
    keep: NDArray[np.bool_]
    origin: tuple[float, float] | None
    scale_km: float
    smoothed: bool
    hull: ConvexHull2D
    settings: ModelSettings
    _predict: Predict
    details: dict[str, Any] = field(default_factory=dict)

    def predict(self, x_km: ArrayLike, y_km: ArrayLike) -> NDArray[np.float64]:
        """Correction ``c`` at arbitrary points, mm/yr (add it to the velocity).

        Vectorised; any shape. Tree models return the smoothed surface, clamped models the
        hull-clamped one, so results do not depend on how points are blocked.

        Parameters
        ----------
        x_km, y_km : array_like, broadcastable, frame-local km (same origin as the fit)

        Returns
        -------
        ndarray, broadcast shape, mm/yr
        """
        x, y = np.broadcast_arrays(np.asarray(x_km, float), np.asarray(y_km, float))
        return np.asarray(self._predict(x, y), dtype=np.float64).reshape(x.shape)

    def extrapolation_mask(self, x_km: ArrayLike, y_km: ArrayLike) -> NDArray[np.bool_]:
        """True outside the convex hull of the training stations (``extrap_mask``)."""
        return ~self.hull.contains(x_km, y_km)

    def predict_grid(
        self, lon_deg: ArrayLike, lat_deg: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Correction on a lat/lon grid, with the smoothing and clamping of the chosen model.

        Parameters
        ----------
        lon_deg : array_like, shape (nx,), degrees
        lat_deg : array_like, shape (ny,), degrees

        Returns
        -------
        correction : ndarray, shape (ny, nx), mm/yr
        extrap_mask : ndarray of bool, shape (ny, nx)

        Notes
        -----
        The stage should call this on a coarse grid (e.g. 1 km) on the client and interpolate
        blockwise (bilinear) to the product grid: the surface has no wavelength below ~20 km.
        """
        if self.origin is None:
            raise DataError(
                "predict_grid needs the frame origin: pass origin=(lon0, lat0) to select_and_fit"
            )
        lon = np.asarray(lon_deg, float)
        lat = np.asarray(lat_deg, float)
        x, y = local_coordinates_km(lon[None, :], lat[:, None], *self.origin)
        return self.predict(x, y), self.extrapolation_mask(x, y)

    def to_attrs(self) -> dict[str, Any]:
        """JSON-serialisable record for the product's attrs (no NaN; None instead)."""
        table = {}
        for m, row in self.cv_table.items():
            table[m] = {
                "cv_rmse": _json_float(row.get("cv_rmse")),
                "se": _json_float(row.get("se")),
                "n": int(row["n"]),
                "min_n": int(row["min_n"]),
                "status": str(row["status"]),
                "n_notes": len(row.get("notes", [])),
            }
        return {
            "selected_model": self.model_id,
            "cv_scheme": self.cv_scheme,
            "cv_table": table,
            "n_gnss_train": int(self.n_train),
            "n_gnss_rejected": int((~self.keep).sum()),
            "smoothing_sigma_km": (self.settings.tree_smooth_sigma_km if self.smoothed else None),
            "origin_lonlat": list(self.origin) if self.origin is not None else None,
            "scale_km": float(self.scale_km),
            "model_details": {k: str(v) for k, v in self.details.items()},
        }


def no_fit_attrs(reason: str = "no GNSS station in the frame") -> dict[str, Any]:
    """Attrs for a frame that got no Stage-3 fit (it is adjusted by its overlaps in Stage 4)."""
    return {
        "selected_model": "none",
        "cv_scheme": "none",
        "cv_table": {},
        "n_gnss_train": 0,
        "reason": reason,
    }


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _lean_numerics() -> Iterator[None]:
    """One BLAS thread and scikit-learn's input checks off, around every fit of this module.

    Each fit is tiny (n <= a few hundred): multi-threaded BLAS only adds overhead, and on a
    loaded machine OpenBLAS threads make the GP marginal-likelihood fits >10x slower. The
    inputs reaching scikit-learn are finite (non-finite stations are dropped first), so its
    per-call finiteness scans and parameter validation are skipped: with hundreds of trees
    per fit they were a quarter of the stage's time (benchmarks/RESULTS.md), and they change
    no number. Both settings are per thread, so each worker task sets them again.
    """
    with (
        threadpool_limits(limits=1, user_api="blas"),
        sklearn.config_context(assume_finite=True, skip_parameter_validation=True),
    ):
        yield


@dataclass(frozen=True)
class SelectionPlan:
    """One frame's model selection after the station screen: what the CV of each candidate
    and the final refit need (small and picklable).

    :func:`select_and_fit` is ``plan_selection`` -> :func:`score_candidate` per candidate ->
    :func:`finish_selection`; the stage runs the scoring as Dask tasks (one per frame and
    candidate), each independent of the others, and the result is the same wherever they ran.

    Attributes
    ----------
    x, y : ndarray, shape (n,), km, the kept training stations
    r : ndarray, shape (n,), mm/yr, their residuals
    w : ndarray, shape (n,), their weights ``1 / sigma^2``
    keep : ndarray of bool, shape (n_input,), False for rejected (or non-finite) stations
    n_finite : int, input stations with finite values (before the rejection)
    scale_km : float
    cv_scheme : str, 'loo' | 'kfold5x10' | 'spatial_block' | 'none' (n <= 2: P0 without CV)
    repeats : list of list of (train, test) index arrays, the folds grouped by repeat
    to_score : tuple of str, candidates to cross-validate (enough stations), P0 first
    table : dict, the CV table rows, with the status of every candidate not scored
    seed : int
    settings : ModelSettings
    origin : (lon0, lat0) or None, degrees
    """

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    r: NDArray[np.float64]
    w: NDArray[np.float64]
    keep: NDArray[np.bool_]
    n_finite: int
    scale_km: float
    cv_scheme: str
    repeats: list[list[tuple[NDArray[np.int64], NDArray[np.int64]]]]
    to_score: tuple[str, ...]
    table: dict[str, dict[str, Any]]
    seed: int
    settings: ModelSettings
    origin: tuple[float, float] | None

    @property
    def n(self) -> int:
        """Training stations kept."""
        return int(self.r.size)


def select_and_fit(
    x_km: ArrayLike,
    y_km: ArrayLike,
    residual: ArrayLike,
    sigma: ArrayLike,
    *,
    candidates: Sequence[str] = MODEL_ORDER,
    cv: str = "auto",
    seed: int = 0,
    origin: tuple[float, float] | None = None,
    scale_km: float | None = None,
    outlier_k: float | None = 3.0,
    max_gradient: ArrayLike | None = None,
    gradient_max: float = 20.0,
    settings: ModelSettings | None = None,
    lean: bool = True,
) -> FittedCorrection | None:
    """Choose and fit the correction model of one frame from its training stations.

    Steps (docs/science.md 3.2 step 5, 3.4): outlier rejection (iterative ``k * 1.4826 * MAD`` about
    a plane, and stations whose InSAR gradient exceeds ``gradient_max``); with 1-2 stations the
    weighted offset P0; otherwise every requested candidate with enough stations is scored by
    weighted CV RMSE (LOO for n <= 30, else 5-fold x 10 with seeds ``seed..seed+9``, spatial
    50 km blocks when the network is clustered), ``m* = argmin``, then the simplest model within
    one standard error in :data:`MODEL_ORDER`, and P0 unless ``CV_m* < CV_P0``. ``m*`` is then
    refitted on all training stations.

    The same as :func:`plan_selection`, :func:`score_candidate` for each candidate of the plan,
    then :func:`finish_selection`, serially here.

    Parameters
    ----------
    x_km, y_km : array_like, shape (n,), frame-local coordinates of the **training** stations, km
        (see :func:`ncp_subsidence.kernels.adjust.local_coordinates_km`). Holdout stations must
        not be passed: nothing here can tell them apart.
    residual : array_like, shape (n,), ``u . v_GNSS - v_InSAR``, mm/yr
    sigma : array_like, shape (n,), mm/yr; weights are ``1 / sigma^2``
    candidates : sequence of str
        Subset of :data:`MODEL_ORDER`; P0 is always evaluated.
    cv : str
        One of :data:`ncp_subsidence.choices.CV_SCHEMES`: 'auto' (default), 'loo', 'kfold' or
        'spatial_block'.
    seed : int
        Seeds every random choice (folds, trees, GP restarts, SVR inner folds).
    origin : (lon0, lat0), degrees, optional
        Centre of the local coordinates; needed by :meth:`FittedCorrection.predict_grid`.
    scale_km : float, optional
        Divides coordinates for the polynomial and SVR features (to about [-1, 1]); default the
        frame half-width as seen from the stations, ``max(|x|, |y|)``.
    outlier_k : float or None
        MAD multiplier (3); None disables the rejection.
    max_gradient : array_like, shape (n,), optional, mm/yr/km, from the window sampling
    gradient_max : float, mm/yr/km (20)
    settings : ModelSettings, optional
    lean : bool
        True (default): the tree candidates' CV through :mod:`ncp_subsidence.models.trees`
        (the same trees and smoothed surface, ~10x faster); False: every CV fold through the
        scikit-learn estimators, the reference path. The chosen model and the fitted
        correction are the same; CV values agree to rounding.

    Returns
    -------
    FittedCorrection, or None when no station is usable (the frame is flagged and adjusted from
    its overlaps in Stage 4; use :func:`no_fit_attrs` for its attrs).

    Raises
    ------
    DataError
        Mismatched input lengths, non-positive sigma, unknown candidate or CV scheme.
    """
    plan = plan_selection(
        x_km,
        y_km,
        residual,
        sigma,
        candidates=candidates,
        cv=cv,
        seed=seed,
        origin=origin,
        scale_km=scale_km,
        outlier_k=outlier_k,
        max_gradient=max_gradient,
        gradient_max=gradient_max,
        settings=settings,
    )
    if plan is None:
        return None
    scores = {m: [score_candidate(plan, m, lean=lean)] for m in plan.to_score}
    return finish_selection(plan, scores)


def plan_selection(
    x_km: ArrayLike,
    y_km: ArrayLike,
    residual: ArrayLike,
    sigma: ArrayLike,
    *,
    candidates: Sequence[str] = MODEL_ORDER,
    cv: str = "auto",
    seed: int = 0,
    origin: tuple[float, float] | None = None,
    scale_km: float | None = None,
    outlier_k: float | None = 3.0,
    max_gradient: ArrayLike | None = None,
    gradient_max: float = 20.0,
    settings: ModelSettings | None = None,
) -> SelectionPlan | None:
    """The station screen, the CV scheme and folds, and the candidates to score.

    Parameters are those of :func:`select_and_fit` (which see).

    Returns
    -------
    SelectionPlan, or None when no station is usable.

    Raises
    ------
    DataError
        Mismatched input lengths, non-positive sigma, unknown candidate or CV scheme.
    """
    with _lean_numerics():
        return _plan_selection(
            x_km,
            y_km,
            residual,
            sigma,
            candidates=candidates,
            cv=cv,
            seed=seed,
            origin=origin,
            scale_km=scale_km,
            outlier_k=outlier_k,
            max_gradient=max_gradient,
            gradient_max=gradient_max,
            settings=settings,
        )


def _plan_selection(
    x_km: ArrayLike,
    y_km: ArrayLike,
    residual: ArrayLike,
    sigma: ArrayLike,
    *,
    candidates: Sequence[str],
    cv: str,
    seed: int,
    origin: tuple[float, float] | None,
    scale_km: float | None,
    outlier_k: float | None,
    max_gradient: ArrayLike | None,
    gradient_max: float,
    settings: ModelSettings | None,
) -> SelectionPlan | None:
    s = settings or ModelSettings()
    x = np.asarray(x_km, float).ravel()
    y = np.asarray(y_km, float).ravel()
    r = np.asarray(residual, float).ravel()
    sig = np.asarray(sigma, float).ravel()
    n_in = r.size
    if not (x.size == y.size == sig.size == n_in):
        raise DataError(
            f"x_km, y_km, residual and sigma must have equal lengths, got {x.size}, {y.size}, "
            f"{n_in}, {sig.size}"
        )
    unknown = [c for c in candidates if c not in MODEL_ORDER]
    if unknown:
        raise DataError(f"unknown candidate models {unknown}; choose from {list(MODEL_ORDER)}")
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(r) & np.isfinite(sig)
    if np.any(finite & (sig <= 0)):
        raise DataError("sigma must be positive (mm/yr); got a value <= 0")
    keep = finite.copy()
    if int(keep.sum()) == 0:
        logger.info("no usable GNSS station: no Stage-3 fit for this frame")
        return None
    if scale_km is None:
        scale_km = max(float(np.max(np.abs(np.concatenate([x[keep], y[keep]])))), 1.0)
    if outlier_k is not None and keep.sum() >= 3:
        keep &= reject_outliers(
            np.where(keep, r, np.nan),
            x=x / scale_km,
            y=y / scale_km,
            weights=1.0 / np.where(keep, sig, 1.0) ** 2,
            k=outlier_k,
            sigma_floor=float(np.median(sig[keep])),
            max_gradient=max_gradient,
            gradient_max=gradient_max,
        )
    elif max_gradient is not None:
        keep &= ~(np.asarray(max_gradient, float).ravel() > gradient_max)
    n = int(keep.sum())
    if n == 0:
        logger.info("every GNSS station was rejected: no Stage-3 fit for this frame")
        return None
    xk, yk, rk = x[keep], y[keep], r[keep]
    wk = 1.0 / sig[keep] ** 2
    requested = ["P0", *[c for c in candidates if c != "P0"]]
    table: dict[str, dict[str, Any]] = {
        m: {"cv_rmse": None, "se": None, "n": n, "min_n": MIN_STATIONS[m], "notes": []}
        for m in MODEL_ORDER
    }
    for m in MODEL_ORDER:
        if m not in requested:
            table[m]["status"] = "not requested"

    to_score: list[str] = []
    repeats: list[list[tuple[NDArray[np.int64], NDArray[np.int64]]]] = []
    if n <= 2:
        scheme = "none"
        for m in requested:
            table[m]["status"] = (
                "ok (no CV: 1-2 stations -> offset)" if m == "P0" else "insufficient stations"
            )
    else:
        scheme, repeats = _cv_splits(xk, yk, cv, seed, s)
        min_train = min(len(tr) for folds in repeats for tr, _ in folds)
        for m in requested:
            if n < MIN_STATIONS[m] or min_train < MIN_STATIONS[m]:
                table[m]["status"] = (
                    f"insufficient stations (n={n}, smallest CV training set {min_train}, "
                    f"needs {MIN_STATIONS[m]})"
                )
                continue
            to_score.append(m)
    return SelectionPlan(
        x=xk,
        y=yk,
        r=rk,
        w=wk,
        keep=keep,
        n_finite=int(finite.sum()),
        scale_km=float(scale_km),
        cv_scheme=scheme,
        repeats=repeats,
        to_score=tuple(to_score),
        table=table,
        seed=seed,
        settings=s,
        origin=origin,
    )


def score_candidate(
    plan: SelectionPlan,
    model_id: str,
    *,
    repeats: Sequence[int] | None = None,
    lean: bool = True,
) -> dict[str, Any]:
    """Cross-validate one candidate of a plan on some or all of its CV repeats.

    A pure function of its arguments, so it runs anywhere (a Dask worker); the repeats of one
    candidate can be scored in separate calls and put together by :func:`finish_selection`.

    Parameters
    ----------
    plan : SelectionPlan
    model_id : str, one of ``plan.to_score``
    repeats : sequence of int, optional
        Indices into ``plan.repeats`` (default: all of them).
    lean : bool, see :func:`select_and_fit`

    Returns
    -------
    dict
        ``repeats`` (list of int) and either ``sq`` (ndarray (len(repeats), n), the squared
        CV errors per station, (mm/yr)^2) and ``notes`` (list of str), or ``error`` (the
        exception's type name) and ``message`` when a fit failed (LinAlgError, ValueError).
    """
    if model_id not in plan.to_score:
        raise DataError(f"candidate {model_id!r} is not to be scored in this plan: {plan.to_score}")
    which = list(range(len(plan.repeats))) if repeats is None else [int(k) for k in repeats]
    with _lean_numerics():
        try:
            sq, notes = _cv_squared_errors(
                model_id,
                plan.x,
                plan.y,
                plan.r,
                plan.w,
                plan.scale_km,
                plan.settings,
                plan.seed,
                [plan.repeats[k] for k in which],
                lean=lean,
            )
        except (np.linalg.LinAlgError, ValueError) as err:
            return {"repeats": which, "error": type(err).__name__, "message": str(err)}
    return {"repeats": which, "sq": sq, "notes": notes}


def _combine_parts(
    plan: SelectionPlan, model_id: str, parts: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """One candidate's :func:`score_candidate` parts in repeat order: the first error (as the
    serial loop would meet it), or the CV RMSE, its SE and the notes."""
    ordered = sorted(parts, key=lambda p: min(p["repeats"], default=-1))
    covered = sorted(k for p in ordered for k in p["repeats"])
    if covered != list(range(len(plan.repeats))):
        raise DataError(
            f"CV parts of candidate {model_id} cover repeats {covered}, "
            f"expected each of 0..{len(plan.repeats) - 1} once"
        )
    for part in ordered:
        if "error" in part:
            return {"error": part["error"], "message": part["message"]}
    order = np.argsort(np.concatenate([p["repeats"] for p in ordered]), kind="stable")
    sq = np.concatenate([np.asarray(p["sq"], float) for p in ordered])[order]
    rmse, se = _cv_summary(sq, plan.w)
    return {"cv_rmse": rmse, "se": se, "notes": [note for p in ordered for note in p["notes"]]}


def finish_selection(
    plan: SelectionPlan, scores: Mapping[str, Sequence[Mapping[str, Any]]]
) -> FittedCorrection:
    """The one-standard-error choice from the candidates' CV, refitted on every station.

    Parameters
    ----------
    plan : SelectionPlan
    scores : mapping model id -> list of :func:`score_candidate` results, for every
        ``plan.to_score``; together a candidate's results cover each repeat once

    Returns
    -------
    FittedCorrection
    """
    missing = [m for m in plan.to_score if m not in scores]
    if missing:
        raise DataError(f"no CV score for candidates {missing}")
    table = {m: {**row, "notes": list(row["notes"])} for m, row in plan.table.items()}
    if plan.cv_scheme == "none":
        chosen = "P0"
    else:
        for m in plan.to_score:
            score = _combine_parts(plan, m, scores[m])
            if "error" in score:
                table[m]["status"] = f"error: {score['error']}: {score['message']}"
                logger.warning("candidate %s failed in CV: %s", m, score["message"])
                continue
            table[m].update(
                cv_rmse=score["cv_rmse"], se=score["se"], status="ok", notes=list(score["notes"])
            )
        ok = [m for m in MODEL_ORDER if table[m]["status"] == "ok"]
        best = min(ok, key=lambda m: table[m]["cv_rmse"])
        threshold = table[best]["cv_rmse"] + table[best]["se"]
        chosen = next(m for m in MODEL_ORDER if m in ok and table[m]["cv_rmse"] <= threshold)
        if chosen != "P0" and not table[chosen]["cv_rmse"] < table["P0"]["cv_rmse"]:
            chosen = "P0"
    s = plan.settings
    with _lean_numerics():
        fitted = _fit_model(chosen, plan.x, plan.y, plan.r, plan.w, plan.scale_km, s, plan.seed)
    details: dict[str, Any] = {}
    for attr in ("kernel_", "params_"):
        if hasattr(fitted.predict, attr):
            details[attr.rstrip("_")] = getattr(fitted.predict, attr)
    if fitted.notes:
        details["fit_notes"] = "; ".join(fitted.notes)
    logger.info(
        "selected correction model %s (CV %s, n=%d, rejected %d)",
        chosen,
        plan.cv_scheme,
        plan.n,
        plan.n_finite - plan.n,
    )
    return FittedCorrection(
        model_id=chosen,
        cv_table=table,
        cv_scheme=plan.cv_scheme,
        n_train=plan.n,
        keep=plan.keep,
        origin=plan.origin,
        scale_km=plan.scale_km,
        smoothed=chosen in TREE_MODELS,
        hull=ConvexHull2D(plan.x, plan.y),
        settings=s,
        _predict=fitted.predict,
        details=details,
    )


# --------------------------------------------------------------------------------------------
# holdout stations
# --------------------------------------------------------------------------------------------


def _rank(station_id: Hashable, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{station_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def split_holdout_stations(
    frame_members: Mapping[Hashable, Sequence[Hashable]],
    *,
    fraction: float = 0.25,
    seed: int = 0,
    min_train: int = 3,
) -> set[Hashable]:
    """Choose independent validation (holdout) stations, stratified by frame.

    The choice depends only on station ids, frame membership and ``seed`` (never on velocities
    or residuals), and a station held out is held out everywhere (every frame and the mosaic),
    so it is never used in any fit.

    Parameters
    ----------
    frame_members : mapping frame -> sequence of station ids inside that frame
    fraction : float
        Target share of each frame's stations held out, ``floor(fraction * n_frame)`` (0.25).
    seed : int
    min_train : int
        Never hold out stations of a frame that would leave it fewer training stations.

    Returns
    -------
    set of station ids held out
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"holdout fraction must be in [0, 1), got {fraction}")
    holdout: set[Hashable] = set()
    for frame in sorted(frame_members, key=str):
        ids = list(dict.fromkeys(frame_members[frame]))
        target = min(math.floor(fraction * len(ids)), max(len(ids) - min_train, 0))
        have = sum(1 for i in ids if i in holdout)
        for sid in sorted((i for i in ids if i not in holdout), key=lambda i: _rank(i, seed)):
            if have >= target:
                break
            holdout.add(sid)
            have += 1
    return holdout


def evaluate_holdout(
    fitted: FittedCorrection | None,
    x_km: ArrayLike,
    y_km: ArrayLike,
    residual: ArrayLike,
) -> dict[str, float | int | None]:
    """RMSE of the InSAR-minus-GNSS mismatch at holdout stations before and after correction.

    Parameters
    ----------
    fitted : FittedCorrection or None (no correction: after = before)
    x_km, y_km : array_like, shape (m,), km, holdout station coordinates
    residual : array_like, shape (m,), ``u . v_GNSS - v_InSAR`` (or vertical: GNSS up minus
        InSAR up), mm/yr

    Returns
    -------
    dict with ``n``, ``rmse_before``, ``rmse_after`` (mm/yr; None when no station)
    """
    r = np.asarray(residual, float).ravel()
    ok = np.isfinite(r)
    if not ok.any():
        return {"n": 0, "rmse_before": None, "rmse_after": None}
    before = float(np.sqrt(np.mean(r[ok] ** 2)))
    if fitted is None:
        return {"n": int(ok.sum()), "rmse_before": before, "rmse_after": before}
    c = fitted.predict(np.asarray(x_km, float).ravel(), np.asarray(y_km, float).ravel())
    after = float(np.sqrt(np.mean((r[ok] - c[ok]) ** 2)))
    return {"n": int(ok.sum()), "rmse_before": before, "rmse_after": after}
