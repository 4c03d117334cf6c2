"""The SVR candidate of the correction-model selection, fitted lean for cross-validation.

The SVR candidate (:func:`ncp_subsidence.models.selection._fit_svr`) picks ``C``, ``epsilon``
and ``gamma`` by an inner 3-fold CV over an 18-point grid, inside every outer CV fold: for a
5-fold x 10 scheme that is 2,750 epsilon-SVR fits of a few dozen stations per frame. libsvm
solves each in ~0.1 ms; scikit-learn's ``SVR.fit``/``predict`` spend ~0.8 ms around it on input
validation (dataframe probing included) that these finite, C-ordered float64 arrays do not
need.

:class:`LeanSVR` makes the same two libsvm calls ``SVR(kernel='rbf', C, epsilon, gamma)``
makes (epsilon-SVR, tolerance 1e-3, shrinking, 200 MB kernel cache, no iteration limit, no
probability estimates; libsvm's random seed only drives probability estimates, unused here),
with the same arrays, hence the same model. :func:`lean_svr_matches_sklearn` checks that once
per process on a fixed sample, bit for bit; where it fails (another scikit-learn release, the
private wrapper moved) the selection uses ``SVR``.

References
----------
Chang, C.-C., Lin, C.-J. (2011). LIBSVM: a library for support vector machines. ACM TIST 2(3),
27.
Smola, A. J., Schoelkopf, B. (2004). A tutorial on support vector regression. Statistics and
Computing 14, 199-222.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["LeanSVR", "lean_svr_matches_sklearn"]

logger = logging.getLogger(__name__)

_EPSILON_SVR = 3
"""libsvm's ``svm_type`` of epsilon-SVR."""
_TOL = 1e-3
_CACHE_MB = 200.0


class LeanSVR:
    """RBF epsilon-SVR with the ``fit``/``predict`` of ``sklearn.svm.SVR``, minus the checks.

    Parameters
    ----------
    C, epsilon, gamma : float, as for ``SVR(kernel='rbf', C=C, epsilon=epsilon, gamma=gamma)``

    Notes
    -----
    Inputs must be finite. A fit whose dual coefficients or intercept are not finite is redone
    by ``SVR`` itself, so the error raised is scikit-learn's.
    """

    def __init__(self, *, C: float, epsilon: float, gamma: float) -> None:
        self.C = float(C)
        self.epsilon = float(epsilon)
        self.gamma = float(gamma)
        self._model: tuple[Any, ...] | None = None
        self._fallback: Any = None

    def fit(
        self, X: NDArray[np.float64], y: NDArray[np.float64], sample_weight: NDArray[np.float64]
    ) -> LeanSVR:
        """Fit on ``X`` (n, d), targets ``y`` (n,) and per-sample weights (n,) (they scale C)."""
        from sklearn.svm import _libsvm

        support, vectors, n_support, dual, intercept, prob_a, prob_b, _status, _n_iter = (
            _libsvm.fit(
                np.ascontiguousarray(X, dtype=np.float64),
                np.ascontiguousarray(y, dtype=np.float64),
                svm_type=_EPSILON_SVR,
                kernel="rbf",
                degree=3,
                gamma=self.gamma,
                coef0=0.0,
                tol=_TOL,
                C=self.C,
                nu=0.0,
                epsilon=self.epsilon,
                class_weight=np.empty(0),
                sample_weight=np.ascontiguousarray(sample_weight, dtype=np.float64),
                shrinking=1,
                probability=0,
                cache_size=_CACHE_MB,
                max_iter=-1,
                random_seed=-1,
            )
        )
        if not (np.isfinite(intercept).all() and np.isfinite(dual).all()):
            from sklearn.svm import SVR

            self._fallback = SVR(kernel="rbf", C=self.C, epsilon=self.epsilon, gamma=self.gamma)
            self._fallback.fit(X, y, sample_weight=sample_weight)  # raises scikit-learn's error
            return self
        self._model = (support, vectors, n_support, dual, intercept, prob_a, prob_b)
        return self

    def predict(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """The fitted function at ``X`` (m, d); shape (m,)."""
        if self._fallback is not None:
            return np.asarray(self._fallback.predict(X))
        if self._model is None:
            raise RuntimeError("LeanSVR.predict before fit")
        from sklearn.svm import _libsvm

        support, vectors, n_support, dual, intercept, prob_a, prob_b = self._model
        return np.asarray(
            _libsvm.predict(
                np.ascontiguousarray(X, dtype=np.float64),
                support,
                vectors,
                n_support,
                dual,
                intercept,
                prob_a,
                prob_b,
                svm_type=_EPSILON_SVR,
                kernel="rbf",
                degree=3,
                gamma=self.gamma,
                coef0=0.0,
                cache_size=_CACHE_MB,
            )
        )


@functools.lru_cache(maxsize=1)
def lean_svr_matches_sklearn() -> bool:
    """True when :class:`LeanSVR` predicts exactly as ``sklearn.svm.SVR`` (checked once per
    process on a fixed weighted sample, over a few hyperparameter settings). False (logged)
    when the predictions differ or the private wrapper is unusable."""
    import sklearn
    from sklearn.svm import SVR

    rng = np.random.default_rng(20260102)
    n = 29
    xy = rng.uniform(-1.0, 1.0, (n, 2))
    z = np.sin(3.0 * xy[:, 0]) + xy[:, 1] ** 2 + rng.normal(0.0, 0.2, n)
    z = (z - z.mean()) / z.std()
    sw = rng.uniform(0.3, 3.0, n)
    sw = sw / sw.mean()
    q = rng.uniform(-1.5, 1.5, (41, 2))
    try:
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            for c, eps, gam in ((1.0, 0.05, 0.25), (10.0, 0.2, 1.0), (100.0, 0.05, 4.0)):
                ref = SVR(kernel="rbf", C=c, epsilon=eps, gamma=gam).fit(xy, z, sample_weight=sw)
                ours = LeanSVR(C=c, epsilon=eps, gamma=gam).fit(xy, z, sw)
                if not np.array_equal(ref.predict(q), ours.predict(q)):
                    logger.info(
                        "lean SVR differs from scikit-learn %s's SVR; using SVR",
                        sklearn.__version__,
                    )
                    return False
    except Exception as err:  # noqa: BLE001  (private wrapper moved or changed signature)
        logger.info("lean SVR unavailable (%s: %s); using SVR", type(err).__name__, err)
        return False
    return True
