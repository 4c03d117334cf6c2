"""Stage ``report`` (private): the interactive map, ``interactive.html``.

A Bokeh standalone page with the BokehJS code inline (``bokeh.resources.INLINE``): one HTML file
that works offline, no server, no external URL. The map is the mosaic's vertical velocity
(mm/yr, positive up, diverging about 0) block-averaged to a grid of at most
``max_cells_side`` cells per side and fewer where the series would exceed ``max_values``
numbers in all (the file stays a few MB). Region outlines, frame footprints and GNSS stations
are drawn on it. Clicking a cell shows its vertical displacement series (mm, positive up,
block mean of the mosaic) and the GWSA series (mm EWH) of the hydro cell nearest the cell's
centre, over the displacement's time span (+-1 year), on a second axis.

The cube is passed to the page as flat float32 arrays (cell-major: cell ``k = i * nx + j``,
``i`` the row from the south); the click handler (a ``CustomJS`` named ``tap_callback``) slices
the clicked cell's series out of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ._report_inputs import _open_optional
from ._report_maps import Overlays, geo_aspect

__all__ = ["interactive_page"]

#: budget of the series held in the page (cells x (displacement dates + GWSA months))
MAX_VALUES = 600_000

_JS = """
const x = cb_obj.x, y = cb_obj.y;
const j = Math.floor((x - grid.x0) / grid.dx), i = Math.floor((y - grid.y0) / grid.dy);
if (!(i >= 0 && j >= 0 && i < grid.ny && j < grid.nx)) { return; }
const k = i * grid.nx + j;
const nd = grid.td.length, ng = grid.tg.length;
const d = Array.from(cube.data.d.slice(k * nd, (k + 1) * nd));
const g = Array.from(gcube.data.g.slice(k * ng, (k + 1) * ng));
disp.data = {t: grid.td, v: d};
gwsa.data = {t: grid.tg, v: g};
const lon = grid.x0 + (j + 0.5) * grid.dx, lat = grid.y0 + (i + 0.5) * grid.dy;
mark.data = {x: [lon], y: [lat]};
const vel = vcube.data.vel[k];
title.text = "Cell " + lon.toFixed(3) + " E, " + lat.toFixed(3) + " N: vertical velocity " +
    (Number.isFinite(vel) ? vel.toFixed(1) + " mm/yr" : "no data");
"""


def _block(arr: xr.DataArray, fy: int, fx: int) -> xr.DataArray:
    factor = {k: v for k, v in (("lat", fy), ("lon", fx)) if v > 1}
    return arr.coarsen(factor, boundary="trim").mean() if factor else arr


def _grid_factors(ny: int, nx: int, nt: int, max_side: int, max_values: int) -> tuple[int, int]:
    """Block factors (rows, columns) so the grid has at most ``max_side`` cells per side and
    at most ``max_values / nt`` cells in all."""
    f = max(1, int(np.ceil(max(ny, nx) / max_side)))
    while (ny // f) * (nx // f) * max(nt, 1) > max_values and f < max(ny, nx):
        f += 1
    return f, f


def _ms(times: Any) -> list[float]:
    """datetime64 -> milliseconds since 1970 (Bokeh's datetime axis)."""
    t = np.asarray(times, dtype="datetime64[ms]").astype(np.int64)
    return [float(v) for v in t]


def interactive_page(
    store: Any,
    title: str,
    overlays: Overlays | None = None,
    *,
    max_cells_side: int = 120,
    max_values: int = MAX_VALUES,
) -> str | None:
    """The page's HTML (None without a mosaic holding ``vertical_displacement``)."""
    from bokeh.embed import file_html
    from bokeh.events import Tap
    from bokeh.layouts import column, row
    from bokeh.models import (
        ColorBar,
        ColumnDataSource,
        CustomJS,
        DataRange1d,
        Div,
        LinearAxis,
        LinearColorMapper,
    )
    from bokeh.palettes import RdBu11
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    mosaic = _open_optional(store, "mosaic", "vertical_displacement")
    if mosaic is None or "vertical_velocity" not in mosaic.data_vars:
        return None
    disp = mosaic["vertical_displacement"].sortby("lat").sortby("lon")
    vel = mosaic["vertical_velocity"].sortby("lat").sortby("lon")
    hydro = _open_optional(store, "hydro", "gwsa")
    td = disp["time"].values
    gwsa = None
    if hydro is not None:
        g = hydro["gwsa"].sortby("lat").sortby("lon")
        lo = td.min() - np.timedelta64(366, "D")
        hi = td.max() + np.timedelta64(366, "D")
        gwsa = g.sel(time=(g["time"] >= lo) & (g["time"] <= hi))
    nt = disp.sizes["time"] + (gwsa.sizes["time"] if gwsa is not None else 0)
    fy, fx = _grid_factors(disp.sizes["lat"], disp.sizes["lon"], nt, max_cells_side, max_values)
    d = _block(disp, fy, fx).transpose("lat", "lon", "time")
    v = _block(vel, fy, fx)
    lat, lon = d["lat"].values, d["lon"].values
    ny, nx = lat.size, lon.size
    dy = float(np.median(np.diff(lat))) if ny > 1 else 1.0
    dx = float(np.median(np.diff(lon))) if nx > 1 else 1.0
    dvals = np.asarray(d.values, dtype=np.float32).reshape(ny * nx, -1)
    vvals = np.asarray(v.values, dtype=np.float32)
    if gwsa is not None:
        gc = gwsa.sel(
            lat=xr.DataArray(lat, dims="lat"), lon=xr.DataArray(lon, dims="lon"), method="nearest"
        ).transpose("lat", "lon", "time")
        gvals = np.asarray(gc.values, dtype=np.float32).reshape(ny * nx, -1)
        tg = _ms(gwsa["time"].values)
    else:
        gvals = np.zeros((ny * nx, 0), dtype=np.float32)
        tg = []
    grid = {
        "x0": float(lon[0] - dx / 2),
        "y0": float(lat[0] - dy / 2),
        "dx": dx,
        "dy": dy,
        "nx": nx,
        "ny": ny,
        "td": _ms(td),
        "tg": tg,
    }

    finite = vvals[np.isfinite(vvals)]
    lim = float(np.nanpercentile(np.abs(finite), 99.5)) if finite.size else 1.0
    mapper = LinearColorMapper(
        palette=list(RdBu11), low=-(lim or 1.0), high=lim or 1.0, nan_color=(0, 0, 0, 0)
    )
    width_deg, height_deg = nx * dx, ny * dy
    plot_w = 560
    plot_h = int(np.clip(plot_w * height_deg * geo_aspect(lat) / width_deg, 250, 900))
    fmap = figure(
        width=plot_w,
        height=plot_h,
        x_range=(grid["x0"], grid["x0"] + width_deg),
        y_range=(grid["y0"], grid["y0"] + height_deg),
        tools="pan,wheel_zoom,box_zoom,reset,tap,save",
        toolbar_location="above",
        title="Vertical velocity (mm/yr, positive up: subsidence is negative); click a cell",
        x_axis_label="longitude (deg E)",
        y_axis_label="latitude (deg N)",
        name="map",
    )
    fmap.image(
        image=[vvals], x=grid["x0"], y=grid["y0"], dw=width_deg, dh=height_deg, color_mapper=mapper
    )
    fmap.add_layout(ColorBar(color_mapper=mapper, title="mm/yr"), "right")
    if overlays is not None:
        if overlays.coast:
            fmap.multi_line(
                [[float(v) for v in c[:, 0]] for c in overlays.coast],
                [[float(v) for v in c[:, 1]] for c in overlays.coast],
                line_color="steelblue",
                line_width=1,
            )
        xs = [list(r[:, 0]) for _, rings in overlays.regions for r in rings]
        ys = [list(r[:, 1]) for _, rings in overlays.regions for r in rings]
        if xs:
            fmap.multi_line(xs, ys, line_color="black", line_width=1)
        for _, (flon, flat) in sorted(overlays.footprints.items()):
            fmap.line(list(flon), list(flat), line_color="purple", line_dash="dashed")
        st = overlays.stations
        if st is not None and len(st):
            pts = st.dropna(subset=["lon", "lat"]).drop_duplicates("station")
            fmap.scatter(
                list(pts["lon"]),
                list(pts["lat"]),
                marker="triangle",
                size=7,
                fill_color=None,
                line_color="black",
            )
    mark = ColumnDataSource({"x": [], "y": []})
    fmap.scatter(
        "x",
        "y",
        source=mark,
        marker="square_x",
        size=14,
        fill_color=None,
        line_color="lime",
        line_width=2,
    )

    disp_src = ColumnDataSource({"t": [], "v": []}, name="disp_series")
    gwsa_src = ColumnDataSource({"t": [], "v": []}, name="gwsa_series")
    fser = figure(
        width=620,
        height=380,
        x_axis_type="datetime",
        title="Click a cell of the map",
        y_axis_label="vertical displacement, mm (positive up)",
        tools="pan,wheel_zoom,box_zoom,reset,save",
        name="series",
    )
    fser.line(
        "t",
        "v",
        source=disp_src,
        color="firebrick",
        line_width=2,
        legend_label="vertical displacement (mm)",
    )
    fser.scatter("t", "v", source=disp_src, color="firebrick", size=3)
    fser.extra_y_ranges = {"gwsa": DataRange1d()}
    grend = fser.line(
        "t",
        "v",
        source=gwsa_src,
        color="steelblue",
        line_width=1.5,
        y_range_name="gwsa",
        legend_label="GWSA of the cell (mm EWH)",
    )
    fser.extra_y_ranges["gwsa"].renderers = [grend]
    fser.add_layout(LinearAxis(y_range_name="gwsa", axis_label="GWSA, mm EWH"), "right")
    fser.legend.location = "bottom_left"
    cube = ColumnDataSource({"d": dvals.reshape(-1)}, name="cube")
    vcube = ColumnDataSource({"vel": vvals.reshape(-1)}, name="vcube")
    # the GWSA cube has its own length: its own source
    gcube = ColumnDataSource({"g": gvals.reshape(-1)}, name="gcube")
    callback = CustomJS(
        args={
            "grid": grid,
            "cube": cube,
            "gcube": gcube,
            "vcube": vcube,
            "disp": disp_src,
            "gwsa": gwsa_src,
            "mark": mark,
            "title": fser.title,
        },
        code=_JS,
        name="tap_callback",
    )
    fmap.js_on_event(Tap, callback)
    note = Div(
        text=(
            f"<p>{nx} x {ny} cells (mosaic block-averaged {fy} x {fx}); "
            f"{len(grid['td'])} displacement dates; GWSA: {len(tg)} months of the nearest hydro "
            "cell. Purple dashed: frame footprints; black: regions; triangles: GNSS stations."
            "</p>"
        ),
        width=1180,
    )
    layout = column(row(fmap, fser), note)
    return file_html(layout, INLINE, title=f"{title}: interactive map")
