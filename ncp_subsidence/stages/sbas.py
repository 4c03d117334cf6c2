"""Stage ``sbas``: per-frame SBAS network inversion as a blockwise Dask graph (graph building only).

This module is the xarray/dask wrapper over :mod:`ncp_subsidence.kernels.sbas`: it derives the
pair network from the ``reference``/``secondary`` coordinates, references the phase to a
reference window lazily, and maps :func:`~ncp_subsidence.kernels.sbas.invert_network` over
``(y, x)`` chunks with ``xarray.apply_ufunc`` (pair axis whole in every chunk, explicit core dims,
dtypes and sizes). Building the graph computes nothing; results do not depend on the chunking.

Input (``ingest/ifg/<frame>``, DESIGN.md section 2): ``unw_phase(pair, y, x)`` radians, optional
``coherence(pair, y, x)``, coords ``reference(pair)`` and ``secondary(pair)`` (datetime64 of the
two acquisitions). Output (``sbas/<frame>``): ``displacement(time, y, x)`` mm LOS relative to the
first date, ``velocity``/``velocity_std`` mm/yr, ``temporal_coherence``, ``rms_residual`` rad,
``n_pairs``, ``n_components``, on the frame's own grid and CRS (``attrs["crs"]`` and the
``spatial_ref`` coordinate; ``x``/``y`` in degrees for EPSG:4326, metres for UTM).

References
----------
Berardino P et al. 2002, IEEE TGRS 40(11):2375-2383, Eq. 3-5; Pepe A, Lanari R 2006, IEEE TGRS
44(9); López-Quiroz P et al. 2009, J. Appl. Geophys. 69(1); Doin M-P et al. 2011, Fringe;
Yunjun Z, Fattahi H, Amelung F 2019, Computers & Geosciences 133:104331.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import xarray as xr

from ncp_subsidence.errors import ConfigError, DataError
from ncp_subsidence.io.projection import (
    GEOGRAPHIC,
    dataset_crs,
    is_geographic,
    lonlat_to_xy,
    xy_to_lonlat,
)
from ncp_subsidence.kernels import sbas as ksbas

__all__ = [
    "STAGE",
    "SBASStage",
    "choose_reference",
    "drop_empty_pairs",
    "invert_dataset",
    "network_from_dataset",
]

log = logging.getLogger(__name__)

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


def network_from_dataset(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Pair indices and sorted unique dates from the ``reference``/``secondary`` coordinates.

    Parameters
    ----------
    ds : xarray.Dataset
        With coordinates ``reference(pair)`` and ``secondary(pair)``, datetime64.

    Returns
    -------
    pairs : ndarray of int64, shape (n_pair, 2)
        Indices into ``dates`` of (reference, secondary) of each pair, in the dataset's order.
    dates : ndarray of datetime64[ns], shape (n_date,)
        Unique acquisition times, increasing.
    """
    for name in ("reference", "secondary"):
        if name not in ds.coords:
            raise DataError(
                f"the interferogram dataset has no '{name}' coordinate; it needs reference(pair) "
                "and secondary(pair) with the datetime64 of each pair's two acquisitions"
            )
        if not np.issubdtype(ds[name].dtype, np.datetime64):
            raise DataError(f"coordinate '{name}' must be datetime64, got {ds[name].dtype}")
    reference = np.asarray(ds["reference"].values, dtype="datetime64[ns]")
    secondary = np.asarray(ds["secondary"].values, dtype="datetime64[ns]")
    if reference.size == 0:
        raise DataError("the interferogram dataset has no pairs (pair axis of length 0)")
    dates = np.unique(np.concatenate([reference, secondary]))
    pairs = np.stack([np.searchsorted(dates, reference), np.searchsorted(dates, secondary)], 1)
    return pairs.astype(np.int64), dates


def _pair_names(ds: xr.Dataset, index: np.ndarray) -> list[str]:
    """``item_id`` of the pairs at ``index`` (else ``<reference>_<secondary>``, YYYYMMDD)."""
    if "item_id" in ds.coords:
        return [str(v) for v in ds["item_id"].values[index]]
    days = [
        np.datetime_as_string(np.asarray(ds[c].values, dtype="datetime64[D]")[index], unit="D")
        for c in ("reference", "secondary")
    ]
    return [f"{a.replace('-', '')}_{b.replace('-', '')}" for a, b in zip(*days)]


def drop_empty_pairs(ds: xr.Dataset, *, frame: str = "") -> tuple[xr.Dataset, dict[str, Any]]:
    """Remove the interferograms that hold no valid phase at all from the network.

    A pair whose ``unw_phase`` is NaN at every pixel (an asset unreadable under
    ``ingest.on_error: nan``, or a file of no data) carries no information, yet it would make
    every pixel look incomplete (no reference window qualifies) and count in the per-pixel
    minimum of valid pairs. It is dropped before the inversion, so the result is that of the
    network without it. This computes one reduction over the cube (which pairs have any valid
    pixel); call it before building the inversion graph.

    The network left is checked again (:func:`~ncp_subsidence.kernels.sbas.prune_network`):
    dates that lose every pair leave the time axis; when dropping splits the network into
    components, the inversion goes on as on any disconnected network (``svd``: Berardino's
    minimum-norm velocity across the gap; ``nsbas``: the temporal model bridges it; per pixel
    ``n_components`` > 1), and the split is logged and recorded.

    Parameters
    ----------
    ds : xarray.Dataset
        ``unw_phase(pair, y, x)`` radians, coords ``reference(pair)``, ``secondary(pair)``
        (datetime64), optional ``item_id(pair)`` (pairs are named by it).
    frame : str
        Frame name, for messages.

    Returns
    -------
    ds : xarray.Dataset
        ``ds`` without the empty pairs (``ds`` itself when none is empty).
    attrs : dict
        For the product's attrs: ``n_dropped_pairs``, ``dropped_pairs`` (JSON names),
        ``n_dropped_dates``, ``dropped_dates`` (JSON ISO dates), ``n_network_components``
        (of the network inverted), ``network_components`` (JSON ``[first, last, n_dates]`` of
        each component when there are several, else ``[]``).

    Raises
    ------
    DataError
        Every interferogram is empty (naming the frame and the count).
    """
    pairs, dates = network_from_dataset(ds)
    usable = np.asarray(ds["unw_phase"].notnull().any(("y", "x")).values, dtype=bool)
    pruning = ksbas.prune_network(pairs, dates.size, usable)
    where = f"frame {frame}: " if frame else ""
    dropped = _pair_names(ds, pruning.dropped)
    if pruning.kept.size == 0:
        raise DataError(
            f"{where}all {pairs.shape[0]} interferograms have no valid phase at any pixel "
            f"(e.g. {dropped[:3]}); nothing to invert. Check ingest's n_unreadable_assets "
            "(ingest.on_error: nan turns unreadable files into NaN) and the input files"
        )
    lost = [str(np.datetime_as_string(d, unit="D")) for d in dates[pruning.lost_dates]]
    components: list[list[Any]] = []
    if pruning.n_components > 1:
        in_network = np.setdiff1d(np.arange(dates.size), pruning.lost_dates)
        for label in np.unique(pruning.labels[in_network]):
            members = in_network[pruning.labels[in_network] == label]
            first, last = (str(np.datetime_as_string(dates[k], unit="D")) for k in members[[0, -1]])
            components.append([first, last, int(members.size)])
    if dropped:
        log.warning(
            "%s%d interferogram(s) with no valid phase at any pixel dropped from the network: %s%s",
            where,
            len(dropped),
            ", ".join(dropped[:10]),
            " ..." if len(dropped) > 10 else "",
        )
    if lost:
        log.warning(
            "%s%d date(s) lost every interferogram and leave the time series: %s",
            where,
            len(lost),
            ", ".join(lost),
        )
    if components:
        log.warning(
            "%sthe network is split into %d parts%s: %s; the inversion bridges the gaps as on "
            "any disconnected network (svd: minimum-norm velocity, nsbas: the temporal model)%s",
            where,
            len(components),
            f" after dropping {', '.join(dropped[:10])}" if dropped else "",
            "; ".join(f"{a}..{b} ({n} dates)" for a, b, n in components),
            "; restore the dropped interferograms to reconnect it" if dropped else "",
        )
    attrs = {
        "n_dropped_pairs": len(dropped),
        "dropped_pairs": json.dumps(dropped),
        "n_dropped_dates": len(lost),
        "dropped_dates": json.dumps(lost),
        "n_network_components": pruning.n_components,
        "network_components": json.dumps(components),
    }
    if not dropped:
        return ds, attrs
    return ds.isel(pair=pruning.kept), attrs


def choose_reference(
    ds: xr.Dataset,
    *,
    min_coherence: float = 0.85,
    window: int = 3,
    stations: Any = None,
) -> tuple[Any, Any]:
    """Pick a reference point (this computes two small (y, x) maps; call it before building).

    Parameters
    ----------
    ds : xarray.Dataset
        ``unw_phase(pair, y, x)`` and ``coherence(pair, y, x)``.
    min_coherence : float
        Minimum mean spatial coherence over the window.
    window : int
        Odd window size in pixels.
    stations : sequence of (x, y, |v_up|), optional
        GNSS stations (coordinates of the frame's grid, vertical speed in mm/yr). SCIENCE.md 1.2
        prefers a reference co-located with a stable station: the stations are tried from the
        most stable, and the first whose window has a valid pixel in every interferogram wins;
        otherwise the most coherent complete window.

    Returns
    -------
    (y, x) : coordinate values of the window centre.
    """
    if "coherence" not in ds:
        raise DataError(
            "choose_reference needs coherence(pair, y, x); give reference=(y, x) instead"
        )
    complete = ds["unw_phase"].notnull().all("pair")
    mean_coh = ds["coherence"].mean("pair")
    complete, mean_coh = xr.align(complete, mean_coh)
    complete_v, mean_coh_v = (
        np.asarray(a.transpose("y", "x").values) for a in (complete, mean_coh)
    )
    h = window // 2
    ny, nx = complete_v.shape
    any_valid_v = (
        np.asarray(ds["unw_phase"].notnull().transpose("pair", "y", "x").values)
        if stations
        else None
    )
    for sx, sy, speed in sorted(stations or (), key=lambda s: s[2]):
        row = int(ds.indexes["y"].get_indexer([sy], method="nearest")[0])
        col = int(ds.indexes["x"].get_indexer([sx], method="nearest")[0])
        inside = h <= row < ny - h and h <= col < nx - h
        inside = inside and abs(ds["y"].values[row] - sy) <= abs(float(ds["y"][1] - ds["y"][0]))
        inside = inside and abs(ds["x"].values[col] - sx) <= abs(float(ds["x"][1] - ds["x"][0]))
        if not inside:
            continue
        box = (slice(None), slice(row - h, row + h + 1), slice(col - h, col + h + 1))
        if any_valid_v[box].any(axis=(-1, -2)).all():
            y, x = ds["y"].values[row], ds["x"].values[col]
            log.info(
                "reference point at the GNSS station at y=%s x=%s (|v_up| %.1f mm/yr)", y, x, speed
            )
            return y, x
    try:
        row, col = ksbas.select_reference(
            mean_coh_v, complete_v, min_coherence=min_coherence, window=window
        )
    except DataError:
        # SCIENCE.md 1.2 asks for >= 0.85; long-span stacks never reach it: take the most
        # coherent complete window instead, and say so
        row, col = ksbas.select_reference(mean_coh_v, complete_v, min_coherence=0.0, window=window)
        log.warning(
            "no %dx%d window reaches mean coherence %.2f; using the most coherent complete one",
            window,
            window,
            min_coherence,
        )
    y, x = ds["y"].values[row], ds["x"].values[col]
    log.info(
        "reference point chosen at y=%s x=%s (mean coherence %.3f)", y, x, mean_coh_v[row, col]
    )
    return y, x


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
        pairs, else it is NaN (SCIENCE.md 1.3; 0.5 by default).
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
    coherence = None
    if weights != "none":
        if "coherence" not in ds:
            raise ConfigError(
                f"weights={weights!r} needs a coherence(pair, y, x) variable; use weights='none'"
            )
        coherence = ds["coherence"]
    ksbas.pair_weights(np.full(1, 0.5) if coherence is not None else None, weights, looks)
    n_date, n_pair = dates.size, pairs.shape[0]
    min_pairs = int(max(n_date - 1, math.ceil(min_pairs_fraction * n_pair)))

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
    if weights == "fisher":
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


class SBASStage:
    """Pipeline stage ``sbas``: invert every frame of ``ingest/ifg/<frame>`` into ``sbas/<frame>``.

    The reference point is ``sbas.reference`` (lon, lat) where it lies inside the frame, else
    one chosen by :func:`choose_reference` (SCIENCE.md 1.2). Each frame is inverted on its own
    grid and keeps its CRS (EPSG:4326 degrees, or a projected CRS such as HyP3's UTM zones, x/y
    in metres): GNSS stations and the configured reference are transformed to the frame's x/y;
    ``reference_x``/``reference_y`` are frame coordinates, ``reference_lon``/``reference_lat``
    the same point in degrees. Pixels whose temporal coherence is
    below ``sbas.temporal_coherence_min`` keep their quality layers but get NaN displacement and
    velocity. Interferograms with no valid phase at any pixel (unreadable under
    ``ingest.on_error: nan``, or empty files) are dropped from the network first
    (:func:`drop_empty_pairs`: logged, and recorded as ``n_dropped_pairs``/``dropped_pairs``,
    ``dropped_dates``, ``n_network_components`` in the attrs). The output keeps the input's
    spatial chunks and holds the whole time axis.
    """

    name = "sbas"
    reads: tuple[str, ...] = ("ingest",)

    def run(self, ctx: Any) -> None:
        from ncp_subsidence.io.cube import SCHEMAS, with_crs

        opts = ctx.options
        frames = [
            d.split("/", 1)[1] for d in ctx.upstream_datasets("ingest") if d.startswith("ifg/")
        ]
        if not frames:
            raise DataError("ingest holds no interferogram frame (ifg/<frame>); nothing to invert")
        gnss = None
        if "gnss" in ctx.upstream_datasets("ingest"):
            gnss = ctx.open("ingest", "gnss").load()
        for frame in frames:
            ds = ctx.open("ingest", f"ifg/{frame}")
            ds, dropped = drop_empty_pairs(ds, frame=frame)
            crs = dataset_crs(ds)
            stations = None
            if gnss is not None:  # station positions on the frame's grid (metres on UTM)
                sx, sy = lonlat_to_xy(crs, gnss["lon"].values, gnss["lat"].values)
                stations = list(zip(sx, sy, np.abs(gnss["vu"].values)))
            reference = self._reference(ds, opts.reference, stations, crs)
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
            out.attrs.update(
                frame=frame, temporal_coherence_min=opts.temporal_coherence_min, **dropped
            )
            ref_lon, ref_lat = xy_to_lonlat(crs, out.attrs["reference_x"], out.attrs["reference_y"])
            out.attrs.update(reference_lon=float(ref_lon), reference_lat=float(ref_lat))
            out = with_crs(out, crs).chunk({"time": -1})
            ctx.write(frame, out, region_dim="y")

    @staticmethod
    def _reference(
        ds: xr.Dataset,
        configured: tuple[float, float] | None,
        stations: Any = None,
        crs: str = GEOGRAPHIC,
    ) -> tuple[Any, Any]:
        if configured is not None:
            lon, lat = configured
            x, y = (float(v) for v in lonlat_to_xy(crs, lon, lat))
            inside = ds["x"].min() <= x <= ds["x"].max() and ds["y"].min() <= y <= ds["y"].max()
            if inside:
                return (lat, lon) if is_geographic(crs) else (y, x)
            log.info(
                "configured reference (%s, %s) lies outside this frame; choosing one", lon, lat
            )
        return choose_reference(ds, stations=stations)


STAGE = SBASStage()
