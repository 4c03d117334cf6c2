"""Lattice reads (:func:`_read_lattice_block`) equal rasterio's masked reads, bit for bit.

The reads skip rasterio's ``masked=True`` (GDAL's no-data mask band decodes the pixels a second
time) where the band's only mask is its no-data value, and apply GDAL's no-data rule in numpy.
The truth here is the masked read itself, on small GeoTIFFs of every dtype and no-data case:
values within a few ULP of the no data, NaN no data, no-data values that do not fit the dtype,
internal, external and alpha masks, tiled and striped, partial windows and windows past the
file's extent, and a file inside a zip.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.transform import from_origin

from ncp_subsidence.errors import DataError
from ncp_subsidence.io import readers
from ncp_subsidence.io.readers import _LATTICE_ENV, GDAL_READ_OPTIONS, _Placed, _read_lattice_block

ENV = {**GDAL_READ_OPTIONS, **_LATTICE_ENV}
HEIGHT, WIDTH = 37, 45  # not multiples of the 16-pixel tiles: partial edge blocks
#: where the file sits on the grid (its first row and column)
ROW, COL = 3, -2
#: grid windows (rows, cols): the whole file, inside it, across its edges, past it, off it
WINDOWS = [
    ((ROW, ROW + HEIGHT), (COL, COL + WIDTH)),
    ((ROW + 5, ROW + 21), (COL + 7, COL + 30)),
    ((0, 24), (-8, 20)),
    ((ROW + 20, ROW + HEIGHT + 9), (COL + 30, COL + WIDTH + 11)),
    ((-6, ROW + HEIGHT + 6), (COL - 5, COL + WIDTH + 5)),
    ((ROW + HEIGHT + 1, ROW + HEIGHT + 9), (0, 16)),
]
LAYOUTS = {
    "tiled": {"tiled": True, "blockxsize": 16, "blockysize": 16},
    "striped": {"tiled": False, "blockysize": 5},
}


def _reference_block(files, rows, cols, env, on_error):
    """The lattice read as it was: every window through rasterio's masked read, filled with NaN."""

    def masked(src, window):
        data = src.read(1, window=window, out_dtype=np.float32, masked=True)
        return data.filled(np.float32(np.nan))

    with mock.patch.object(readers, "_read_window_nan", masked):
        return _read_lattice_block(files, rows, cols, env, on_error)


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # bit for bit


def _near(value: float, dtype: np.dtype, steps: int = 3) -> list:
    """``value`` in ``dtype`` and its neighbours up to ``steps`` ULP either side."""
    v = dtype.type(value)
    out = [v]
    up = down = v
    with np.errstate(over="ignore"):
        for _ in range(steps):
            up = np.nextafter(up, dtype.type(np.inf))
            down = np.nextafter(down, dtype.type(-np.inf))
            out += [up, down]
    return out


def _pixels(dtype: np.dtype, nodata: float | None, special: list, seed: int = 0) -> np.ndarray:
    """A (HEIGHT, WIDTH) array of ``dtype``: random values, the no data in blocks, and the
    ``special`` values scattered over the whole image (so every window meets them)."""
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        data = (rng.standard_normal((HEIGHT, WIDTH)) * 100).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, int(info.max) + 1, (HEIGHT, WIDTH), dtype=dtype)
    if nodata is not None and np.isfinite(nodata):
        data[:4, :] = dtype.type(nodata)
        data[10:15, 20:30] = dtype.type(nodata)
    elif nodata is not None:
        data[:4, :] = np.nan
    flat = data.reshape(-1)
    if special:
        idx = rng.permutation(flat.size)[: 4 * len(special)]
        flat[idx] = np.array(special * 4, dtype=dtype)
    return data


def _write(path: Path, data: np.ndarray, nodata: float | None, layout: str, **extra) -> Path:
    profile = {
        "driver": "GTiff",
        "height": data.shape[-2],
        "width": data.shape[-1],
        "count": 1 if data.ndim == 2 else data.shape[0],
        "dtype": data.dtype.name,
        "crs": "EPSG:32650",
        "transform": from_origin(500_000.0, 4_200_000.0, 40.0, 40.0),
        "compress": "deflate",
        "nodata": nodata,
        **LAYOUTS[layout],
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data if data.ndim == 3 else data[None])
    return path


def _patch_nodata(path: Path, old: str, new: str) -> None:
    """Rewrite the GDAL_NODATA tag's text in place (same length): no-data values that
    rasterio refuses to write (out of the dtype's range, fractional, NaN on integers)."""
    assert len(old) == len(new)
    raw = path.read_bytes()
    tag = old.encode() + b"\x00"
    assert raw.count(tag) == 1, (old, raw.count(tag))
    path.write_bytes(raw.replace(tag, new.encode() + b"\x00"))


def _check(path: Path | str, env: dict = ENV) -> None:
    placed = _Placed(str(path), ROW, COL, HEIGHT, WIDTH)
    for rows, cols in WINDOWS:
        got = _read_lattice_block([[placed]], rows, cols, env, "fail")
        want = _reference_block([[placed]], rows, cols, env, "fail")
        _assert_same(got, want)


def _mask_flags(path: Path | str, env: dict = ENV) -> list:
    with rasterio.Env(**env), rasterio.open(path) as src:
        return list(src.mask_flag_enums[0])


F32 = np.dtype("float32")
F64 = np.dtype("float64")
SPECIAL_F = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45]

FLOAT_CASES = {
    # name: (dtype, nodata, special values)
    "f32-nodata0": (F32, 0.0, SPECIAL_F + _near(0.0, F32)),
    "f32-nodata-9999": (F32, -9999.0, SPECIAL_F + _near(-9999.0, F32) + _near(9999.0, F32)),
    "f32-nodata1e-3": (F32, 1e-3, SPECIAL_F + _near(1e-3, F32)),
    # 0.1 is not a float32: GDAL compares with float(0.1) on a float32 band
    "f32-nodata0.1": (F32, 0.1, SPECIAL_F + _near(0.1, F32) + _near(0.1, F64, 2)),
    "f32-nodata-nan": (F32, float("nan"), SPECIAL_F),
    "f32-nodata-inf": (F32, float("inf"), SPECIAL_F + _near(3.4028235e38, F32, 1)),
    "f32-nodata-fltmax": (F32, float(np.finfo(F32).max), SPECIAL_F + _near(3e38, F32, 1)),
    "f32-no-nodata": (F32, None, SPECIAL_F),
    "f64-nodata-9999": (
        F64,
        -9999.0,
        SPECIAL_F
        + _near(-9999.0, F64)
        + [-9999.0 * (1 + k * 1e-8) for k in (-40, -25, -24, -23, -10, -1, 1, 10, 23, 24, 25, 40)],
    ),
    "f64-nodata1e-3": (
        F64,
        1e-3,
        SPECIAL_F + _near(1e-3, F64) + [1e-3 * (1 + k * 1e-8) for k in (-24, -23, 23, 24)],
    ),
    "f64-nodata-nan": (F64, float("nan"), [*SPECIAL_F, 1e300, -1e-300]),
    "f64-no-nodata": (F64, None, [*SPECIAL_F, 1e-300, 1.0 + 2**-30]),
    # beyond float32's range: GDAL's own conversion (masked read kept)
    "f64-huge": (F64, -9999.0, [*SPECIAL_F, 1e39, -1e300, float(np.finfo(F32).max) * (1 + 2**-30)]),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", list(FLOAT_CASES))
def test_float_bands_equal_masked_read(tmp_path, case, layout):
    dtype, nodata, special = FLOAT_CASES[case]
    data = _pixels(dtype, nodata, special)
    path = _write(tmp_path / f"{case}.tif", data, nodata, layout)
    _check(path)


INT_CASES = {
    "u8-nodata0": ("uint8", 0),
    "u8-nodata255": ("uint8", 255),
    "i8-nodata-128": ("int8", -128),
    "i16-nodata-9999": ("int16", -9999),
    "u16-nodata65535": ("uint16", 65535),
    "u16-nodata0": ("uint16", 0),
    "i32-nodata-min": ("int32", -(2**31)),
    "i32-nodata-16777217": ("int32", 16777217),  # not a float32: 16777216 stays valid
    "u32-nodata-max": ("uint32", 2**32 - 1),
    "i16-no-nodata": ("int16", None),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", list(INT_CASES))
def test_integer_bands_equal_masked_read(tmp_path, case, layout):
    name, nodata = INT_CASES[case]
    dtype = np.dtype(name)
    info = np.iinfo(dtype)
    special = [info.min, info.max, 0, 1, 16777216, 16777217, 16777218, 2**31 - 1, -(2**31)]
    special = [v for v in special if info.min <= v <= info.max]
    if nodata is not None:
        special += [v for v in (nodata - 1, nodata + 1) if info.min <= v <= info.max]
    data = _pixels(dtype, nodata, special)
    path = _write(tmp_path / f"{case}.tif", data, nodata, layout)
    _check(path)


#: (dtype, no data written, its text in the file, the text patched in): no-data values that do
#: not fit the dtype, fractional on integers, NaN on integers, out of float32's range
ODD_NODATA = {
    "u8-300": ("uint8", 123, "123", "300"),
    "u8-minus1": ("uint8", 12, "12", "-1"),
    "i8-200": ("int8", 117, "117", "200"),
    "i16-1e6": ("int16", 12345, "12345", "1e+06"),
    "i16-fraction": ("int16", -12345, "-12345", "-123.5"),
    "u16-fraction": ("uint16", 1234, "1234", "77.9"),
    "u16-nan": ("uint16", 123, "123", "nan"),
    "i32-fraction": ("int32", -1234567, "-1234567", "-1234.99"),
    "u32-minus": ("uint32", 12345, "12345", "-1e10"),
    "f32-1e39": ("float32", 12345.0, "12345", "1e+39"),
    "f32-minus1e39": ("float32", -12345.0, "-12345", "-1e+39"),
}


@pytest.mark.parametrize("case", list(ODD_NODATA))
def test_odd_nodata_values_equal_masked_read(tmp_path, case):
    name, written, old, new = ODD_NODATA[case]
    dtype = np.dtype(name)
    patched = float(new)
    special = []
    if dtype.kind in "iu" and np.isfinite(patched):
        info = np.iinfo(dtype)
        t = int(np.trunc(patched))
        special = [v for v in (t - 1, t, t + 1, info.min, info.max) if info.min <= v <= info.max]
    data = _pixels(dtype, written, special)
    path = _write(tmp_path / f"{case}.tif", data, written, "tiled")
    _patch_nodata(path, old, new)
    # GDAL reads what it can of these (no no data, a truncated one, +-inf on float32) and
    # rasterio reports less (no no data outside the dtype): the read must follow GDAL's mask
    with rasterio.open(path) as src:
        nd = src.nodatavals[0]
        assert nd is None or nd == patched or (np.isinf(nd) and abs(patched) > 3.5e38)
    _check(path)


def test_float64_huge_nodata_equals_masked_read(tmp_path):
    """A float64 no data beyond float32: rasterio's masked read warns (its fill value
    overflows float32), the values are the same and the lattice read is silent."""
    for nodata, special in ((1e300, [5.0]), (-1e39, [1e39, 5.0])):
        data = _pixels(F64, nodata, [nodata, *special])
        path = _write(tmp_path / f"huge{nodata}.tif", data, nodata, "tiled")
        placed = _Placed(str(path), ROW, COL, HEIGHT, WIDTH)
        for rows, cols in WINDOWS:
            got = _read_lattice_block([[placed]], rows, cols, ENV, "fail")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                want = _reference_block([[placed]], rows, cols, ENV, "fail")
            _assert_same(got, want)


def test_internal_and_external_masks_and_alpha_equal_masked_read(tmp_path):
    data = _pixels(F32, -9999.0, _near(-9999.0, F32))
    valid = np.full((HEIGHT, WIDTH), 255, np.uint8)
    valid[5:20, 3:17] = 0
    for name, internal, nodata in [
        ("internal", True, None),
        ("internal-nodata", True, -9999.0),
        ("external", False, -9999.0),
    ]:
        path = tmp_path / f"{name}.tif"
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=internal):
            _write(path, data, nodata, "tiled")
            with rasterio.open(path, "r+") as dst:
                dst.write_mask(valid)
        assert (tmp_path / f"{name}.tif.msk").exists() != internal
        # the lattice reads list no directory (no sidecar): a .msk counts only without that
        listing = {**ENV, "GDAL_DISABLE_READDIR_ON_OPEN": "NO"}
        assert MaskFlags.per_dataset in _mask_flags(path, listing)
        assert MaskFlags.per_dataset in _mask_flags(path) or not internal
        _check(path)
        _check(path, listing)

    # alpha band
    rgb = np.stack([_pixels(np.dtype("uint8"), 0, [], seed=1), valid])
    path = _write(tmp_path / "alpha.tif", rgb, None, "striped")
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    assert MaskFlags.alpha in _mask_flags(path)
    _check(path)


def test_zip_member_equals_masked_read(tmp_path):
    data = _pixels(F32, 0.0, SPECIAL_F)
    tif = _write(tmp_path / "unw_phase.tif", data, 0.0, "tiled")
    with zipfile.ZipFile(tmp_path / "pair.zip", "w", zipfile.ZIP_STORED) as zf:
        zf.write(tif, "S1_pair/S1_pair_unw_phase.tif")
    _check(f"/vsizip/{tmp_path / 'pair.zip'}/S1_pair/S1_pair_unw_phase.tif")


def test_several_pairs_and_assets_in_one_block(tmp_path):
    files = []
    for p, (dtype, nodata) in enumerate([(F32, 0.0), (F32, -9999.0), (np.dtype("int16"), -1)]):
        path = _write(tmp_path / f"p{p}.tif", _pixels(dtype, nodata, [], seed=p), nodata, "tiled")
        placed = _Placed(str(path), ROW + p, COL - p, HEIGHT, WIDTH)
        files.append([placed, None if p == 1 else placed])
    rows, cols = (0, 30), (-4, 40)
    got = _read_lattice_block(files, rows, cols, ENV, "fail")
    _assert_same(got, _reference_block(files, rows, cols, ENV, "fail"))
    assert got.shape == (2, 3, 30, 44)
    assert np.isnan(got[1, 1]).all()


def test_nodata_band_is_read_once(tmp_path, monkeypatch):
    """The point of the change: a GeoTIFF band with a no-data value is read without
    ``masked=True`` (no second decode of its pixels by GDAL's mask band)."""
    path = _write(tmp_path / "a.tif", _pixels(F32, 0.0, []), 0.0, "tiled")
    calls: list[dict] = []
    real_open = rasterio.open

    class Spy:
        def __init__(self, src):
            self._src = src

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._src.close()

        def __getattr__(self, name):
            return getattr(self._src, name)

        def read(self, *args, **kwargs):
            calls.append(kwargs)
            return self._src.read(*args, **kwargs)

        def read_masks(self, *args, **kwargs):  # pragma: no cover - must not be called
            raise AssertionError("mask band read")

    monkeypatch.setattr(rasterio, "open", lambda *a, **k: Spy(real_open(*a, **k)))
    placed = _Placed(str(path), 0, 0, HEIGHT, WIDTH)
    got = _read_lattice_block([[placed]], (0, HEIGHT), (0, WIDTH), ENV, "fail")
    assert calls and not any(c.get("masked") for c in calls)
    monkeypatch.setattr(rasterio, "open", real_open)
    _assert_same(got, _reference_block([[placed]], (0, HEIGHT), (0, WIDTH), ENV, "fail"))
    assert np.isnan(got[0, 0, :4]).all()


def test_unreadable_file_policy_unchanged(tmp_path, caplog):
    placed = _Placed(str(tmp_path / "missing.tif"), 0, 0, HEIGHT, WIDTH)
    got = _read_lattice_block([[placed]], (0, 8), (0, 8), ENV, "nan")
    assert got.shape == (1, 1, 8, 8) and np.isnan(got).all()
    assert "unreadable window" in caplog.text
    with pytest.raises(DataError, match="missing.tif"):
        _read_lattice_block([[placed]], (0, 8), (0, 8), ENV, "fail")
    assert readers._read_lattice_block is _read_lattice_block
