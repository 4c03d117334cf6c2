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

__all__ = ["BLOCKS_COMPUTED", "DoubleStage", "InjectedFault", "RampStage", "expected_ramp"]

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
