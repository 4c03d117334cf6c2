"""Stage ``sbas``: per-frame SBAS network inversion as a blockwise Dask graph (graph building only).

This module is the xarray/dask wrapper over :mod:`ncp_subsidence.kernels.sbas`: it derives the
pair network from the ``reference``/``secondary`` coordinates, references the phase to a
reference window lazily, and maps :func:`~ncp_subsidence.kernels.sbas.invert_network` over
``(y, x)`` chunks with ``xarray.apply_ufunc`` (pair axis whole in every chunk, explicit core dims,
dtypes and sizes). Building the graph computes nothing; results do not depend on the chunking.

Input (``ingest/ifg/<frame>``, docs/design.md section 2): ``unw_phase(pair, y, x)`` radians, optional
``coherence(pair, y, x)``, coords ``reference(pair)`` and ``secondary(pair)`` (datetime64 of the
two acquisitions). Output (``sbas/<frame>``): ``displacement(time, y, x)`` mm LOS relative to the
first date, ``velocity``/``velocity_std`` mm/yr, ``temporal_coherence``, ``rms_residual`` rad,
``n_pairs``, ``n_components``, on the frame's own grid and CRS (``attrs["crs"]`` and the
``spatial_ref`` coordinate; ``x``/``y`` in degrees for EPSG:4326, metres for UTM).

References
----------
Berardino P et al. 2002, IEEE TGRS 40(11):2375-2383, Eq. 3-5; Pepe A, Lanari R 2006, IEEE TGRS
44(9); López-Quiroz P et al. 2009, J. Appl. Geophys. 69(1); Doin M-P et al. 2011, Fringe;
Yunjun Z, Fattahi H, Amelung F 2019, Computers & Geosciences 133:104331.
"""

from __future__ import annotations

from ncp_subsidence.errors import DataError

from ..pipeline import Stage, StageContext
from ._sbas_invert import invert_dataset, invert_frame
from ._sbas_network import drop_empty_pairs, network_from_dataset
from ._sbas_reference import choose_reference

__all__ = [
    "STAGE",
    "SBASStage",
    "choose_reference",
    "drop_empty_pairs",
    "invert_dataset",
    "network_from_dataset",
]


class SBASStage(Stage):
    """Pipeline stage ``sbas``: invert every frame of ``ingest/ifg/<frame>`` into ``sbas/<frame>``.

    The reference point is ``sbas.reference`` (lon, lat) where it lies inside the frame, else
    one chosen by :func:`choose_reference` (docs/science.md 1.2). Each frame is inverted on its own
    grid and keeps its CRS (EPSG:4326 degrees, or a projected CRS such as HyP3's UTM zones, x/y
    in metres): GNSS stations and the configured reference are transformed to the frame's x/y;
    ``reference_x``/``reference_y`` are frame coordinates, ``reference_lon``/``reference_lat``
    the same point in degrees. Pixels whose temporal coherence is
    below ``sbas.temporal_coherence_min`` keep their quality layers but get NaN displacement and
    velocity. Interferograms with no valid phase at any pixel (unreadable under
    ``ingest.on_error: nan``, or empty files) are dropped from the network first
    (:func:`drop_empty_pairs`: logged, and recorded as ``n_dropped_pairs``/``dropped_pairs``,
    ``dropped_dates``, ``n_network_components`` in the attrs). The output keeps the input's
    spatial chunks and holds the whole time axis.
    """

    name = "sbas"
    reads: tuple[str, ...] = ("ingest",)

    def run(self, ctx: StageContext) -> None:
        frames = [
            d.split("/", 1)[1] for d in ctx.upstream_datasets("ingest") if d.startswith("ifg/")
        ]
        if not frames:
            raise DataError("ingest holds no interferogram frame (ifg/<frame>); nothing to invert")
        gnss = None
        if "gnss" in ctx.upstream_datasets("ingest"):
            gnss = ctx.open("ingest", "gnss").load()
        for frame in frames:
            ds, dropped = drop_empty_pairs(ctx.open("ingest", f"ifg/{frame}"), frame=frame)
            out = invert_frame(ds, ctx.options, frame=frame, gnss=gnss, dropped=dropped)
            ctx.write(frame, out, region_dim="y")


STAGE = SBASStage()
