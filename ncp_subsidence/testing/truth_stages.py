"""Stand-in upstream stages that write the NCP twin's truth as real products.

Until the real ``hydro`` and ``mosaic`` stages exist (and in tests that must not depend on their
accuracy), these write what those stages would write if they were perfect: the twin's truth, on
the grids the real products use, through :class:`~ncp_subsidence.pipeline.StageContext`. The
downstream stages then run their real code on real Zarr products.

* :class:`TruthHydroStage` (name ``hydro``): ``gwsa_trend(lat, lon)`` mm/yr, the twin's GWSA
  trend ``G`` evaluated at the cell centres of a grid of ``resolution_deg`` over the twin bbox.
* :class:`TruthMosaicStage` (name ``mosaic``): ``vertical_velocity(lat, lon)`` mm/yr, the truth
  vertical velocity of the twin's frames (``truth.zarr/frames/<frame>``, InSAR posting)
  mosaicked onto one grid (mean where frames overlap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..io.cube import with_crs

__all__ = ["TruthHydroStage", "TruthMosaicStage"]


@dataclass
class TruthHydroStage:
    """Writes the twin's GWSA trend (mm/yr) as product ``hydro``, dataset ``trend``."""

    twin_root: str
    seed: int = 0
    resolution_deg: float = 0.025
    name: str = "hydro"
    reads: tuple[str, ...] = ()

    def fingerprint_extra(self, config: Any) -> dict[str, Any]:
        return {"twin": self.twin_root, "seed": self.seed, "resolution": self.resolution_deg}

    def run(self, ctx: Any) -> None:
        from ..synthetic.truth import NCP_BBOX, TwinTruth

        west, south, east, north = NCP_BBOX
        res = self.resolution_deg
        ny, nx = round((north - south) / res), round((east - west) / res)
        lat = north - res * (np.arange(ny) + 0.5)
        lon = west + res * (np.arange(nx) + 0.5)
        g = TwinTruth(self.seed).gwsa_trend(lon[None, :], lat[:, None]).astype("float32")
        ds = xr.Dataset(
            {
                "gwsa_trend": (
                    ("lat", "lon"),
                    g,
                    {"units": "mm/yr", "long_name": "GWSA trend 2002-2022 (twin truth)"},
                )
            },
            coords={"lat": lat, "lon": lon},
        )
        ctx.write("trend", with_crs(ds).chunk({"lat": 64, "lon": 64}), region_dim="lat")


@dataclass
class TruthMosaicStage:
    """Writes the twin frames' truth vertical velocity, mosaicked, as product ``mosaic``."""

    truth_store: str
    name: str = "mosaic"
    reads: tuple[str, ...] = ()

    def fingerprint_extra(self, config: Any) -> dict[str, Any]:
        return {"truth": self.truth_store}

    def run(self, ctx: Any) -> None:
        import zarr

        frames = sorted(zarr.open_group(self.truth_store, mode="r")["frames"].group_keys())
        parts = [
            xr.open_zarr(self.truth_store, group=f"frames/{f}", consolidated=False)[
                "vertical_velocity"
            ]
            .rename({"y": "lat", "x": "lon"})
            .reset_coords(drop=True)
            .load()
            for f in frames
        ]
        step = float(abs(parts[0]["lon"][1] - parts[0]["lon"][0]))
        west = min(float(p["lon"].min()) for p in parts)
        north = max(float(p["lat"].max()) for p in parts)
        nx = round((max(float(p["lon"].max()) for p in parts) - west) / step) + 1
        ny = round((north - min(float(p["lat"].min()) for p in parts)) / step) + 1
        lat, lon = north - step * np.arange(ny), west + step * np.arange(nx)
        total = np.zeros((ny, nx))
        count = np.zeros((ny, nx))
        for p in parts:
            r = np.rint((north - p["lat"].values) / step).astype(np.intp)
            c = np.rint((p["lon"].values - west) / step).astype(np.intp)
            v = p.transpose("lat", "lon").values.astype(np.float64)
            ok = np.isfinite(v)
            total[np.ix_(r, c)] += np.where(ok, v, 0.0)
            count[np.ix_(r, c)] += ok
        with np.errstate(invalid="ignore"):
            vv = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype("float32")
        ds = xr.Dataset(
            {
                "vertical_velocity": (
                    ("lat", "lon"),
                    vv,
                    {"units": "mm/yr", "long_name": "vertical velocity, positive up (twin truth)"},
                )
            },
            coords={"lat": lat, "lon": lon},
        )
        ctx.write("velocity", with_crs(ds).chunk({"lat": 64, "lon": 64}), region_dim="lat")
