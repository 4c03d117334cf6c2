"""The NCP twin: a synthetic North China Plain with known truth, written as real products.

``write_twin(out_dir, preset="tiny", seed=0, noise=True, layouts="auto")`` writes the products
below and returns a :class:`TwinManifest` (also written as ``twin.json``; read it back with
:func:`load_manifest`). The same ``(preset, seed, noise, layouts)`` gives byte-identical files
(the provider catalogs excepted: their zip hrefs are absolute).

Interferogram layouts (``layouts``, config ``sources.twin.layouts``; ``auto``: ``cog`` for
``tiny``, ``providers`` for ``demo`` and ``large``)
-----------------------------------------------------------------------------------------------
``cog``
    Both frames as plain EPSG:4326 COGs with one STAC item per pair in the twin's catalog
    (``OUT/sentinel1/...`` below); frames ``A040`` and ``A142``.
``providers``
    The west frame in COMET LiCSAR's layout (``OUT/licsar/<frame_id>/...``, EPSG:4326, frame
    ``040A_05280_131313``), the east one as ASF HyP3 INSAR_GAMMA zips natively on UTM zone 50N
    (``OUT/hyp3/<name>.zip``, EPSG:32650, frame ``A142``, per-pair extents on one pixel
    lattice); see :mod:`ncp_subsidence.synthetic.providers`. Each is catalogued by its
    provider adapter (``items_from_source`` + ``write_catalog``) into
    ``OUT/catalogs/<frame>/catalog.json`` (``TwinManifest.frame_sources``), where discovery
    finds it; the twin's own catalog holds every other product. The truth of the UTM frame
    (``/frames/A142``) is on its UTM grid (the union of the pairs' extents), ``attrs["crs"]``
    EPSG:32650, with 2-D ``lon``/``lat``.

Product layout (``OUT`` is ``out_dir``; every path in STAC assets is an absolute ``file://`` URL)
-------------------------------------------------------------------------------------------------
::

    OUT/twin.json                        TwinManifest as JSON (paths relative to OUT)
    OUT/catalog.json                     static STAC catalog (self-contained, relative links)
    OUT/stac/<collection-id>/collection.json
    OUT/stac/<collection-id>/<item-id>/<item-id>.json
    OUT/items.ndjson                     every item, one per line, each with "collection"
    OUT/collections.json                 list of every collection dict (for STAC API servers)
    OUT/sentinel1/<frame>/<frame>_lv_theta.tif   frame geometry, HyP3 conventions (radians)
    OUT/sentinel1/<frame>/<frame>_lv_phi.tif
    OUT/sentinel1/<frame>/<PRODUCT>/<PRODUCT>_unw_phase.tif   float32 rad, NaN = decorrelated
    OUT/sentinel1/<frame>/<PRODUCT>/<PRODUCT>_corr.tif        float32 coherence 0-1
    OUT/gnss/midas.IGS14.txt             Nevada Geodetic Lab MIDAS velocity format (m/yr); a
                                         seeded half of the stations at lon - 360 (below -180),
                                         as NGL writes some eastern longitudes
    OUT/gnss/tenv3/<STA>.tenv3           NGL daily position series, one file per station (the
                                         truth at the station plus daily white noise, ~4 % of
                                         days missing); same longitudes as the MIDAS file
    OUT/hydrology/grace/CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc
    OUT/hydrology/gldas/GLDAS_NOAH025_M.A<YYYY>.021.nc4     one file per year, 12 months
    OUT/hydrology/fldas/FLDAS_NOAH01_C_GL_M.A<YYYY>.001.nc  one file per year, 12 months
    OUT/hydrology/imerg/3B-MO.MS.MRG.3IMERG.<YYYY>.V07B.nc  one file per year, 12 months
    OUT/factors/<factor>.tif             factor COGs on the fine grid, float32, NaN nodata
    OUT/vector/faults.geojson            LineString features (property "name")
    OUT/vector/cities.geojson            Polygon features (properties "name", "lag_months")
    OUT/truth/truth.zarr                 truth store (Zarr v3, groups below)
    OUT/truth/README.md                  variables and units of the truth store

``<frame>`` is ``A040`` (west) and ``A142`` (east): two adjacent ascending tracks, heading -12 deg,
relative orbits 40 and 142, incidence 29 deg (west, near range) -> 46 deg (east, far range),
north-up EPSG:4326 cell-registered grids that overlap by 0.4 deg (about 35 km) of longitude.
``<PRODUCT>`` is named like ASF HyP3 INSAR_GAMMA:
``S1AA_<refYYYYMMDDThhmmss>_<secYYYYMMDDThhmmss>_VVP<ddd>_INT80_G_ueF_<HHHH>`` with ``<ddd>`` the
temporal baseline in days and ``<HHHH>`` 4 hex digits derived from the frame and the dates.

Conventions
-----------
* ``unw_phase`` ``phi = phase(secondary) - phase(reference)`` in radians; LOS displacement
  ``d = -lambda / (4 pi) * phi`` with ``lambda = 0.05546576 m``, positive toward the satellite.
  With ``noise=True`` each interferogram also carries an arbitrary constant phase offset (as
  unreferenced products do), a turbulent atmosphere (per acquisition), noise, NaN where
  decorrelated (sea, low coherence) and a few unwrapping errors (+-2 pi patches).
* ``lv_theta`` = look-vector elevation angle from the horizontal, ground -> satellite, radians
  (pi/2 = zenith), i.e. ``lv_theta = pi/2 - incidence``. ``lv_phi`` = look-vector orientation angle,
  ground -> satellite, counter-clockwise from east, radians (0 = east, pi/2 = north), in
  (-pi, pi]. This is GAMMA / HyP3's convention; MintPy reads it as ``incidence = 90 - lv_theta``
  and ``az_los = lv_phi - 90`` (deg). ENU unit vector ground -> satellite:
  ``(cos lv_theta cos lv_phi, cos lv_theta sin lv_phi, sin lv_theta)``.
* Velocities mm/yr (year = 365.25 d), decimal years ``year + (doy - 0.5) / days_in_year``;
  vertical positive up; horizontal truth is the ITRF2014-PMM Eurasia plate motion only.

STAC
----
Collection ids (``TwinManifest.collections`` maps these source keys to the ids):

==============================  ==================================  ================================
source key                      collection id                       item assets (roles)
==============================  ==================================  ================================
``interferograms/<frame>``      ``twin-s1-ifg-<frame>``             ``unw_phase`` (data),
                                                                    ``corr`` (data, coherence),
                                                                    ``lv_theta``, ``lv_phi``
                                                                    (metadata, geometry)
``grace``                       ``twin-grace-csr-rl06-mascon``      ``data`` (NetCDF)
``gldas``                       ``twin-gldas-noah025-m``            ``data`` (NetCDF, one per year)
``fldas``                       ``twin-fldas-noah01-m``             ``data`` (NetCDF, one per year)
``imerg``                       ``twin-imerg-monthly``              ``data`` (NetCDF, one per year)
``dem`` ``ndvi``                ``twin-<key with - for _>``         ``data`` (COG)
``evapotranspiration``          ``twin-evapotranspiration``         ``data`` (COG)
``precipitation``               ``twin-precipitation``              ``data`` (COG, annual mm)
``population`` ``gdp``          ``twin-population``, ``twin-gdp``   ``data`` (COG)
``building_density``            ``twin-building-density``           ``data`` (COG)
``faults``                      ``twin-faults``                     ``data`` (GeoJSON)
``gnss``                        ``twin-gnss-midas``                 ``data`` (MIDAS text)
``gnss_series``                 ``twin-gnss-tenv3``                 ``data`` (.tenv3, one per
                                                                    station, point bbox)
``regions``                     ``twin-regions``                    ``data`` (GeoJSON cities)
==============================  ==================================  ================================

Interferogram items: id ``<PRODUCT>_<frame>``; ``start_datetime``/``end_datetime`` (reference /
secondary acquisition), ``datetime`` = reference; ``sat:relative_orbit``, ``sat:orbit_state``
("ascending"), ``sar:instrument_mode`` "IW", ``sar:frequency_band`` "C",
``sar:center_frequency`` 5.405, ``sar:polarizations`` ["VV"], ``sar:product_type`` "INSAR_GAMMA",
``proj:code`` "EPSG:4326", ``proj:shape``, ``proj:transform``, ``proj:bbox``; plus
``insar:reference_datetime``, ``insar:secondary_datetime``, ``insar:temporal_baseline`` (days),
``twin:frame``, ``twin:heading`` (deg).

Variable names and units of the hydrology files (as in the real products)
-------------------------------------------------------------------------
* GRACE CSR RL06 mascon: ``lwe_thickness(time, lat, lon)`` cm, anomaly w.r.t. 2004.000-2009.999;
  ``time`` days since 2002-01-01T00:00:00Z (mid-month), ``time_bounds(time, bounds)``;
  0.25 deg, April 2002 - December 2022, months June 2017 - May 2018 absent.
* GLDAS Noah 2.1 monthly: ``SoilMoi0_10cm_inst``, ``SoilMoi10_40cm_inst``,
  ``SoilMoi40_100cm_inst``, ``SoilMoi100_200cm_inst``, ``SWE_inst``, ``CanopInt_inst`` (kg m-2),
  ``Rainf_f_tavg``, ``Evap_tavg`` (kg m-2 s-1); dims ``(time, lat, lon)``; 0.25 deg;
  time days since 2000-01-01 00:00:00.
* FLDAS Noah monthly: ``SoilMoi00_10cm_tavg``, ``SoilMoi10_40cm_tavg``, ``SoilMoi40_100cm_tavg``,
  ``SoilMoi100_200cm_tavg`` (m3 m-3), ``SWE_inst`` (kg m-2), ``Rainf_f_tavg``, ``Evap_tavg``
  (kg m-2 s-1); dims ``(time, Y, X)`` with coordinates ``X`` (lon) and ``Y`` (lat), as in the
  real FLDAS files; 0.1 deg; time days since 1982-01-01 00:00:00.
* IMERG V07 monthly: group ``Grid``: ``precipitation(time, lon, lat)`` mm/hr (lon-first),
  ``lon``, ``lat``, ``time`` (int32) seconds since 1980-01-06 00:00:00 UTC with calendar
  ``"julian"`` and bounds ``time_bnds(time, nv)`` (the month's first and last second), as V07
  writes them; 0.1 deg.

Grids (EPSG:4326, cell-registered; NCP bbox 113.5-119.5 E, 34.5-40.5 N for every preset)
-------------------------------------------------------------------------------------------
Hydrology grids: GRACE/GLDAS 0.25 deg (24 x 24), FLDAS/IMERG 0.1 deg (60 x 60). InSAR posting,
dates and fine grid per preset: see :mod:`ncp_subsidence.synthetic.presets` and
``TwinManifest.grids``.

Truth store (``OUT/truth/truth.zarr``, Zarr v3, float32; full list in ``OUT/truth/README.md``)
-----------------------------------------------------------------------------------------------
* ``/`` (fine grid ``lat, lon``): ``vertical_velocity``, ``secular_rate``, ``gwsa_trend``, every
  factor, ``lag_months``, ``region``; ``/displacement``: ``vertical_displacement(time, lat, lon)``
  monthly; ``/hydro`` (hydro grid): ``gwsa``, ``twsa``, ``soil_moisture``, ``swe``,
  ``canopy_water`` (time, lat, lon) mm; ``/frames/<frame>`` (``y, x`` of the frame grid, ``time``
  of its dates): ``los_velocity``, ``los_displacement``, ``vertical_velocity``,
  ``vertical_displacement``, ``plate_los_velocity``, ``error_los_velocity``, ``incidence``,
  ``heading``, ``los_east``/``los_north``/``los_up``; ``/gnss``: station table with ``holdout``
  and ``ngl_lon_wrapped`` (1 where the products write lon - 360); ``/gnss_series``:
  ``east_true``, ``north_true``, ``up_true`` (station, time: every day a ``.tenv3`` file holds,
  at noon, NaN on the others) mm since T0, noise-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ncp_subsidence.synthetic.manifest import TwinManifest, load_manifest
from ncp_subsidence.synthetic.presets import PRESETS, Preset

if TYPE_CHECKING:
    from ncp_subsidence.synthetic.writer import write_twin

__all__ = ["PRESETS", "Preset", "TwinManifest", "load_manifest", "write_twin"]


def __getattr__(name: str) -> Any:
    # the writer (rasterio, the truth model) loads on first use: reading a preset or a manifest,
    # which every config resolution of a twin run does, stays cheap
    if name == "write_twin":
        from ncp_subsidence.synthetic.writer import write_twin

        return write_twin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
