"""MIDAS GNSS station velocities (Nevada Geodetic Laboratory, Blewitt et al. 2016).

Provider conventions (``midas.IGS14.txt``, ``midas.IGS20.txt``): one whitespace-separated line
per station, 27 columns (:data:`MIDAS_COLUMNS`): station id, MIDAS version, first and last
epoch (decimal years), duration (years), epoch and pair counts, east/north/up velocities and
their uncertainties in **m/yr**, offsets, outlier fractions, standard deviations, number of
steps, then latitude, longitude (degrees; NGL writes some longitudes **below -180**, e.g.
00NA at -229.156 = 130.844 E) and ellipsoidal height (m).

:func:`read_midas` returns the project's station table (velocities in mm/yr, longitudes in
-180..180) after a quality screen, and a report of what it changed or dropped:

* lines that do not have 27 fields or whose numbers do not parse (``malformed``);
* rows with a non-finite velocity, sigma or position (``nan``);
* rows with a sigma <= 0 (``nonpositive_sigma``): a weight of infinity or undefined;
* repeated station ids (``duplicate``): the row with the longer series (``duration``) is kept,
  the first of equal ones.

Each kind is logged in one line; nothing is dropped silently.

References
----------
Blewitt, G., Kreemer, C., Hammond, W. C., Gazeaux, J. (2016). MIDAS robust trend estimator for
accurate GPS station velocities without step detection. J. Geophys. Res. Solid Earth 121,
2054-2068, doi:10.1002/2015JB012552.
"""

from __future__ import annotations

import logging
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from ...errors import DataError
from ._gridded import normalise_lon

__all__ = ["MIDAS_COLUMNS", "read_midas"]

log = logging.getLogger(__name__)

#: the 27 columns of a MIDAS velocity line (velocities, sigmas in m/yr; lat, lon deg; height m)
MIDAS_COLUMNS = (
    "station", "version", "t_first", "t_last", "duration", "n_epochs", "n_good", "n_pairs",
    "ve", "vn", "vu", "se", "sn", "su", "oe", "on", "ou", "fe", "fn", "fu",
    "sde", "sdn", "sdu", "n_steps", "lat", "lon", "height",
)  # fmt: skip

_VELOCITY = ("ve", "vn", "vu")
_SIGMA = ("se", "sn", "su")
#: output columns (velocities and sigmas in mm/yr)
TABLE_COLUMNS = (
    "station", "lon", "lat", "height", "ve", "vn", "vu", "se", "sn", "su", "t_first", "t_last",
)  # fmt: skip


def _read_lines(href: str) -> list[str]:
    url = href[len("file://") :] if href.startswith("file://") else href
    try:
        with fsspec.open(url, "rt") as f:
            return f.read().splitlines()
    except FileNotFoundError as err:
        raise DataError(f"MIDAS velocity file {href} not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read MIDAS velocity file {href}: {err}") from err


def read_midas(href: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read and screen a MIDAS velocity file.

    Parameters
    ----------
    href : str
        Local path or fsspec URL of a MIDAS file (or an extract of one).

    Returns
    -------
    table : pandas.DataFrame
        One row per kept station, in file order, columns ``station`` (str), ``lon`` (degrees,
        normalised to -180..180), ``lat`` (degrees), ``height`` (m), ``ve, vn, vu`` (velocity,
        mm/yr = file m/yr x 1000), ``se, sn, su`` (1-sigma, mm/yr), ``t_first, t_last``
        (decimal years).
    report : dict
        ``n_lines`` (data lines read), ``n_kept``, ``n_lon_normalised`` (longitudes moved into
        -180..180), ``n_malformed`` and ``malformed_lines`` (1-based line numbers),
        ``n_nan``, ``n_nonpositive_sigma``, ``n_duplicate``, and ``dropped``: a dict of the
        station ids dropped per kind (``nan``, ``nonpositive_sigma``, ``duplicate``).

    Raises
    ------
    DataError
        The file is missing or unreadable, or no station survives the screen.
    """
    lines = _read_lines(href)
    rows: list[list[Any]] = []
    malformed: list[int] = []
    n_lines = 0
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or line.lstrip().startswith("#"):
            continue
        n_lines += 1
        if len(parts) != len(MIDAS_COLUMNS):
            malformed.append(number)
            continue
        try:
            rows.append([parts[0], parts[1], *map(float, parts[2:])])
        except ValueError:
            malformed.append(number)
    if malformed:
        log.warning(
            "%s: %d malformed MIDAS line(s) skipped (first at line %d)",
            href,
            len(malformed),
            malformed[0],
        )
    raw = pd.DataFrame(rows, columns=list(MIDAS_COLUMNS))
    table = pd.DataFrame(
        {
            "station": raw["station"].astype(str),
            "lon": normalise_lon(raw["lon"].to_numpy(dtype=np.float64)),
            "lat": raw["lat"].astype(np.float64),
            "height": raw["height"].astype(np.float64),
        }
    )
    raw_lon = raw["lon"].to_numpy(dtype=np.float64)
    wrapped = int(np.sum((raw_lon < -180.0) | (raw_lon >= 180.0)))
    if wrapped:
        log.info("%s: %d longitude(s) moved into -180..180", href, wrapped)
    for c in (*_VELOCITY, *_SIGMA):
        table[c] = raw[c].to_numpy(dtype=np.float64) * 1000.0  # m/yr -> mm/yr
    table["t_first"] = raw["t_first"].astype(np.float64)
    table["t_last"] = raw["t_last"].astype(np.float64)
    duration = raw["duration"].to_numpy(dtype=np.float64)

    numeric = table[["lon", "lat", "height", *_VELOCITY, *_SIGMA]].to_numpy()
    nan = ~np.all(np.isfinite(numeric), axis=1)
    nonpositive = ~nan & np.any(table[list(_SIGMA)].to_numpy() <= 0.0, axis=1)
    usable = ~nan & ~nonpositive
    # duplicates among usable rows: keep the longest series, the first of equal ones
    duplicate = np.zeros(len(table), dtype=bool)
    ids = table["station"].to_numpy()
    for station in pd.unique(ids[usable]):
        at = np.flatnonzero(usable & (ids == station))
        if at.size > 1:
            span = np.where(np.isfinite(duration[at]), duration[at], -np.inf)
            keep = at[int(np.argmax(span))]  # argmax returns the first of equal maxima
            duplicate[at[at != keep]] = True
    kinds = {"nan": nan, "nonpositive_sigma": nonpositive, "duplicate": duplicate}
    dropped = {kind: [str(s) for s in ids[mask]] for kind, mask in kinds.items()}
    for kind, names in dropped.items():
        if names:
            log.warning("%s: dropped %d station row(s) for %s: %s", href, len(names), kind, names)
    kept = table[usable & ~duplicate].reset_index(drop=True)
    report: dict[str, Any] = {
        "n_lines": n_lines,
        "n_kept": len(kept),
        "n_lon_normalised": wrapped,
        "n_malformed": len(malformed),
        "malformed_lines": malformed,
        "n_nan": int(nan.sum()),
        "n_nonpositive_sigma": int(nonpositive.sum()),
        "n_duplicate": int(duplicate.sum()),
        "dropped": dropped,
    }
    if kept.empty:
        raise DataError(
            f"MIDAS velocity file {href} holds no usable station line ({n_lines} line(s): "
            f"{len(malformed)} malformed, {int(nan.sum())} with NaN, "
            f"{int(nonpositive.sum())} with sigma <= 0)"
        )
    return kept[list(TABLE_COLUMNS)], report
