"""The project's vocabulary: the choices of each option, defined once.

A dependency-free module (no numpy, no pydantic): the config's ``Literal`` types, the stages and
the kernels' registries all take their names from here, so a new choice is added in one place
and a test checks that the registries and the config agree.
"""

from __future__ import annotations

__all__ = [
    "AGGREGATIONS",
    "COMMON_MODE_FILTERS",
    "CORRECTION_MODELS",
    "CV_SCHEMES",
    "DETRENDS",
    "DISCRETIZATIONS",
    "DOWNSCALING_MODES",
    "FACTOR_NAMES",
    "FRAME_GRIDS",
    "FRAME_MODELS",
    "GAP_FILLS",
    "GEODETECTOR_CONVENTIONS",
    "GWSA_RESAMPLINGS",
    "IFG_FORMATS",
    "INTERACTION_CONVENTIONS",
    "INTERPOLATIONS",
    "ON_ERROR",
    "PHASE_RESAMPLINGS",
    "PLATE_MODELS",
    "SBAS_METHODS",
    "SBAS_WEIGHTS",
    "SOURCE_KINDS",
    "VOLUME_MODES",
]

#: Driving factors in Huang et al. (2025) Table 1 order (GWSA trend first).
FACTOR_NAMES: tuple[str, ...] = (
    "gwsa_trend",
    "dem",
    "precipitation",
    "evapotranspiration",
    "ndvi",
    "fault_density",
    "building_density",
    "population",
    "gdp",
)

#: Interferogram weightings of the SBAS inversion (``sbas.weights``): unit weights (Berardino),
#: clipped coherence, or Fisher information ``2 L g^2 / (1 - g^2)`` (docs/science.md 1.2). Each has
#: its entry in ``kernels.sbas.WEIGHTINGS``.
SBAS_WEIGHTS: tuple[str, ...] = ("none", "coherence", "fisher")

#: Discretizations of a continuous factor into strata (``geodetector.discretization``; docs/science.md
#: 7.3): Fisher-Jenks natural breaks, quantiles, equal intervals, geometric progression, standard
#: deviation classes, and the OPGD search over those five and k = 3..20 (``optimal``). Each has
#: its entry in ``kernels.discretize.DISCRETIZERS``.
DISCRETIZATIONS: tuple[str, ...] = (
    "natural_breaks",
    "quantile",
    "equal_interval",
    "geometric",
    "std",
    "optimal",
)

#: How a source is read (``sources.<x>.kind``): a STAC API search, a static catalog walk, or files.
SOURCE_KINDS: tuple[str, ...] = ("stac_api", "static_catalog", "file")

#: Interferogram provider conventions (``sources.interferograms.<frame>.format``); each but ``auto`` has its adapter in ``io.products``.
IFG_FORMATS: tuple[str, ...] = ("auto", "cog", "hyp3", "licsar")

#: What ingest does with an unreadable asset (``ingest.on_error``).
ON_ERROR: tuple[str, ...] = ("fail", "nan")

#: The frame grid of pairs on different extents (``ingest.frame_grid``).
FRAME_GRIDS: tuple[str, ...] = ("union", "intersection")

#: Resampling of off-lattice phase when ``ingest.resample`` is on (``ingest.phase_resampling``).
PHASE_RESAMPLINGS: tuple[str, ...] = ("nearest", "bilinear", "cubic")

#: SBAS inversions (``sbas.method``; docs/science.md 1.2): minimum-norm SVD, or NSBAS with a temporal model.
SBAS_METHODS: tuple[str, ...] = ("svd", "nsbas")

#: Per-frame correction models (``adjust.candidates``; docs/science.md 3.2 step 4); ``models.selection.MODEL_ORDER`` ranks the same names by simplicity.
CORRECTION_MODELS: tuple[str, ...] = ("P0", "P1", "P2", "P3", "GP", "RF", "GB", "SVR")

#: Cross-validation of the correction models (``adjust.cv``; docs/science.md 3.2 step 5).
CV_SCHEMES: tuple[str, ...] = ("auto", "loo", "kfold", "spatial_block")

#: Plate-motion models (``adjust.plate_model``; docs/science.md 4.2).
PLATE_MODELS: tuple[str, ...] = ("ITRF2014_EURA", "GNSS_regional")

#: Common-mode filters of the displacement series (``adjust.common_mode_filter``).
COMMON_MODE_FILTERS: tuple[str, ...] = ("median", "none")

#: Overlap corrections of GNSS-adjusted frames (``mosaic.adjusted_frame_model``; docs/science.md 4.3).
FRAME_MODELS: tuple[str, ...] = ("offset", "plane", "along_track")

#: GRACE downscaling modes (``hydro.mode``; docs/science.md 5.3).
DOWNSCALING_MODES: tuple[str, ...] = ("paper", "ratio", "remove_restore")

#: Interpolation of the coarse fields to the fine grid (``hydro.interpolation``).
INTERPOLATIONS: tuple[str, ...] = ("cubic", "bilinear", "nearest")

#: Filling of the GRACE/GRACE-FO gap (``hydro.gap_fill``; docs/science.md 5.2).
GAP_FILLS: tuple[str, ...] = ("none", "harmonic")

#: Resampling of the GWSA trend to the factor grid (``factors.gwsa_resampling``).
GWSA_RESAMPLINGS: tuple[str, ...] = ("auto", "average", "bilinear", "nearest")

#: Mosaic pixels to one factor cell (``geodetector.aggregation``; docs/science.md 7.2).
AGGREGATIONS: tuple[str, ...] = ("median", "mean", "centre")

#: Variance conventions of the factor detector (``geodetector.convention``).
GEODETECTOR_CONVENTIONS: tuple[str, ...] = ("R", "pypi")

#: Interaction-type conventions (``geodetector.interaction_convention``; docs/science.md 7.4).
INTERACTION_CONVENTIONS: tuple[str, ...] = ("wang2010", "R", "pypi")

#: Pre-processing of series before lag correlation (``analysis.detrend``; docs/science.md 6.2).
DETRENDS: tuple[str, ...] = ("none", "linear", "moving_average", "seasonal", "diff")

#: What the volume counts (``analysis.volume_mode``; docs/science.md 8.3).
VOLUME_MODES: tuple[str, ...] = ("subsidence_only", "net")
