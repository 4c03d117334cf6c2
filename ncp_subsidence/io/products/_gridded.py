"""Shared machinery of the gridded hydrology adapters (GRACE, GLDAS, FLDAS, IMERG).

* :func:`open_product`: a NetCDF4/HDF5 file (local path, ``file://``, ``https://``, ``s3://``)
  opened **lazily** with ``decode_times=False``. A local file is opened with netCDF-C (xarray's
  ``netcdf4`` engine): h5netcdf spends most of an open resolving metadata in Python (dimension
  scales, padding, shapes: about 590 h5py lookups a file). Measured per file in a warm process
  (median of repeated opens; h5netcdf vs netCDF-C; same variables, dims, attrs and values):
  real GLDAS 3-hourly .nc4 33 vs 4 ms to open, 71-76 vs 35-36 ms to open and load every
  variable; real IMERG V06B/V07A .HDF5 (group ``Grid``) 52/36 vs 5/4.5 ms to open, 73/44 vs
  7.5/5.7 ms with the load; the demo twin's 21 FLDAS files (10 variables) 29 vs 3.6 ms to open,
  and ``read_fldas`` of its four outputs over (112, 33, 121, 43) 1.10 vs 0.38 s. A
  local file netCDF-C refuses, or whose datasets lack dimension scales (netCDF-C and
  h5netcdf number such "phony" dimensions differently), is opened with h5netcdf as before, and
  the switch is logged. A remote file stays on h5netcdf over an fsspec file object (netCDF-C
  cannot read Python file objects): it keeps only its first 32 KiB (the HDF5 superblock and
  root metadata) cached and fetches every other read HDF5 makes as one range request, so
  slicing a window fetches only the chunks that hold it and memory is bounded by one chunk plus
  the window, whatever the file's size.
* :func:`grid_window`: the positions of the cells of a grid that overlap a bbox, longitudes
  normalised to -180..180, both axes returned in ascending coordinate order.
* :func:`read_window`: load only those cells (xarray lazy indexing over HDF5 hyperslabs).
* :func:`read_gridded`: the whole adapter for products delivered one file per time step (or
  per year): :class:`Term` s name the source variables, units and unit conversion of each
  canonical variable; every file must hold the same source variables and the same grid.

Canonical output (what ``ingest/hydro/<source>`` stores): dims ``(time, lat, lon)``, ``time``
the mid-month instant (datetime64[ns]), ``lat`` and ``lon`` ascending float64 degrees with empty
attrs, longitudes in -180..180, variables in mm (storages) or mm/month (fluxes) with ``units``
and ``long_name`` attrs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import numpy as np
import xarray as xr
from xarray.backends import H5NetCDFStore, NetCDF4DataStore

from ...errors import DataError
from ...kernels import downscale as units
from .timecodes import decode_times, monthly_mean

__all__ = [
    "Bbox",
    "Term",
    "decode_time_axis",
    "grid_window",
    "normalise_lon",
    "open_product",
    "read_gridded",
    "read_window",
]

log = logging.getLogger(__name__)

Bbox = tuple[float, float, float, float]
"""(west, south, east, north) in degrees, longitudes in -180..180."""

#: bytes of a remote file's head kept cached (fsspec ``cache_type="first"``). Measured on a
#: global 0.25 deg mascon file from the S3 test server (tests/test_products_hydro.py): a
#: general block cache (``blockcache``, 2 MiB blocks) held up to 64 MiB, the whole 50 MB file,
#: to read a 24 x 24-cell window; ``readahead`` held a chunk twice; small blocks made one
#: request per block of a big chunk. HDF5 reads a chunk in one call, so a chunk is one request.
REMOTE_BLOCK_SIZE = 2**15

_LAT_NAMES = ("lat", "latitude", "Y", "y")
_LON_NAMES = ("lon", "longitude", "X", "x")


def _local_path(href: str) -> str:
    return href[len("file://") :] if href.startswith("file://") else href


Engine = Literal["auto", "netcdf4", "h5netcdf"]
"""Library that opens a product file: ``auto`` is netCDF-C for a local file, h5netcdf for a
remote one (see :func:`open_product`)."""

_PHONY_PREFIX = "phony_dim_"


class _KeepOnly:
    """Mixin of xarray data stores that decodes only the variables named in ``keep`` and the CF
    ``bounds`` variables they point to (the subclassing xarray's ``DataStore.load`` describes).

    ``drop_variables`` would not do: xarray opens every variable of the file (dimensions,
    attributes, filters, chunking) before dropping any. With h5netcdf that costs up to 3 ms a
    variable (h5netcdf resolves dimension scales, padding and shapes in Python: ~590 h5py
    lookups for a GLDAS file); a file with 10 variables of which 7 were read opened in 20
    instead of 29 ms. netCDF-C resolves a file's metadata in C when it opens it, so with it the
    subset saves xarray's per-variable work only: on the demo twin's FLDAS files (10
    variables, all of them read by ``read_fldas``) 3.6 vs 3.5 ms an open (h5netcdf 29 vs
    28 ms). It is kept so that both engines yield the same variables.
    """

    __slots__ = ()
    keep: frozenset[str]
    ds: Any
    open_store_variable: Any

    def get_variables(self) -> dict[str, Any]:
        found = self.ds.variables
        out = {k: self.open_store_variable(k, found[k]) for k in found if k in self.keep}
        bounds = {v.attrs.get("bounds") for v in out.values()} - set(out)
        for name in sorted(b for b in bounds if isinstance(b, str) and b in found):
            out[name] = self.open_store_variable(name, found[name])
        return out


class _SubsetStore(_KeepOnly, H5NetCDFStore):
    """xarray's h5netcdf store opening only ``keep`` and their bounds (see :class:`_KeepOnly`)."""

    __slots__ = ("keep",)


class _SubsetNetCDF4Store(_KeepOnly, NetCDF4DataStore):
    """xarray's netCDF4 store opening only ``keep`` and their bounds (see :class:`_KeepOnly`)."""

    __slots__ = ("keep",)


def _open_with(
    target: Any, engine: Literal["netcdf4", "h5netcdf"], group: str | None, variables: Any
) -> xr.Dataset:
    """``target`` (a path, or a file object for h5netcdf) opened lazily by ``engine``."""
    if variables is None:
        return xr.open_dataset(
            target,
            engine=engine,
            group=group,
            decode_times=False,
            decode_timedelta=False,
            cache=False,
        )
    subset = _SubsetNetCDF4Store if engine == "netcdf4" else _SubsetStore
    store = subset.open(target, group=group)
    try:
        store.keep = frozenset(variables)
        return xr.open_dataset(store, decode_times=False, decode_timedelta=False, cache=False)
    except BaseException:
        store.close()
        raise


def _open_local(
    path: str, href: str, engine: Engine, group: str | None, variables: Any
) -> xr.Dataset:
    """A local file opened with netCDF-C, or with h5netcdf where netCDF-C would give other
    results (``auto``: logged) or where ``engine`` says so."""
    if engine == "h5netcdf":
        return _open_with(path, "h5netcdf", group, variables)
    try:
        ds = _open_with(path, "netcdf4", group, variables)
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, ValueError) as err:
        if engine == "netcdf4":
            raise
        try:
            ds = _open_with(path, "h5netcdf", group, variables)
        except (OSError, ValueError) as h5err:
            raise OSError(f"{h5err} (netCDF-C: {err})") from h5err
        log.warning("%s: netCDF-C cannot open it (%s); opened it with h5netcdf", href, err)
        return ds
    phony = sorted(str(d) for d in ds.dims if str(d).startswith(_PHONY_PREFIX))
    if phony and engine == "auto":
        # datasets without dimension scales: netCDF-C names their dimensions in its own order
        # (subgroups first), h5netcdf in another; keep h5netcdf's, as before netCDF-C was used
        ds.close()
        log.info(
            "%s: dimension(s) %s have no dimension scale; opened it with h5netcdf, whose "
            "numbering of such dimensions differs from netCDF-C's",
            href,
            phony,
        )
        return _open_with(path, "h5netcdf", group, variables)
    return ds


@contextmanager
def open_product(
    href: str,
    *,
    group: str | None = None,
    storage_options: dict[str, Any] | None = None,
    variables: Sequence[str] | None = None,
    engine: Engine = "auto",
) -> Iterator[xr.Dataset]:
    """Open a NetCDF4/HDF5 product lazily (nothing but metadata is read until sliced).

    Parameters
    ----------
    href : str
        Local path, ``file://``, ``https://`` or ``s3://`` URL.
    group : str, optional
        HDF5 group (IMERG: ``"Grid"``).
    storage_options : dict, optional
        fsspec options of the remote filesystem (``endpoint_url``, ``key``, ``anon``...).
    variables : sequence of str, optional
        Open only these (those the file has) and the ``bounds`` variables they name; the others
        are not in the dataset. None opens every variable.
    engine : {"auto", "netcdf4", "h5netcdf"}
        Library that reads the file. ``auto``: netCDF-C (xarray's ``netcdf4`` engine) for a
        local file, 3-10x faster to open than h5netcdf (module docstring), and h5netcdf for a
        remote one. A local file netCDF-C cannot open, or in which it finds datasets without
        dimension scales (it names their "phony" dimensions in another order than h5netcdf),
        is opened with h5netcdf as before, with a log record saying why. ``netcdf4`` forces
        netCDF-C (local files only; no fallback, phony dimensions keep netCDF-C's names);
        ``h5netcdf`` forces h5netcdf. Both give the same variables, dims, attrs and values for
        the provider files (tests/test_products_hydro.py); the encodings differ. Not caught
        by the fallback (found on test files; provider files have neither): a NetCDF4 file
        whose data use a filter netCDF-C lacks (h5py's lzf, which h5netcdf can write) opens
        but fails when read (``RuntimeError: NetCDF: Filter error``), and an HDF5 file with a
        cyclic hard link aborts the process inside netCDF-C 4.10.1; open such files with
        ``h5netcdf``.

    Yields
    ------
    xarray.Dataset
        Lazily indexed (``cache=False``), times left as numbers (``decode_times=False``),
        ``_FillValue``/``missing_value`` already NaN. Slice it and ``.load()`` inside the
        ``with`` block: the file is closed when it ends.

    Raises
    ------
    DataError
        The file does not exist or cannot be opened (or lacks ``group``).
    ValueError
        ``engine="netcdf4"`` for a remote file, or an unknown ``engine``.
    """
    if engine not in ("auto", "netcdf4", "h5netcdf"):
        raise ValueError(f"engine must be 'auto', 'netcdf4' or 'h5netcdf', not {engine!r}")
    where = f" (group {group!r})" if group else ""
    try:
        fs, path = fsspec.core.url_to_fs(_local_path(href), **(storage_options or {}))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot open {href}{where} as NetCDF4/HDF5: {err}") from err
    local = "file" in np.atleast_1d(fs.protocol)
    if engine == "netcdf4" and not local:
        raise ValueError(
            f"engine='netcdf4' reads local files only; {href} is remote (use 'auto' or 'h5netcdf')"
        )
    handle = None
    try:
        if local:
            ds = _open_local(path, href, engine, group, variables)
        else:
            handle = fs.open(path, "rb", block_size=REMOTE_BLOCK_SIZE, cache_type="first")
            ds = _open_with(handle, "h5netcdf", group, variables)
    except FileNotFoundError as err:
        if handle is not None:
            handle.close()
        raise DataError(f"product file {href} not found; check the item's asset href") from err
    except (OSError, RuntimeError, ValueError) as err:
        if handle is not None:
            handle.close()
        raise DataError(f"cannot open {href}{where} as NetCDF4/HDF5: {err}") from err
    try:
        yield ds
    finally:
        ds.close()
        if handle is not None:
            handle.close()


def normalise_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes to [-180, 180): 0..360 grids and NGL's values below -180 alike (degrees).

    Values already in range are returned unchanged (bit for bit).
    """
    lon = np.asarray(lon, dtype=np.float64)
    inside = (lon >= -180.0) & (lon < 180.0)
    return np.where(inside, lon, (lon + 180.0) % 360.0 - 180.0)


def _step(values: np.ndarray) -> float:
    u = np.unique(values)
    return float(np.median(np.diff(u))) if u.size > 1 else 0.0


def _axis_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Positions of the cells whose extent overlaps (low, high) with positive length,
    ordered by ascending coordinate."""
    half = _step(values) / 2.0
    eps = 1e-9 * max(half, 1.0)
    if half > 0:
        keep = (values + half > low + eps) & (values - half < high - eps)
    else:
        keep = (values >= low) & (values <= high)
    idx = np.flatnonzero(keep)
    return idx[np.argsort(values[idx], kind="stable")]


def grid_window(
    lat: np.ndarray, lon: np.ndarray, bbox: Bbox | None
) -> tuple[np.ndarray, np.ndarray]:
    """Positions along the file's lat and lon axes of the cells that overlap ``bbox``.

    Parameters
    ----------
    lat, lon : ndarray, shape (n_lat,), (n_lon,), degrees
        Cell centres as stored (lat in either order, lon 0..360 or -180..180 or below -180).
    bbox : (west, south, east, north) or None
        Degrees, west/east in -180..180 (west > east is not supported: split the request).
        A cell is kept when its extent overlaps the box (touching an edge is not enough).
        None keeps the whole grid.

    Returns
    -------
    lat_index, lon_index : ndarray of int64
        Positions into the file's axes, ordered so that the selected latitudes and the
        normalised longitudes ascend.

    Raises
    ------
    DataError
        When the box holds no cell of the grid.
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon_n = normalise_lon(lon)
    if bbox is None:
        return np.argsort(lat, kind="stable"), np.argsort(lon_n, kind="stable")
    west, south, east, north = (float(v) for v in bbox)
    if not (west < east and south < north and -180.0 <= west and east <= 180.0):
        raise DataError(
            f"bbox {tuple(bbox)} is empty or inverted; give (west, south, east, north) with "
            "west < east and south < north, longitudes in -180..180"
        )
    lat_index = _axis_window(lat, south, north)
    lon_index = _axis_window(lon_n, west, east)
    if lat_index.size == 0 or lon_index.size == 0:
        raise DataError(
            f"bbox {tuple(bbox)} holds no cell of the grid (lat {lat.min():g}..{lat.max():g}, "
            f"lon {lon_n.min():g}..{lon_n.max():g} after normalising to -180..180)"
        )
    return lat_index, lon_index


def _indexer(positions: np.ndarray) -> slice | np.ndarray:
    """A slice when the sorted positions are contiguous (one hyperslab), else the array."""
    ordered = np.sort(positions)
    if ordered.size and np.all(np.diff(ordered) == 1):
        return slice(int(ordered[0]), int(ordered[-1]) + 1)
    return ordered


def find_dim(dims: Sequence[str], names: Sequence[str], what: str, where: str) -> str:
    """The first of ``names`` among ``dims`` (``what`` and ``where`` go into the error)."""
    for name in names:
        if name in dims:
            return name
    raise DataError(
        f"{where} has no {what} dimension (looked for {list(names)}; dims {list(dims)})"
    )


def read_window(
    ds: xr.Dataset,
    variables: Sequence[str],
    lat_index: np.ndarray,
    lon_index: np.ndarray,
    *,
    time_index: np.ndarray | slice | None = None,
    where: str,
) -> xr.Dataset:
    """Load the cells ``lat_index x lon_index`` (and time steps ``time_index``) of ``variables``.

    Only those cells are read (HDF5 hyperslabs). Returns dims ``(time, lat, lon)`` (or
    ``(lat, lon)`` for variables without time), float64, with ``lat`` ascending and ``lon``
    ascending in -180..180 (empty attrs); the variables keep their attrs.
    """
    first = ds[variables[0]]
    lat_dim = find_dim(first.dims, _LAT_NAMES, "latitude", where)
    lon_dim = find_dim(first.dims, _LON_NAMES, "longitude", where)
    lat_raw = np.asarray(ds[lat_dim].values, dtype=np.float64)
    lon_raw = np.asarray(ds[lon_dim].values, dtype=np.float64)
    lat_sel, lon_sel = _indexer(lat_index), _indexer(lon_index)
    out: dict[str, Any] = {}
    for name in variables:
        var = ds[name]
        for dim in (lat_dim, lon_dim):
            if dim not in var.dims:
                raise DataError(f"{where}: variable {name!r} lacks dimension {dim!r} ({var.dims})")
        sel: dict[str, Any] = {lat_dim: lat_sel, lon_dim: lon_sel}
        if time_index is not None and "time" in var.dims:
            sel["time"] = time_index
        extra = [d for d in var.dims if d not in (lat_dim, lon_dim, "time")]
        for dim in extra:
            if var.sizes[dim] != 1:
                raise DataError(
                    f"{where}: variable {name!r} has an extra dimension {dim!r} of size "
                    f"{var.sizes[dim]}; expected (time, lat, lon)"
                )
            sel[dim] = 0
        block = var.isel(sel).load()
        order = [d for d in ("time", lat_dim, lon_dim) if d in block.dims]
        block = block.transpose(*order)
        data = np.asarray(block.values, dtype=np.float64)
        # reorder the loaded window into ascending lat / normalised lon
        lat_got = lat_raw[np.atleast_1d(np.arange(lat_raw.size)[lat_sel])]
        lon_got = normalise_lon(lon_raw[np.atleast_1d(np.arange(lon_raw.size)[lon_sel])])
        data = np.take(data, np.argsort(lat_got, kind="stable"), axis=-2)
        data = np.take(data, np.argsort(lon_got, kind="stable"), axis=-1)
        dims = ("time", "lat", "lon") if "time" in block.dims else ("lat", "lon")
        out[name] = (dims, data, dict(var.attrs))
    lat_vals = np.sort(lat_raw[lat_index])
    lon_vals = np.sort(normalise_lon(lon_raw[lon_index]))
    return xr.Dataset(out, coords={"lat": ("lat", lat_vals), "lon": ("lon", lon_vals)})


def decode_time_axis(
    ds: xr.Dataset, *, file: str, time_name: str = "time"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a file's time coordinate and its bounds (if any), both ``datetime64[ns]``.

    Bounds are the variable named by the time's ``bounds`` attribute, else ``time_bnds`` /
    ``time_bounds``; they inherit the time's units and calendar when they have none (CF).

    Returns
    -------
    times : ndarray, shape (n_time,)
    bounds : ndarray, shape (n_time, 2), or None
    """
    if time_name not in ds.variables:
        raise DataError(f"{file} has no {time_name!r} variable; the adapter needs a time axis")
    tvar = ds[time_name]
    t_units = tvar.attrs.get("units")
    if t_units is None:
        raise DataError(
            f"cannot decode time variable {time_name!r} of {file}: it has no units attribute"
        )
    calendar = tvar.attrs.get("calendar")
    times = decode_times(tvar.values, t_units, calendar, file=file, variable=time_name)
    names = [tvar.attrs.get("bounds"), "time_bnds", "time_bounds"]
    bounds = None
    for name in names:
        if name and name in ds.variables:
            bvar = ds[name]
            bounds = decode_times(
                bvar.values,
                bvar.attrs.get("units", t_units),
                bvar.attrs.get("calendar", calendar),
                file=file,
                variable=str(name),
            )
            if bounds.shape != (times.size, 2):
                raise DataError(
                    f"{file}: time bounds {name!r} have shape {bounds.shape}; expected "
                    f"({times.size}, 2)"
                )
            break
    return np.atleast_1d(times), bounds


def interval_midpoints(times: np.ndarray, bounds: np.ndarray | None) -> np.ndarray:
    """The instant that decides a sample's month: its bounds' midpoint, else its time."""
    if bounds is None:
        return times
    return bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) // 2


Kind = Literal["storage", "fraction", "flux_per_s", "rate_per_hour"]

_STORAGE_UNITS = ("kg m-2", "kg/m2", "kg m**-2", "kg/m^2", "kg m^-2", "mm")
_FRACTION_UNITS = ("m^3 m-3", "m3 m-3", "m3/m3", "m^3/m^3", "m**3 m**-3")
_FLUX_UNITS = ("kg m-2 s-1", "kg/m2/s", "kg m**-2 s**-1", "kg m^-2 s^-1", "mm s-1", "mm/s")
_HOURLY_UNITS = ("mm/hr", "mm/h", "mm hr-1", "mm h-1", "mm hr**-1")

ACCEPTED_UNITS: dict[str, tuple[str, ...]] = {
    "storage": _STORAGE_UNITS,
    "fraction": _FRACTION_UNITS,
    "flux_per_s": _FLUX_UNITS,
    "rate_per_hour": _HOURLY_UNITS,
}


@dataclass(frozen=True)
class Term:
    """How one canonical variable is made from a provider's variables.

    ``kind``: ``storage`` (kg m-2 = mm, summed over ``sources``), ``fraction`` (m3 m-3 times
    ``thickness_mm`` per source, summed), ``flux_per_s`` (kg m-2 s-1, monthly mean rate x
    seconds in the month) or ``rate_per_hour`` (mm/hr, monthly mean rate x hours in the month).
    """

    output: str
    sources: tuple[str, ...]
    kind: Kind
    long_name: str
    thickness_mm: tuple[float, ...] = ()

    @property
    def out_units(self) -> str:
        return "mm" if self.kind in ("storage", "fraction") else "mm/month"


def _units_of(ds: xr.Dataset, name: str) -> str:
    attrs = ds[name].attrs
    return str(attrs.get("units", attrs.get("Units", ""))).strip()


def _choose_terms(
    present: set[str], terms: Sequence[Term], wanted: Sequence[str] | None, product: str, href: str
) -> list[Term]:
    chosen: dict[str, Term] = {}
    partial: dict[str, list[str]] = {}
    for term in terms:
        if term.output in chosen:
            continue
        have = [s for s in term.sources if s in present]
        if len(have) == len(term.sources):
            chosen[term.output] = term
        elif have:
            partial[term.output] = [s for s in term.sources if s not in present]
    for output, missing in partial.items():
        if output not in chosen:
            log.warning("%s: %s not made from %s: it lacks %s", product, output, href, missing)
    if wanted is not None:
        missing_out = [w for w in wanted if w not in chosen]
        if missing_out:
            needs = {t.output: list(t.sources) for t in terms if t.output in missing_out}
            raise DataError(
                f"{product} file {href} cannot give {missing_out}: they need variables {needs}; "
                f"the file has {sorted(present)}"
            )
        return [chosen[w] for w in wanted]
    if not chosen:
        hint = "".join(
            f"; {out} needs {missing} as well (or name fewer source layers)"
            for out, missing in partial.items()
        )
        raise DataError(
            f"{product} file {href} holds none of the variable sets this adapter reads "
            f"({sorted({s for t in terms for s in t.sources})}); present: {sorted(present)}" + hint
        )
    return list(chosen.values())


def read_gridded(
    hrefs: Sequence[str],
    terms: Sequence[Term],
    *,
    product: str,
    bbox: Bbox | None = None,
    variables: Sequence[str] | None = None,
    group: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Read a gridded product delivered as many files into the canonical monthly dataset.

    Parameters
    ----------
    hrefs : sequence of str
        One file per time step (or per year): local paths or fsspec URLs.
    terms : sequence of Term
        The product's recipes; for each output the first term whose sources a file holds.
    product : str
        Name used in messages (``"GLDAS"``...).
    bbox : (west, south, east, north), optional
        Degrees; only the overlapping cells are read. None reads the whole grid.
    variables : sequence of str, optional
        Canonical outputs to return (error if a file cannot give one); None returns every
        output the files can give.
    group : str, optional
        HDF5 group of the variables.
    storage_options : dict, optional
        fsspec options for remote hrefs.

    Returns
    -------
    xarray.Dataset
        Canonical monthly ``(time, lat, lon)`` dataset (see module docstring); attrs
        ``samples_per_month`` (JSON list: the number of time steps averaged into each month).

    Raises
    ------
    DataError
        No file, a file that misses a source variable the others have (named), wrong units,
        grids that differ between files, the same time stamp in two files.
    """
    hrefs = list(hrefs)
    if not hrefs:
        raise DataError(f"no {product} file given; discovery found no item for it")
    candidates = {s for t in terms for s in t.sources}
    reference: tuple[str, set[str]] | None = None
    chosen: list[Term] = []
    samples: dict[str, list[np.ndarray]] = {}
    stamps: list[np.ndarray] = []
    origin: list[str] = []
    grid: tuple[np.ndarray, np.ndarray] | None = None
    # what the adapter looks at: the terms' sources, the axes and the time bounds
    wanted = candidates | {"time", "time_bnds", "time_bounds", *_LAT_NAMES, *_LON_NAMES}
    for href in hrefs:
        with open_product(
            href, group=group, storage_options=storage_options, variables=sorted(wanted)
        ) as ds:
            present = candidates & set(ds.variables)
            if reference is None:
                chosen = _choose_terms(present, terms, variables, product, href)
                reference = (href, present)
                for term in chosen:
                    accepted = ACCEPTED_UNITS[term.kind]
                    for name in term.sources:
                        got = _units_of(ds, name)
                        if got not in accepted:
                            raise DataError(
                                f"{product} variable {name!r} in {href} has units {got!r}; "
                                f"expected one of {list(accepted)}"
                            )
            elif present != reference[1]:
                lacks = sorted(reference[1] - present)
                extra = sorted(present - reference[1])
                raise DataError(
                    f"{product} file {href} "
                    + (f"lacks variable(s) {lacks} that {reference[0]} has" if lacks else "")
                    + (" and " if lacks and extra else "")
                    + (f"has variable(s) {extra} that {reference[0]} lacks" if extra else "")
                    + f"; present: {sorted(present)}; every file of a series must hold the "
                    "same variables: replace the file or drop its item"
                )
            times, bounds = decode_time_axis(ds, file=href)
            names = [s for t in chosen for s in t.sources]
            first = ds[names[0]]
            lat_dim = find_dim(first.dims, _LAT_NAMES, "latitude", href)
            lon_dim = find_dim(first.dims, _LON_NAMES, "longitude", href)
            lat_index, lon_index = grid_window(ds[lat_dim].values, ds[lon_dim].values, bbox)
            window = read_window(ds, names, lat_index, lon_index, where=f"{product} file {href}")
        if grid is None:
            grid = (window["lat"].values, window["lon"].values)
        elif not (
            np.array_equal(grid[0], window["lat"].values)
            and np.array_equal(grid[1], window["lon"].values)
        ):
            raise DataError(
                f"{product} file {href} is on a different grid from {hrefs[0]} "
                f"({window.sizes['lat']} x {window.sizes['lon']} cells from "
                f"{window['lat'].values[0]:g}, {window['lon'].values[0]:g}); one series must "
                "share one grid"
            )
        for name in names:
            block = window[name].values
            if window[name].ndim == 2:
                block = block[None]
            if block.shape[0] != times.size:
                raise DataError(
                    f"{product} variable {name!r} in {href} has {block.shape[0]} time steps but "
                    f"the time axis has {times.size}"
                )
            samples.setdefault(name, []).append(block)
        stamps.append(interval_midpoints(times, bounds))
        origin.extend([href] * times.size)
    assert grid is not None
    stamp = np.concatenate(stamps)
    uniq, counts = np.unique(stamp, return_counts=True)
    if np.any(counts > 1):
        dup = uniq[counts > 1][0]
        holders = sorted({origin[i] for i in np.flatnonzero(stamp == dup)})
        raise DataError(
            f"{product} time {dup} appears more than once (in {holders}); drop the duplicate item"
        )
    stacked = {name: np.concatenate(parts, axis=0) for name, parts in samples.items()}
    months = np.array([], dtype="datetime64[ns]")
    per_month = np.array([], dtype=np.int64)
    data_vars: dict[str, Any] = {}
    for term in chosen:
        if term.kind == "fraction":
            value = units.fldas_soil_moisture_mm(
                [stacked[s] for s in term.sources], term.thickness_mm
            )
        elif term.kind == "storage":
            value = sum(units.kg_per_m2_to_mm(stacked[s]) for s in term.sources)
        else:
            (source,) = term.sources
            value = stacked[source]
        months, mean, per_month = monthly_mean(value, stamp)
        n_days = units.days_in_month(months)[:, None, None]
        if term.kind == "flux_per_s":
            mean = units.kg_per_m2_per_s_to_mm_per_month(mean, n_days)
        elif term.kind == "rate_per_hour":
            mean = units.mm_per_hour_to_mm_per_month(mean, n_days)
        attrs = {"units": term.out_units, "long_name": term.long_name}
        if len(term.sources) > 1 or term.kind != "storage":
            attrs["source_variables"] = ", ".join(term.sources)
        data_vars[term.output] = (("time", "lat", "lon"), mean, attrs)
    out = xr.Dataset(data_vars, coords={"time": months, "lat": grid[0], "lon": grid[1]})
    out.attrs["samples_per_month"] = json.dumps(per_month.tolist())
    log.info(
        "%s: %d file(s), %d time step(s) -> %d month(s) on %d x %d cells",
        product,
        len(hrefs),
        stamp.size,
        months.size,
        grid[0].size,
        grid[1].size,
    )
    return out
