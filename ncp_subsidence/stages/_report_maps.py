"""Stage ``report`` (private): map figures (mosaic, GWSA trend, driving factors) and the
PNG helpers shared by every figure.

Every map has a colour bar with its units and the sign convention. Matplotlib is imported inside
the functions (the ``viz`` extra); :func:`~ncp_subsidence.stages.report.render_report` selects
the Agg backend first.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ._report_inputs import _open_optional

__all__ = ["SIGN", "Figure", "factor_figures", "map_figures"]

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


def _map(arr: xr.DataArray, title: str, label: str, cmap: str, dpi: int, symmetric: bool) -> bytes:
    import matplotlib.pyplot as plt

    values = np.asarray(arr.values, dtype=np.float64)
    lat, lon = arr["lat"].values, arr["lon"].values
    finite = values[np.isfinite(values)]
    vmin = vmax = None
    if finite.size and symmetric:
        vmax = float(np.nanpercentile(np.abs(finite), 99.5)) or 1.0
        vmin = -vmax
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    extent = (lon.min(), lon.max(), lat.min(), lat.max())
    data = values if lat[0] > lat[-1] else values[::-1]
    im = ax.imshow(
        data, extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto"
    )
    ax.set_xlabel("longitude (deg E)")
    ax.set_ylabel("latitude (deg N)")
    ax.set_title(title, fontsize=10)
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label(label)
    return _png(fig, dpi)


def map_figures(store: Any, wide: dict[str, Any], dpi: int, cells: int) -> Iterator[Figure]:
    """Vertical velocity, cumulative displacement between the analysis' cumulative epochs, and
    the GWSA trend, each when its product is in the store."""
    mosaic = _open_optional(store, "mosaic", "vertical_velocity")
    if mosaic is not None:
        v = _coarsen(mosaic["vertical_velocity"], cells)
        yield Figure(
            "Maps",
            "map_vertical_velocity.png",
            _map(v, "Vertical velocity", f"mm/yr ({SIGN})", "RdBu", dpi, True),
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
                ),
                f"Cumulative vertical displacement {e0} to {e1}, mm; red = subsidence.",
            )
    hydro = _open_optional(store, "hydro", "gwsa_trend")
    if hydro is not None:
        g = _coarsen(hydro["gwsa_trend"], cells)
        yield Figure(
            "Maps",
            "map_gwsa_trend.png",
            _map(g, "GWSA trend", "mm/yr EWH (negative = groundwater loss)", "BrBG", dpi, True),
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
                im = ax.imshow(data, extent=extent, cmap="viridis", aspect="auto")
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
                "Driving factors on the factor grid, each with its units.",
            )
