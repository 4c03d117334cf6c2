"""FLDAS Noah (0.1 deg global monthly ``FLDAS_NOAH01_C_GL_M``, one NetCDF file per month).

Provider conventions: dims ``(time, Y, X)`` with coordinates ``Y`` (latitude, south to north)
and ``X`` (longitude), or ``(time, lat, lon)``; fill -9999; ``time`` days since an epoch with
``time_bnds``. Soil moisture ``SoilMoi00_10cm_tavg``, ``SoilMoi10_40cm_tavg``,
``SoilMoi40_100cm_tavg``, ``SoilMoi100_200cm_tavg`` are volume fractions (m3 m-3); ``SWE_inst``
kg m-2; ``Rainf_f_tavg`` and ``Evap_tavg`` kg m-2 s-1 (docs/science.md 5.1).

Canonical variables:

=====================  =========================================================  ========
``soil_moisture``      sum over the four layers of fraction x thickness            mm
                       (100, 300, 600, 1000 mm: 0-2 m)
``swe``                ``SWE_inst``                                                mm
``precipitation``      ``Rainf_f_tavg`` x seconds in the month                     mm/month
``evapotranspiration`` ``Evap_tavg`` x seconds in the month                        mm/month
=====================  =========================================================  ========

FLDAS has no canopy-water variable (take it from GLDAS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

from ...kernels.downscale import FLDAS_LAYER_THICKNESS_MM
from ._gridded import Bbox, Term, read_gridded

__all__ = ["FLDAS_SOIL_LAYERS", "FLDAS_TERMS", "read_fldas"]

#: the four FLDAS Noah soil layers (m3 m-3), 0-10, 10-40, 40-100, 100-200 cm
FLDAS_SOIL_LAYERS = (
    "SoilMoi00_10cm_tavg",
    "SoilMoi10_40cm_tavg",
    "SoilMoi40_100cm_tavg",
    "SoilMoi100_200cm_tavg",
)

FLDAS_TERMS = (
    Term(
        "soil_moisture",
        FLDAS_SOIL_LAYERS,
        "fraction",
        "soil moisture 0-2 m (FLDAS)",
        tuple(float(t) for t in FLDAS_LAYER_THICKNESS_MM),
    ),
    Term("swe", ("SWE_inst",), "storage", "snow water equivalent (FLDAS)"),
    Term("precipitation", ("Rainf_f_tavg",), "flux_per_s", "precipitation (FLDAS)"),
    Term("evapotranspiration", ("Evap_tavg",), "flux_per_s", "evapotranspiration (FLDAS)"),
)


def read_fldas(
    hrefs: Sequence[str],
    *,
    bbox: Bbox | None = None,
    variables: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Read FLDAS Noah monthly files into the canonical monthly dataset.

    Parameters
    ----------
    hrefs : sequence of str
        FLDAS NetCDF files, one per month (files holding several months work too).
    bbox : (west, south, east, north), optional
        Degrees (longitudes -180..180); only the cells overlapping it are read.
    variables : sequence of str, optional
        Canonical variables to return; None returns all that the files hold.
    storage_options : dict, optional
        fsspec options for remote hrefs.

    Returns
    -------
    xarray.Dataset
        Dims ``(time, lat, lon)`` (renamed from ``Y``/``X``): ``time`` mid-month
        datetime64[ns]; ``soil_moisture``, ``swe`` in mm, ``precipitation``,
        ``evapotranspiration`` in mm/month, float64, fill values NaN.

    Raises
    ------
    DataError
        As :func:`ncp_subsidence.io.products.gldas.read_gldas`.
    """
    return read_gridded(
        hrefs,
        FLDAS_TERMS,
        product="FLDAS",
        bbox=bbox,
        variables=variables,
        storage_options=storage_options,
    )
