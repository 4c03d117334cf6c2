"""Check every configured source without running the pipeline (``ncp-subsidence sources``).

For each source: search it as discover would (configured bbox and datetime), open one asset of
the first item by its headers only (rasterio for rasters, h5netcdf lazily for NetCDF/HDF5, the
first bytes of text), and say which variable and units ingest will read and which credential
the reads used, by name (:func:`ncp_subsidence.io.remote.credential_label`), never its value.

>>> SourceCheck("gnss", "https://x/midas.txt", ok=True, items=1, detail="MIDAS text").line()
'ok    gnss: 1 item(s); MIDAS text; credential none; https://x/midas.txt'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Config, SourceOptions
from ..redaction import redact_text
from .remote import credential_label, fsspec_options, gdal_options

__all__ = ["EXPECTED", "SourceCheck", "check_all", "check_source"]

#: What ingest reads from each source: (variable, NetCDF group or None, expected units).
EXPECTED: dict[str, tuple[str, str | None, str]] = {
    "grace": ("lwe_thickness", None, "cm"),
    "gldas": ("CanopInt_inst", None, "kg m-2"),
    "fldas": ("SoilMoi00_10cm_tavg", None, "m^3 m-3"),
    "imerg": ("precipitation", "Grid", "mm/hr"),
}

_NETCDF = (".nc", ".nc4", ".h5", ".hdf5", ".he5", ".hdf")
_TEXT = ("gnss", "gnss_series", "faults", "regions")


@dataclass
class SourceCheck:
    """The outcome of checking one source."""

    name: str
    url: str
    ok: bool
    items: int = 0
    detail: str = ""
    credential: str = "none"

    def line(self) -> str:
        """One line for the terminal (secrets redacted)."""
        status = "ok   " if self.ok else "FAIL "
        text = (
            f"{status} {self.name}: {self.items} item(s); {self.detail}; "
            f"credential {self.credential}; {self.url}"
        )
        return redact_text(text)


def _first_asset(item: Any, src: SourceOptions) -> tuple[str, str]:
    from .stac import choose_asset

    if src.assets:
        key, asset = choose_asset(item, src.assets)
    else:
        data = [k for k, a in item.assets.items() if "data" in (a.roles or [])]
        key = data[0] if data else next(iter(item.assets))
        asset = item.assets[key]
    return key, asset.get_absolute_href() or asset.href


def _open_netcdf(name: str, href: str, src: SourceOptions, timeout_s: float) -> str:
    import fsspec
    import xarray as xr

    variable, group, expected = EXPECTED.get(name, (None, None, ""))
    url = href[len("file://") :] if href.startswith("file://") else href
    with (
        fsspec.open(url, "rb", **fsspec_options(url, src.headers, timeout_s)) as f,
        xr.open_dataset(f, engine="h5netcdf", group=group, decode_timedelta=False) as ds,
    ):
        if variable is None:
            return f"NetCDF variables {sorted(ds.data_vars)[:6]}"
        if variable not in ds.variables:
            raise ValueError(f"lacks variable {variable!r} (has {sorted(ds.data_vars)[:8]})")
        units = ds[variable].attrs.get("units", ds[variable].attrs.get("Units", "?"))
        return f"reads {variable} [{units}] (expected {expected})"


def _open_raster(href: str, src: SourceOptions, retries: int, timeout_s: float) -> str:
    import rasterio

    from .readers import _rasterio_path

    with (
        rasterio.Env(**gdal_options(href, src.headers, retries, timeout_s)),
        rasterio.open(_rasterio_path(href)) as ds,
    ):
        units = (ds.units or ("",))[0] or ds.tags(1).get("units", "") or "?"
        return f"reads band 1 [{units}] {ds.width}x{ds.height} {ds.crs}"


def _open_text(href: str, src: SourceOptions, timeout_s: float) -> str:
    import fsspec

    url = href[len("file://") :] if href.startswith("file://") else href
    with fsspec.open(url, "rb", **fsspec_options(url, src.headers, timeout_s)) as f:
        head = f.read(2048)
    if not head.strip():
        raise ValueError("is empty")
    first = head.decode("utf-8", "replace").strip().splitlines()[0][:60]
    return f"text, first line {first!r}"


def _open_tenv3(href: str, src: SourceOptions, timeout_s: float) -> str:
    """The station and first day of an NGL ``.tenv3`` file, from its first 2 kB."""
    import fsspec

    from .products.tenv3 import TENV3_COLUMNS

    url = href[len("file://") :] if href.startswith("file://") else href
    with fsspec.open(url, "rb", **fsspec_options(url, src.headers, timeout_s)) as f:
        head = f.read(2048).decode("utf-8", "replace").splitlines()
    rows = [ln.split() for ln in head[:-1] if ln.strip() and not ln.lower().startswith("site")]
    if not rows or len(rows[0]) != len(TENV3_COLUMNS):
        first = head[0][:60] if head else ""
        raise ValueError(
            f"is not an NGL .tenv3 file ({len(TENV3_COLUMNS)} fields a line); first line {first!r}"
        )
    return f"NGL tenv3, station {rows[0][0]}, first day {rows[0][1]}"


def check_source(
    name: str,
    src: SourceOptions,
    *,
    bbox: Any,
    datetime: str,
    retries: int = 1,
    timeout_s: float = 30.0,
) -> SourceCheck:
    """Search one source and open one asset by its headers; never raises."""
    from .stac import discover_items

    result = SourceCheck(name, src.url, ok=False, credential=credential_label(src.url, src.headers))
    try:
        items = discover_items(
            src, bbox=bbox, datetime=datetime, retries=retries, timeout_s=timeout_s
        )
        result.items = len(items)
        if not items:
            result.detail = (
                f"no items in bbox {list(src.bbox or bbox)} and {src.datetime or datetime}"
            )
            return result
        _, href = _first_asset(items[0], src)
        result.credential = credential_label(href, src.headers)
        kind = name.split("/", 1)[0]
        if kind == "gnss_series":
            result.detail = _open_tenv3(href, src, timeout_s)
        elif kind in _TEXT:
            result.detail = _open_text(href, src, timeout_s)
        elif kind in EXPECTED or href.lower().split("?", 1)[0].endswith(_NETCDF):
            result.detail = _open_netcdf(kind, href, src, timeout_s)
        else:
            result.detail = _open_raster(href, src, retries, timeout_s)
        result.ok = True
    except Exception as err:  # noqa: BLE001  (reported: one line per broken source)
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        result.detail = f"{type(err).__name__}: {message}"[:300]
    return result


def check_all(config: Config) -> list[SourceCheck]:
    """Check every configured source (the twin's are not checked: they are written locally)."""
    from ..sources import HYDRO_SOURCES, OPTIONAL_SOURCE_KEYS, SOURCE_KEYS

    sources = config.sources
    named: dict[str, SourceOptions] = {
        f"interferograms/{frame}": src for frame, src in sources.interferograms.items()
    }
    named.update(
        {
            k: getattr(sources, k)
            for k in SOURCE_KEYS + OPTIONAL_SOURCE_KEYS
            if getattr(sources, k) is not None
        }
    )
    return [
        check_source(
            name,
            src,
            bbox=sources.bbox,
            datetime=sources.hydro_datetime if name in HYDRO_SOURCES else sources.datetime,
            retries=min(sources.retries, 1),
            timeout_s=sources.timeout_s,
        )
        for name, src in named.items()
    ]
