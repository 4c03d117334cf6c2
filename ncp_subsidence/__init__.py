"""ncp_subsidence: a distributed, cloud-native land-subsidence processor for the North China Plain.

Stages (``discover -> ingest -> sbas -> adjust -> mosaic -> hydro -> factors -> geodetector ->
analysis -> report``) read and write chunked Zarr products in one store and run as blockwise Dask
computations on any Dask cluster. Kernels (``ncp_subsidence.kernels``) are pure numpy/scipy.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ncp-subsidence")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
