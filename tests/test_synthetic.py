"""Tests of the NCP twin (``ncp_subsidence.synthetic``), on the ``tiny`` preset."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5netcdf
import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.sar import SarExtension
from pystac.extensions.sat import OrbitState, SatExtension
from pystac.validation import JsonSchemaSTACValidator

from ncp_subsidence.synthetic import PRESETS, load_manifest, write_twin
from ncp_subsidence.synthetic.products import read_midas
from ncp_subsidence.synthetic.truth import (
    BOWLS,
    WAVELENGTH_M,
    TwinTruth,
    decimal_year,
    los_unit_vector,
    plate_motion_enu,
)

# fixtures tiny_twin, tiny_twin_noise_free and rustac_twin come from conftest.py (one write each
# per session, shared with the other test modules)

# Real product variable names and units (CSR RL06 mascon, GLDAS Noah 2.1 monthly, FLDAS Noah
# monthly, IMERG V07 monthly HDF5).
GRACE_VARS = {"lwe_thickness": "cm"}
GLDAS_VARS = {
    "SoilMoi0_10cm_inst": "kg m-2",
    "SoilMoi10_40cm_inst": "kg m-2",
    "SoilMoi40_100cm_inst": "kg m-2",
    "SoilMoi100_200cm_inst": "kg m-2",
    "SWE_inst": "kg m-2",
    "CanopInt_inst": "kg m-2",
    "Rainf_f_tavg": "kg m-2 s-1",
    "Evap_tavg": "kg m-2 s-1",
}
FLDAS_VARS = {
    "SoilMoi00_10cm_tavg": "m^3 m-3",
    "SoilMoi10_40cm_tavg": "m^3 m-3",
    "SoilMoi40_100cm_tavg": "m^3 m-3",
    "SoilMoi100_200cm_tavg": "m^3 m-3",
    "SWE_inst": "kg m-2",
    "Rainf_f_tavg": "kg m-2 s-1",
    "Evap_tavg": "kg m-2 s-1",
}
IMERG_VARS = {"precipitation": "mm/hr"}


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for f in sorted(root.rglob("*")):
        if f.is_file():
            data = f.read_bytes().replace(str(root).encode(), b"<ROOT>")
            out[f.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def test_same_seed_gives_identical_bytes(tiny_twin, tmp_path):
    """Every file is byte-identical for the same seed (the ndjson's absolute file:// hrefs are
    compared after replacing the root directory); the static catalog is relocatable as is."""
    again = write_twin(tmp_path / "b", preset="tiny", seed=0)
    a, b = _hashes(tiny_twin.root), _hashes(again.root)
    assert a.keys() == b.keys()
    assert len(a) > 300
    diff = [k for k in a if a[k] != b[k]]
    assert diff == []
    raw_a = (tiny_twin.root / "catalog.json").read_bytes()
    assert raw_a == (again.root / "catalog.json").read_bytes()
    assert load_manifest(again.root).sizes == tiny_twin.sizes


def test_different_seed_changes_the_truth():
    a, b = TwinTruth(0), TwinTruth(1)
    lon, lat = np.array([115.0, 117.5]), np.array([36.0, 39.0])
    assert not np.allclose(a.population(lon, lat), b.population(lon, lat))
    # the bowls are fixed by geography, not by the seed
    assert a.gwsa_trend(lon, lat) == pytest.approx(b.gwsa_trend(lon, lat))


def test_manifest_round_trip(tiny_twin):
    m = load_manifest(tiny_twin.root)
    assert m == tiny_twin
    assert m.frames == ["A040", "A142"]
    expected = {
        "grace",
        "gldas",
        "fldas",
        "imerg",
        "dem",
        "ndvi",
        "evapotranspiration",
        "population",
        "gdp",
        "building_density",
        "precipitation",
        "faults",
        "gnss",
        "gnss_series",
        "regions",
        "interferograms/A040",
        "interferograms/A142",
    }
    assert set(m.collections) == expected
    assert m.fine_resolution_deg == PRESETS["tiny"].fine_resolution_deg
    g = m.grids["frames"]
    # two adjacent frames overlapping by tens of km
    overlap_deg = g["A040"]["bbox"][2] - g["A142"]["bbox"][0]
    assert 0.2 < overlap_deg < 0.8
    for p in (
        m.catalog,
        m.items_ndjson,
        m.truth,
        m.gnss_midas,
        m.faults_geojson,
        m.cities_geojson,
        m.truth_readme,
    ):
        assert Path(p).exists()


def test_noise_free_phase_inverts_to_truth(tiny_twin_noise_free):
    """SBAS by hand at one bowl pixel: the COG phases give back the truth LOS displacement."""
    m = tiny_twin_noise_free
    frame = "A040"
    truth = xr.open_zarr(m.truth, group=f"frames/{frame}", consolidated=False)
    bowl = next(b for b in BOWLS if b.name == "hengshui")
    r = int(np.abs(truth.y.values - bowl.lat).argmin())
    c = int(np.abs(truth.x.values - bowl.lon).argmin())
    cat = pystac.Catalog.from_file(str(m.catalog))
    coll = cat.get_child(m.frame_collections[frame])
    items = sorted(coll.get_items(), key=lambda i: i.id)
    dates = truth.time.values
    index = {np.datetime64(d, "s"): k for k, d in enumerate(dates)}
    rows, obs = [], []
    for it in items:
        ref = np.datetime64(it.properties["start_datetime"].rstrip("Z"), "s")
        sec = np.datetime64(it.properties["end_datetime"].rstrip("Z"), "s")
        with rasterio.open(it.assets["unw_phase"].get_absolute_href()) as src:
            obs.append(float(src.read(1, window=((r, r + 1), (c, c + 1)))[0, 0]))
        row = np.zeros(len(dates) - 1)
        if index[ref] > 0:
            row[index[ref] - 1] = -1.0
        row[index[sec] - 1] = 1.0
        rows.append(row)
    assert len(items) == m.grids["frames"][frame]["n_pairs"]
    phi = np.linalg.lstsq(np.array(rows), np.array(obs), rcond=None)[0]
    d_mm = -WAVELENGTH_M / (4 * np.pi) * np.concatenate([[0.0], phi]) * 1e3
    d_true = truth.los_displacement[:, r, c].values.astype(np.float64)
    np.testing.assert_allclose(d_mm, d_true - d_true[0], atol=0.02)
    assert d_true[-1] - d_true[0] < -300.0  # a real bowl: the test would catch a sign error
    t = decimal_year(dates)
    vel = np.polyfit(t, d_mm, 1)[0]
    assert vel == pytest.approx(float(truth.los_velocity[r, c]), abs=0.01)


def test_geometry_cogs_follow_hyp3_convention(tiny_twin):
    truth = xr.open_zarr(tiny_twin.truth, group="frames/A142", consolidated=False)
    base = tiny_twin.root / "sentinel1/A142"
    with rasterio.open(base / "A142_lv_theta.tif") as s:
        theta = s.read(1)
    with rasterio.open(base / "A142_lv_phi.tif") as s:
        phi = s.read(1)
    ue, un, uu = np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi), np.sin(theta)
    np.testing.assert_allclose(ue, truth.los_east.values, atol=1e-6)
    np.testing.assert_allclose(un, truth.los_north.values, atol=1e-6)
    np.testing.assert_allclose(uu, truth.los_up.values, atol=1e-6)
    inc = 90.0 - np.rad2deg(theta)
    assert inc[:, 0].min() == pytest.approx(29.0, abs=0.2)
    assert inc[:, -1].max() == pytest.approx(46.0, abs=0.2)


def test_plate_motion_and_los_numbers():
    """docs/science.md 4.2 and 2.5 check values (ITRF2014-PMM Eurasia)."""
    ve, vn, vu = plate_motion_enu(116.0, 38.0)
    assert float(ve) == pytest.approx(27.1, abs=0.15)
    assert float(vn) == pytest.approx(-9.6, abs=0.15)
    assert abs(float(vu)) < 0.05  # ellipsoidal normal vs geocentric rotation: ~0.03
    for inc, expected in ((30.0, -12.3), (46.0, -17.7)):
        u = los_unit_vector(inc, -12.0)
        assert float(u[0] * ve + u[1] * vn) == pytest.approx(expected, abs=0.2)


def test_noisy_interferograms_have_gaps_and_unwrapping_errors(tiny_twin):
    truth = xr.open_zarr(tiny_twin.truth, group="frames/A142", consolidated=False)
    assert truth.unwrap_error.shape[0] >= 1
    items = [json.loads(line) for line in tiny_twin.items_ndjson.read_text().splitlines()]
    ifg = [i for i in items if i["collection"] == tiny_twin.frame_collections["A142"]]
    with rasterio.open(ifg[0]["assets"]["unw_phase"]["href"].removeprefix("file://")) as s:
        phase = s.read(1)
    with rasterio.open(ifg[0]["assets"]["corr"]["href"].removeprefix("file://")) as s:
        coh = s.read(1)
    nan = np.isnan(phase)
    assert 0.02 < nan.mean() < 0.9
    assert nan[truth.sea.values == 1].all()
    assert ((coh >= 0) & (coh <= 1)).all()
    assert phase.dtype == np.float32


def test_gnss_round_trip(tiny_twin_noise_free, tiny_twin):
    nf = read_midas(tiny_twin_noise_free.gnss_midas)
    truth = xr.open_zarr(tiny_twin_noise_free.truth, group="gnss", consolidated=False)
    assert list(nf.station) == list(truth.station.values)
    for comp in ("ve", "vn", "vu"):
        np.testing.assert_allclose(nf[comp] * 1e3, truth[f"{comp}_true"].values, atol=1e-3)
    ve, _vn, _ = plate_motion_enu(nf.lon.values, nf.lat.values)
    np.testing.assert_allclose(nf.ve * 1e3, ve, atol=1e-3)  # velocities are ITRF
    assert (nf.vu * 1e3).min() < -50.0  # stations inside steep bowl centres
    noisy = read_midas(tiny_twin.gnss_midas)
    resid = noisy.vu * 1e3 - truth.vu_true.values
    assert 0.3 < resid.std() < 2.0
    assert len(noisy.columns) == 27
    held = truth.station.values[truth.holdout.values == 1]
    assert sorted(held) == tiny_twin.gnss_holdout
    for f in ("A040", "A142"):
        sel = truth.frame.values == f
        frac = truth.holdout.values[sel].mean()
        assert frac == pytest.approx(0.25, abs=0.06)


def test_netcdf_names_units_and_water_balance(tiny_twin_noise_free):
    root = tiny_twin_noise_free.root / "hydrology"
    grace_path = root / "grace/CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc"
    grace = xr.open_dataset(grace_path, engine="h5netcdf", decode_times=False)
    for name, units in GRACE_VARS.items():
        assert grace[name].dims == ("time", "lat", "lon")
        assert grace[name].attrs["units"] == units
    assert grace.time.attrs["units"].startswith("days since 2002-01-01")
    assert "time_bounds" in grace
    times = np.datetime64("2002-01-01") + (grace.time.values * 86400).astype("timedelta64[s]")
    months = set(times.astype("datetime64[M]").astype(str))
    assert "2017-05" in months and "2018-06" in months
    assert not {"2017-06", "2017-12", "2018-05"} & months
    assert np.diff(grace.lat.values).min() == pytest.approx(0.25)
    gl = xr.open_dataset(root / "gldas/GLDAS_NOAH025_M.A2015.021.nc4", engine="h5netcdf")
    fl = xr.open_dataset(root / "fldas/FLDAS_NOAH01_C_GL_M.A2015.001.nc", engine="h5netcdf")
    for ds, names in ((gl, GLDAS_VARS), (fl, FLDAS_VARS)):
        for name, units in names.items():
            assert ds[name].attrs["units"] == units, name
            assert ds[name].sizes["time"] == 12
    assert fl["SoilMoi00_10cm_tavg"].dims == ("time", "Y", "X")
    assert float(fl["SoilMoi00_10cm_tavg"].max()) < 0.6
    with h5netcdf.File(root / "imerg/3B-MO.MS.MRG.3IMERG.2015.V07B.nc", "r") as f:
        var = f["Grid"]["precipitation"]
        assert var.dimensions == ("time", "lon", "lat")
        assert var.attrs["units"] == IMERG_VARS["precipitation"]
    # water balance on the truth grid, and GRACE = block mean of truth TWSA
    hydro = xr.open_zarr(tiny_twin_noise_free.truth, group="hydro", consolidated=False)
    resid = hydro.twsa - hydro.soil_moisture - hydro.swe - hydro.canopy_water - hydro.gwsa
    assert float(np.abs(resid).max()) < 1e-3
    k = round(0.25 / tiny_twin_noise_free.grids["hydro_resolution_deg"])
    tw = hydro.twsa.sel(time="2015-07").values[0]
    block = tw.reshape(tw.shape[0] // k, k, tw.shape[1] // k, k).mean(axis=(1, 3))[::-1]
    g = grace.lwe_thickness.values[list(sorted(months)).index("2015-07")] * 10.0
    np.testing.assert_allclose(g, block, atol=1e-3)
    # plain-mean GWSA trend near -19 mm/yr, range about -37..+1
    trend = hydro.gwsa_trend.values
    assert -37.5 < trend.min() < -30 and -1 < trend.max() < 1.3
    assert -22 < trend.mean() < -14


def _validator():
    class OfflineValidator(JsonSchemaSTACValidator):
        """Core STAC schemas ship with pystac; extension schemas would be fetched over the
        network, so extension fields are checked with pystac's extension classes instead."""

        def validate_extension(self, *args, **kwargs):
            return None

    return OfflineValidator()


def test_every_stac_item_validates(tiny_twin):
    """Core JSON schema (offline, pystac's bundled schemas) for every item, collection and the
    catalog; sat/sar/projection fields read back through pystac's extension classes."""
    validator = _validator()
    lines = tiny_twin.items_ndjson.read_text().splitlines()
    assert len(lines) == tiny_twin.sizes["n_items"]
    ifg_ids = set(tiny_twin.frame_collections.values())
    n_ifg = 0
    for line in lines:
        d = json.loads(line)
        assert d["collection"]
        item = pystac.Item.from_dict(d)
        item.validate(validator=validator)
        for a in item.assets.values():
            assert a.href.startswith("file://")
            assert Path(a.href.removeprefix("file://")).exists()
        if d["collection"] in ifg_ids:
            n_ifg += 1
            sat = SatExtension.ext(item)
            assert sat.relative_orbit in (40, 142)
            assert sat.orbit_state == OrbitState.ASCENDING
            sar = SarExtension.ext(item)
            assert sar.instrument_mode == "IW" and sar.frequency_band.value == "C"
            assert [p.value for p in sar.polarizations] == ["VV"]
            proj = ProjectionExtension.ext(item)
            assert proj.code == "EPSG:4326" and len(proj.shape) == 2
            assert set(item.assets) == {"unw_phase", "corr", "lv_theta", "lv_phi"}
            assert item.properties["start_datetime"] < item.properties["end_datetime"]
    assert n_ifg == tiny_twin.sizes["n_pairs"]
    cat = pystac.Catalog.from_file(str(tiny_twin.catalog))
    cat.validate(validator=validator)
    for coll in cat.get_children():
        coll.validate(validator=validator)
    static_items = list(cat.get_items(recursive=True))
    assert len(static_items) == len(lines)
    href = static_items[0].assets["data" if "data" in static_items[0].assets else "unw_phase"]
    assert Path(href.get_absolute_href()).exists()


def test_rustac_search(rustac_twin, tiny_twin):
    from pystac_client import Client

    client = Client.open(rustac_twin)
    cid = tiny_twin.frame_collections["A142"]
    found = list(client.search(collections=[cid], max_items=1000).items())
    assert len(found) == tiny_twin.grids["frames"]["A142"]["n_pairs"]
    # bbox east of the western frame: only A142 interferograms
    east = list(
        client.search(
            collections=list(tiny_twin.frame_collections.values()),
            bbox=[118.5, 37.0, 119.0, 38.0],
            max_items=1000,
        ).items()
    )
    assert {i.properties["twin:frame"] for i in east} == {"A142"}
    # bbox over the overlap: both frames
    both = list(
        client.search(
            collections=list(tiny_twin.frame_collections.values()),
            bbox=[116.4, 37.0, 116.6, 38.0],
            max_items=1000,
        ).items()
    )
    assert {i.properties["twin:frame"] for i in both} == {"A040", "A142"}
    # datetime: interferograms whose interval intersects 2018
    hits = list(
        client.search(collections=[cid], datetime="2018-01-01/2018-12-31", max_items=1000).items()
    )
    expected = [
        i
        for i in found
        if i.properties["start_datetime"] <= "2018-12-31T23:59:59Z"
        and i.properties["end_datetime"] >= "2018-01-01T00:00:00Z"
    ]
    assert 0 < len(hits) < len(found)
    assert {i.id for i in hits} == {i.id for i in expected}
    grace = list(client.search(collections=[tiny_twin.collections["grace"]]).items())
    assert len(grace) == 1 and grace[0].assets["data"].href.endswith(".nc")


def _q(y: np.ndarray, strata: np.ndarray) -> float:
    """Geodetector q = 1 - SSW / SST (population variances)."""
    sst = ((y - y.mean()) ** 2).sum()
    ssw = 0.0
    for h in np.unique(strata):
        yh = y[strata == h]
        ssw += ((yh - yh.mean()) ** 2).sum()
    return 1.0 - ssw / sst


def _quantile_strata(x: np.ndarray, n: int = 10) -> np.ndarray:
    return np.digitize(x, np.quantile(x, np.linspace(0, 1, n + 1)[1:-1]))


def test_geodetector_ranking_is_known(tiny_twin):
    ds = xr.open_zarr(tiny_twin.truth, consolidated=False).load()
    factors = [
        "gwsa_trend",
        "dem",
        "precipitation",
        "evapotranspiration",
        "ndvi",
        "fault_density",
        "building_density",
        "population",
        "gdp",
    ]
    ok = np.isfinite(ds.vertical_velocity.values)
    y = ds.vertical_velocity.values[ok]
    strata = {f: _quantile_strata(ds[f].values[ok]) for f in factors}
    q = {f: _q(y, s) for f, s in strata.items()}
    ranked = sorted(q, key=q.get, reverse=True)
    assert ranked[0] == "gwsa_trend"
    assert ranked[-1] == "population"
    q_gp = _q(y, strata["gwsa_trend"] * 100 + strata["precipitation"])
    assert q_gp > max(q["gwsa_trend"], q["precipitation"])


def test_truth_time_behaviour(tiny_twin):
    disp = xr.open_zarr(tiny_twin.truth, group="displacement", consolidated=False).load()
    vel = xr.open_zarr(tiny_twin.truth, consolidated=False).vertical_velocity.values
    sub = vel < -20
    assert -140 < np.nanmin(vel) < -100  # peak rates around -100 to -130 mm/yr
    assert np.nanmax(vel) > 0  # slight uplift elsewhere
    dec = disp.vertical_displacement.sel(time=disp.time.dt.month == 12).values
    yearly = -(dec[1:] - dec[:-1])[:, sub].mean(axis=1)  # 2015..2022
    years = np.arange(2015, 2023)
    assert years[yearly.argmax()] == 2018
    assert yearly[-1] < yearly[years == 2020][0]  # relief after 2021
    # seasonal: GWSA falls March -> August and recovers August -> January
    hydro = xr.open_zarr(tiny_twin.truth, group="hydro", consolidated=False)
    g = hydro.gwsa.mean(("lat", "lon")).sel(time=slice("2010-01", "2011-01")).values
    assert g[2] > g[7] and g[12] > g[7]
    # lags: Beijing 0, Cangzhou 1, Hengshui 2 months (docs/science.md validation 9)
    tr = TwinTruth(0)
    lags = {b.name: int(tr.lag_months(np.array(b.lon), np.array(b.lat))) for b in BOWLS}
    assert (lags["beijing_north"], lags["cangzhou"], lags["hengshui"]) == (0, 1, 2)
