"""Small real stages for testing the pipeline's skip, resume and failure behaviour.

They build real dask graphs and write real cubes through :class:`~ncp_subsidence.pipeline.StageContext`;
faults are injected where they would happen in a real stage: inside a chunk's computation
(an exception, or the whole process killed with SIGKILL).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

__all__ = [
    "BLOCKS_COMPUTED",
    "DoubleStage",
    "InjectedFault",
    "RampStage",
    "TruthSeriesHydroStage",
    "TruthSeriesMosaicStage",
    "expected_ramp",
    "truth_analysis_config",
    "truth_analysis_store",
]

#: Count of chunks computed in this process, by stage name (to prove resumed runs skip work).
BLOCKS_COMPUTED: dict[str, int] = {}


class InjectedFault(RuntimeError):
    """The exception a test stage raises on purpose."""


def expected_ramp(shape: tuple[int, int], offset: float) -> np.ndarray:
    """What :class:`RampStage` writes: ``1000*y + x + offset`` as float32."""
    yy, xx = np.indices(shape)
    return (1000.0 * yy + xx + offset).astype("float32")


def _ramp_block(
    block: np.ndarray,
    offset: float,
    name: str,
    fail_row: int | None,
    kill_row: int | None,
    chunk: int,
    block_info: Any = None,
) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    row = y0 // chunk
    if fail_row is not None and row == fail_row:
        raise InjectedFault(f"injected failure in chunk row {row}")
    if kill_row is not None and row == kill_row:
        os.kill(os.getpid(), signal.SIGKILL)
    BLOCKS_COMPUTED[name] = BLOCKS_COMPUTED.get(name, 0) + 1
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return (1000.0 * yy + xx + offset).astype("float32")


@dataclass
class RampStage:
    """Writes dataset ``cube`` with ``value(y, x) = 1000*y + x + offset`` in chunk-row regions."""

    name: str = "discover"
    reads: tuple[str, ...] = ()
    shape: tuple[int, int] = (64, 48)
    chunk: int = 16
    offset: float = 0.0
    fail_row: int | None = None
    kill_row: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def fingerprint_extra(self, config: Any) -> dict[str, Any]:
        return {"shape": self.shape, "chunk": self.chunk, "offset": self.offset, **self.params}

    def run(self, ctx: Any) -> None:
        ny, nx = self.shape
        base = da.zeros(self.shape, chunks=(self.chunk, self.chunk), dtype="float32")
        data = base.map_blocks(
            _ramp_block,
            self.offset,
            self.name,
            self.fail_row,
            self.kill_row,
            self.chunk,
            dtype="float32",
        )
        ds = xr.Dataset(
            {"value": (("lat", "lon"), data, {"units": "mm", "long_name": "test ramp"})},
            coords={
                "lat": 40.0 - 0.01 * (np.arange(ny) + 0.5),
                "lon": 114.0 + 0.01 * (np.arange(nx) + 0.5),
            },
        )
        from ..io.cube import with_crs

        ctx.write("cube", with_crs(ds), region_dim="lat", chunks_per_region=1)


@dataclass
class DoubleStage:
    """Reads ``cube`` of ``source`` and writes twice its value."""

    name: str = "ingest"
    source: str = "discover"
    reads: tuple[str, ...] = ("discover",)

    def run(self, ctx: Any) -> None:
        ds = ctx.open(self.source, "cube")
        out = (ds[["value"]] * 2).astype("float32")
        out["value"].attrs = {"units": "mm", "long_name": "twice the test ramp"}
        ctx.write("cube", out, region_dim="lat")


@dataclass
class TruthSeriesMosaicStage:
    """Writes the twin's fine-grid truth as product ``mosaic`` (root dataset, as the real stage).

    ``vertical_velocity(lat, lon)`` mm/yr and ``vertical_displacement(time, lat, lon)`` mm
    (monthly, positive up) from ``truth.zarr`` ``/`` and ``/displacement``; ``velocity_std`` 0.
    What a perfect ``mosaic`` would write, for testing the stages downstream of it.
    """

    truth_store: str
    name: str = "mosaic"
    reads: tuple[str, ...] = ()
    chunk: int = 64

    def fingerprint_extra(self, config: Any) -> dict[str, Any]:
        return {"truth": self.truth_store, "kind": "series"}

    def run(self, ctx: Any) -> None:
        from ..io.cube import with_crs

        root = xr.open_zarr(self.truth_store, consolidated=False)
        disp = xr.open_zarr(self.truth_store, group="displacement", consolidated=False)
        ds = xr.Dataset(
            {
                "vertical_velocity": root["vertical_velocity"].reset_coords(drop=True),
                "velocity_std": xr.zeros_like(root["vertical_velocity"]).reset_coords(drop=True),
                "vertical_displacement": disp["vertical_displacement"].reset_coords(drop=True),
            }
        )
        for name in ds.data_vars:
            ds[name].attrs = {
                "units": "mm" if name == "vertical_displacement" else "mm/yr",
                "long_name": f"{name.replace('_', ' ')}, positive up (twin truth)",
            }
        ds = with_crs(ds).chunk({"time": -1, "lat": self.chunk, "lon": self.chunk})
        ctx.write(None, ds, region_dim="lat")


@dataclass
class TruthSeriesHydroStage:
    """Writes the twin's monthly hydrology truth as product ``hydro`` (root dataset).

    ``gwsa(time, lat, lon)`` mm, ``twsa`` mm and ``gwsa_trend(lat, lon)`` mm/yr from
    ``truth.zarr/hydro`` (the hydro grid), as a perfect ``hydro`` stage would.
    """

    truth_store: str
    name: str = "hydro"
    reads: tuple[str, ...] = ()
    chunk: int = 64

    def fingerprint_extra(self, config: Any) -> dict[str, Any]:
        return {"truth": self.truth_store, "kind": "series"}

    def run(self, ctx: Any) -> None:
        from ..io.cube import with_crs

        hydro = xr.open_zarr(self.truth_store, group="hydro", consolidated=False)
        ds = hydro[["gwsa", "twsa", "gwsa_trend"]].reset_coords(drop=True)
        for name, units in (("gwsa", "mm"), ("twsa", "mm"), ("gwsa_trend", "mm/yr")):
            ds[name].attrs = {"units": units, "long_name": f"{name} (twin truth)"}
        ds = with_crs(ds).chunk({"time": -1, "lat": self.chunk, "lon": self.chunk})
        ctx.write(None, ds, region_dim="lat")


def truth_analysis_store(manifest: Any, source_store: str, dest: str, config: Any) -> Any:
    """A store for testing ``analysis``/``report``: a copy of ``source_store`` plus truth products.

    Copies a store in which ``discover`` and ``ingest`` have completed (never writing into the
    original), then runs :class:`TruthSeriesMosaicStage`, :class:`TruthSeriesHydroStage`,
    ``factors``, ``geodetector``, ``analysis`` and ``report`` on it with ``config`` (whose store
    URL must be ``dest``). A ``dest`` that already holds a completed ``report`` is reused, so
    several test modules share one preparation. Returns the :class:`ProductStore`.
    """
    import shutil
    from pathlib import Path

    import dask

    from ..io.stores import ProductStore
    from ..pipeline import run_pipeline

    dest_path = Path(dest)
    if not (dest_path / ".truth-analysis-complete").exists():
        if dest_path.exists():
            shutil.rmtree(dest_path)
        shutil.copytree(source_store, dest_path)
        stages = [
            TruthSeriesMosaicStage(str(manifest.truth)),
            TruthSeriesHydroStage(str(manifest.truth)),
            "factors",
            "geodetector",
            "analysis",
            "report",
        ]
        with dask.config.set(scheduler="threads", num_workers=2):
            run_pipeline(config, stages)
        (dest_path / ".truth-analysis-complete").write_text("ok")
    return ProductStore(str(dest_path))


def truth_analysis_config(manifest: Any, dest: str, region: str = "cangzhou") -> Any:
    """The config of :func:`truth_analysis_store`, with an observed series for ``region``.

    The observed series (``<dest>-observed-<region>.csv``, columns ``date,value``) is the
    twin's GWSA at the region polygon's centroid, monthly 2005-2022, plus seeded noise of 10 mm:
    a stand-in for a water-bulletin storage series correlated with the regional GWSA.
    """
    import json
    from pathlib import Path

    import pandas as pd

    from ..config import Config
    from ..synthetic.truth import TwinTruth, decimal_year

    features = json.loads(Path(manifest.cities_geojson).read_text())["features"]
    ring = next(
        np.asarray(f["geometry"]["coordinates"][0])
        for f in features
        if f["properties"]["name"] == region
    )
    lon, lat = ring[:-1, 0].mean(), ring[:-1, 1].mean()
    dates = pd.date_range("2005-01-15", "2022-12-15", freq="MS") + pd.Timedelta(days=14)
    g = TwinTruth(manifest.seed).gwsa(np.array(lon), np.array(lat), decimal_year(dates.values))
    noise = np.random.default_rng(7).normal(0.0, 10.0, g.shape[-1])
    csv = Path(f"{dest}-observed-{region}.csv")
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "value": g.reshape(-1) + noise}).to_csv(
        csv, index=False
    )
    return Config.model_validate(
        {
            "store": {"url": str(dest)},
            "sources": {
                "twin": {
                    "preset": manifest.preset,
                    "seed": manifest.seed,
                    "directory": str(manifest.root),
                }
            },
            "factors": {"resolution_deg": manifest.fine_resolution_deg},
            "ingest": {"chunk_y": 64, "chunk_x": 64},
            "geodetector": {
                "draws": 1,
                "permutations": 0,
                "chunk_cells": 32,
                "sensitivity_thresholds": [],
                "sensitivity_ratios": [],
                "whole_plain": False,
            },
            "analysis": {"observed_series": {region: str(csv)}, "chunk_cells": 48},
            "report": {"dpi": 50},
        }
    )
