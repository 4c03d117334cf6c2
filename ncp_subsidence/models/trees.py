"""The tree ensembles of the correction-model selection, fitted lean for cross-validation.

:mod:`ncp_subsidence.models.selection` scores the random forest (RF) and gradient boosting
(GB) candidates by cross-validation: for a 5-fold x 10 scheme that is 50 ensembles of 200 trees
per candidate and frame, each on a few dozen stations. Through scikit-learn's estimators nearly
all of that time is per-tree Python bookkeeping (cloning, parameter and input validation, a new
``RandomState`` per tree), not tree building, and a tree-model prediction at a handful of
held-out stations needs the smoothed surface, i.e. every tree on the whole smoothing grid.

This module grows **the same trees** with scikit-learn's own tree builder, without the
bookkeeping, and predicts the smoothed surface at a few points exactly from the trees' leaves:

- :func:`forest_boxes` reproduces ``RandomForestRegressor(n_estimators, max_depth,
  min_samples_leaf, random_state=seed).fit(X, r, sample_weight=w)``: one ``randint`` seed per
  tree from ``RandomState(seed)``, a weighted bootstrap of ``n`` draws with probabilities
  ``w / sum(w)`` from ``RandomState(tree_seed)``, each tree grown on the bootstrap counts with
  the same seed for its splitter;
- :func:`boosting_boxes` reproduces ``GradientBoostingRegressor(loss='squared_error',
  n_estimators, learning_rate, max_depth, subsample, random_state=seed).fit(X, r,
  sample_weight=w)``: the weighted-mean start, and per stage an in-bag mask of
  ``max(1, int(subsample * n))`` stations by selection sampling (Knuth's algorithm S) on
  ``uniform(size=n)`` draws, a depth-``max_depth`` tree on the residual with weights
  ``w * mask``, and the update ``F += learning_rate * tree(X)``, all from one
  ``RandomState(seed)``;
- both return the fitted surface as weighted axis-aligned **boxes** (one per leaf), and
  :func:`smoothed_at` evaluates the Gaussian low-pass of such a surface on a grid, at a few
  points, as ``sum_box value * (G_y box-row sums) * (G_x box-column sums)`` with the smoothing
  matrices of :func:`ncp_subsidence.kernels.adjust.gaussian_smooth_matrix`, followed by the
  same bilinear interpolation as the full surface (equal to it to rounding).

The trees are scikit-learn's, node for node: :func:`lean_trees_match_sklearn` fits both ways
on a fixed sample once per process and compares the predictions bit for bit; where they differ
(another scikit-learn release) or its private tree classes cannot be used, the selection falls
back to the estimators (same numbers, slower). The product's surface is never made here: the
chosen model is refitted with the estimators (``selection._fit_tree``).

References
----------
Breiman, L. (2001). Random forests. Machine Learning 45, 5-32.
Friedman, J. H. (2002). Stochastic gradient boosting. Comput. Stat. Data Anal. 38(4), 367-378.
Knuth, D. E. (1997). The Art of Computer Programming, vol. 2, 3rd ed., section 3.4.2
(selection sampling, algorithm S).
Pedregosa, F. et al. (2011). Scikit-learn: machine learning in Python. JMLR 12, 2825-2830.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import RegularGridInterpolator

__all__ = [
    "Boxes",
    "boosting_boxes",
    "forest_boxes",
    "lean_trees_match_sklearn",
    "smoothed_at",
    "tree_boxes",
]

logger = logging.getLogger(__name__)

_SEED_MAX = np.iinfo(np.int32).max
"""Exclusive upper bound of the per-tree seeds (scikit-learn's ``MAX_INT``)."""


@dataclass(frozen=True)
class Boxes:
    """A piecewise-constant surface ``f(x, y) = sum_k value_k [xlo_k < x <= xhi_k]
    [ylo_k < y <= yhi_k]`` (arrays shape (m,); bounds in km, +-inf where open).

    The half-open bounds are those of a tree's splits (``x <= threshold`` goes left), compared
    in float32 as scikit-learn does: a point belongs to a box when its float32 coordinates do.
    """

    value: NDArray[np.float64]
    xlo: NDArray[np.float64]
    xhi: NDArray[np.float64]
    ylo: NDArray[np.float64]
    yhi: NDArray[np.float64]

    def __call__(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
        """The surface at points (any shape), summing over boxes in order; for tests."""
        xq = np.asarray(x, np.float32).astype(np.float64)[..., None]
        yq = np.asarray(y, np.float32).astype(np.float64)[..., None]
        inside = (self.xlo < xq) & (xq <= self.xhi) & (self.ylo < yq) & (yq <= self.yhi)
        return np.where(inside, self.value, 0.0).sum(axis=-1)


# --------------------------------------------------------------------------------------------
# growing trees with scikit-learn's builder
# --------------------------------------------------------------------------------------------


def _grow(
    xy32: NDArray[np.float32],
    target: NDArray[np.float64],
    weight: NDArray[np.float64],
    rng: np.random.RandomState,
    *,
    max_depth: int,
    min_samples_leaf: int,
) -> Any:
    """One squared-error regression tree, best splits over both features, depth-first.

    The settings are those ``DecisionTreeRegressor(max_depth, min_samples_leaf,
    random_state=rng)`` passes to scikit-learn's builder (no minimum weight or impurity
    decrease; ``min_samples_split = max(2, 2 * min_samples_leaf)``); ``rng`` seeds the
    splitter's feature order (one ``randint`` draw).
    """
    from sklearn.tree._criterion import MSE
    from sklearn.tree._splitter import BestSplitter
    from sklearn.tree._tree import DepthFirstTreeBuilder, Tree

    n, n_features = xy32.shape
    splitter = BestSplitter(MSE(1, n), n_features, min_samples_leaf, 0.0, rng, None)
    tree = Tree(n_features, np.ones(1, dtype=np.intp), 1)
    builder = DepthFirstTreeBuilder(
        splitter, max(2, 2 * min_samples_leaf), min_samples_leaf, 0.0, max_depth, 0.0
    )
    builder.build(tree, xy32, target.reshape(-1, 1), weight, None)
    return tree


def tree_boxes(trees: list[Any], scale: NDArray[np.float64] | float) -> Boxes:
    """The leaves of scikit-learn ``Tree`` objects (``tree_``) as boxes, values times ``scale``.

    Parameters
    ----------
    trees : list of sklearn.tree._tree.Tree, fitted on two features (x, y)
    scale : float or ndarray, shape (len(trees),), multiplies each tree's leaf values

    Returns
    -------
    Boxes, the leaves of every tree in order (the ensemble's sum)
    """
    left = [t.children_left for t in trees]
    sizes = np.array([a.size for a in left])
    offset = np.repeat(np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
    lc = np.concatenate(left)
    leaf = lc < 0
    lc = np.where(leaf, -1, lc + offset)
    rc = np.where(leaf, -1, np.concatenate([t.children_right for t in trees]) + offset)
    feature = np.concatenate([t.feature for t in trees])
    threshold = np.concatenate([t.threshold for t in trees])
    value = np.concatenate([t.value[:, 0, 0] for t in trees]) * np.repeat(
        np.broadcast_to(np.asarray(scale, float), (len(trees),)), sizes
    )
    lo = np.full((2, lc.size), -np.inf)
    hi = np.full((2, lc.size), np.inf)
    frontier = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # the roots
    while frontier.size:
        parents = frontier[~leaf[frontier]]
        f, t = feature[parents], threshold[parents]
        for kids, bound, pick in ((lc[parents], hi, np.minimum), (rc[parents], lo, np.maximum)):
            lo[:, kids], hi[:, kids] = lo[:, parents], hi[:, parents]
            bound[f, kids] = pick(bound[f, kids], t)
        frontier = np.concatenate([lc[parents], rc[parents]])
    return Boxes(value[leaf], lo[0, leaf], hi[0, leaf], lo[1, leaf], hi[1, leaf])


def _forest_trees(
    xy32: NDArray[np.float32],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    *,
    n_estimators: int,
    max_depth: int,
    min_samples_leaf: int,
    seed: int,
) -> list[Any]:
    n = r.size
    seeds = np.random.RandomState(seed).randint(_SEED_MAX, size=n_estimators)
    p = w / np.sum(w)
    draw = np.random.RandomState()
    trees = []
    for tree_seed in seeds:
        draw.seed(tree_seed)
        counts = np.bincount(draw.choice(n, n, replace=True, p=p), minlength=n)
        draw.seed(tree_seed)  # the splitter starts from the tree's seed too
        trees.append(
            _grow(
                xy32,
                r,
                counts.astype(np.float64),
                draw,
                max_depth=max_depth,
                min_samples_leaf=min_samples_leaf,
            )
        )
    return trees


def forest_boxes(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    *,
    n_estimators: int,
    max_depth: int,
    min_samples_leaf: int,
    seed: int,
) -> Boxes:
    """Random forest of ``RandomForestRegressor(...).fit(column_stack([x, y]), r, w)`` as boxes.

    Parameters
    ----------
    x, y : ndarray, shape (n,), km
    r : ndarray, shape (n,), mm/yr, targets
    w : ndarray, shape (n,), sample weights (``1 / sigma^2``), used by the bootstrap
    n_estimators, max_depth, min_samples_leaf : int
    seed : int, ``random_state``

    Returns
    -------
    Boxes whose sum is the forest's mean prediction (leaf values divided by ``n_estimators``)
    """
    xy32 = np.ascontiguousarray(np.column_stack([x, y]), dtype=np.float32)
    trees = _forest_trees(
        xy32,
        np.ascontiguousarray(r, dtype=np.float64),
        np.asarray(w, dtype=np.float64),
        n_estimators=n_estimators,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        seed=seed,
    )
    return tree_boxes(trees, 1.0 / n_estimators)


def _in_bag(u: NDArray[np.float64], n_in: int) -> NDArray[np.bool_]:
    """Selection sampling: exactly ``n_in`` of ``u.size`` items, item ``i`` taken when
    ``u_i * (n - i) < n_in - taken_so_far`` (Knuth's algorithm S)."""
    n = u.size
    mask = np.zeros(n, dtype=bool)
    taken = 0
    for i, ui in enumerate(u.tolist()):
        if ui * (n - i) < n_in - taken:
            mask[i] = True
            taken += 1
    return mask


def _boosting_trees(
    xy32: NDArray[np.float32],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    *,
    n_estimators: int,
    learning_rate: float,
    max_depth: int,
    subsample: float,
    seed: int,
) -> tuple[float, list[Any]]:
    from sklearn.dummy import DummyRegressor

    n = r.size
    start = float(
        np.ravel(DummyRegressor(strategy="mean").fit(xy32, r, sample_weight=w).constant_)[0]
    )
    f = np.full(n, start)
    rng = np.random.RandomState(seed)
    n_in = max(1, int(subsample * n))
    trees = []
    for _ in range(n_estimators):
        weight = w
        if subsample < 1.0:
            weight = w * _in_bag(rng.uniform(size=n), n_in).astype(np.float64)
        tree = _grow(xy32, -(f - r), weight, rng, max_depth=max_depth, min_samples_leaf=1)
        f += learning_rate * tree.value[:, 0, 0].take(tree.apply(xy32), axis=0)
        trees.append(tree)
    return start, trees


def boosting_boxes(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    r: NDArray[np.float64],
    w: NDArray[np.float64],
    *,
    n_estimators: int,
    learning_rate: float,
    max_depth: int,
    subsample: float,
    seed: int,
) -> Boxes:
    """Gradient boosting of ``GradientBoostingRegressor(...).fit(column_stack([x, y]), r, w)``
    (squared error) as boxes: the start value (one unbounded box), then each tree's leaves
    times ``learning_rate``.

    Parameters
    ----------
    x, y : ndarray, shape (n,), km
    r : ndarray, shape (n,), mm/yr, targets
    w : ndarray, shape (n,), sample weights
    n_estimators, max_depth : int
    learning_rate, subsample : float
    seed : int, ``random_state``

    Returns
    -------
    Boxes
    """
    xy32 = np.ascontiguousarray(np.column_stack([x, y]), dtype=np.float32)
    start, trees = _boosting_trees(
        xy32,
        np.ascontiguousarray(r, dtype=np.float64),
        np.asarray(w, dtype=np.float64),
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        max_depth=max_depth,
        subsample=subsample,
        seed=seed,
    )
    boxes = tree_boxes(trees, learning_rate)
    inf = np.array([np.inf])
    return Boxes(
        np.concatenate([[start], boxes.value]),
        np.concatenate([-inf, boxes.xlo]),
        np.concatenate([inf, boxes.xhi]),
        np.concatenate([-inf, boxes.ylo]),
        np.concatenate([inf, boxes.yhi]),
    )


# --------------------------------------------------------------------------------------------
# the smoothed surface at a few points
# --------------------------------------------------------------------------------------------


def _box_sums(
    smooth: NDArray[np.float64],
    cells: NDArray[np.intp],
    coord32: NDArray[np.float64],
    lo: NDArray[np.float64],
    hi: NDArray[np.float64],
) -> NDArray[np.float64]:
    """(len(cells), n_boxes): smoothing weights of ``cells`` summed over each box's grid cells
    (those with ``lo < coord32 <= hi``; ``coord32`` ascending)."""
    prefix = np.zeros((cells.size, coord32.size + 1))
    np.cumsum(smooth[cells], axis=1, out=prefix[:, 1:])
    first = np.searchsorted(coord32, lo, side="right")
    stop = np.searchsorted(coord32, hi, side="right")
    return prefix[:, stop] - prefix[:, first]


def smoothed_at(
    boxes: Boxes,
    gx: NDArray[np.float64],
    gy: NDArray[np.float64],
    smooth_x: NDArray[np.float64],
    smooth_y: NDArray[np.float64],
    xq: NDArray[np.float64],
    yq: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Gaussian low-pass of a box surface sampled on the grid ``(gy, gx)``, interpolated
    bilinearly at points clipped to the grid.

    Equals (to rounding) sampling ``boxes`` at the float32 grid nodes, smoothing the whole grid
    with ``smooth_y @ raw @ smooth_x.T`` and interpolating with
    ``RegularGridInterpolator((gy, gx), ..., 'linear')`` at ``(clip(yq), clip(xq))``; only the
    grid nodes around the points are computed.

    Parameters
    ----------
    boxes : Boxes
    gx, gy : ndarray, shape (nx,) and (ny,), ascending, km
    smooth_x, smooth_y : ndarray, shape (nx, nx) and (ny, ny), from
        :func:`ncp_subsidence.kernels.adjust.gaussian_smooth_matrix`
    xq, yq : ndarray, shape (m,), km

    Returns
    -------
    ndarray, shape (m,)
    """
    xc = np.clip(xq, gx[0], gx[-1])
    yc = np.clip(yq, gy[0], gy[-1])
    # the interpolation reads the two nodes around each point; one more on each side is spare
    near = np.arange(-2, 2)
    cols = np.unique(np.clip(np.searchsorted(gx, xc)[:, None] + near, 0, gx.size - 1))
    rows = np.unique(np.clip(np.searchsorted(gy, yc)[:, None] + near, 0, gy.size - 1))
    gx32 = gx.astype(np.float32).astype(np.float64)
    gy32 = gy.astype(np.float32).astype(np.float64)
    wy = _box_sums(smooth_y, rows, gy32, boxes.ylo, boxes.yhi)  # (rows, boxes)
    wx = _box_sums(smooth_x, cols, gx32, boxes.xlo, boxes.xhi)  # (cols, boxes)
    grid = np.zeros((gy.size, gx.size))
    grid[np.ix_(rows, cols)] = (wy * boxes.value) @ wx.T
    interp = RegularGridInterpolator((gy, gx), grid, method="linear")
    return interp(np.column_stack([yc, xc]))


# --------------------------------------------------------------------------------------------
# the check against scikit-learn's estimators
# --------------------------------------------------------------------------------------------


def _sample_predictions(trees: list[Any], q32: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.stack([t.predict(q32)[:, 0] for t in trees])


@functools.lru_cache(maxsize=1)
def lean_trees_match_sklearn() -> bool:
    """True when :func:`forest_boxes` and :func:`boosting_boxes` grow scikit-learn's trees.

    Fits a small forest and boosting both ways on a fixed weighted sample (once per process)
    and compares every prediction at the stations and on a grid bit for bit. False (logged)
    when they differ or the private tree classes are unusable, e.g. under another
    scikit-learn release; the selection then uses the estimators.
    """
    import sklearn
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    rng = np.random.default_rng(20260101)
    n = 37
    x, y = rng.uniform(-120.0, 120.0, n), rng.uniform(-90.0, 90.0, n)
    r = 3.0 * np.sin(x / 40.0) + y / 30.0 + rng.normal(0.0, 0.5, n)
    w = 1.0 / rng.uniform(0.5, 2.0, n) ** 2
    xy = np.column_stack([x, y])
    xy32 = np.ascontiguousarray(xy, dtype=np.float32)
    gq = np.linspace(-150.0, 150.0, 23)
    q = np.column_stack([np.repeat(gq, gq.size), np.tile(gq, gq.size)])
    q32 = np.vstack([xy32, q.astype(np.float32)])
    try:
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            forest = RandomForestRegressor(
                n_estimators=12, max_depth=4, min_samples_leaf=3, random_state=5, n_jobs=1
            ).fit(xy, r, sample_weight=w)
            boost = GradientBoostingRegressor(
                n_estimators=12, learning_rate=0.05, max_depth=2, subsample=0.8, random_state=5
            ).fit(xy, r, sample_weight=w)
            lean_forest = _forest_trees(
                xy32, r, w, n_estimators=12, max_depth=4, min_samples_leaf=3, seed=5
            )
            start, lean_boost = _boosting_trees(
                xy32, r, w, n_estimators=12, learning_rate=0.05, max_depth=2, subsample=0.8, seed=5
            )
            ref_forest = np.stack([e.predict(q32) for e in forest.estimators_])
            ref_boost = boost.predict(q32)
            ours_boost = np.full(q32.shape[0], start)
            for t in lean_boost:
                ours_boost += 0.05 * t.predict(q32)[:, 0]
        same = np.array_equal(ref_forest, _sample_predictions(lean_forest, q32)) and np.array_equal(
            ref_boost, ours_boost
        )
    except Exception as err:  # noqa: BLE001  (private classes moved or changed signature)
        logger.info(
            "lean tree ensembles unavailable (%s: %s); using the estimators",
            type(err).__name__,
            err,
        )
        return False
    if not same:
        logger.info(
            "lean tree ensembles differ from scikit-learn %s's estimators; using the estimators",
            sklearn.__version__,
        )
    return bool(same)
