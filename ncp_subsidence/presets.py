"""Config presets written by ``ncp-subsidence config --preset NAME``.

``ncp`` is the real North China Plain: every source set (no silent twin), public endpoints
where a verified one exists, and ``https://example.invalid/REPLACE-ME/...`` placeholders where
the user must supply the data (``ncp-subsidence sources`` reports those as broken).
"""

from __future__ import annotations

__all__ = ["PRESETS"]

NCP = """\
# ncp-subsidence config for the real North China Plain (written by `config --preset ncp`).
#
# Every source is set, so nothing comes silently from the synthetic twin. Check them all,
# without running the pipeline, with:   ncp-subsidence sources -c THIS_FILE
#
# NASA sources are searched through CMR-STAC (https://cmr.earthdata.nasa.gov/stac/<PROVIDER>);
# a CMR-STAC collection id is `<ShortName>_<version>` of the CMR collection. They need an
# Earthdata login: set EARTHDATA_TOKEN, or a ~/.netrc entry for urs.earthdata.nasa.gov.
# How each id was checked (public catalog pages, searched while writing this preset):
#   TELLUS_GRAC-GRFO_MASCON_CRI_GRID_RL06.3_V4  PO.DAAC "JPL GRACE and GRACE-FO Mascon ... CRI
#       Filtered Release 06.3 Version 04" (data.nasa.gov / catalog.data.gov); the file
#       GRCTellus.JPL.*.GLO.RL06.3M.MSCNv04CRI.nc holds lwe_thickness in cm.
#   GLDAS_NOAH025_M_2.1  GES DISC "GLDAS Noah ... monthly 0.25 x 0.25 degree V2.1
#       (GLDAS_NOAH025_M)"; its archive folder is GLDAS_NOAH025_M.2.1.
#   GPM_3IMERGM_07  GES DISC "GPM IMERG Final Precipitation L3 1 month 0.1 degree V07
#       (GPM_3IMERGM)"; its landing page is disc.gsfc.nasa.gov/datasets/GPM_3IMERGM_07.
#   FLDAS_NOAH01_C_GL_M_001  NOT confirmed by the search while writing this preset (the
#       FLDAS-Global model page was found, the CMR record was not): run `ncp-subsidence
#       sources` or look up ShortName FLDAS_NOAH01_C_GL_M in https://search.earthdata.nasa.gov.
#
# Planetary Computer (https://planetarycomputer.microsoft.com/api/stac/v1) assets are signed
# automatically; its collection ids and asset keys below were not checked against the live
# API: `ncp-subsidence sources` says at once if one is wrong.

sources:
  bbox: [113.5, 34.5, 119.5, 40.5]
  datetime: 2014-10-01/2022-12-31
  hydro_datetime: 2002-01-01/2022-12-31

  # InSAR: COMET LiCSAR frames covering the plain, one ascending and one descending (at least).
  # Frame ids are not given here (none could be verified while writing this preset): find
  # them on the LiCSAR portal (https://comet.nerc.ac.uk/comet-lics-portal/), zooming to the
  # plain; a frame id reads like <track><A|D>_<5 digits>_<6 digits>, its track is the number
  # before the letter without leading zeros. For each frame, catalogue its products with
  #   ncp-subsidence catalog licsar \\
  #     https://gws-access.jasmin.ac.uk/public/nceo_geohazards/LiCSAR_products/<track>/<frame>/ \\
  #     --out licsar/<frame>
  # and replace the two entries below by the snippet the command prints (keys = frame ids).
  interferograms:
    ascending:
      kind: static_catalog
      url: https://example.invalid/REPLACE-ME/licsar/ascending-frame/catalog.json
    descending:
      kind: static_catalog
      url: https://example.invalid/REPLACE-ME/licsar/descending-frame/catalog.json

  # JPL GRACE/GRACE-FO RL06.3 v04 CRI mascons (lwe_thickness, cm) at PO.DAAC.
  # Alternative without Earthdata login, the CSR RL06.3 mascons from CSR (file name as
  # published at https://www2.csr.utexas.edu/grace/RL0603_mascons.html; check the folder):
  #   grace:
  #     kind: file
  #     url: https://download.csr.utexas.edu/outgoing/grace/RL0603_mascons/CSR_GRACE_GRACE-FO_RL0603_Mascons_all-corrections.nc
  #     collections: [grace]
  grace:
    kind: stac_api
    url: https://cmr.earthdata.nasa.gov/stac/POCLOUD
    collections: [TELLUS_GRAC-GRFO_MASCON_CRI_GRID_RL06.3_V4]

  # GLDAS Noah 2.1 monthly 0.25 deg (CanopInt_inst, kg m-2).
  gldas:
    kind: stac_api
    url: https://cmr.earthdata.nasa.gov/stac/GES_DISC
    collections: [GLDAS_NOAH025_M_2.1]

  # FLDAS Noah global monthly 0.1 deg (soil moisture layers m3 m-3, SWE_inst kg m-2).
  fldas:
    kind: stac_api
    url: https://cmr.earthdata.nasa.gov/stac/GES_DISC
    collections: [FLDAS_NOAH01_C_GL_M_001]

  # IMERG Final monthly V07 (Grid/precipitation).
  imerg:
    kind: stac_api
    url: https://cmr.earthdata.nasa.gov/stac/GES_DISC
    collections: [GPM_3IMERGM_07]

  # Copernicus DEM GLO-30 (Planetary Computer; Earth Search also has cop-dem-glo-30 at
  # https://earth-search.aws.element84.com/v1).
  dem:
    kind: stac_api
    url: https://planetarycomputer.microsoft.com/api/stac/v1
    collections: [cop-dem-glo-30]
    assets: [data]

  # MODIS MOD13A1 v061 16-day 500 m NDVI.
  ndvi:
    kind: stac_api
    url: https://planetarycomputer.microsoft.com/api/stac/v1
    collections: [modis-13A1-061]
    assets: [500m_16_days_NDVI]

  # MODIS MOD16A3GF v061 yearly 500 m evapotranspiration.
  evapotranspiration:
    kind: stac_api
    url: https://planetarycomputer.microsoft.com/api/stac/v1
    collections: [modis-16A3GF-061]
    assets: [ET_500m]

  # Annual precipitation raster (a driving factor): none public in STAC for this; e.g. sum
  # the IMERG months above into a COG per year and serve it. Replace the placeholder.
  precipitation:
    kind: file
    url: https://example.invalid/REPLACE-ME/precipitation-annual.tif
    collections: [precipitation]

  # Population density: WorldPop is not in a public STAC API known to this preset; download
  # the China grid from https://hub.worldpop.org and serve it as a COG. Replace the placeholder.
  population:
    kind: file
    url: https://example.invalid/REPLACE-ME/worldpop-chn.tif
    collections: [population]

  # GDP per cell, built-up area per cell, fault lines and region polygons: supply your own.
  gdp:
    kind: file
    url: https://example.invalid/REPLACE-ME/gdp.tif
    collections: [gdp]
  building_density:
    kind: file
    url: https://example.invalid/REPLACE-ME/building-density.tif
    collections: [building_density]
  faults:
    kind: file
    url: https://example.invalid/REPLACE-ME/faults.geojson
    collections: [faults]
  regions:
    kind: file
    url: https://example.invalid/REPLACE-ME/regions.geojson
    collections: [regions]

  # Nevada Geodetic Laboratory MIDAS velocities (IGS14), public.
  gnss:
    kind: file
    url: https://geodesy.unr.edu/velocities/midas.IGS14.txt
    collections: [gnss]

  # Nevada Geodetic Laboratory daily position series (.tenv3, IGS14), public, one file per
  # station: adjust compares them with the InSAR series at its held-out stations (optional:
  # delete this entry to compare velocities only). BJFS and BJNM (Beijing, IGS stations) are
  # examples; list the plain's stations in NGL's holdings, found on its station map
  # (https://geodesy.unr.edu/NGLStationPages/gpsnetmap/GPSNetMap.html), each as
  # https://geodesy.unr.edu/gps_timeseries/tenv3/IGS14/<STATION>.tenv3
  gnss_series:
    kind: file
    url:
      - https://geodesy.unr.edu/gps_timeseries/tenv3/IGS14/BJFS.tenv3
      - https://geodesy.unr.edu/gps_timeseries/tenv3/IGS14/BJNM.tenv3
    collections: [gnss_series]

  twin:
    fill_unset: false   # never take a missing input from the synthetic twin
"""

#: Preset name -> YAML text.
PRESETS: dict[str, str] = {"ncp": NCP}
