"""The configuration tree: one pydantic ``*Options`` model per stage, plus store, cluster, sources.

Every field is described and bounded; unknown keys are rejected (``extra="forbid"``). The tree
round-trips through YAML, and :func:`to_yaml` writes each field's description as a comment above
it, so ``ncp-subsidence config`` prints a self-documenting file.

>>> cfg = Config()                       # all defaults: the embedded NCP twin, a local store
>>> cfg.sbas.method
'svd'
>>> Config.model_validate(from_yaml(to_yaml(cfg))) == cfg
True

Secrets (S3 keys, Earthdata tokens) may be given here or in the environment; they are
:class:`pydantic.SecretStr` or live in ``storage_options`` and are redacted by
:func:`redacted_dump` wherever a config is logged or saved.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .choices import (
    AGGREGATIONS,
    COMMON_MODE_FILTERS,
    CORRECTION_MODELS,
    CV_SCHEMES,
    DETRENDS,
    DISCRETIZATIONS,
    DOWNSCALING_MODES,
    FRAME_GRIDS,
    FRAME_MODELS,
    GAP_FILLS,
    GEODETECTOR_CONVENTIONS,
    GWSA_RESAMPLINGS,
    IFG_FORMATS,
    INTERACTION_CONVENTIONS,
    INTERPOLATIONS,
    ON_ERROR,
    PHASE_RESAMPLINGS,
    PLATE_MODELS,
    SBAS_METHODS,
    SBAS_WEIGHTS,
    SOURCE_KINDS,
    VOLUME_MODES,
)
from .errors import ConfigError
from .redaction import redact_text

__all__ = [
    "STAGE_NAMES",
    "AdjustOptions",
    "AnalysisOptions",
    "ClusterOptions",
    "Config",
    "DiscoverOptions",
    "FactorsOptions",
    "GeodetectorOptions",
    "HydroOptions",
    "IngestOptions",
    "MosaicOptions",
    "OPTIONAL_SOURCES",
    "ReportOptions",
    "SBASOptions",
    "SourceOptions",
    "SourcesOptions",
    "StoreOptions",
    "TWIN_SETTING_KEYS",
    "TwinOptions",
    "format_validation_error",
    "from_yaml",
    "load_config",
    "redacted_dump",
    "resolve_config",
    "to_yaml",
]

log = logging.getLogger(__name__)

#: The pipeline's stages, in order. Each is also a config section and a product group.
STAGE_NAMES: tuple[str, ...] = (
    "discover",
    "ingest",
    "sbas",
    "adjust",
    "mosaic",
    "hydro",
    "factors",
    "geodetector",
    "analysis",
    "report",
)


class _Options(BaseModel):
    """Base of every options model: unknown keys rejected, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------------------------
# Store and cluster
# --------------------------------------------------------------------------------------------


class StoreOptions(_Options):
    """Where products are written: one store root, any fsspec URL."""

    url: str = Field(
        "ncp-store",
        min_length=1,
        description="Store root: a local path, s3://bucket/prefix, memory://name, or any fsspec URL.",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Options passed to the fsspec filesystem (e.g. endpoint_url, anon). Credentials may "
            "go here but are better left to the environment (AWS_ACCESS_KEY_ID, ...); they are "
            "never logged or written into products."
        ),
    )
    zarr_format: Literal[2, 3] = Field(3, description="Zarr format of written products.")
    keep_versions: int = Field(
        2,
        ge=1,
        le=100,
        description="Complete versions of each product kept; older ones are deleted after a new one is published.",
    )


class GatewayOptions(_Options):
    """dask-gateway (JupyterHub / daskhub) cluster."""

    address: str | None = Field(
        None,
        max_length=2048,
        description="Gateway address, e.g. https://hub.example.org/services/dask-gateway; None reads dask config (JupyterHub sets it).",
    )
    proxy_address: str | None = Field(
        None,
        max_length=2048,
        description="Gateway scheduler proxy address (e.g. tls://host:8786), if different from address.",
    )
    public_address: str | None = Field(
        None,
        max_length=2048,
        description="Address for dashboard links shown to the user, if different from address.",
    )
    auth: Literal["simple", "jupyterhub", "kerberos", "basic"] | None = Field(
        None,
        description="Authentication kind: simple and basic send username/password (HTTP basic); None reads dask config.",
    )
    username: str | None = Field(
        None, max_length=256, description="User name for simple/basic auth."
    )
    password: SecretStr | None = Field(None, description="Password for basic auth (never logged).")
    cluster_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Gateway cluster options exposed by the server (worker_cores, worker_memory, image...).",
    )
    adapt_minimum: int = Field(
        0, ge=0, le=10000, description="Adaptive scaling: fewest workers (used with adapt_maximum)."
    )
    adapt_maximum: int | None = Field(
        None,
        ge=1,
        le=10000,
        description="Adaptive scaling: most workers; None: a fixed cluster of cluster.n_workers (default 2).",
    )

    @model_validator(mode="after")
    def _adapt_range(self) -> GatewayOptions:
        if self.adapt_maximum is not None and self.adapt_maximum < self.adapt_minimum:
            raise ValueError(
                f"gateway.adapt_maximum ({self.adapt_maximum}) is below adapt_minimum ({self.adapt_minimum})"
            )
        return self


_K8S_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"


class KubernetesOptions(_Options):
    """dask-kubernetes operator cluster (a DaskCluster resource)."""

    name: str = Field(
        "ncp-subsidence",
        max_length=50,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="DaskCluster name (DNS-1123 label; pods append suffixes, so at most 50 characters).",
    )
    namespace: str | None = Field(
        None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Kubernetes namespace; None uses the current one.",
    )
    image: str = Field(
        "ghcr.io/ncp-subsidence/ncp-subsidence:0.1.0",
        min_length=1,
        max_length=512,
        description="Container image for scheduler and workers (the repository's Dockerfile).",
    )
    worker_cpu: str = Field(
        "1",
        pattern=_K8S_QUANTITY,
        description="CPU request and limit of each worker, e.g. 1 or 500m.",
    )
    worker_memory: str = Field(
        "4Gi",
        pattern=_K8S_QUANTITY,
        description="Memory request and limit of each worker, e.g. 4Gi.",
    )
    scheduler_cpu: str = Field(
        "1", pattern=_K8S_QUANTITY, description="CPU request and limit of the scheduler."
    )
    scheduler_memory: str = Field(
        "2Gi", pattern=_K8S_QUANTITY, description="Memory request and limit of the scheduler."
    )
    s3_secret: str | None = Field(
        "ncp-s3-credentials",
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) become env vars of every pod; None: none.",
    )
    idle_timeout: int = Field(
        0,
        ge=0,
        le=7 * 24 * 3600,
        description="Seconds without clients after which the operator deletes the cluster; 0 never.",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for every pod."
    )
    tls_secret: str | None = Field(
        "ncp-dask-tls",
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Secret holding ca.crt, tls.crt, tls.key (deploy/README.md says how to make "
        "them): scheduler, workers and clients then talk TLS only (tls://); None: plain TCP.",
    )


class CoiledOptions(_Options):
    """Coiled cluster (needs a Coiled account: `coiled login`)."""

    name: str | None = Field(
        None, max_length=128, description="Coiled cluster name; None lets Coiled choose."
    )
    region: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
        description="Cloud region, e.g. ap-east-1 or us-west-2 (near the data bucket).",
    )
    worker_memory: str = Field(
        "8GiB",
        pattern=r"^[0-9]+(\.[0-9]+)?\s*(GiB|GB|MiB|MB|TiB|TB)$",
        description="Memory of each worker VM, e.g. 8GiB.",
    )
    worker_cpu: int | None = Field(
        None, ge=1, le=512, description="vCPUs of each worker VM; None lets Coiled choose."
    )
    spot_policy: Literal["on-demand", "spot", "spot_with_fallback"] = Field(
        "spot_with_fallback", description="Spot instance policy."
    )
    software: str | None = Field(
        None,
        max_length=256,
        description="Coiled software environment; None (and no container) syncs the local environment.",
    )
    container: str | None = Field(
        None,
        max_length=512,
        description="Container image for scheduler and workers (the repository's image); its entrypoint is ignored.",
    )
    idle_timeout: str | None = Field(
        None,
        max_length=32,
        pattern=r"^[0-9]+\s*(s|seconds?|m|minutes?|h|hours?)$",
        description="Shut down after this long idle, e.g. '20 minutes'; None uses Coiled's default.",
    )

    @model_validator(mode="after")
    def _one_environment(self) -> CoiledOptions:
        if self.software and self.container:
            raise ValueError("coiled: give software or container, not both")
        return self


class ClusterOptions(_Options):
    """Which Dask cluster runs the heavy work. ``cluster.py`` is the only place a client is made."""

    kind: Literal["local", "address", "gateway", "kubernetes", "coiled"] = Field(
        "local",
        description="local: a LocalCluster of processes; address: an existing scheduler; gateway | kubernetes | coiled.",
    )
    n_workers: int | None = Field(
        None, ge=1, le=10000, description="Workers to start (local: default one per core)."
    )
    threads_per_worker: int = Field(
        1, ge=1, le=256, description="Threads per worker; BLAS is pinned to 1 thread."
    )
    memory_limit: str = Field(
        "auto", description="Memory limit per worker (local), e.g. '4GiB' or 'auto'."
    )
    address: str | None = Field(
        None, description="Scheduler address for kind=address, e.g. tcp://127.0.0.1:8786."
    )
    connect_timeout_s: float = Field(
        30.0,
        gt=0.0,
        le=3600.0,
        description="How long to wait for a scheduler (kind=address), seconds.",
    )
    dashboard_address: str = Field(
        "127.0.0.1:0", description="Dashboard bind address (local); port 0 picks a free one."
    )
    gateway: GatewayOptions = Field(
        default_factory=GatewayOptions, description="dask-gateway options."
    )
    kubernetes: KubernetesOptions = Field(
        default_factory=KubernetesOptions, description="dask-kubernetes options."
    )
    coiled: CoiledOptions = Field(default_factory=CoiledOptions, description="Coiled options.")

    @model_validator(mode="after")
    def _address_needed(self) -> ClusterOptions:
        if self.kind == "address" and not self.address:
            raise ValueError(
                "cluster.kind 'address' needs cluster.address, e.g. tcp://127.0.0.1:8786"
            )
        return self


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


class SourceOptions(_Options):
    """One input: a STAC API, a static STAC catalog, or a plain file/URL."""

    kind: Literal[SOURCE_KINDS] = Field(
        "static_catalog",
        description="stac_api (pystac-client search), static_catalog (walked), or file.",
    )
    url: str | list[str] = Field(
        ...,
        description="STAC API root, catalog.json URL, or (kind file) a file path/URL, a glob "
        "(e.g. /data/GRCTellus*.nc) or a list of them: one item per file.",
    )
    collections: list[str] = Field(default_factory=list, description="STAC collections to search.")
    bbox: tuple[float, float, float, float] | None = Field(
        None,
        description="Search box (west, south, east, north) in degrees; None uses the top-level bbox.",
    )
    datetime: str | None = Field(
        None,
        description="RFC 3339 interval, e.g. 2014-10-01/2022-12-31; None uses the top-level one.",
    )
    query: dict[str, Any] = Field(
        default_factory=dict, description="Extra STAC API query (where the server supports it)."
    )
    assets: list[str] = Field(
        default_factory=list,
        description="Asset keys or roles to read; empty uses the reader's defaults.",
    )
    max_items: int | None = Field(
        None, ge=1, le=10_000_000, description="Stop after this many items."
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="HTTP headers (e.g. Authorization for Earthdata); never logged.",
    )
    format: Literal[IFG_FORMATS] = Field(
        "auto",
        description="Interferogram provider whose conventions ingest applies: cog (plain COGs, "
        "the twin), hyp3 (ASF HyP3), licsar (COMET LiCSAR); auto takes the items' ncp:format "
        "(cog when absent).",
    )
    scale_factor: str | None = Field(
        None,
        description="GRACE only: JPL's gain-factor file (CLM4.SCALE_FACTOR.JPL.MSCNv0xCRI.nc, "
        "variable scale_factor, same grid), multiplied in; path or URL.",
    )
    land_mask: str | None = Field(
        None,
        description="GRACE only: land-mask file (JPL LAND_MASK.CRI.nc variable land_mask, or CSR's "
        "LO_val); cells below 0.5 become NaN; path or URL.",
    )

    @model_validator(mode="after")
    def _url_shape(self) -> SourceOptions:
        urls = self.url if isinstance(self.url, list) else [self.url]
        if not urls or any(not str(u).strip() for u in urls):
            raise ValueError(f"url {self.url!r} must be a non-empty path/URL (or a list of them)")
        if isinstance(self.url, list) and self.kind != "file":
            raise ValueError(
                f"url is a list {self.url!r} but kind is {self.kind!r}; only kind: file takes "
                "a list of files or globs (give a STAC API or catalog as one URL)"
            )
        return self

    @model_validator(mode="after")
    def _bbox_order(self) -> SourceOptions:
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise ValueError(
                    f"bbox {list(self.bbox)} must be (west, south, east, north) with west<east, south<north"
                )
        return self


class TwinOptions(_Options):
    """The embedded NCP twin: every input when no source is set (the demo)."""

    preset: Literal["tiny", "demo", "large"] = Field(
        "demo", description="Twin size: tiny (tests), demo (README), large (benchmarks)."
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Random seed; the same seed gives byte-identical products.",
    )
    directory: str | None = Field(
        None, description="Where the twin's products are written; None puts them beside the store."
    )
    layouts: Literal["auto", "cog", "providers"] = Field(
        "auto",
        description="How the twin writes its interferograms: cog (both frames as plain "
        "EPSG:4326 COGs, one STAC item per pair), providers (the west frame in COMET LiCSAR's "
        "layout, the east one as ASF HyP3 INSAR_GAMMA zips on UTM zone 50N, each catalogued by "
        "its provider adapter), auto (cog for the tiny preset, providers for demo and large).",
    )
    fill_unset: bool = Field(
        False,
        description="Take sources left unset from the synthetic twin when others are set "
        "(tests, demos); false refuses a config that sets some sources but not all.",
    )


#: sources a real config may leave unset (the twin does not fill them in for it)
OPTIONAL_SOURCES = ("gnss_series",)


class SourcesOptions(_Options):
    """Inputs by purpose: set none (the twin runs), or all (unless ``twin.fill_unset``)."""

    bbox: tuple[float, float, float, float] = Field(
        (113.5, 34.5, 119.5, 40.5),
        description="Area of interest (west, south, east, north), degrees.",
    )
    datetime: str = Field(
        "2014-10-01/2022-12-31", description="Time of interest, RFC 3339 interval."
    )
    hydro_datetime: str = Field(
        "2002-01-01/2022-12-31",
        description="Time window of GRACE, GLDAS, FLDAS and IMERG (their baselines and the GWSA trend span 2002-2022).",
    )
    interferograms: dict[str, SourceOptions] = Field(
        default_factory=dict,
        description="Interferogram products per frame name (HyP3 or LiCSAR COGs).",
    )
    grace: SourceOptions | None = Field(
        None, description="GRACE/GRACE-FO mascons (CSR RL06, lwe_thickness in cm)."
    )
    gldas: SourceOptions | None = Field(None, description="GLDAS Noah 2.1 monthly (canopy water).")
    fldas: SourceOptions | None = Field(
        None, description="FLDAS Noah monthly (soil moisture, SWE)."
    )
    imerg: SourceOptions | None = Field(None, description="IMERG monthly precipitation.")
    dem: SourceOptions | None = Field(None, description="Digital elevation model.")
    ndvi: SourceOptions | None = Field(None, description="NDVI.")
    evapotranspiration: SourceOptions | None = Field(
        None, description="Evapotranspiration (annual raster, a driving factor)."
    )
    precipitation: SourceOptions | None = Field(
        None, description="Annual precipitation raster (a driving factor)."
    )
    population: SourceOptions | None = Field(None, description="Population density.")
    gdp: SourceOptions | None = Field(None, description="Gross domestic product per cell.")
    building_density: SourceOptions | None = Field(None, description="Built-up area per cell.")
    faults: SourceOptions | None = Field(None, description="Fault lines (GeoJSON).")
    gnss: SourceOptions | None = Field(
        None, description="GNSS velocities (Nevada Geodetic Lab MIDAS format)."
    )
    regions: SourceOptions | None = Field(
        None, description="Region polygons (GeoJSON) for region time series."
    )
    gnss_series: SourceOptions | None = Field(
        None,
        description="Optional: GNSS daily position series (Nevada Geodetic Lab .tenv3, one file "
        "per station; kind file with a glob or list, or a catalog); adjust compares them with "
        "the InSAR series at its held-out stations. Unset: velocities only (the twin's series "
        "when the GNSS velocities come from the twin).",
    )
    twin: TwinOptions = Field(
        default_factory=TwinOptions,
        description="The embedded twin: every input when no source is set; with fill_unset, the unset ones.",
    )
    retries: int = Field(
        4, ge=0, le=20, description="Retries for remote reads (exponential backoff)."
    )
    timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Timeout of one remote request, seconds."
    )

    @property
    def uses_twin(self) -> bool:
        """True when any source is unset, so the twin must exist."""
        names = [
            n
            for n, f in type(self).model_fields.items()
            if f.annotation == (SourceOptions | None) and n not in OPTIONAL_SOURCES
        ]
        return not self.interferograms or any(getattr(self, n) is None for n in names)

    @model_validator(mode="after")
    def _grace_companions(self) -> SourcesOptions:
        for name in type(self).model_fields:
            source = getattr(self, name)
            if name == "grace" or not isinstance(source, SourceOptions):
                continue
            for option in ("scale_factor", "land_mask"):
                if getattr(source, option) is not None:
                    raise ValueError(
                        f"sources.{name}.{option} is set, but only sources.grace takes a "
                        f"{option.replace('_', ' ')} file; move it there or remove it"
                    )
        return self


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


class DiscoverOptions(_Options):
    """Stage ``discover``: find the items each source offers and save them under ``catalog/``."""

    fail_on_empty: bool = Field(
        True, description="Raise when a configured source returns no items."
    )


class IngestOptions(_Options):
    """Stage ``ingest``: stream discovered products into chunked Zarr cubes."""

    chunk_y: int | None = Field(
        None,
        ge=16,
        le=8192,
        description="Spatial chunk rows of interferogram cubes; None sizes chunks to chunk_mb.",
    )
    chunk_x: int | None = Field(
        None,
        ge=16,
        le=8192,
        description="Spatial chunk columns of interferogram cubes; None sizes chunks to chunk_mb.",
    )
    chunk_mb: float = Field(
        128.0,
        ge=8.0,
        le=2048.0,
        description="Target size of one (pair, y, x) chunk when chunk_y/chunk_x are None, MB "
        "(the side is rounded to whole tiles of the frame's files).",
    )
    hydro_time_chunk: int = Field(
        -1, ge=-1, le=10000, description="Time chunk of hydrology cubes; -1 keeps the whole axis."
    )
    on_error: Literal[ON_ERROR] = Field(
        "fail",
        description="Unreadable asset: fail, or fill NaN, count it, log it and record it in attrs.",
    )
    incremental: bool = Field(
        True,
        description="Append new interferograms and months to the previous cubes as new parts "
        "(old chunks untouched); false rewrites every dataset.",
    )
    max_parts: int = Field(
        24,
        ge=1,
        le=1000,
        description="Parts an appended dataset may have; one more rewrites it whole (compaction).",
    )
    frame_grid: Literal[FRAME_GRIDS] = Field(
        "union",
        description="Grid of a frame whose pairs cover different extents: union (every pixel "
        "any pair covers, NaN where a pair does not) or intersection (pixels every pair covers).",
    )
    resample: bool = Field(
        False,
        description="Resample pairs off the frame grid's pixel lattice (other CRS, pixel size or "
        "a fractional offset) and count them; false makes such a pair an error.",
    )
    phase_resampling: Literal[PHASE_RESAMPLINGS] = Field(
        "nearest",
        description="Resampling of unwrapped phase for pairs off the lattice (ingest.resample); "
        "coherence is bilinear, connected components nearest.",
    )


class SBASOptions(_Options):
    """Stage ``sbas``: per-pixel network inversion (Berardino 2002; docs/science.md stage 1)."""

    method: Literal[SBAS_METHODS] = Field(
        "svd",
        description="svd: minimum norm (the paper's); nsbas: temporal constraint across gaps.",
    )
    weights: Literal[SBAS_WEIGHTS] = Field("none", description="Interferogram weights per pixel.")
    looks: int = Field(
        20, ge=1, le=10000, description="Number of looks L for Fisher weights 2L g^2/(1-g^2)."
    )
    rcond: float = Field(
        1e-10,
        ge=1e-12,
        le=1e-3,
        description="Relative singular-value cutoff of the pseudo-inverse.",
    )
    nsbas_kappa: float = Field(
        1e-2, ge=1e-4, le=1.0, description="Weight of the NSBAS temporal-model rows."
    )
    min_pairs_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Minimum valid pairs per pixel as a fraction of all pairs (and at least n_date-1).",
    )
    temporal_coherence_min: float = Field(
        0.7, ge=0.5, le=0.95, description="Pixels below this temporal coherence are masked."
    )
    reference: tuple[float, float] | None = Field(
        None,
        description="Reference point (lon, lat); None selects one automatically (docs/science.md 1.2).",
    )
    closure_check: bool = Field(
        False, description="Drop interferograms with median |triplet closure| > pi/2."
    )


class AdjustOptions(_Options):
    """Stage ``adjust``: GNSS-based ML long-wavelength correction per frame (Mi et al. 2026)."""

    radius_m: float = Field(
        200.0,
        ge=50.0,
        le=10000.0,
        description="Window radius around a station for the InSAR median, metres (50-500 at "
        "~100 m pixels; coarse test grids such as the tiny twin's 0.025 deg need a few km).",
    )
    min_pixels: int = Field(
        5, ge=1, le=1000, description="Valid pixels needed in a station window."
    )
    candidates: list[Literal[CORRECTION_MODELS]] = Field(
        default_factory=lambda: ["P0", "P1", "P2", "P3", "GP", "RF", "GB", "SVR"],
        min_length=1,
        description="Candidate correction models.",
    )
    cv: Literal[CV_SCHEMES] = Field(
        "auto",
        description="Cross-validation: auto is LOO for n<=30 else 5-fold x10, spatial blocks for clustered stations.",
    )
    gp_length_bounds_km: tuple[float, float] = Field(
        (50.0, 1000.0), description="GP length-scale bounds, km."
    )
    tree_smooth_sigma_km: float = Field(
        20.0, ge=0.0, le=200.0, description="Gaussian low-pass of tree-model surfaces, km."
    )
    outlier_k: float = Field(
        3.0, ge=1.0, le=10.0, description="Outlier rejection at k x 1.4826 x MAD."
    )
    max_gradient_mm_yr_km: float = Field(
        20.0, gt=0.0, le=1000.0, description="Stations on steeper InSAR gradients are dropped."
    )
    holdout_fraction: float = Field(
        0.25, ge=0.0, lt=1.0, description="Stations held out for validation, never fitted."
    )
    plate_model: Literal[PLATE_MODELS] = Field("ITRF2014_EURA", description="Plate-motion model.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of CV splits and tree models.")
    holdout_stations: list[str] | None = Field(
        None,
        max_length=100000,
        description="Explicit validation station ids (never fitted); None: seeded split by "
        "holdout_fraction.",
    )
    min_coherence: float = Field(
        0.7, ge=0.0, le=1.0, description="Temporal coherence a window pixel needs."
    )
    correction_spacing_deg: float = Field(
        0.01,
        ge=0.0005,
        le=0.5,
        description="Spacing of the coarse grid the correction surface is predicted on (client) "
        "before bilinear resampling blockwise, degrees.",
    )
    regional_pole_max_abs_vu: float = Field(
        5.0,
        gt=0.0,
        le=100.0,
        description="GNSS_regional: stations with |vertical velocity| above this (mm/yr, in "
        "subsidence zones) are left out of the Euler-pole fit.",
    )
    common_mode_filter: Literal[COMMON_MODE_FILTERS] = Field(
        "median",
        description="Time-series common-mode filter: 'median' re-references the non-linear part "
        "of every displacement series to the frame's median pixel (removes the reference "
        "pixel's date-to-date atmosphere; velocities unchanged); 'none' keeps the SBAS "
        "reference.",
    )
    common_mode_knot_years: float = Field(
        2.0,
        ge=0.5,
        le=20.0,
        description="Knot spacing (years) of the smooth interannual trend the common-mode "
        "filter leaves in every series (only date-to-date and seasonal noise is removed).",
    )
    common_mode_max_pixels: int = Field(
        100_000,
        ge=100,
        le=10_000_000,
        description="Pixels of the regular spatial sample the common mode is the median of.",
    )


class MosaicOptions(_Options):
    """Stage ``mosaic``: overlap adjustment and feathered blending onto one grid."""

    resolution_deg: float = Field(
        0.001, ge=0.0002, le=0.1, description="Output grid spacing, degrees."
    )
    overlap_spacing_km: float = Field(
        1.0, ge=0.1, le=50.0, description="Overlap sampling spacing, km."
    )
    min_overlap_samples: int = Field(
        100, ge=1, le=10**7, description="Overlaps with fewer samples are dropped."
    )
    gnss_weight: float = Field(1.0, ge=0.0, le=1e6, description="lambda_G: weight of GNSS ties.")
    damping: float = Field(1e-6, ge=0.0, le=1.0, description="mu: damping that fixes the datum.")
    feather_km: float = Field(10.0, ge=0.0, le=200.0, description="Feathering distance cap, km.")
    min_coherence: float = Field(
        0.7, ge=0.0, le=1.0, description="Temporal coherence an overlap pixel needs."
    )
    gnss_radius_m: float = Field(
        200.0,
        ge=50.0,
        le=10000.0,
        description="Window radius of the GNSS ties (median vertical velocity), metres.",
    )
    gnss_min_pixels: int = Field(
        5, ge=1, le=1000, description="Valid pixels a GNSS tie window needs."
    )
    chunk: int = Field(
        256,
        ge=16,
        le=8192,
        description="Output chunk size along lat and lon, cells (a block holds every month: ~50 MB at 256).",
    )
    adjusted_frame_model: Literal[FRAME_MODELS] = Field(
        "along_track",
        description="Overlap correction of frames GNSS-adjusted in stage adjust (frames without "
        "GNSS always get a plane + offset): along_track, a cubic spline of the north coordinate "
        "that follows what each frame's GNSS fit left along its overlaps (default); offset "
        "(the reference model of docs/science.md 4.3) or plane.",
    )
    along_track_knot_km: float = Field(
        100.0, ge=10.0, le=2000.0, description="Knot spacing of along_track corrections, km."
    )
    along_track_roughness: float = Field(
        1.0,
        ge=0.0,
        le=1e6,
        description="Weight of the second differences of along_track spline coefficients "
        "(carries the spline across stretches without overlap samples).",
    )


class HydroOptions(_Options):
    """Stage ``hydro``: GRACE downscaling to 0.01 deg and GWSA (Huang et al. 2025, Eq. 6-10)."""

    mode: Literal[DOWNSCALING_MODES] = Field(
        "paper", description="Downscaling form: Eq. 6-9 (paper), ratio or remove_restore."
    )
    interpolation: Literal[INTERPOLATIONS] = Field(
        "cubic", description="Interpolation of the coarse field."
    )
    resolution_deg: float = Field(
        0.01, ge=0.001, le=0.25, description="Target grid spacing, degrees."
    )
    baseline: str = Field(
        "study",
        description="Anomaly baseline: 'study' (study-period mean) or a range like 2004-01/2009-12.",
    )
    gap_fill: Literal[GAP_FILLS] = Field(
        "none", description="GRACE gaps: NaN, or trend+annual+semi-annual fill (flagged)."
    )
    chunk_cells: int = Field(
        250,
        ge=25,
        le=5000,
        multiple_of=25,
        description="Spatial chunk in fine cells (a multiple of 25).",
    )


class FactorsOptions(_Options):
    """Stage ``factors``: driving-factor rasters on the 0.01 deg grid."""

    resolution_deg: float = Field(
        0.01, ge=0.001, le=0.25, description="Factor grid spacing, degrees."
    )
    gwsa_resampling: Literal[GWSA_RESAMPLINGS] = Field(
        "auto",
        description="GWSA trend to the factor grid: auto = cell average from a finer grid, "
        "bilinear from a coarser one.",
    )
    chunk_cells: int = Field(
        512, ge=16, le=8192, description="Spatial chunk of the factors product, cells."
    )


class GeodetectorOptions(_Options):
    """Stage ``geodetector``: factor, interaction, risk and ecological detectors (Wang et al. 2010)."""

    threshold_mm_yr: float = Field(
        -15.0, ge=-200.0, le=0.0, description="Subsidence threshold on vertical velocity, mm/yr."
    )
    ratio: float = Field(
        0.5,
        gt=0.0,
        le=10.0,
        description="Non-subsidence : subsidence sample ratio (1:0.5 in the paper).",
    )
    min_spacing_deg: float = Field(
        0.01, ge=0.0, le=1.0, description="Minimum sample spacing, degrees."
    )
    max_subsidence_samples: int = Field(
        20000, ge=10, le=10**8, description="Cap on subsidence samples."
    )
    n_strata: int = Field(20, ge=2, le=100, description="Strata per continuous factor.")
    discretization: Literal[DISCRETIZATIONS] = Field(
        "natural_breaks", description="How continuous factors are stratified."
    )
    draws: int = Field(
        20, ge=1, le=1000, description="Repeated sample draws (mean and spread of q)."
    )
    permutations: int = Field(199, ge=0, le=10000, description="Permutations for the null of q.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of sampling and permutations.")
    aggregation: Literal[AGGREGATIONS] = Field(
        "median",
        description="Vertical velocity to the factor grid: median or mean of the mosaic pixels "
        "in each factor cell, or the pixel nearest the cell centre.",
    )
    breaks_per_draw: bool = Field(
        False,
        description="Natural breaks from each draw's sample (as [H25]) instead of once from "
        "every valid cell; slower.",
    )
    breaks_sample_size: int = Field(
        5000, ge=100, le=10**6, description="Values used to compute breaks (docs/science.md 7.3)."
    )
    min_stratum_size: int = Field(
        2, ge=1, le=100, description="Strata with fewer samples merge into a neighbour."
    )
    convention: Literal[GEODETECTOR_CONVENTIONS] = Field(
        "R", description="Factor-detector convention (singletons, lambda variance)."
    )
    interaction_convention: Literal[INTERACTION_CONVENTIONS] = Field(
        "wang2010", description="Interaction classification (docs/science.md 7.4 table: wang2010)."
    )
    sensitivity_thresholds: list[float] = Field(
        default_factory=lambda: [-20.0, -15.0, -10.0],
        min_length=0,
        max_length=20,
        description="Thresholds of the sensitivity sweep, mm/yr (each in [-200, 0]).",
    )
    sensitivity_ratios: list[float] = Field(
        default_factory=lambda: [2.0, 1.0, 0.5],
        min_length=0,
        max_length=20,
        description="Non-subsidence per subsidence ratios of the sweep (each in (0, 10]).",
    )
    whole_plain: bool = Field(
        True,
        description="Also run the factor and interaction detectors over every valid mosaic "
        "pixel (Dask reduction).",
    )
    chunk_cells: int = Field(
        256, ge=8, le=8192, description="Factor cells per block side of the whole-plain pass."
    )

    @field_validator("sensitivity_thresholds")
    @classmethod
    def _thresholds_in_range(cls, v: list[float]) -> list[float]:
        bad = [t for t in v if not -200.0 <= t <= 0.0]
        if bad:
            raise ValueError(f"sensitivity thresholds {bad} outside [-200, 0] mm/yr")
        return v

    @field_validator("sensitivity_ratios")
    @classmethod
    def _ratios_in_range(cls, v: list[float]) -> list[float]:
        bad = [r for r in v if not 0.0 < r <= 10.0]
        if bad:
            raise ValueError(f"sensitivity ratios {bad} outside (0, 10]")
        return v


class AnalysisOptions(_Options):
    """Stage ``analysis``: region series, lags, areas, volumes, groundwater loss (docs/science.md 6, 8)."""

    area_threshold_mm_yr: float = Field(
        20.0, ge=5.0, le=50.0, description="tau: area subsiding faster than this, mm/yr."
    )
    kappa: float = Field(
        1.0, ge=0.5, le=1.2, description="Groundwater loss per unit subsidence volume."
    )
    max_lag_months: int = Field(
        12, ge=1, le=36, description="Largest lag of the cross-correlation, months."
    )
    detrend: Literal[DETRENDS] = Field(
        "moving_average",
        description="Pre-processing of both series before the headline lag: moving_average "
        "removes the 2 x 12-month trend-cycle, so the lag is that of the seasonal coupling and "
        "not of the interannual rate changes; linear (the reference method of docs/science.md 6.2) and diff are "
        "always reported beside it.",
    )
    volume_epochs: list[tuple[str, str]] = Field(
        default_factory=lambda: [
            ("2014-12", "2020-12"),
            ("2020-12", "2022-12"),
            ("2014-12", "2022-12"),
        ],
        description="Epoch pairs (YYYY-MM) for subsidence volume.",
    )
    cumulative_epochs: tuple[str, str] = Field(
        ("2014-12", "2022-12"),
        description="First and last epoch (YYYY-MM) of the cumulative subsidence map and its "
        "max / percentile; clamped to the common window of the mosaic (and reported).",
    )
    volume_mode: Literal[VOLUME_MODES] = Field(
        "subsidence_only",
        description="Headline volume: subsidence only, or net with uplift counted negatively "
        "(both are always written).",
    )
    cumulative_percentile: float = Field(
        99.9, ge=90.0, le=100.0, description="Percentile of cumulative subsidence, %."
    )
    min_months: int = Field(
        24, ge=6, le=600, description="Finite months a region series needs for trends and lags."
    )
    lag_period_tolerance: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Report lag k-12 instead of k when its correlation is within this of r(k) "
        "(the annual cycle cannot tell them apart).",
    )
    region_names_property: str = Field(
        "name", min_length=1, max_length=64, description="GeoJSON property naming each region."
    )
    whole_plain_name: str = Field(
        "ncp", min_length=1, max_length=64, description="Name of the whole-grid region series."
    )
    observed_series: dict[str, str] = Field(
        default_factory=dict,
        max_length=100,
        description="Optional observed series per region: region name -> CSV (fsspec URL or path) "
        "with columns date,value (well levels, bulletin storage changes), correlated with GWSA.",
    )
    chunk_cells: int = Field(
        256, ge=16, le=8192, description="Cells per block side of the wide-area Dask reductions."
    )


class ReportOptions(_Options):
    """Stage ``report``: maps, plots, tables and an offline HTML page."""

    dpi: int = Field(110, ge=50, le=600, description="Figure resolution.")
    title: str = Field("North China Plain land subsidence", description="Report title.")
    max_map_cells: int = Field(
        1000,
        ge=100,
        le=10000,
        description="Maps are block-averaged to at most this many cells per side before plotting.",
    )


# --------------------------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------------------------


class Config(_Options):
    """The whole configuration of a run."""

    store: StoreOptions = Field(
        default_factory=StoreOptions, description="Where products are written."
    )
    cluster: ClusterOptions = Field(
        default_factory=ClusterOptions, description="Which Dask cluster computes."
    )
    sources: SourcesOptions = Field(
        default_factory=SourcesOptions, description="Inputs; unset ones come from the twin."
    )
    discover: DiscoverOptions = Field(
        default_factory=DiscoverOptions, description=DiscoverOptions.__doc__
    )
    ingest: IngestOptions = Field(default_factory=IngestOptions, description=IngestOptions.__doc__)
    sbas: SBASOptions = Field(default_factory=SBASOptions, description=SBASOptions.__doc__)
    adjust: AdjustOptions = Field(default_factory=AdjustOptions, description=AdjustOptions.__doc__)
    mosaic: MosaicOptions = Field(default_factory=MosaicOptions, description=MosaicOptions.__doc__)
    hydro: HydroOptions = Field(default_factory=HydroOptions, description=HydroOptions.__doc__)
    factors: FactorsOptions = Field(
        default_factory=FactorsOptions, description=FactorsOptions.__doc__
    )
    geodetector: GeodetectorOptions = Field(
        default_factory=GeodetectorOptions, description=GeodetectorOptions.__doc__
    )
    analysis: AnalysisOptions = Field(
        default_factory=AnalysisOptions, description=AnalysisOptions.__doc__
    )
    report: ReportOptions = Field(default_factory=ReportOptions, description=ReportOptions.__doc__)


# --------------------------------------------------------------------------------------------
# Errors, YAML, redaction
# --------------------------------------------------------------------------------------------


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    """Every error of a pydantic ValidationError as ``path: message (got value)``, one per line."""
    lines = [f"{source}: {err.error_count()} invalid field(s)"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (remove it or check its spelling)"
        shown = "***" if _is_secret_path(path) else repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"  {path}: {msg} (got {shown})")
    return "\n".join(lines)


def from_yaml(text: str) -> dict[str, Any]:
    """Parse YAML text into a plain mapping (an empty document gives ``{}``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Read and validate a YAML config (defaults when ``path`` is None), apply dotted overrides,
    and resolve it (:func:`resolve_config`): the config a run of it uses.

    Raises :class:`ConfigError` listing every invalid field with its path and value.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            data = from_yaml(path.read_text())
        except OSError as err:
            raise ConfigError(f"cannot read config file {str(path)!r}: {err.strerror}") from err
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    return resolve_config(config)


#: Settings that follow the twin preset when left unset on the twin
#: (:func:`ncp_subsidence.synthetic.presets.twin_settings` gives their values).
TWIN_SETTING_KEYS: tuple[str, ...] = (
    "mosaic.resolution_deg",
    "mosaic.overlap_spacing_km",
    "factors.resolution_deg",
    "hydro.resolution_deg",
    "hydro.mode",
)


def resolve_config(config: Config) -> Config:
    """The config a run of ``config`` uses: settings left unset follow its inputs.

    On the twin (no ``sources.interferograms``) the settings of :data:`TWIN_SETTING_KEYS` that
    were not set follow the twin preset (:func:`ncp_subsidence.synthetic.presets.twin_settings`:
    the config's defaults are for real data, the twin's coarser postings need coarser grids);
    on real interferograms they keep their defaults. A setting given explicitly (in the file,
    by ``--set``, as a keyword or by assignment; pydantic's ``model_fields_set``) always wins.
    Values filled in here stay unset, so resolving again after the preset or the sources
    changed follows the change, and resolving a resolved config changes nothing.

    :func:`load_config` and :func:`~ncp_subsidence.pipeline.run_pipeline` both resolve, so the
    CLI, the Python API and the notebooks run one config and get the same fingerprints.

    Returns a resolved copy; ``config`` itself is not changed.
    """
    out = config.model_copy(deep=True)
    twin = not out.sources.interferograms  # the InSAR is the twin's: so are the grids
    if twin:
        from .synthetic.presets import twin_settings  # heavy package: imported only for a twin

        targets = twin_settings(out.sources.twin.preset)
    else:
        targets = {key: _field_default(out, key) for key in TWIN_SETTING_KEYS}
    for dotted, value in targets.items():
        section, name = dotted.split(".")
        options = getattr(out, section)
        if name in options.model_fields_set or getattr(options, name) == value:
            continue  # the user's own value wins, or nothing changes
        setattr(options, name, value)  # validated on assignment, which marks it set ...
        options.__pydantic_fields_set__.discard(name)  # ... but it stays the user's to set
        log.debug("%s = %s (%s)", dotted, value, "the twin preset's" if twin else "the default")
    return out


def _field_default(config: Config, dotted: str) -> Any:
    """The default of the field at ``section.name`` of the config."""
    section, name = dotted.split(".")
    field = type(getattr(config, section)).model_fields[name]
    return field.get_default(call_default_factory=True)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


#: Free-form mappings in the tree whose keys are scanned for credentials.
_FREE_FORM = frozenset({"storage_options", "cluster_options", "env", "query", "headers"})
_SECRET_KEY = re.compile(r"(secret|password|token|key|credential|authorization|session)", re.I)


def _is_secret_path(path: str) -> bool:
    parts = path.split(".")
    in_free_form = any(p in _FREE_FORM for p in parts[:-1])
    return (
        (in_free_form and bool(_SECRET_KEY.search(parts[-1])))
        or parts[-1] in {"password"}
        or "headers" in parts
    )


def redacted_dump(cfg: BaseModel) -> dict[str, Any]:
    """A JSON-able dump of a config with every secret replaced by ``'***'``.

    Secret values are :class:`SecretStr` fields, HTTP headers, any mapping key that looks like a
    credential (key, secret, token, password, ...), and credentials inside URLs (user info,
    ``?token=``, signed query strings; :func:`ncp_subsidence.redaction.redact_text`). This is
    what goes into logs and store attrs.
    """

    def scrub(obj: Any, free_form: bool = False) -> Any:
        if isinstance(obj, SecretStr):
            return "***"
        if isinstance(obj, Mapping):
            out = {}
            for k, v in obj.items():
                secret = (
                    free_form and _SECRET_KEY.search(str(k)) and not isinstance(v, Mapping | bool)
                )
                out[k] = (
                    "***" if (secret and v is not None) else scrub(v, free_form or k in _FREE_FORM)
                )
            return out
        if isinstance(obj, list | tuple):
            return [scrub(v, free_form) for v in obj]
        if isinstance(obj, str):
            return redact_text(obj)  # user:password@ and ?token= inside URLs
        return obj

    raw = cfg.model_dump(mode="python")
    return _jsonable(scrub(raw))


def _jsonable(obj: Any, reveal: bool = False) -> Any:
    """Plain JSON types; a :class:`SecretStr` becomes ``'***'``, or its value with ``reveal``."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, reveal) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v, reveal) for v in obj]
    if isinstance(obj, SecretStr):
        return obj.get_secret_value() if reveal else "***"
    return obj


def to_yaml(cfg: BaseModel, *, comments: bool = True, redact: bool = True) -> str:
    """Write a config as YAML, each field's description as a comment above it.

    Secrets are written as ``'***'`` unless ``redact=False`` (never do that for logs or stores).
    """
    data = redacted_dump(cfg) if redact else _jsonable(cfg.model_dump(mode="python"), reveal=True)
    lines: list[str] = []
    if comments:
        lines.append(f"# ncp_subsidence configuration. {type(cfg).__doc__.strip().splitlines()[0]}")
        lines.append(
            "# Unknown keys are rejected; check a file with `ncp-subsidence config --check FILE`."
        )
    _emit(type(cfg), data, lines, indent=0, comments=comments)
    return "\n".join(lines) + "\n"


def _emit(
    model: type[BaseModel] | None,
    data: Mapping[str, Any],
    lines: list[str],
    indent: int,
    comments: bool,
) -> None:
    pad = "  " * indent
    fields = model.model_fields if model is not None else {}
    for key, value in data.items():
        field = fields.get(key)
        if comments and field is not None and field.description:
            for dl in _wrap(field.description, 96 - len(pad)):
                lines.append(f"{pad}# {dl}")
        sub = _submodel(field.annotation) if field is not None else None
        if isinstance(value, Mapping) and value and sub is not None:
            lines.append(f"{pad}{key}:")
            _emit(sub, value, lines, indent + 1, comments)
        elif (
            isinstance(value, Mapping)
            and value
            and all(isinstance(v, Mapping) for v in value.values())
            and _dict_of_model(field)
        ):
            lines.append(f"{pad}{key}:")
            inner = _dict_of_model(field)
            for k2, v2 in value.items():
                lines.append(f"{pad}  {k2}:")
                _emit(inner, v2, lines, indent + 2, comments)
        else:
            dumped = yaml.safe_dump(
                {key: value}, default_flow_style=True, sort_keys=False, width=10_000
            ).strip()
            if dumped.startswith("{") and dumped.endswith("}"):
                dumped = dumped[1:-1]
            lines.append(f"{pad}{dumped}")


def _submodel(annotation: Any) -> type[BaseModel] | None:
    for cand in _flatten(annotation):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _dict_of_model(field: Any) -> type[BaseModel] | None:
    if field is None:
        return None
    args = getattr(field.annotation, "__args__", ())
    if getattr(field.annotation, "__origin__", None) is dict and len(args) == 2:
        return _submodel(args[1])
    return None


def _flatten(annotation: Any) -> Iterable[Any]:
    args = getattr(annotation, "__args__", None)
    if args and getattr(annotation, "__origin__", None) is not dict:
        for a in args:
            yield from _flatten(a)
    else:
        yield annotation


def _wrap(text: str, width: int) -> list[str]:
    words, out, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            out.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        out.append(line)
    return out
