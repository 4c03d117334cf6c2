"""GLDAS-2.1 Noah (0.25 deg, 3-hourly ``GLDAS_NOAH025_3H`` or monthly ``GLDAS_NOAH025_M``).

Provider conventions (GES DISC NetCDF4, one file per time step): dims ``(time, lat, lon)``,
latitude south to north (-59.875..89.875), longitude -179.875..179.875, ``_FillValue`` and
``missing_value`` -9999 over sea and Antarctica, ``time`` in minutes (3H) or days (monthly)
since an epoch, with ``time_bnds``. Storages ``*_inst`` are kg m-2 (= mm of water; soil layers
already integrated over their depth), fluxes ``*_tavg`` kg m-2 s-1.

Canonical variables (mm of water; fluxes mm/month), each made when the files hold its sources:

=====================  ==============================================================  =========
``canopy_water``       ``CanopInt_inst``                                               mm
``soil_moisture``      sum of ``soil_layers`` (default the four layers, 0-200 cm)      mm
``swe``                ``SWE_inst``                                                    mm
``precipitation``      ``Rainf_f_tavg`` x seconds in the month                         mm/month
``evapotranspiration`` ``Evap_tavg`` x seconds in the month                            mm/month
=====================  ==============================================================  =========

Sub-monthly files (3-hourly) are averaged into calendar months (each sample placed by the
midpoint of its ``time_bnds``); the number of samples per month is recorded in the attrs
``samples_per_month``, so a month made of a few files is visible as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

from ...errors import DataError
from ._gridded import Bbox, Term, read_gridded

__all__ = ["GLDAS_SOIL_LAYERS", "read_gldas"]

#: the four Noah soil layers of GLDAS-2.1 (kg m-2 each), 0-10, 10-40, 40-100, 100-200 cm
GLDAS_SOIL_LAYERS = (
    "SoilMoi0_10cm_inst",
    "SoilMoi10_40cm_inst",
    "SoilMoi40_100cm_inst",
    "SoilMoi100_200cm_inst",
)


def gldas_terms(soil_layers: Sequence[str] = GLDAS_SOIL_LAYERS) -> list[Term]:
    """The recipes of the GLDAS canonical variables (see the module table)."""
    layers = tuple(soil_layers)
    if not layers:
        raise DataError("soil_layers is empty; name at least one GLDAS SoilMoi*_inst variable")
    depth = "0-200 cm" if layers == GLDAS_SOIL_LAYERS else "layers " + ", ".join(layers)
    return [
        Term("canopy_water", ("CanopInt_inst",), "storage", "canopy interception storage (GLDAS)"),
        Term("soil_moisture", layers, "storage", f"soil moisture {depth} (GLDAS)"),
        Term("swe", ("SWE_inst",), "storage", "snow water equivalent (GLDAS)"),
        Term("precipitation", ("Rainf_f_tavg",), "flux_per_s", "precipitation (GLDAS)"),
        Term("evapotranspiration", ("Evap_tavg",), "flux_per_s", "evapotranspiration (GLDAS)"),
    ]


def read_gldas(
    hrefs: Sequence[str],
    *,
    bbox: Bbox | None = None,
    variables: Sequence[str] | None = None,
    soil_layers: Sequence[str] = GLDAS_SOIL_LAYERS,
    storage_options: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Read GLDAS-2.1 Noah files into the canonical monthly dataset.

    Parameters
    ----------
    hrefs : sequence of str
        GLDAS NetCDF4 files (``.nc4``), one per time step as GES DISC delivers them (files
        holding several time steps work too); local paths or fsspec URLs.
    bbox : (west, south, east, north), optional
        Degrees (longitudes -180..180); only the cells overlapping it are read.
    variables : sequence of str, optional
        Canonical variables to return, e.g. ``("canopy_water",)``; a file that cannot give one
        is a DataError. None returns all that the files hold.
    soil_layers : sequence of str
        The ``SoilMoi*_inst`` layers summed into ``soil_moisture`` (default 0-200 cm). When a
        file holds only some of them, ``soil_moisture`` is left out (logged) unless they are
        named here.
    storage_options : dict, optional
        fsspec options for remote hrefs.

    Returns
    -------
    xarray.Dataset
        Dims ``(time, lat, lon)``: ``time`` mid-month datetime64[ns], ``lat``/``lon`` ascending
        degrees (empty attrs); the variables of the module table, float64, ``units`` ``"mm"``
        or ``"mm/month"``, fill values NaN.

    Raises
    ------
    DataError
        Missing files or variables (naming the file), wrong units, grids or variables that
        differ between files, undecodable times.
    """
    return read_gridded(
        hrefs,
        gldas_terms(soil_layers),
        product="GLDAS",
        bbox=bbox,
        variables=variables,
        storage_options=storage_options,
    )
