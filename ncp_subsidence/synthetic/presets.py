"""Size presets of the NCP twin.

Every preset covers the NCP bbox (113.5-119.5 E, 34.5-40.5 N) with two adjacent ascending frames
``A040`` (113.5-116.7 E) and ``A142`` (116.3-119.5 E), 34.5-40.5 N, overlapping by 0.4 deg. Sizes
scale with the InSAR posting, the number of dates and the fine product grid.

=========  =========  ==========  ============  =====  ==========  =========  ===========
preset     posting    frame grid  date spacing  dates  pairs       fine grid  GNSS
           (deg)      (rows x     (nominal,     per    per frame   (deg,
                      cols)       days)         frame  (~)         rows x cols)
=========  =========  ==========  ============  =====  ==========  =========  ===========
tiny       0.025      240 x 128   108           ~25    ~47         0.05 120^2  40
demo       0.0125     480 x 256   48            ~56    ~110        0.01 600^2  120
large      0.004      1500 x 800  12            ~220   ~650        0.01 600^2  300
=========  =========  ==========  ============  =====  ==========  =========  ===========

With ``layouts="providers"`` (the default of ``demo`` and ``large``) the east frame is laid out
on UTM zone 50N at ``utm_posting_m`` = posting x 111.195 km, to 10 m (tiny 2780 m, demo 1390 m,
large 440 m): 237 x 100, 476 x 199 and 1506 x 627 pixels.

Dates start 2014-11-29 (A040) and 2014-12-05 (A142) on the Sentinel-1 12-day grid and run to the
end of 2022; every ``date_step``-th slot is kept and a seeded ~8 % of them dropped (gaps). Each date
is paired with its ``neighbours`` next dates. Hydrology truth is stored monthly on a 0.05 deg grid
(``hydro_resolution_deg``) in every preset; ``truth.gwsa_field`` evaluates it anywhere.
Measured write times and sizes are in the report of issue 3 and in ``docs`` once the lead adds
them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LAYOUTS", "PRESETS", "Preset", "resolve_layouts", "twin_settings"]

#: Interferogram layouts of the twin (``write_twin(layouts=...)``, ``sources.twin.layouts``).
LAYOUTS = ("auto", "cog", "providers")


@dataclass(frozen=True)
class Preset:
    """Sizes of one twin preset.

    Parameters
    ----------
    name : str
        Preset name.
    posting_deg : float
        InSAR geocoded pixel spacing, degrees.
    date_step : int
        Keep every ``date_step``-th slot of the 12-day Sentinel-1 repeat.
    neighbours : int
        Each date is paired with this many following dates.
    fine_resolution_deg : float
        Resolution of the truth / factor product grid, degrees.
    hydro_resolution_deg : float
        Resolution of the monthly hydrology truth (GWSA, TWSA...), degrees.
    n_gnss : int
        Number of GNSS stations.
    drop_fraction : float
        Fraction of acquisition slots dropped at random (gaps).
    """

    name: str
    posting_deg: float
    date_step: int
    neighbours: int
    fine_resolution_deg: float
    hydro_resolution_deg: float
    n_gnss: int
    drop_fraction: float = 0.08


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", 0.025, 9, 2, 0.05, 0.05, 40),
    "demo": Preset("demo", 0.0125, 4, 2, 0.01, 0.05, 120),
    "large": Preset("large", 0.004, 1, 3, 0.01, 0.05, 300),
}


def twin_settings(preset: str) -> dict[str, float | str]:
    """Config values (dotted keys) that suit a twin preset; a user's own values win.

    Applied by :func:`ncp_subsidence.config.resolve_config` (so by ``load_config``, the CLI and
    ``run_pipeline`` alike) to the settings of a twin config that were not set; the keys are
    :data:`ncp_subsidence.config.TWIN_SETTING_KEYS`.

    Grids: the defaults of the config are for real data (0.001 deg mosaic, 0.01 deg factors and
    GWSA, 1 km overlap cells); the twin's coarser postings need coarser grids, else the mosaic
    is mostly empty cells and the overlap cells hold no pixel.

    Downscaling: ``hydro.mode = remove_restore``. Eq. 6-9 as Huang et al. 2025 write them (the
    config default, ``paper``) replace GRACE's monthly climatology with the land-surface
    model's, which holds no groundwater, so the seasonal groundwater cycle, and with it every
    GWSA -> deformation lag, is lost (``tests/test_hydro_twin.py`` shows it on the twin). The
    twin's truth has that cycle, so the twin runs the mass-conserving mode that keeps it;
    ``--set hydro.mode=paper`` reproduces the paper.
    """
    p = PRESETS[preset]
    km = p.posting_deg * 111.2
    return {
        "mosaic.resolution_deg": p.posting_deg,
        "mosaic.overlap_spacing_km": round(4 * km, 3),
        "factors.resolution_deg": p.fine_resolution_deg,
        "hydro.resolution_deg": p.hydro_resolution_deg,
        "hydro.mode": "remove_restore",
    }


def resolve_layouts(layouts: str, preset: str) -> str:
    """The twin's interferogram layout: ``cog`` or ``providers``.

    ``auto`` is ``cog`` for ``tiny`` (tests: every frame plain EPSG:4326 COGs, seconds to
    write) and ``providers`` for ``demo`` and ``large`` (LiCSAR + HyP3 on UTM, so the README's
    run goes through both provider adapters and a projected frame).
    """
    if layouts not in LAYOUTS:
        raise ValueError(f"unknown twin layouts {layouts!r}; choose one of {list(LAYOUTS)}")
    if layouts == "auto":
        return "cog" if preset == "tiny" else "providers"
    return layouts
