"""``write_twin``: write every product, the truth store, the STAC catalog and the manifest."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import h5netcdf
import numpy as np
import pandas as pd
import xarray as xr

from ncp_subsidence.synthetic import products as prod
from ncp_subsidence.synthetic import sar
from ncp_subsidence.synthetic.manifest import TwinManifest
from ncp_subsidence.synthetic.presets import PRESETS, resolve_layouts
from ncp_subsidence.synthetic.providers import (
    Hyp3FrameWriter,
    LicsarFrameWriter,
    collection_id,
    provider_catalog,
)
from ncp_subsidence.synthetic.stac import build_catalog, file_item, ifg_item, raster_item
from ncp_subsidence.synthetic.truth import (
    BOWLS,
    FLDAS_LAYERS_MM,
    NCP_BBOX,
    T0,
    TwinTruth,
    _seed,
    cell_centres,
    decimal_year,
    monthly_times,
    ols_slope,
    plate_motion_enu,
)

__all__ = ["write_twin", "FACTOR_UNITS", "GNSS_HOLDOUT_FRACTION"]

log = logging.getLogger(__name__)

GNSS_HOLDOUT_FRACTION = 0.25
#: Fraction of land pixels each noisy interferogram loses to decorrelation (NaN), the least
#: coherent ones: realistic stacks have about 5 % NaN per interferogram.
DECORRELATED_FRACTION = 0.06
FACTOR_UNITS = {
    "gwsa_trend": ("mm/yr", "GWSA trend 2002-2022"),
    "dem": ("m", "elevation above the ellipsoid"),
    "precipitation": ("mm/yr", "annual precipitation"),
    "evapotranspiration": ("mm/yr", "annual evapotranspiration"),
    "ndvi": ("1", "annual mean NDVI"),
    "fault_density": ("km km-2", "fault-line density (Gaussian kernel, sigma 3 km)"),
    "building_density": ("1", "built-up fraction of the cell"),
    "population": ("persons km-2", "population density"),
    "gdp": ("1e4 CNY km-2", "GDP density"),
}
RASTER_SOURCES = (
    "dem",
    "ndvi",
    "evapotranspiration",
    "population",
    "gdp",
    "building_density",
    "precipitation",
)
GRACE_GAP = ("2017-06", "2018-05")


def _cid(key: str) -> str:
    return "twin-" + key.replace("_", "-")


COLLECTION_IDS = {
    "grace": "twin-grace-csr-rl06-mascon",
    "gldas": "twin-gldas-noah025-m",
    "fldas": "twin-fldas-noah01-m",
    "imerg": "twin-imerg-monthly",
    "faults": "twin-faults",
    "gnss": "twin-gnss-midas",
    "gnss_series": "twin-gnss-tenv3",
    "regions": "twin-regions",
    **{k: _cid(k) for k in RASTER_SOURCES},
}


def write_twin(
    out_dir,
    preset: str = "tiny",
    seed: int = 0,
    noise: bool = True,
    overwrite: bool = True,
    layouts: str = "auto",
) -> TwinManifest:
    """Write the NCP twin (products, truth store, STAC catalog, manifest).

    Parameters
    ----------
    out_dir : str or Path
        Output directory (created; emptied first when ``overwrite``).
    preset : {"tiny", "demo", "large"}
        Size preset (:data:`ncp_subsidence.synthetic.PRESETS`).
    seed : int
        Seed of every random draw; the same seed gives byte-identical products.
    noise : bool
        False writes noise-free interferograms (no atmosphere, noise, constant phase offsets,
        unwrapping errors or decorrelation NaNs; sea pixels stay NaN), noise-free GNSS and GRACE.
    overwrite : bool
        Remove an existing ``out_dir`` first.
    layouts : {"auto", "cog", "providers"}
        How the interferograms are written: ``cog`` as plain EPSG:4326 COGs with one STAC item
        per pair (both frames); ``providers`` the west frame in LiCSAR's layout (EPSG:4326) and
        the east one as HyP3 INSAR_GAMMA zips on UTM zone 50N, each catalogued by its provider
        adapter into ``catalogs/<frame>/`` (:mod:`ncp_subsidence.synthetic.providers`);
        ``auto``: ``cog`` for ``tiny``, ``providers`` for ``demo`` and ``large``.

    Returns
    -------
    TwinManifest
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown twin preset {preset!r}; choose one of {sorted(PRESETS)}")
    layouts = resolve_layouts(layouts, preset)
    per_frame = frame_layouts(layouts)
    p = PRESETS[preset]
    root = Path(out_dir).resolve()
    if root.exists() and overwrite:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    truth = TwinTruth(seed)
    groups: dict[str, tuple[str, list]] = {}
    collections: dict[str, str] = {}
    frame_collections: dict[str, str] = {}
    frame_sources: dict[str, dict[str, str]] = {}
    truth_frames: dict[str, xr.Dataset] = {}
    frame_grids: dict[str, dict] = {}
    insar_bytes = 0
    n_pairs_total = 0

    # ---------------------------------------------------------------- fine grid truth + factors
    lon_f, lat_f = cell_centres(NCP_BBOX, p.fine_resolution_deg)
    lo2, la2 = np.meshgrid(lon_f, lat_f)
    sea = truth.is_sea(lo2, la2)
    factors = truth.factors(lo2, la2)
    rate = truth.secular_rate(lo2, la2, factors)
    lag = truth.lag_months(lo2, la2)
    region = truth.region(lo2, la2)
    decimal_year(monthly_times("2015-01", "2022-12"))
    months = monthly_times("2014-12", "2022-12")
    t_months = decimal_year(months)
    disp = np.empty((len(months), *lo2.shape), dtype=np.float32)
    vel = np.empty(lo2.shape, dtype=np.float64)
    step = 64
    for r0 in range(0, lo2.shape[0], step):
        sl = slice(r0, r0 + step)
        d = truth.vertical_displacement(lo2[sl], la2[sl], t_months, rate=rate[sl], lag=lag[sl])
        disp[:, sl] = np.moveaxis(d, -1, 0)
        vel[sl] = ols_slope(t_months[1:], d[..., 1:])
    fine_transform = (
        NCP_BBOX[0],
        p.fine_resolution_deg,
        0.0,
        NCP_BBOX[3],
        0.0,
        -p.fine_resolution_deg,
    )
    masked = {k: np.where(sea, np.nan, v).astype(np.float32) for k, v in factors.items()}

    # ---------------------------------------------------------------- factor COGs
    fac_time = datetime(2019, 7, 2, tzinfo=UTC)
    for key in RASTER_SOURCES:
        rel = f"factors/{key}.tif"
        units, long_name = FACTOR_UNITS[key]
        prod.write_cog(
            root / rel, masked[key], fine_transform, {"units": units, "long_name": long_name}, key
        )
        item = raster_item(
            f"twin-{key}-2019",
            fac_time,
            NCP_BBOX,
            lo2.shape,
            fine_transform,
            rel,
            long_name,
            {"twin:units": units, "twin:factor": key},
        )
        groups[COLLECTION_IDS[key]] = (f"Twin {long_name} ({units}), 2019.", [item])
    prod.write_cog(
        root / "factors/fault_density.tif",
        masked["fault_density"],
        fine_transform,
        {"units": "km km-2", "long_name": FACTOR_UNITS["fault_density"][1]},
        "fault_density",
    )

    # ---------------------------------------------------------------- vectors
    fault_feats = [
        {
            "type": "Feature",
            "properties": {"name": f.name},
            "geometry": {"type": "LineString", "coordinates": [list(c) for c in f.coords]},
        }
        for f in truth.faults
    ]
    prod.write_geojson(root / "vector/faults.geojson", fault_feats)
    ang = np.linspace(0, 2 * np.pi, 25)
    city_feats = []
    for b in BOWLS:
        rad = 0.28
        ring = [
            [
                round(b.lon + rad * np.cos(a) / np.cos(np.deg2rad(b.lat)), 5),
                round(b.lat + rad * np.sin(a), 5),
            ]
            for a in ang
        ]
        ring[-1] = ring[0]
        city_feats.append(
            {
                "type": "Feature",
                "properties": {"name": b.name, "lag_months": b.lag_months},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    prod.write_geojson(root / "vector/cities.geojson", city_feats)
    t_start, t_end = datetime(2014, 12, 1, tzinfo=UTC), datetime(2022, 12, 31, tzinfo=UTC)
    fi = file_item(
        "twin-faults",
        t_start,
        t_end,
        NCP_BBOX,
        "vector/faults.geojson",
        pystac_geojson(),
        "Synthetic fault lines",
    )
    import pystac

    fi.add_asset(
        "density",
        pystac.Asset(
            href="factors/fault_density.tif",
            media_type=pystac.MediaType.COG,
            roles=["data"],
            title="fault density (km km-2)",
        ),
    )
    groups[COLLECTION_IDS["faults"]] = ("Twin fault lines (GeoJSON) and fault density.", [fi])
    groups[COLLECTION_IDS["regions"]] = (
        "Twin city / bowl regions (GeoJSON polygons, property lag_months).",
        [
            file_item(
                "twin-regions",
                t_start,
                t_end,
                NCP_BBOX,
                "vector/cities.geojson",
                pystac_geojson(),
                "City regions",
            )
        ],
    )

    # ---------------------------------------------------------------- hydrology
    hydro_ds = _write_hydrology(root, truth, p, noise, seed, groups)

    # ---------------------------------------------------------------- Sentinel-1 frames
    frame_names = []
    for fi_idx, (frame, layout) in enumerate(zip(sar.FRAMES, per_frame, strict=True)):
        ds, grid, items, nbytes, n_pairs, source = _write_frame(
            root, truth, p, frame, fi_idx, seed, noise, layout
        )
        name = frame_name(frame, layout)
        frame_names.append(name)
        truth_frames[name] = ds
        frame_grids[name] = grid
        if source is None:
            cid = f"twin-s1-ifg-{frame.name}"
            groups[cid] = (
                f"Twin Sentinel-1 interferograms (HyP3 INSAR_GAMMA-like), frame "
                f"{frame.name}, relative orbit {frame.relative_orbit}, ascending.",
                items,
            )
        else:  # catalogued by the provider's adapter once every file is written (below)
            cid = collection_id(source["format"], name)
            frame_sources[name] = source
        collections[f"interferograms/{name}"] = cid
        frame_collections[name] = cid
        insar_bytes += nbytes
        n_pairs_total += n_pairs

    # ---------------------------------------------------------------- GNSS
    gnss = _gnss_table(truth, p, seed, noise, tuple(frame_names))
    # NGL writes some eastern longitudes as lon - 360 (below -180): so does the twin, for a
    # seeded half of the stations, in the MIDAS file and in their .tenv3 files
    wrapped = _seed(seed, "gnss-ngl-longitude").random(len(gnss)) < 0.5
    gnss["ngl_lon"] = np.where(wrapped, gnss["lon"] - 360.0, gnss["lon"])
    prod.write_midas(root / "gnss/midas.IGS14.txt", gnss.assign(lon=gnss["ngl_lon"]))
    series_items, series_truth = _write_gnss_series(root, truth, gnss, seed, noise)
    groups[COLLECTION_IDS["gnss_series"]] = (
        "Twin GNSS daily position series (Nevada Geodetic Lab .tenv3, IGS14, one file per "
        "station).",
        series_items,
    )
    groups[COLLECTION_IDS["gnss"]] = (
        "Twin GNSS velocities (Nevada Geodetic Lab MIDAS format, IGS14 / ITRF2014, m/yr).",
        [
            file_item(
                "twin-gnss-midas-igs14",
                t_start,
                t_end,
                NCP_BBOX,
                "gnss/midas.IGS14.txt",
                "text/plain",
                "MIDAS velocities",
                {"twin:reference_frame": "IGS14"},
            )
        ],
    )
    holdout = sorted(gnss.loc[gnss["holdout"], "station"].tolist())

    # ---------------------------------------------------------------- truth store
    fine = xr.Dataset(
        {
            "vertical_velocity": (
                ("lat", "lon"),
                np.where(sea, np.nan, vel).astype(np.float32),
                {
                    "units": "mm/yr",
                    "long_name": "vertical velocity, OLS slope "
                    "of monthly displacement 2015-01..2022-12, positive up",
                },
            ),
            "secular_rate": (
                ("lat", "lon"),
                np.where(sea, np.nan, rate).astype(np.float32),
                {"units": "mm/yr", "long_name": "generating secular rate v_sec"},
            ),
            "lag_months": (
                ("lat", "lon"),
                lag.astype(np.int8),
                {"units": "month", "long_name": "seasonal lag behind GWSA"},
            ),
            "region": (
                ("lat", "lon"),
                region.astype(np.int8),
                {
                    "long_name": "index of nearest bowl (len(bowls) = plain)",
                    "flag_meanings": " ".join([b.name for b in BOWLS] + ["plain"]),
                },
            ),
            "sea": (("lat", "lon"), sea.astype(np.int8), {"long_name": "1 = Bohai Sea"}),
            **{
                k: (
                    ("lat", "lon"),
                    v,
                    {"units": FACTOR_UNITS[k][0], "long_name": FACTOR_UNITS[k][1]},
                )
                for k, v in masked.items()
            },
        },
        coords={
            "lat": ("lat", lat_f, {"units": "degrees_north"}),
            "lon": ("lon", lon_f, {"units": "degrees_east"}),
            "spatial_ref": ((), np.int32(0), {"crs_wkt": "EPSG:4326", "spatial_ref": "EPSG:4326"}),
        },
        attrs={
            "preset": preset,
            "seed": int(seed),
            "noise": int(noise),
            "reference_epoch": "2014-12-01",
            "T0_decimal_year": float(T0),
        },
    )
    disp_ds = xr.Dataset(
        {
            "vertical_displacement": (
                ("time", "lat", "lon"),
                np.where(sea[None], np.nan, disp).astype(np.float32),
                {
                    "units": "mm",
                    "long_name": "vertical displacement relative to 2014-12-01, positive up",
                },
            )
        },
        coords={"time": months.astype("datetime64[ns]"), "lat": lat_f, "lon": lon_f},
    )
    store = root / "truth/truth.zarr"
    enc = {"time": {"units": "days since 2000-01-01", "dtype": "float64"}}
    fine.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
    disp_ds.to_zarr(
        store, group="displacement", mode="a", zarr_format=3, consolidated=False, encoding=enc
    )
    hydro_ds.to_zarr(
        store, group="hydro", mode="a", zarr_format=3, consolidated=False, encoding=enc
    )
    for name, ds in truth_frames.items():
        ds.to_zarr(
            store,
            group=f"frames/{name}",
            mode="a",
            zarr_format=3,
            consolidated=False,
            encoding={"time": enc["time"]},
        )
    gnss_ds = xr.Dataset.from_dataframe(gnss.set_index("station"))
    gnss_ds["frame"] = gnss_ds["frame"].astype(object)
    gnss_ds["holdout"] = gnss_ds["holdout"].astype(np.int8)
    gnss_ds = gnss_ds.drop_vars(["version", "ngl_lon"])
    gnss_ds["ngl_lon_wrapped"] = ("station", wrapped.astype(np.int8))
    gnss_ds["station"] = gnss_ds["station"].astype(object)
    gnss_ds.attrs = {
        "holdout_fraction": GNSS_HOLDOUT_FRACTION,
        "holdout_rule": "per frame stratum, seeded random 25 %",
        "velocity_units": "m/yr (MIDAS); *_true columns mm/yr",
    }
    gnss_ds.to_zarr(store, group="gnss", mode="a", zarr_format=3, consolidated=False)
    series_truth.to_zarr(store, group="gnss_series", mode="a", zarr_format=3, consolidated=False)
    readme = root / "truth/README.md"
    readme.write_text(_truth_readme(preset, seed, p))

    # ---------------------------------------------------------------- STAC
    collections.update(
        {
            k: COLLECTION_IDS[k]
            for k in (
                "grace",
                "gldas",
                "fldas",
                "imerg",
                "faults",
                "gnss",
                "gnss_series",
                "regions",
                *RASTER_SOURCES,
            )
        }
    )
    catalog, ndjson, colls = build_catalog(root, groups, NCP_BBOX)
    for name, source in frame_sources.items():  # the adapters' catalogs of provider layouts
        source["catalog"] = provider_catalog(root, name, source).relative_to(root).as_posix()

    hydro_shape = [hydro_ds.sizes["lat"], hydro_ds.sizes["lon"]]
    manifest = TwinManifest(
        root=root,
        preset=preset,
        seed=int(seed),
        noise=bool(noise),
        catalog=catalog,
        items_ndjson=ndjson,
        collections_json=colls,
        truth=store,
        truth_readme=readme,
        gnss_midas=root / "gnss/midas.IGS14.txt",
        faults_geojson=root / "vector/faults.geojson",
        cities_geojson=root / "vector/cities.geojson",
        frames=frame_names,
        collections=dict(sorted(collections.items())),
        frame_collections=frame_collections,
        layouts=layouts,
        frame_sources=frame_sources,
        grids={
            "bbox": list(NCP_BBOX),
            "fine_resolution_deg": p.fine_resolution_deg,
            "fine_shape": list(lo2.shape),
            "hydro_resolution_deg": p.hydro_resolution_deg,
            "hydro_shape": hydro_shape,
            "grace_resolution_deg": 0.25,
            "gldas_resolution_deg": 0.25,
            "fldas_resolution_deg": 0.1,
            "imerg_resolution_deg": 0.1,
            "insar_posting_deg": p.posting_deg,
            "frames": frame_grids,
        },
        fine_resolution_deg=p.fine_resolution_deg,
        gnss_holdout=holdout,
    )
    files = [f for f in root.rglob("*") if f.is_file()]
    manifest.sizes = {
        "n_files": len(files) + 1,
        # items.ndjson is left out: its absolute hrefs make its size depend on the root path
        # so are the adapters' catalogs of provider layouts (absolute hrefs too)
        "n_bytes": int(
            sum(
                f.stat().st_size
                for f in files
                if f != ndjson and f.relative_to(root).parts[0] != "catalogs"
            )
        ),
        "insar_bytes": int(insar_bytes),
        "n_items": sum(len(v[1]) for v in groups.values()),
        "n_pairs": n_pairs_total,
        "n_gnss": len(gnss),
    }
    manifest.write()
    log.info("wrote twin %s (seed %d) to %s: %s", preset, seed, root, manifest.sizes)
    return manifest


def pystac_geojson() -> str:
    """Media type of GeoJSON."""
    return "application/geo+json"


# ====================================================================== Sentinel-1
#: Frame layout of each frame (west to east) under ``layouts="providers"``.
PROVIDER_LAYOUTS = ("licsar", "hyp3")


def frame_layouts(layouts: str) -> tuple[str, ...]:
    """Per-frame layout (``cog`` | ``licsar`` | ``hyp3``) of :data:`sar.FRAMES` for ``layouts``."""
    if layouts == "cog":
        return tuple("cog" for _ in sar.FRAMES)
    if layouts == "providers":
        return PROVIDER_LAYOUTS
    raise ValueError(f"unknown twin layouts {layouts!r}; choose 'cog' or 'providers' (or 'auto')")


def frame_name(frame, layout: str) -> str:
    """The frame's name in the products and the store: LiCSAR's frame id, else ``A<orbit>``."""
    return sar.licsar_frame_id(frame) if layout == "licsar" else frame.name


class _CogFrameWriter:
    """The plain layout: EPSG:4326 COGs per pair, one STAC item each, frame geometry COGs."""

    def __init__(self, root: Path, frame, geom: dict, dates) -> None:
        self.root, self.frame, self.geom, self.dates = root, frame, geom, dates
        self.fdir = root / "sentinel1" / frame.name
        self.rel_frame = f"sentinel1/{frame.name}"
        self.items: list = []
        for key, long_name in (
            (
                "lv_theta",
                "look vector elevation angle, ground to satellite, from the horizontal "
                "(GAMMA/HyP3)",
            ),
            (
                "lv_phi",
                "look vector orientation angle, ground to satellite, counter-clockwise from "
                "east (GAMMA/HyP3)",
            ),
        ):
            prod.write_cog(
                self.fdir / f"{frame.name}_{key}.tif",
                geom[key],
                geom["transform"],
                {"units": "radians", "long_name": long_name},
                key,
            )

    def pair(self, j: int, a: int, b: int, phase: np.ndarray, coh: np.ndarray) -> int:
        frame, dates, transform = self.frame, self.dates, self.geom["transform"]
        name = sar.product_name(frame, dates[a], dates[b])
        pdir = self.fdir / name
        prod.write_cog(
            pdir / f"{name}_unw_phase.tif",
            phase,
            transform,
            {"units": "radians", "wavelength_m": "0.05546576"},
            "unw_phase",
        )
        prod.write_cog(pdir / f"{name}_corr.tif", coh, transform, {"units": "1"}, "corr")
        nbytes = (pdir / f"{name}_unw_phase.tif").stat().st_size
        nbytes += (pdir / f"{name}_corr.tif").stat().st_size
        rel = f"{self.rel_frame}/{name}/{name}"
        cog = "image/tiff; application=geotiff; profile=cloud-optimized"
        assets = {
            "unw_phase": (f"{rel}_unw_phase.tif", cog, ["data"], "unwrapped phase (radians)"),
            "corr": (f"{rel}_corr.tif", cog, ["data", "coherence"], "coherence"),
            "lv_theta": (
                f"{self.rel_frame}/{frame.name}_lv_theta.tif",
                cog,
                ["metadata", "geometry"],
                "look vector elevation angle (radians)",
            ),
            "lv_phi": (
                f"{self.rel_frame}/{frame.name}_lv_phi.tif",
                cog,
                ["metadata", "geometry"],
                "look vector orientation angle (radians)",
            ),
        }
        shape = phase.shape
        self.items.append(
            ifg_item(
                f"{name}_{frame.name}",
                frame,
                dates[a],
                dates[b],
                frame.bbox,
                shape,
                transform,
                assets,
            )
        )
        return nbytes

    def source(self) -> None:
        return None


def _write_frame(
    root: Path,
    truth: TwinTruth,
    p,
    frame,
    index: int,
    seed: int,
    noise: bool,
    layout: str = "cog",
):
    """Write one frame's interferograms in ``layout`` and return its truth.

    ``cog`` and ``licsar`` lay the frame out on EPSG:4326 (:func:`sar.frame_geometry`);
    ``hyp3`` natively on UTM zone 50N (:func:`sar.utm_frame_geometry`), every field evaluated
    at the lon/lat of the UTM pixel centres. The scene (truth, error field, unwrapping-error
    patches, each date's turbulence) is the same function of lon/lat in every layout; only the
    per-pixel draws (phase noise, coherence noise) differ with the grid.

    Returns
    -------
    ds : xarray.Dataset
        The frame's truth on its grid (``y``, ``x``: degrees, or UTM metres with
        ``attrs["crs"]`` and 2-D ``lon``/``lat`` coordinates).
    grid : dict
        The manifest's description of the frame grid.
    items : list of pystac.Item
        STAC items (``cog`` only; provider layouts are catalogued by their adapters).
    nbytes : int
        Bytes of interferogram files written.
    n_pairs : int
    source : dict or None
        The manifest's ``frame_sources`` record of a provider-layout frame.
    """
    name = frame_name(frame, layout)
    # the atmosphere of a date is drawn on the frame's EPSG:4326 grid in every layout; a UTM
    # frame samples it at its pixel centres, so it sees the same turbulence as the plain COGs
    atm_grid = sar.frame_geometry(frame, p.posting_deg)
    atm_shape = (atm_grid["lat"].size, atm_grid["lon"].size)
    if layout == "hyp3":
        posting_m = sar.utm_posting_m(p.posting_deg)
        geom = sar.utm_frame_geometry(frame, posting_m)
        lo2, la2 = geom["lon"], geom["lat"]
        ycoord, xcoord = geom["y"], geom["x"]
    else:
        geom = atm_grid
        ycoord, xcoord = geom["lat"], geom["lon"]
        lo2, la2 = np.meshgrid(xcoord, ycoord)
    shape = lo2.shape
    dates = sar.acquisition_dates(frame, p.date_step, p.drop_fraction, seed)
    t = decimal_year(dates)
    pairs = sar.pair_network(len(dates), p.neighbours)
    err_fn = sar.frame_error_field(index, frame, seed)
    err = err_fn(lo2, la2)
    rate = truth.secular_rate(lo2, la2)
    lag = truth.lag_months(lo2, la2)
    sea = truth.is_sea(lo2, la2)
    ve, vn, vu = plate_motion_enu(lo2, la2)
    plate_los = geom["los_east"] * ve + geom["los_north"] * vn + geom["los_up"] * vu
    uu = geom["los_up"]
    bbox = frame.bbox
    if layout == "cog":
        out = _CogFrameWriter(root, frame, geom, dates)
    elif layout == "licsar":
        out = LicsarFrameWriter(root, frame, geom, truth.dem(lo2, la2), dates, seed)
    elif layout == "hyp3":
        out = Hyp3FrameWriter(root, frame, geom, truth.dem(lo2, la2), sea, dates, seed)
    else:
        raise ValueError(f"unknown frame layout {layout!r}")

    def d_los(k: int) -> np.ndarray:
        d_up = truth.vertical_displacement(lo2, la2, t[k : k + 1], rate=rate, lag=lag)[..., 0]
        return uu * d_up + (plate_los + err) * (t[k] - T0)

    rng_atm_seed = f"atm-{frame.name}"
    # coherence model (multilooked C band): short-span coherence gamma0 (urban high, farmland
    # lower) decaying with the time span toward a long-term floor gamma_inf that is higher where
    # built-up scatterers persist; sea decorrelates
    _seed(seed, f"coh-{frame.name}")
    building = truth.building_density(lo2, la2)
    gamma0 = 0.55 + 0.35 * building + 0.08 * np.tanh(truth.dem(lo2, la2) / 300.0)
    gamma0 = np.where(sea, 0.08, gamma0)
    gamma_inf = np.where(sea, 0.08, 0.22 + 0.45 * building)
    los_cache: dict[int, np.ndarray] = {}
    atm_cache: dict[int, np.ndarray] = {}
    tcen = t - t.mean()
    vel_acc = np.zeros(shape)
    keep_disp = p.name != "large"
    los_disp = np.empty((len(t), *shape), dtype=np.float32) if keep_disp else None
    for k in range(len(t)):
        dk = d_los(k)
        vel_acc += dk * tcen[k]
        if keep_disp:
            los_disp[k] = dk
    los_vel = vel_acc / (tcen * tcen).sum()
    n_unw_err = max(1, len(pairs) // 30)
    rng_u = _seed(seed, f"unwrap-{frame.name}")
    unw_err_pairs = set(rng_u.choice(len(pairs), size=n_unw_err, replace=False).tolist())
    unw_log = []
    nbytes = 0
    for j, (a, b) in enumerate(pairs):
        for k in (a, b):
            if k not in los_cache:
                los_cache[k] = d_los(k)
                if noise:
                    atm = sar.turbulence(
                        _seed(seed, f"{rng_atm_seed}-{k}"), atm_shape, p.posting_deg, 6.0
                    )
                    if layout == "hyp3":
                        atm = sar.sample_lonlat(atm, atm_grid["lon"], atm_grid["lat"], lo2, la2)
                    atm_cache[k] = atm
        for k in [k for k in los_cache if k < a]:
            los_cache.pop(k)
            atm_cache.pop(k, None)
        phase = sar.phase_from_los(los_cache[a], los_cache[b])
        dt_days = (t[b] - t[a]) * 365.25
        season = 1.0 - 0.25 * np.clip(np.sin(2 * np.pi * (0.5 * (t[a] + t[b]) - 0.3)), 0, None)
        coh = (gamma_inf + (gamma0 - gamma_inf) * np.exp(-dt_days / 150.0)) * season
        if noise:
            rng = _seed(seed, f"pair-{frame.name}-{j}")
            coh = np.clip(coh + rng.normal(0.0, 0.04, shape), 0.0, 1.0)
            phase = phase + sar.phase_from_los(atm_cache[a], atm_cache[b])
            sigma = 0.15 + 0.6 * (1.0 - coh)
            phase = phase + rng.normal(0.0, 1.0, shape) * sigma + rng.uniform(-np.pi, np.pi)
            if j in unw_err_pairs:
                inside = [b for b in BOWLS if bbox[0] < b.lon < bbox[2]]
                bw = inside[int(rng.integers(len(inside)))]
                rad = rng.uniform(0.05, 0.15)
                cyc = int(rng.choice([-1, 1]))
                patch = np.hypot((lo2 - bw.lon) * np.cos(np.deg2rad(bw.lat)), la2 - bw.lat) < rad
                phase = phase + 2 * np.pi * cyc * patch
                if patch.any():
                    unw_log.append((j, bw.lon, bw.lat, rad, cyc))
            # unwrapping fails where coherence is lowest: the pair's least coherent ~6 % of land
            bad = sea | (coh < np.quantile(coh[~sea], DECORRELATED_FRACTION))
        else:
            bad = sea
        phase = np.where(bad, np.nan, phase)
        nbytes += out.pair(j, int(a), int(b), phase, coh)

    if layout == "hyp3":
        coords = {
            "y": ("y", ycoord, {"units": "m", "long_name": "UTM zone 50N northing"}),
            "x": ("x", xcoord, {"units": "m", "long_name": "UTM zone 50N easting"}),
            "lon": (("y", "x"), lo2, {"units": "degrees_east", "long_name": "longitude"}),
            "lat": (("y", "x"), la2, {"units": "degrees_north", "long_name": "latitude"}),
        }
    else:
        coords = {
            "y": ("y", ycoord, {"units": "degrees_north", "long_name": "latitude"}),
            "x": ("x", xcoord, {"units": "degrees_east", "long_name": "longitude"}),
        }
    v_up_frame = ols_slope(t, truth.vertical_displacement(lo2, la2, t, rate=rate, lag=lag))
    data = {
        "los_velocity": (
            ("y", "x"),
            los_vel,
            "mm/yr",
            "truth LOS velocity: OLS slope over the "
            "frame dates of los_displacement (plate + vertical + error), unreferenced",
        ),
        "vertical_velocity": (
            ("y", "x"),
            v_up_frame,
            "mm/yr",
            "OLS slope over the frame dates of the vertical displacement",
        ),
        "plate_los_velocity": (("y", "x"), plate_los, "mm/yr", "ITRF2014-PMM Eurasia in LOS"),
        "error_los_velocity": (("y", "x"), err, "mm/yr", "injected long-wavelength LOS error"),
        "incidence": (("y", "x"), geom["incidence"], "degrees", "incidence angle"),
        "heading": (("y", "x"), geom["heading"], "degrees", "heading, clockwise from north"),
        "los_east": (("y", "x"), geom["los_east"], "1", "ground->satellite unit vector, east"),
        "los_north": (("y", "x"), geom["los_north"], "1", "ground->satellite unit vector, north"),
        "los_up": (("y", "x"), geom["los_up"], "1", "ground->satellite unit vector, up"),
        "sea": (("y", "x"), sea.astype(np.float32), "1", "1 = Bohai Sea (always NaN in ifgs)"),
    }
    ds = xr.Dataset(
        {
            k: (dims, np.asarray(v, dtype=np.float32), {"units": u, "long_name": ln})
            for k, (dims, v, u, ln) in data.items()
        },
        coords={**coords, "time": ("time", dates.astype("datetime64[ns]"))},
    )
    if keep_disp:
        ds["los_displacement"] = (
            ("time", "y", "x"),
            los_disp,
            {
                "units": "mm",
                "long_name": "truth LOS displacement relative "
                "to 2014-12-01 (no atmosphere), positive toward satellite",
            },
        )
    ds["pair_reference"] = ("pair", pairs[:, 0].astype(np.int32))
    ds["pair_secondary"] = ("pair", pairs[:, 1].astype(np.int32))
    ul = np.asarray(unw_log, dtype=np.float64).reshape(-1, 5)
    ds["unwrap_error"] = (
        ("unwrap_error_index", "unwrap_error_field"),
        ul,
        {
            "long_name": "injected unwrapping errors: pair index, centre lon, "
            "centre lat, radius (deg, lon scaled by cos lat), cycles"
        },
    )
    ds.attrs = {
        "frame": name,
        "relative_orbit": frame.relative_orbit,
        "error_model": "plane" if index % 2 == 0 else "plane+quadratic+smooth random",
        "layout": layout,
    }
    grid = {
        "bbox": list(bbox),
        "shape": list(shape),
        "transform": list(geom["transform"]),
        "crs": "EPSG:4326",
        "relative_orbit": frame.relative_orbit,
        "heading_deg": frame.heading_deg,
        "n_dates": len(dates),
        "n_pairs": len(pairs),
        "first_date": str(dates[0]),
        "last_date": str(dates[-1]),
        "layout": layout,
    }
    if layout == "hyp3":
        ds.attrs["crs"] = geom["crs"]
        half = 0.5 * posting_m / 111195.0
        grid.update(
            crs=geom["crs"],
            posting_m=posting_m,
            bbox=[
                round(float(lo2.min()) - half, 6),
                round(float(la2.min()) - half, 6),
                round(float(lo2.max()) + half, 6),
                round(float(la2.max()) + half, 6),
            ],
        )
    items = out.items if layout == "cog" else []
    return ds, grid, items, nbytes, len(pairs), out.source()


# ====================================================================== GNSS
def _gnss_table(
    truth: TwinTruth, p, seed: int, noise: bool, frames: tuple[str, str] = ("A040", "A142")
) -> pd.DataFrame:
    rng = _seed(seed, "gnss")
    n = p.n_gnss
    n_steep = 3
    n_city = (n - n_steep) // 2
    n - n_steep - n_city
    pts = []
    steep = [BOWLS[i] for i in (0, 2, 4)]
    pts += [(b.lon + 0.01, b.lat - 0.01) for b in steep]
    while len(pts) < n_steep + n_city:
        b = BOWLS[int(rng.integers(len(BOWLS)))]
        lo = b.lon + rng.normal(0, 0.2)
        la = b.lat + rng.normal(0, 0.15)
        if 113.55 < lo < 119.45 and 34.55 < la < 40.45 and not truth.is_sea(lo, la):
            pts.append((lo, la))
    while len(pts) < n:
        lo, la = rng.uniform(113.6, 119.4), rng.uniform(34.6, 40.4)
        if not truth.is_sea(lo, la):
            pts.append((lo, la))
    lon = np.round(np.array([q[0] for q in pts]), 6)
    lat = np.round(np.array([q[1] for q in pts]), 6)
    t_m = decimal_year(monthly_times("2015-01", "2022-12"))
    d = truth.vertical_displacement(lon, lat, t_m)
    vu_true = ols_slope(t_m, d)
    ve, vn, vu_p = plate_motion_enu(lon, lat)
    sig = np.array([0.5, 0.5, 1.0])
    eps = rng.normal(0.0, 1.0, (n, 3)) * sig * float(noise)
    frame = np.where(lon < 0.5 * (116.3 + 116.7), frames[0], frames[1])
    holdout = np.zeros(n, dtype=bool)
    for f in frames:
        idx = np.flatnonzero(frame == f)
        k = round(GNSS_HOLDOUT_FRACTION * idx.size)
        holdout[rng.choice(idx, size=k, replace=False)] = True
    first = np.round(2014.5 + rng.uniform(0, 1.5, n), 4)
    last = np.round(2022.99 - rng.uniform(0, 0.5, n), 4)
    dur = np.round(last - first, 4)
    n_ep = np.floor(dur * 365.25 * 0.95).astype(int)
    df = pd.DataFrame(
        {
            "station": [f"N{i:03d}" for i in range(n)],
            "version": "MIDAS5",
            "t_first": first,
            "t_last": last,
            "duration": dur,
            "n_epochs": n_ep,
            "n_good": (n_ep * 0.98).astype(int),
            "n_pairs": (n_ep * 0.9).astype(int),
            "ve": np.round((ve + eps[:, 0]) / 1e3, 6),
            "vn": np.round((vn + eps[:, 1]) / 1e3, 6),
            "vu": np.round((vu_p + vu_true + eps[:, 2]) / 1e3, 6),
            "se": sig[0] / 1e3,
            "sn": sig[1] / 1e3,
            "su": sig[2] / 1e3,
            "oe": 0.0,
            "on": 0.0,
            "ou": 0.0,
            "fe": 0.01,
            "fn": 0.01,
            "fu": 0.02,
            "sde": 0.0015,
            "sdn": 0.0015,
            "sdu": 0.004,
            "n_steps": 0,
            "lat": lat,
            "lon": lon,
            "height": np.round(truth.dem(lon, lat), 3),
        }
    )
    df["ve_true"] = ve
    df["vn_true"] = vn
    df["vu_true"] = vu_p + vu_true
    df["frame"] = frame
    df["holdout"] = holdout
    return df


#: daily noise of the twin's .tenv3 positions (east, north, up), mm: white noise of the size of
#: NGL's final daily solutions' scatter
TENV3_NOISE_MM = (1.2, 1.2, 3.5)
#: share of days missing from each twin .tenv3 file (receiver outages)
TENV3_GAP_FRACTION = 0.04
_M_PER_DEG = 6378137.0 * np.pi / 180.0


def _write_gnss_series(
    root: Path, truth: TwinTruth, gnss: pd.DataFrame, seed: int, noise: bool
) -> tuple[list, xr.Dataset]:
    """One NGL ``.tenv3`` file per station (``gnss/tenv3/<STA>.tenv3``) and the truth.

    Each station is observed daily from its MIDAS ``t_first`` to ``t_last`` at 12:00 UTC, less
    a seeded :data:`TENV3_GAP_FRACTION` of the days. Up is the truth vertical displacement at
    the station (relative to T0) plus the plate's vertical rate, east and north the plate
    motion (ITRF), each plus white noise :data:`TENV3_NOISE_MM` (none with ``noise=False``).

    Returns the STAC items (one per station, asset ``data``) and the truth dataset (dims
    ``station``, ``time`` = every written day at noon): ``east_true``, ``north_true``,
    ``up_true`` (mm; up relative to T0, east/north relative to T0 along the plate motion; NaN
    on the days not written).
    """
    rng = _seed(seed, "gnss-tenv3")
    lon = gnss["lon"].to_numpy(dtype=np.float64)
    lat = gnss["lat"].to_numpy(dtype=np.float64)
    ve, vn, vu_p = plate_motion_enu(lon, lat)

    def day(t: float) -> np.datetime64:
        year = int(np.floor(t))
        start = np.datetime64(f"{year:04d}-01-01", "D")
        length = int((np.datetime64(f"{year + 1:04d}-01-01", "D") - start).astype(int))
        return start + np.timedelta64(round((t - year) * length), "D")

    firsts = [day(t) for t in gnss["t_first"]]
    lasts = [day(t) for t in gnss["t_last"]]
    all_days = np.arange(min(firsts), max(lasts) + np.timedelta64(1, "D"), dtype="datetime64[D]")
    noon = all_days.astype("datetime64[s]") + np.timedelta64(12, "h")
    t_all = decimal_year(noon)
    up_all = truth.vertical_displacement(lon, lat, t_all)  # (station, day), mm from T0
    dt = (t_all - T0)[None, :]
    true = {
        "east_true": ve[:, None] * dt,
        "north_true": vn[:, None] * dt,
        "up_true": up_all + vu_p[:, None] * dt,
    }
    written = np.zeros((len(gnss), all_days.size), dtype=bool)
    sigma_mm = np.asarray(TENV3_NOISE_MM)
    items = []
    for i, row in enumerate(gnss.itertuples(index=False)):
        span = (all_days >= firsts[i]) & (all_days <= lasts[i])
        keep = span & (rng.random(all_days.size) >= TENV3_GAP_FRACTION)
        written[i] = keep
        n = int(keep.sum())
        eps = rng.normal(0.0, 1.0, (n, 3)) * sigma_mm * float(noise)
        reflon = round(float(row.lon), 1)
        east0 = (row.lon - reflon) * _M_PER_DEG * np.cos(np.deg2rad(row.lat))
        enu = np.column_stack(
            [
                east0 + (true["east_true"][i, keep] + eps[:, 0]) / 1e3,
                row.lat * _M_PER_DEG + (true["north_true"][i, keep] + eps[:, 1]) / 1e3,
                row.height + (true["up_true"][i, keep] + eps[:, 2]) / 1e3,
            ]
        )
        rel = f"gnss/tenv3/{row.station}.tenv3"
        prod.write_tenv3(
            root / rel,
            row.station,
            all_days[keep],
            enu,
            sigma_mm / 1e3,
            reference_meridian=reflon,
            lat=float(row.lat),
            lon=float(row.ngl_lon),
            height=float(row.height),
        )
        start = datetime.fromisoformat(str(all_days[keep][0])).replace(hour=12, tzinfo=UTC)
        end = datetime.fromisoformat(str(all_days[keep][-1])).replace(hour=12, tzinfo=UTC)
        items.append(
            file_item(
                f"twin-gnss-tenv3-{row.station}",
                start,
                end,
                (row.lon, row.lat, row.lon, row.lat),
                rel,
                "text/plain",
                f"NGL tenv3 daily positions of {row.station}",
                {"twin:station": row.station, "twin:reference_frame": "IGS14"},
            )
        )
    ds = xr.Dataset(
        {
            k: (
                ("station", "time"),
                np.where(written, v, np.nan).astype(np.float32),
                {"units": "mm", "long_name": f"{k[:-5]} position change since T0 (truth)"},
            )
            for k, v in true.items()
        },
        coords={
            "station": np.asarray(gnss["station"], dtype=object),
            "time": noon.astype("datetime64[ns]"),
        },
        attrs={
            "noise_mm": list(TENV3_NOISE_MM),
            "gap_fraction": TENV3_GAP_FRACTION,
            "reference_epoch_decimal_year": float(T0),
        },
    )
    return items, ds


# ====================================================================== hydrology
def _seconds_in_month(times: np.ndarray) -> np.ndarray:
    m = times.astype("datetime64[M]")
    return ((m + 1).astype("datetime64[s]") - m.astype("datetime64[s]")).astype(np.float64)


def _write_hydrology(root: Path, truth: TwinTruth, p, noise: bool, seed: int, groups) -> xr.Dataset:
    months = monthly_times("2002-01", "2022-12")
    tm = decimal_year(months)
    # ---- truth on the hydro grid
    lon_h, lat_h = cell_centres(NCP_BBOX, p.hydro_resolution_deg)
    lo2, la2 = np.meshgrid(lon_h, lat_h)
    comp = truth.twsa_components(lo2, la2, tm)
    hydro = xr.Dataset(
        {
            k: (
                ("time", "lat", "lon"),
                np.moveaxis(v, -1, 0).astype(np.float32),
                {"units": "mm", "long_name": f"{k} anomaly w.r.t. 2004.000-2009.999"},
            )
            for k, v in comp.items()
        },
        coords={"time": months.astype("datetime64[ns]"), "lat": lat_h, "lon": lon_h},
        attrs={"identity": "twsa = gwsa + soil_moisture + swe + canopy_water"},
    )
    hydro["gwsa_trend"] = (
        ("lat", "lon"),
        truth.gwsa_trend(lo2, la2).astype(np.float32),
        {"units": "mm/yr"},
    )
    # ---- GRACE: block mean of truth TWSA to 0.25 deg, cm
    f = round(0.25 / p.hydro_resolution_deg)
    twsa = np.moveaxis(comp["twsa"], -1, 0)
    nt, ny, nx = twsa.shape
    g = twsa.reshape(nt, ny // f, f, nx // f, f).mean(axis=(2, 4))
    lon_g, lat_g = cell_centres(NCP_BBOX, 0.25)
    gap = (months >= np.datetime64(GRACE_GAP[0] + "-01")) & (
        months <= np.datetime64(GRACE_GAP[1] + "-28")
    )
    keep = (months >= np.datetime64("2002-04-01")) & ~gap
    if noise:
        g = g + _seed(seed, "grace").normal(0.0, 5.0, g.shape)
    gm = months[keep]
    start = gm.astype("datetime64[M]").astype("datetime64[s]")
    end = (gm.astype("datetime64[M]") + 1).astype("datetime64[s]")
    epoch = np.datetime64("2002-01-01T00:00:00", "s")
    bounds = np.stack([(start - epoch), (end - epoch)], axis=1).astype(np.float64) / 86400.0
    mid = 0.5 * (bounds[:, 0] + bounds[:, 1])
    lwe_attrs = {
        "units": "cm",
        "long_name": "Liquid_Water_Equivalent_Thickness",
        "standard_name": "lwe_thickness",
    }
    grace = xr.Dataset(
        {
            "lwe_thickness": (
                ("time", "lat", "lon"),
                (g[keep][:, ::-1, :] / 10.0).astype(np.float32),
                lwe_attrs,
            ),
            "time_bounds": (
                ("time", "bounds"),
                bounds,
                {"units": "days since 2002-01-01T00:00:00Z"},
            ),
        },
        coords={
            "time": (
                "time",
                mid,
                {
                    "units": "days since 2002-01-01T00:00:00Z",
                    "calendar": "gregorian",
                    "bounds": "time_bounds",
                    "long_name": "time",
                },
            ),
            "lat": ("lat", lat_g[::-1], {"units": "degrees_north"}),
            "lon": ("lon", lon_g, {"units": "degrees_east"}),
        },
        attrs={
            "title": "NCP twin: CSR GRACE/GRACE-FO RL06 mascon-like TWSA",
            "time_mean_removed": "2004.000 to 2009.999",
            "Conventions": "CF-1.6",
        },
    )
    gpath = root / "hydrology/grace/CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc"
    gpath.parent.mkdir(parents=True, exist_ok=True)
    _to_netcdf(grace, gpath, decode_time=False)
    t0d, t1d = datetime(2002, 4, 1, tzinfo=UTC), datetime(2022, 12, 31, tzinfo=UTC)
    groups[COLLECTION_IDS["grace"]] = (
        "Twin CSR GRACE/GRACE-FO RL06 mascon-like lwe_thickness (cm), 0.25 deg, monthly.",
        [
            file_item(
                "twin-csr-grace-rl06-mascon",
                t0d,
                t1d,
                NCP_BBOX,
                str(gpath.relative_to(root)),
                "application/netcdf",
                "CSR RL06 mascon TWSA",
            )
        ],
    )
    # ---- GLDAS 0.25, FLDAS 0.1, IMERG 0.1, one file per year
    lon_q, lat_q = cell_centres(NCP_BBOX, 0.25)
    lon_t, lat_t = cell_centres(NCP_BBOX, 0.1)
    lat_q, lat_t = lat_q[::-1], lat_t[::-1]  # ascending latitude as in the real files
    q2 = np.meshgrid(lon_q, lat_q)
    t2 = np.meshgrid(lon_t, lat_t)
    items = {"gldas": [], "fldas": [], "imerg": []}
    for year in range(2002, 2023):
        sel = (months >= np.datetime64(f"{year}-01-01")) & (
            months < np.datetime64(f"{year + 1}-01-01")
        )
        mt, tt = months[sel], tm[sel]
        secs = _seconds_in_month(mt)
        # GLDAS (kg m-2 = mm storages; fluxes kg m-2 s-1)
        layers = truth.soil_moisture_layers(*q2, tt) * np.asarray(FLDAS_LAYERS_MM)
        gl = {
            name: (layers[..., i], "kg m-2")
            for i, name in enumerate(
                [
                    "SoilMoi0_10cm_inst",
                    "SoilMoi10_40cm_inst",
                    "SoilMoi40_100cm_inst",
                    "SoilMoi100_200cm_inst",
                ]
            )
        }
        gl["SWE_inst"] = (truth.swe(*q2, tt), "kg m-2")
        gl["CanopInt_inst"] = (truth.canopy_water(*q2, tt), "kg m-2")
        gl["Rainf_f_tavg"] = (truth.monthly_precipitation(*q2, tt) / secs, "kg m-2 s-1")
        gl["Evap_tavg"] = (truth.monthly_et(*q2, tt) / secs, "kg m-2 s-1")
        ds = xr.Dataset(
            {
                k: (("time", "lat", "lon"), np.moveaxis(v, -1, 0).astype(np.float32), {"units": u})
                for k, (v, u) in gl.items()
            },
            coords={
                "time": (
                    "time",
                    _days_since(mt, "2000-01-01"),
                    {"units": "days since 2000-01-01 00:00:00", "calendar": "standard"},
                ),
                "lat": ("lat", lat_q, {"units": "degrees_north"}),
                "lon": ("lon", lon_q, {"units": "degrees_east"}),
            },
            attrs={
                "title": "NCP twin: GLDAS Noah Land Surface Model L4 monthly 0.25 x 0.25 "
                "degree V2.1-like"
            },
        )
        rel = f"hydrology/gldas/GLDAS_NOAH025_M.A{year}.021.nc4"
        _to_netcdf(ds, root / rel, decode_time=False)
        t_a = datetime(year, 1, 1, tzinfo=UTC)
        t_b = datetime(year, 12, 31, 23, 59, 59, tzinfo=UTC)
        items["gldas"].append(
            file_item(
                f"GLDAS_NOAH025_M.A{year}.021",
                t_a,
                t_b,
                NCP_BBOX,
                rel,
                "application/netcdf",
                f"GLDAS-like {year}",
            )
        )
        # FLDAS (fractions, dims Y/X)
        fl_layers = truth.soil_moisture_layers(*t2, tt)
        fl = {
            name: (fl_layers[..., i], "m^3 m-3")
            for i, name in enumerate(
                [
                    "SoilMoi00_10cm_tavg",
                    "SoilMoi10_40cm_tavg",
                    "SoilMoi40_100cm_tavg",
                    "SoilMoi100_200cm_tavg",
                ]
            )
        }
        fl["SWE_inst"] = (truth.swe(*t2, tt), "kg m-2")
        fl["Rainf_f_tavg"] = (truth.monthly_precipitation(*t2, tt) / secs, "kg m-2 s-1")
        fl["Evap_tavg"] = (truth.monthly_et(*t2, tt) / secs, "kg m-2 s-1")
        ds = xr.Dataset(
            {
                k: (("time", "Y", "X"), np.moveaxis(v, -1, 0).astype(np.float32), {"units": u})
                for k, (v, u) in fl.items()
            },
            coords={
                "time": (
                    "time",
                    _days_since(mt, "1982-01-01"),
                    {"units": "days since 1982-01-01 00:00:00", "calendar": "standard"},
                ),
                "Y": ("Y", lat_t, {"units": "degrees_north", "long_name": "latitude"}),
                "X": ("X", lon_t, {"units": "degrees_east", "long_name": "longitude"}),
            },
            attrs={
                "title": "NCP twin: FLDAS Noah Land Surface Model L4 Global Monthly 0.1 x 0.1 "
                "degree-like"
            },
        )
        rel = f"hydrology/fldas/FLDAS_NOAH01_C_GL_M.A{year}.001.nc"
        _to_netcdf(ds, root / rel, decode_time=False)
        items["fldas"].append(
            file_item(
                f"FLDAS_NOAH01_C_GL_M.A{year}.001",
                t_a,
                t_b,
                NCP_BBOX,
                rel,
                "application/netcdf",
                f"FLDAS-like {year}",
            )
        )
        # IMERG (group Grid, lon-first, mm/hr); time as V07 writes it: int32 seconds since
        # 1980-01-06 labelled calendar "julian" (the month's first second), bounds time_bnds
        # (first and last second). The values are those of the Gregorian dates: from 1980 to
        # 2099 the two calendars count the same days, and the reader carries the labels over.
        epoch = np.datetime64("1980-01-06T00:00:00", "s")
        month_start = (mt.astype("datetime64[M]").astype("datetime64[s]") - epoch).astype(np.int32)
        month_end = ((mt.astype("datetime64[M]") + 1).astype("datetime64[s]") - epoch).astype(
            np.int32
        )
        pr = truth.monthly_precipitation(*t2, tt) / (secs / 3600.0)  # (lat, lon, time)
        ds = xr.Dataset(
            {
                "precipitation": (
                    ("time", "lon", "lat"),
                    np.transpose(pr, (2, 1, 0)).astype(np.float32),
                    {
                        "units": "mm/hr",
                        "long_name": "Merged satellite-gauge precipitation estimate",
                    },
                )
            },
            coords={
                "time": (
                    "time",
                    month_start,
                    {
                        "units": IMERG_TIME_UNITS,
                        "calendar": "julian",
                        "bounds": "time_bnds",
                        "standard_name": "time",
                    },
                ),
                "time_bnds": (
                    ("time", "nv"),
                    np.stack([month_start, month_end - 1], axis=1),
                    {"units": IMERG_TIME_UNITS},
                ),
                "lon": ("lon", lon_t, {"units": "degrees_east"}),
                "lat": ("lat", lat_t, {"units": "degrees_north"}),
            },
        )
        rel = f"hydrology/imerg/3B-MO.MS.MRG.3IMERG.{year}.V07B.nc"
        _to_netcdf(ds, root / rel, decode_time=False, group="Grid")
        items["imerg"].append(
            file_item(
                f"3B-MO.MS.MRG.3IMERG.{year}.V07B",
                t_a,
                t_b,
                NCP_BBOX,
                rel,
                "application/netcdf",
                f"IMERG-like {year}",
            )
        )
    desc = {
        "gldas": "Twin GLDAS Noah 2.1-like monthly, 0.25 deg (one file per year).",
        "fldas": "Twin FLDAS Noah-like monthly, 0.1 deg (one file per year, dims Y/X).",
        "imerg": "Twin IMERG V07-like monthly precipitation (group Grid, mm/hr, lon-first).",
    }
    for k, v in items.items():
        groups[COLLECTION_IDS[k]] = (desc[k], v)
    return hydro


#: units of IMERG V07's time and time_bnds
IMERG_TIME_UNITS = "seconds since 1980-01-06 00:00:00 UTC"


def _days_since(times: np.ndarray, epoch: str) -> np.ndarray:
    start = times.astype("datetime64[M]").astype("datetime64[s]")
    return (start - np.datetime64(epoch + "T00:00:00", "s")).astype(np.float64) / 86400.0


def _to_netcdf(ds: xr.Dataset, path: Path, decode_time: bool, group: str | None = None) -> None:
    """Write ``ds`` with h5netcdf directly (fast, deterministic): float32 variables gzip-4 +
    shuffle with ``_FillValue`` -9999, coordinates uncompressed without fill value."""
    del decode_time
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    with h5netcdf.File(path, "w") as f:
        g = f.create_group(group) if group else f
        g.dimensions = {str(k): int(v) for k, v in ds.sizes.items()}
        for name in list(ds.dims) + [c for c in ds.coords if c not in ds.dims]:
            if name not in ds.variables:
                continue
            var = ds.variables[name]
            v = g.create_variable(
                str(name), tuple(str(d) for d in var.dims), data=np.asarray(var.values)
            )
            v.attrs.update({k: val for k, val in var.attrs.items()})
        for name, var in ds.data_vars.items():
            kw = {}
            if var.dtype == np.float32:
                kw = {
                    "compression": "gzip",
                    "compression_opts": 4,
                    "shuffle": True,
                    "fillvalue": np.float32(-9999.0),
                }
            v = g.create_variable(
                str(name), tuple(str(d) for d in var.dims), data=np.asarray(var.values), **kw
            )
            v.attrs.update({k: val for k, val in var.attrs.items()})
        f.attrs.update({k: val for k, val in ds.attrs.items()})


def _truth_readme(preset: str, seed: int, p) -> str:
    return f"""# NCP twin truth store (preset {preset}, seed {seed})

Zarr v3 store written with xarray (`xr.open_zarr(path, group=...)`), float32 unless stated.
Grids are EPSG:4326 (a HyP3 frame: UTM, below), cell-registered, row 0 north. Vertical positive
up; LOS positive toward the satellite; velocities mm/yr (year = 365.25 d); displacements mm
relative to 2014-12-01 (T0).

## `/` (fine grid, {p.fine_resolution_deg} deg, dims lat, lon)
- `vertical_velocity` mm/yr: OLS slope of the monthly vertical displacement, Jan 2015 - Dec 2022.
- `secular_rate` mm/yr: generating rate v_sec (see `ncp_subsidence.synthetic.truth`).
- `lag_months` (int8): lag of the seasonal deformation behind GWSA (0-2).
- `region` (int8): index of the nearest bowl within 80 km (`flag_meanings`), last = plain.
- `sea` (int8): 1 in the Bohai Sea (every field NaN there).
- factors: `gwsa_trend` mm/yr, `dem` m, `precipitation` mm/yr, `evapotranspiration` mm/yr,
  `ndvi` 1, `fault_density` km km-2, `building_density` 1, `population` persons km-2,
  `gdp` 1e4 CNY km-2 (the same values as the factor COGs).

## `/displacement` (fine grid, dims time, lat, lon)
- `vertical_displacement` mm, monthly (15th of each month, Dec 2014 - Dec 2022).

## `/hydro` (hydro grid, {p.hydro_resolution_deg} deg, monthly Jan 2002 - Dec 2022, mm EWH)
- `gwsa`, `soil_moisture`, `swe`, `canopy_water`: anomalies w.r.t. the 2004.000-2009.999 mean;
  `twsa = gwsa + soil_moisture + swe + canopy_water` exactly (float32 rounding).
- `gwsa_trend` mm/yr (lat, lon). GRACE `lwe_thickness` = 5x5-block (0.25 deg) mean of `twsa`
  / 10 (+ N(0, 5 mm) noise when written with noise). The model files (GLDAS/FLDAS) hold the
  absolute storages whose anomalies on the 2004-2009 baseline are these terms (evaluated at their
  own cell centres). `ncp_subsidence.synthetic.truth.TwinTruth.twsa_components` evaluates them
  anywhere.

## `/frames/<frame>` (frame grid, dims y (lat), x (lon); time = the frame's acquisitions)
A frame written as HyP3 zips (`layouts="providers"`) is on its UTM zone 50N grid instead: y, x
northing and easting in metres (the union of the pairs' extents), `attrs["crs"]` EPSG:32650,
2-D `lon`, `lat` coordinates; its products are on the same grid.
- `los_velocity` mm/yr: OLS slope, over the frame's dates, of `los_displacement` =
  u . (ITRF2014-PMM Eurasia velocity) (t - T0) + u_up d_up(t) + `error_los_velocity` (t - T0).
  Not referenced: an SBAS velocity referenced at pixel r recovers
  `los_velocity - los_velocity[r]` (noise-free). No atmosphere in it.
- `los_displacement` mm (time, y, x) (not stored for `large`).
- `vertical_velocity` mm/yr: OLS slope over the frame's dates of the vertical displacement.
- `plate_los_velocity`, `error_los_velocity` mm/yr; `incidence`, `heading` degrees;
  `los_east`, `los_north`, `los_up` ground->satellite unit vector; `sea`.
- `pair_reference`, `pair_secondary` (pair): date indices of each interferogram (sorted like
  the product names); `unwrap_error` (n, 5): pair index, lon, lat, radius deg, cycles.

## `/gnss` (dim station)
- MIDAS columns (velocities m/yr as written, with noise), `ve_true`, `vn_true`, `vu_true` mm/yr
  (ITRF: plate motion + vertical truth), `frame`, `holdout` (1 = validation station, 25 % per
  frame, never to be used in a fit), `ngl_lon_wrapped` (1 where the MIDAS and .tenv3 files
  write the longitude as lon - 360, below -180, as NGL does for some stations; `lon` here is
  in -180..180).

## `/gnss_series` (dims station, time)
- `east_true`, `north_true`, `up_true` mm: the noise-free position change since T0 (east and
  north: the plate motion; up: the vertical displacement plus the plate's vertical rate) on
  every day the station's `gnss/tenv3/<STA>.tenv3` holds (12:00 UTC), NaN on the others. The
  files add white noise of {TENV3_NOISE_MM} mm (east, north, up) with noise on.
"""
