"""Statistical and machine-learning models (numpy + scikit-learn; no dask, xarray or I/O).

:mod:`ncp_subsidence.models.selection` chooses and fits the per-frame long-wavelength
correction of the GNSS-based InSAR adjustment (docs/science.md stage 3).
"""

from ncp_subsidence.models.selection import (
    MIN_STATIONS,
    MODEL_ORDER,
    FittedCorrection,
    ModelSettings,
    evaluate_holdout,
    no_fit_attrs,
    select_and_fit,
    split_holdout_stations,
)

__all__ = [
    "MIN_STATIONS",
    "MODEL_ORDER",
    "FittedCorrection",
    "ModelSettings",
    "evaluate_holdout",
    "no_fit_attrs",
    "select_and_fit",
    "split_holdout_stations",
]
