"""The twin manifest: what ``write_twin`` wrote and where (``OUT/twin.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_NAME", "TwinManifest", "load_manifest"]

MANIFEST_NAME = "twin.json"
_PATH_FIELDS = (
    "catalog",
    "items_ndjson",
    "collections_json",
    "truth",
    "truth_readme",
    "gnss_midas",
    "faults_geojson",
    "cities_geojson",
)


@dataclass
class TwinManifest:
    """Description of a written twin.

    Attributes
    ----------
    root : Path
        Output directory.
    preset : str
        Preset name (``tiny``, ``demo``, ``large``).
    seed : int
        Seed.
    noise : bool
        False when written without atmosphere, noise, phase offsets, unwrapping errors and
        decorrelation (noise-free products for round-trip tests).
    catalog : Path
        Static STAC catalog root ``catalog.json``.
    items_ndjson : Path
        Every STAC item, one per line, each with ``collection``.
    collections_json : Path
        JSON list of every collection (for STAC API servers).
    truth : Path
        Truth Zarr store.
    truth_readme : Path
        README of the truth store variables.
    gnss_midas : Path
        MIDAS velocity file.
    faults_geojson, cities_geojson : Path
        Vector files.
    frames : list of str
        Frame names, west to east.
    collections : dict
        Source key -> collection id. Keys: ``interferograms/<frame>`` for every frame, ``grace``,
        ``gldas``, ``fldas``, ``imerg``, ``dem``, ``ndvi``, ``evapotranspiration``,
        ``population``, ``gdp``, ``building_density``, ``precipitation``, ``faults``, ``gnss``,
        ``gnss_series`` (the stations' ``.tenv3`` files; absent from twins written before it),
        ``regions``.
    frame_collections : dict
        Frame -> interferogram collection id.
    layouts : str
        ``cog`` (every frame as plain EPSG:4326 COGs in the twin's catalog) or ``providers``
        (the west frame in LiCSAR's layout, the east one as HyP3 zips on UTM zone 50N).
    frame_sources : dict
        Frame -> record of a provider-layout frame: ``format`` (``licsar`` | ``hyp3``),
        ``path`` (its files, relative to ``root``), ``frame_id`` and ``catalog`` (the static
        catalog its adapter made, relative to ``root``; the pipeline discovers the frame there).
        Empty for ``cog``.
    grids : dict
        ``bbox`` (west, south, east, north), ``fine_resolution_deg``, ``fine_shape`` (rows, cols),
        ``hydro_resolution_deg``, ``hydro_shape``, ``grace_resolution_deg`` (0.25),
        ``fldas_resolution_deg`` (0.1), ``insar_posting_deg`` and ``frames``: frame ->
        {``bbox`` (lon/lat), ``shape``, ``transform`` (GDAL affine, 6 numbers, in ``crs``
        units), ``crs`` (EPSG:4326, or EPSG:32650 for a HyP3 frame, with ``posting_m``),
        ``layout``, ``relative_orbit``, ``heading_deg``, ``n_dates``, ``n_pairs``,
        ``first_date``, ``last_date``}.
    fine_resolution_deg : float
        Fine (factor / truth) grid resolution, degrees.
    gnss_holdout : list of str
        Station ids held out for validation.
    sizes : dict
        ``n_files``, ``n_bytes`` (all files but ``items.ndjson`` and ``catalogs/``),
        ``insar_bytes``, ``n_items``, ``n_pairs``, ``n_gnss``.
    """

    root: Path
    preset: str
    seed: int
    noise: bool
    catalog: Path
    items_ndjson: Path
    collections_json: Path
    truth: Path
    truth_readme: Path
    gnss_midas: Path
    faults_geojson: Path
    cities_geojson: Path
    frames: list[str]
    collections: dict[str, str]
    frame_collections: dict[str, str]
    grids: dict[str, Any]
    fine_resolution_deg: float
    gnss_holdout: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    layouts: str = "cog"
    frame_sources: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise with paths relative to ``root`` (deterministic bytes)."""
        d = asdict(self)
        root = Path(self.root)
        d.pop("root")
        for k in _PATH_FIELDS:
            d[k] = Path(d[k]).relative_to(root).as_posix()
        return json.dumps(d, indent=1, sort_keys=True) + "\n"

    def write(self) -> Path:
        """Write ``root/twin.json`` and return its path."""
        path = Path(self.root) / MANIFEST_NAME
        path.write_text(self.to_json())
        return path


def load_manifest(directory: str | Path) -> TwinManifest:
    """Read ``twin.json`` of a twin written by ``write_twin``.

    Parameters
    ----------
    directory : str or Path
        The twin's output directory.

    Returns
    -------
    TwinManifest
        With absolute paths.
    """
    root = Path(directory).resolve()
    path = root / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in {root}; write a twin there first with "
            "`ncp-subsidence twin --out DIR` or ncp_subsidence.synthetic.write_twin(DIR)"
        )
    d = json.loads(path.read_text())
    for k in _PATH_FIELDS:
        d[k] = root / d[k]
    return TwinManifest(root=root, **d)
