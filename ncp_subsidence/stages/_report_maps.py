"""Stage ``report`` (private): map figures (mosaic, GWSA trend, driving factors) and the
PNG helpers shared by every figure.

Every map has a colour bar with its units and the sign convention. Matplotlib is imported inside
the functions (the ``viz`` extra); :func:`~ncp_subsidence.stages.report.render_report` selects
the Agg backend first.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ._report_inputs import _open_optional

__all__ = [
    "SIGN",
    "Figure",
    "Overlays",
    "factor_figures",
    "geo_aspect",
    "is_signed",
    "map_figures",
]

SIGN = "vertical positive up: subsidence is negative"


@dataclass(frozen=True)
class Figure:
    """One PNG of the report: its section heading, file name, bytes and caption."""

    section: str
    name: str
    png: bytes
    caption: str


def _png(fig: Any, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _coarsen(arr: xr.DataArray, max_cells: int) -> xr.DataArray:
    factor = {
        d: int(np.ceil(arr.sizes[d] / max_cells))
        for d in ("lat", "lon")
        if arr.sizes[d] > max_cells
    }
    return arr.coarsen(factor, boundary="trim").mean() if factor else arr


@dataclass(frozen=True)
class Overlays:
    """What every lon/lat map draws on top: region outlines (``(name, [rings])``), frame
    footprints (``{frame: (lon, lat)}``), GNSS stations (a table with ``lon``, ``lat`` and
    ``residual_after``, mm/yr LOS, or None) and the coastline (polylines of shape (n, 2),
    lon/lat degrees; :func:`ncp_subsidence.io.coast.coastline`)."""

    regions: list[Any] = field(default_factory=list)
    footprints: dict[str, Any] = field(default_factory=dict)
    stations: Any = None
    coast: list[Any] = field(default_factory=list)


def is_signed(values: np.ndarray) -> bool:
    """Whether data take both signs in earnest (1st percentile < 0 < 99th): a diverging colour
    map then, a sequential one otherwise."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return False
    lo, hi = np.nanpercentile(finite, [1.0, 99.0])
    return bool(lo < 0.0 < hi)


def geo_aspect(lat: np.ndarray) -> float:
    """Axes aspect of an EPSG:4326 map: one degree of latitude is 1 / cos(lat) degrees of
    longitude long at the map's mean latitude."""
    mid = float(np.nanmean(lat)) if np.size(lat) else 0.0
    return 1.0 / max(np.cos(np.deg2rad(mid)), 0.05)


def _draw_overlays(ax: Any, fig: Any, overlays: Overlays | None, extent: tuple) -> None:
    if overlays is None:
        return
    for line in overlays.coast:
        ax.plot(line[:, 0], line[:, 1], color="tab:blue", lw=0.8, alpha=0.8)
    for name, rings in overlays.regions:
        for ring in rings:
            ax.plot(ring[:, 0], ring[:, 1], color="0.15", lw=0.7)
        if rings:
            r = rings[0]
            ax.annotate(
                name,
                (float(np.mean(r[:-1, 0])), float(np.mean(r[:-1, 1]))),
                fontsize=6,
                ha="center",
                color="0.1",
            )
    for frame, (lon, lat) in sorted(overlays.footprints.items()):
        ax.plot(lon, lat, color="tab:purple", lw=1.0, ls="--")
        ax.annotate(
            frame,
            (float(np.max(lon)), float(np.max(lat))),
            fontsize=7,
            color="tab:purple",
            ha="right",
            va="top",
        )
    st = overlays.stations
    if st is not None and len(st):
        pts = st.dropna(subset=["lon", "lat"]).drop_duplicates("station", keep="last")
        res = pts["residual_after"].to_numpy(dtype=float)
        if np.isfinite(res).any():
            lim = float(np.nanpercentile(np.abs(res), 95)) or 1.0
            sc = ax.scatter(
                pts["lon"],
                pts["lat"],
                c=res,
                cmap="PuOr",
                vmin=-lim,
                vmax=lim,
                marker="^",
                s=28,
                edgecolors="k",
                linewidths=0.4,
                zorder=5,
            )
            cb = fig.colorbar(sc, ax=ax, shrink=0.6, pad=0.01, location="bottom")
            cb.set_label("GNSS station residual after adjustment, mm/yr LOS (GNSS - InSAR)")
        else:
            ax.scatter(
                pts["lon"],
                pts["lat"],
                marker="^",
                s=18,
                facecolors="none",
                edgecolors="k",
                linewidths=0.6,
                zorder=5,
                label="GNSS station",
            )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])


def _map(
    arr: xr.DataArray,
    title: str,
    label: str,
    cmap: str,
    dpi: int,
    symmetric: bool | None = None,
    overlays: Overlays | None = None,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    seq_cmap: str = "viridis",
) -> bytes:
    """One lon/lat map with its colour bar: ``symmetric`` (diverging ``cmap``, limits +-99.5th
    percentile of |x|), else sequential (``seq_cmap``, ``vmin``/``vmax`` or the 0.5-99.5th
    percentiles); ``symmetric=None`` decides from the data (:func:`is_signed`). Aspect
    1 / cos(lat) (EPSG:4326)."""
    import matplotlib.pyplot as plt

    values = np.asarray(arr.values, dtype=np.float64)
    lat, lon = arr["lat"].values, arr["lon"].values
    finite = values[np.isfinite(values)]
    if symmetric is None:
        symmetric = is_signed(values)
    if finite.size and symmetric:
        vmax = float(np.nanpercentile(np.abs(finite), 99.5)) or 1.0
        vmin = -vmax
    elif finite.size:
        cmap = seq_cmap
        lo, hi = np.nanpercentile(finite, [0.5, 99.5])
        vmin = float(lo) if vmin is None else vmin
        vmax = float(hi) if vmax is None else vmax
    fig, ax = plt.subplots(figsize=(9.0, 7.5))
    extent = (lon.min(), lon.max(), lat.min(), lat.max())
    data = values if lat[0] > lat[-1] else values[::-1]
    im = ax.imshow(
        data,
        extent=extent,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        aspect=geo_aspect(lat),
    )
    _draw_overlays(ax, fig, overlays, extent)
    ax.set_xlabel("longitude (deg E)")
    ax.set_ylabel("latitude (deg N)")
    ax.set_title(title, fontsize=10)
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label(label)
    return _png(fig, dpi)


def map_figures(
    store: Any, wide: dict[str, Any], dpi: int, cells: int, overlays: Overlays | None = None
) -> Iterator[Figure]:
    """Vertical velocity, cumulative displacement between the analysis' cumulative epochs, and
    the GWSA trend, each when its product is in the store."""
    mosaic = _open_optional(store, "mosaic", "vertical_velocity")
    if mosaic is not None:
        v = _coarsen(mosaic["vertical_velocity"], cells)
        yield Figure(
            "Maps",
            "map_vertical_velocity.png",
            _map(v, "Vertical velocity", f"mm/yr ({SIGN})", "RdBu", dpi, True, overlays),
            "Vertical velocity of the mosaic, mm/yr; red = subsidence (negative).",
        )
        if "vertical_displacement" in mosaic.data_vars:
            d = mosaic["vertical_displacement"]
            e0, e1 = wide["cumulative_epochs"]
            months = np.asarray(d["time"].values, "datetime64[M]")
            i0 = int(np.argmin(np.abs((months - np.datetime64(e0, "M")).astype(int))))
            i1 = int(np.argmin(np.abs((months - np.datetime64(e1, "M")).astype(int))))
            cum = _coarsen(d.isel(time=i1) - d.isel(time=i0), cells)
            yield Figure(
                "Maps",
                "map_cumulative_displacement.png",
                _map(
                    cum,
                    f"Cumulative vertical displacement {e0} to {e1}",
                    f"mm ({SIGN})",
                    "RdBu",
                    dpi,
                    True,
                    overlays,
                ),
                f"Cumulative vertical displacement {e0} to {e1}, mm; red = subsidence.",
            )
    hydro = _open_optional(store, "hydro", "gwsa_trend")
    if hydro is not None:
        g = _coarsen(hydro["gwsa_trend"], cells)
        yield Figure(
            "Maps",
            "map_gwsa_trend.png",
            _map(
                g,
                "GWSA trend",
                "mm/yr EWH (negative = groundwater loss)",
                "BrBG",
                dpi,
                None,
                overlays,
            ),
            "Trend of the groundwater storage anomaly, mm/yr of equivalent water height.",
        )


def factor_figures(store: Any, dpi: int, cells: int) -> Iterator[Figure]:
    """Every driving factor of the ``factors`` product on one panel (when the store holds it)."""
    import matplotlib.pyplot as plt

    factors = None
    frecord = store.record("factors")
    if frecord is not None and "factors" in frecord.datasets:
        factors = store.open("factors", "factors")
    if factors is not None:
        names = sorted(v for v in factors.data_vars if set(factors[v].dims) == {"lat", "lon"})
        if names:
            ncol = min(3, len(names))
            nrow = -(-len(names) // ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
            for ax, name in zip(axes.flat, names):
                arr = _coarsen(factors[name], cells)
                units = factors[name].attrs.get("units", "1")
                lat, lon = arr["lat"].values, arr["lon"].values
                data = arr.values if lat[0] > lat[-1] else arr.values[::-1]
                extent = (lon.min(), lon.max(), lat.min(), lat.max())
                if is_signed(np.asarray(data, dtype=float)):
                    lim = float(np.nanpercentile(np.abs(data), 99.5)) or 1.0
                    style = {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}
                else:
                    style = {"cmap": "viridis"}
                im = ax.imshow(data, extent=extent, aspect=geo_aspect(lat), **style)
                ax.set_title(name, fontsize=9)
                ax.tick_params(labelsize=7)
                fig.colorbar(im, ax=ax, shrink=0.85).set_label(units, fontsize=8)
            for ax in list(axes.flat)[len(names) :]:
                ax.set_visible(False)
            fig.suptitle("Driving factors (axes: longitude deg E, latitude deg N)")
            yield Figure(
                "Driving factors",
                "factors.png",
                _png(fig, dpi),
                "Driving factors on the factor grid, each with its units (sequential colour maps for one-signed factors, diverging about 0 for signed ones).",
            )
