"""Statistical and machine-learning models (numpy + scikit-learn; no dask, xarray or I/O).

:mod:`ncp_subsidence.models.selection` chooses and fits the per-frame long-wavelength
correction of the GNSS-based InSAR adjustment (docs/science.md stage 3);
:mod:`ncp_subsidence.models.trees` and :mod:`ncp_subsidence.models.svr` fit its tree and SVR
candidates lean for cross-validation (the same models as scikit-learn's estimators).
"""

from ncp_subsidence.models.selection import (
    MIN_STATIONS,
    MODEL_ORDER,
    FittedCorrection,
    ModelSettings,
    SelectionPlan,
    evaluate_holdout,
    finish_selection,
    no_fit_attrs,
    plan_selection,
    score_candidate,
    select_and_fit,
    split_holdout_stations,
)

__all__ = [
    "MIN_STATIONS",
    "MODEL_ORDER",
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
