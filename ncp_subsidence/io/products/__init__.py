"""Provider adapters: each knows one provider's file names, metadata, units, no-data and
geometry, and turns its products into the project's canonical schema.

Interferogram providers (issue 16) deliver no STAC catalog; the adapters do two jobs:

* **catalog** (``items_from_source``): walk a provider's folder tree / zips and make one
  :class:`pystac.Item` per pair in the project's interferogram item schema (below), which
  :func:`ncp_subsidence.io.products.catalog.write_catalog` saves as a static catalog;
* **read** (:class:`IfgAdapter`): the conventions :func:`ncp_subsidence.io.readers.read_ifg_stack`
  applies to the raw rasters (no-data, scaling, units) and the frame's look geometry.

Interferogram item schema (every adapter writes these; ingest reads nothing else)
---------------------------------------------------------------------------------
``id``                  LiCSAR ``<frame>_<d1>_<d2>``; HyP3 the product name
``datetime``            reference acquisition (UTC); ``start_datetime`` reference,
                        ``end_datetime`` secondary acquisition
``ncp:format``          adapter name: ``"licsar"`` | ``"hyp3"`` | ``"cog"`` (the twin's plain COGs)
``ncp:frame``           frame id (LiCSAR frame id; HyP3 ``--frame`` or ``<A|D><relative orbit>``)
``sat:orbit_state``, ``sat:relative_orbit``, ``sar:instrument_mode``, ``sar:frequency_band``,
``sar:center_frequency``, ``sar:polarizations``, ``sar:product_type``, ``platform``,
``constellation``
``proj:code``, ``proj:shape``, ``proj:transform``, ``proj:bbox``  read from the phase file
``<provider>:*``        extras (``hyp3:baseline`` m, ``hyp3:heading`` deg, looks, reference
                        point, granules; ``licsar:baseline`` m ...)
assets                  ``unw_phase`` (roles data), ``corr`` (roles data, coherence); geometry:
                        HyP3 ``lv_theta``, ``lv_phi`` (radians, per pair); LiCSAR ``los_e``,
                        ``los_n``, ``los_u`` (frame unit vector ground->satellite), optional
                        ``dem``/``hgt``, ``conncomp``, ``water_mask``. Zip members are GDAL
                        ``/vsizip/`` paths (``/vsizip/vsicurl/https://...`` remote).
"""

from __future__ import annotations

from typing import Any, Protocol

from ...errors import DataError

__all__ = ["IFG_FORMATS", "IfgAdapter", "ifg_adapter"]


class IfgAdapter(Protocol):
    """What ingest needs from an interferogram provider."""

    name: str
    #: asset keys of unwrapped phase and coherence in the provider's items
    phase_asset: str
    coherence_asset: str

    def canonical_block(self, phase: Any, coherence: Any) -> tuple[Any, Any]:
        """Raw phase and coherence blocks (numpy, float32, file no-data already NaN) to the
        canonical ones: phase in radians with NaN for no data, coherence 0-1 with NaN."""

    def geometry(self, items: list[Any], grid: Any) -> dict[str, Any] | None:
        """``incidence`` (degrees) and ``los_east/north/up`` (ground->satellite unit vector)
        as ``(y, x)`` float32 arrays on ``grid`` (:class:`~ncp_subsidence.io.readers.Grid`),
        or None when the items carry no geometry."""

    def attrs(self) -> dict[str, str]:
        """Attributes recorded on the ingested frame: provider, units and sign conventions."""


IFG_FORMATS = ("cog", "hyp3", "licsar")


def ifg_adapter(name: str) -> IfgAdapter:
    """The adapter called ``name`` (the items' ``ncp:format`` or ``SourceOptions.format``)."""
    if name == "hyp3":
        from . import hyp3

        return hyp3.ADAPTER
    if name == "licsar":
        from . import licsar

        return licsar.ADAPTER
    if name == "cog":
        from . import cog

        return cog.ADAPTER
    raise DataError(
        f"unknown interferogram format {name!r}; expected one of {list(IFG_FORMATS)} "
        "(set sources.interferograms.<frame>.format or the items' ncp:format)"
    )
