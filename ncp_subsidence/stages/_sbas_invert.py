"""Private to stage ``sbas``: the lazy inversion of one frame (graph building only).

:func:`invert_dataset` maps :func:`~ncp_subsidence.kernels.sbas.invert_network` over ``(y, x)``
chunks with ``xarray.apply_ufunc`` (pair axis whole in every chunk, explicit core dims, dtypes
and sizes), after referencing the phase to a reference window lazily; :func:`invert_frame` makes
a frame's ``sbas/<frame>`` product of it (reference point, temporal-coherence mask, schema, CRS).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import xarray as xr

from ncp_subsidence.errors import ConfigError, DataError
from ncp_subsidence.io.cube import SCHEMAS, with_crs
from ncp_subsidence.io.projection import dataset_crs, lonlat_to_xy, xy_to_lonlat
from ncp_subsidence.kernels import sbas as ksbas

from ._sbas_network import network_from_dataset
from ._sbas_reference import frame_reference

__all__ = ["invert_dataset", "invert_frame"]

# the stage's logger: messages and their filters are those of stage ``sbas``
log = logging.getLogger("ncp_subsidence.stages.sbas")

_OUTPUTS: tuple[tuple[str, tuple[str, ...], Any, dict[str, str]], ...] = (
    (
        "displacement",
        ("time",),
        np.float32,
        {
            "units": "mm",
            "long_name": "LOS displacement relative to the first date, positive toward the satellite",
        },
    ),
    (
        "velocity",
        (),
        np.float32,
        {"units": "mm/yr", "long_name": "LOS velocity (OLS slope of the displacement)"},
    ),
    (
        "velocity_std",
        (),
        np.float32,
        {"units": "mm/yr", "long_name": "standard error of the LOS velocity"},
    ),
    (
        "temporal_coherence",
        (),
        np.float32,
        {"units": "1", "long_name": "temporal coherence of the network inversion"},
    ),
    (
        "rms_residual",
        (),
        np.float32,
        {"units": "rad", "long_name": "RMS interferogram phase residual"},
    ),
    ("n_pairs", (), np.int32, {"units": "1", "long_name": "number of interferograms used"}),
    (
        "n_components",
        (),
        np.int32,
        {"units": "1", "long_name": "connected components of the pixel's network"},
    ),
)


def _invert_block(
    unw: np.ndarray, coh: np.ndarray | None = None, **kwargs: Any
) -> tuple[np.ndarray, ...]:
    result = ksbas.invert_network(unw, coherence=coh, **kwargs)
    return tuple(result)


def invert_dataset(
    ds: xr.Dataset,
    *,
    method: ksbas.Method = "svd",
    weights: ksbas.Weights = "none",
    looks: float = 1.0,
    rcond: float = 1e-10,
    nsbas_kappa: float = 1e-2,
    nsbas_seasonal: bool = True,
    min_pairs_fraction: float = 0.5,
    reference: tuple[Any, Any] | None = None,
    reference_window: int = 3,
    wavelength: float = ksbas.SENTINEL1_WAVELENGTH,
    closure_threshold: float | None = None,
    block_size: int = 8192,
) -> xr.Dataset:
    """Build the lazy SBAS inversion of one frame's interferogram cube.

    Parameters
    ----------
    ds : xarray.Dataset
        ``unw_phase(pair, y, x)`` radians (float32), optional ``coherence(pair, y, x)``, coords
        ``reference(pair)``, ``secondary(pair)`` (datetime64), ``y``, ``x``. Dask-backed for a
        lazy result; the pair axis is rechunked to one chunk if it is not already. The pair
        coordinates are metadata and are read (loaded) to build the network.
    method, weights, looks, rcond, nsbas_kappa, nsbas_seasonal, wavelength, closure_threshold
        Passed to :func:`ncp_subsidence.kernels.sbas.invert_network`.
    min_pairs_fraction : float
        A pixel needs at least ``max(n_date - 1, ceil(min_pairs_fraction * n_pair))`` valid
        pairs, else it is NaN (docs/science.md 1.3; 0.5 by default).
    reference : (y, x), optional
        Coordinates of the reference point: the mean phase of the ``reference_window`` box around
        the nearest pixel is subtracted from every interferogram before the inversion (the mean
        skips NaN; a pair whose whole box is NaN is then NaN everywhere). None: the phase is used as given
        (already referenced). :func:`choose_reference` picks one.
    reference_window : int
        Odd size of the reference box in pixels.
    block_size : int
        Pixels the kernel solves together inside a chunk (bounds its temporaries).

    Returns
    -------
    xarray.Dataset
        ``displacement(time, y, x)`` mm, ``velocity(y, x)`` mm/yr, ``velocity_std``,
        ``temporal_coherence``, ``rms_residual``, ``n_pairs``, ``n_components``; coordinate
        ``time`` (the unique sorted dates); attrs with the method, weights and reference point.
    """
    if "unw_phase" not in ds:
        raise DataError("the interferogram dataset has no 'unw_phase' variable")
    unw = ds["unw_phase"]
    if set(unw.dims) != {"pair", "y", "x"}:
        raise DataError(f"unw_phase has dims {unw.dims}; expected ('pair', 'y', 'x')")
    if not 0.0 <= min_pairs_fraction <= 1.0:
        raise ConfigError(f"min_pairs_fraction={min_pairs_fraction} must lie in [0, 1]")
    pairs, dates = network_from_dataset(ds)
    ksbas.validate_network(pairs, dates, unw.sizes["pair"])  # fail now, not inside a task
    how = ksbas.weighting(weights, looks=looks)
    coherence = None
    if how.needs_coherence:
        if "coherence" not in ds:
            raise ConfigError(
                f"weights={weights!r} needs a coherence(pair, y, x) variable; use weights='none'"
            )
        coherence = ds["coherence"]
    n_date, n_pair = dates.size, pairs.shape[0]
    min_pairs = ksbas.default_min_pairs(n_date, n_pair, min_pairs_fraction)

    attrs: dict[str, Any] = {
        "method": method,
        "weights": weights,
        "rcond": rcond,
        "min_pairs": min_pairs,
        "wavelength_m": wavelength,
        "reference_date": str(dates[0]),
        "sign_convention": "LOS displacement positive toward the satellite (d = -lambda/(4 pi) phi)",
        "references": "Berardino et al. 2002 Eq. 3-5; Pepe & Lanari 2006; Lopez-Quiroz et al. "
        "2009; Doin et al. 2011; Yunjun et al. 2019",
    }
    if method == "nsbas":
        attrs["nsbas_kappa"] = nsbas_kappa
        attrs["nsbas_seasonal"] = int(nsbas_seasonal)
    if how.uses_looks:
        attrs["looks"] = looks

    if reference is not None:
        if reference_window < 1 or reference_window % 2 == 0:
            raise ConfigError(f"reference_window={reference_window} must be a positive odd number")
        ry = int(ds.indexes["y"].get_indexer([reference[0]], method="nearest")[0])
        rx = int(ds.indexes["x"].get_indexer([reference[1]], method="nearest")[0])
        h = reference_window // 2
        if not (h <= ry < unw.sizes["y"] - h and h <= rx < unw.sizes["x"] - h):
            raise DataError(
                f"the {reference_window}x{reference_window} reference window at {reference} "
                "leaves the scene; choose a point further from the edge"
            )
        box = unw.isel(y=slice(ry - h, ry + h + 1), x=slice(rx - h, rx + h + 1))
        # NaN-skipping: a pair is lost only where the whole box is NaN
        ref_phase = box.mean(("y", "x"), skipna=True)
        unw = unw - ref_phase
        attrs.update(
            reference_y=float(ds["y"].values[ry]),
            reference_x=float(ds["x"].values[rx]),
            reference_row=ry,
            reference_col=rx,
            reference_window=reference_window,
        )

    args = [unw]
    core = [["pair"]]
    if coherence is not None:
        args.append(coherence)
        core.append(["pair"])
    if unw.chunks is not None:
        args = [a.chunk({"pair": -1}) for a in args]
        if coherence is not None:  # both inputs on the same (y, x) chunks
            args[1] = args[1].chunk(dict(zip(args[0].dims, args[0].chunks)))

    kwargs = {
        "pairs": pairs,
        "dates": dates,
        "weights": weights,
        "method": method,
        "wavelength": wavelength,
        "rcond": rcond,
        "min_pairs": min_pairs,
        "looks": looks,
        "nsbas_kappa": nsbas_kappa,
        "nsbas_seasonal": nsbas_seasonal,
        "closure_threshold": closure_threshold,
        "block_size": block_size,
    }
    results = xr.apply_ufunc(
        _invert_block,
        *args,
        kwargs=kwargs,
        input_core_dims=core,
        output_core_dims=[list(dims) for _, dims, _, _ in _OUTPUTS],
        output_dtypes=[dtype for _, _, dtype, _ in _OUTPUTS],
        dask="parallelized",
        dask_gufunc_kwargs={"output_sizes": {"time": n_date}},
        keep_attrs=False,
    )
    out = xr.Dataset(coords={"time": ("time", dates), "y": ds["y"], "x": ds["x"]}, attrs=attrs)
    for (name, dims, _, var_attrs), arr in zip(_OUTPUTS, results):
        arr = arr.transpose(*dims, "y", "x") if dims else arr.transpose("y", "x")
        out[name] = arr.assign_attrs(var_attrs)
    out["time"].attrs["long_name"] = "acquisition time"
    log.info(
        "sbas graph: %d pairs, %d dates, method=%s, weights=%s, min_pairs=%d",
        n_pair,
        n_date,
        method,
        weights,
        min_pairs,
    )
    return out


def invert_frame(
    ds: xr.Dataset, opts: Any, *, frame: str, gnss: xr.Dataset | None, dropped: dict[str, Any]
) -> xr.Dataset:
    """The lazy ``sbas/<frame>`` product of one frame's interferogram cube (on its own grid).

    Parameters
    ----------
    ds : xarray.Dataset
        ``ingest/ifg/<frame>`` without its empty pairs (:func:`drop_empty_pairs`).
    opts : SBASOptions
    frame : str
    gnss : xarray.Dataset or None
        The ``ingest/gnss`` table (loaded): stations on the frame's grid, for the reference.
    dropped : dict
        The attrs of :func:`drop_empty_pairs`, recorded in the product's attrs.

    Returns
    -------
    xarray.Dataset
        Conformed to ``SCHEMAS["sbas"]``, with the frame's CRS, the whole time axis per chunk;
        displacement and velocities NaN below ``opts.temporal_coherence_min``.
    """
    crs = dataset_crs(ds)
    stations = None
    if gnss is not None:  # station positions on the frame's grid (metres on UTM)
        sx, sy = lonlat_to_xy(crs, gnss["lon"].values, gnss["lat"].values)
        stations = list(zip(sx, sy, np.abs(gnss["vu"].values)))
    reference = frame_reference(ds, opts.reference, stations, crs)
    out = invert_dataset(
        ds,
        method=opts.method,
        weights=opts.weights,
        looks=opts.looks,
        rcond=opts.rcond,
        nsbas_kappa=opts.nsbas_kappa,
        min_pairs_fraction=opts.min_pairs_fraction,
        reference=reference,
        closure_threshold=math.pi / 2 if opts.closure_check else None,
    )
    good = out["temporal_coherence"] >= opts.temporal_coherence_min
    for name in ("displacement", "velocity", "velocity_std"):
        out[name] = out[name].where(good).assign_attrs(out[name].attrs)
    out = SCHEMAS["sbas"].conform(out)
    out.attrs.update(frame=frame, temporal_coherence_min=opts.temporal_coherence_min, **dropped)
    ref_lon, ref_lat = xy_to_lonlat(crs, out.attrs["reference_x"], out.attrs["reference_y"])
    out.attrs.update(reference_lon=float(ref_lon), reference_lat=float(ref_lat))
    return with_crs(out, crs).chunk({"time": -1})
