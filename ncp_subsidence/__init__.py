"""ncp_subsidence: a distributed, cloud-native land-subsidence processor for the North China Plain.

Stages (``discover -> ingest -> sbas -> adjust -> mosaic -> hydro -> factors -> geodetector ->
analysis -> report``) read and write chunked Zarr products in one store and run as blockwise Dask
computations on any Dask cluster. Kernels (``ncp_subsidence.kernels``) are pure numpy/scipy.

Reading a run's products::

    import ncp_subsidence

    ds = ncp_subsidence.open_product("ncp-store", "mosaic")        # CF-1.8, ds.rio.crs set
    frame = ncp_subsidence.open_product("ncp-store", "sbas", "A040")
    ncp_subsidence.export_products("ncp-store", "exported")        # COG, NetCDF, CSV, STAC

(:func:`open_product` is :func:`ncp_subsidence.io.stores.open_product`, :func:`export_products`
is :func:`ncp_subsidence.io.export.export_products`; both import the heavy stack when called.)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr

try:
    __version__ = version("ncp-subsidence")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "export_products", "open_product"]


def open_product(store: Any, stage: str, dataset: str | None = None, **kwargs: Any) -> xr.Dataset:
    """Open a product of a run's store lazily (CF-1.8, CRS decoded, parts concatenated).

    See :func:`ncp_subsidence.io.stores.open_product` for the parameters.
    """
    from .io.stores import open_product as _open_product

    return _open_product(store, stage, dataset, **kwargs)


def export_products(store: Any, out: Any, stages: Any = None, **kwargs: Any) -> Any:
    """Export a store's products as COG, NetCDF, CSV and GeoJSON with a STAC catalog.

    See :func:`ncp_subsidence.io.export.export_products` for the parameters.
    """
    from .io.export import export_products as _export_products

    return _export_products(store, out, stages, **kwargs)
