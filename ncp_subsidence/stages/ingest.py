"""Stage ``ingest``: stream the discovered products into chunked Zarr cubes.

Datasets written (``ingest/<version>/...``):

``ifg/<frame>``
    ``unw_phase``, ``coherence`` ``(pair, y, x)`` float32 (pair axis one chunk, spatial chunks
    ``ingest.chunk_y x ingest.chunk_x``, or sized to ``ingest.chunk_mb``), ``incidence``,
    ``los_east/north/up`` ``(y, x)``; coords ``reference(pair)``, ``secondary(pair)``; the
    frame's native CRS (``attrs["crs"]`` and ``spatial_ref``; UTM stays UTM). The provider's
    adapter (:func:`~ncp_subsidence.io.products.ifg_adapter`, chosen by
    ``sources.interferograms.<frame>.format`` or the items' ``ncp:format``) turns its no-data,
    scaling and geometry into the canonical schema; its ``attrs()`` and ``ifg_format`` are
    recorded. Pairs on different extents share one frame grid (``ingest.frame_grid``: union or
    intersection) on their pixel lattice; a pair off it is an error unless ``ingest.resample``
    (then counted: ``n_resampled_pairs``). A pair listed twice is kept once
    (``n_duplicate_pairs``). Read lazily window by window (pairs on the lattice directly with
    rasterio, resampled ones through stackstac), so each task reads only its window of each file:
    memory is bounded by the chunk size.
``hydro/grace``, ``hydro/gldas``, ``hydro/fldas``, ``hydro/imerg``
    Monthly ``(time, lat, lon)`` on each product's native grid, in mm of water (docs/science.md 5.2):
    ``grace_twsa`` (GRACE cm x 10), ``canopy_water`` (GLDAS kg m-2), ``soil_moisture`` (FLDAS
    volume fractions x layer thickness, 0-2 m), ``swe``, ``evapotranspiration`` and
    ``precipitation`` (mm/month). ``time`` is the mid-month date.
``factors``
    Driving-factor rasters resampled to the factor grid (``factors.resolution_deg`` over
    ``sources.bbox``) from each file's own CRS and transform (any CRS and pixel shape; cell
    average where the file is finer, bilinear where coarser; a file without a CRS is an error),
    and ``fault_density``, the fault length per cell (km) from the fault lines.
``gnss``
    The GNSS velocity table, dim ``station``: ``lon, lat, height, ve, vn, vu, se, sn, su`` (mm/yr).
``gnss_series`` (when ``sources.gnss_series`` is set, or the twin gives it)
    GNSS daily positions (NGL ``.tenv3``, one file per station), dims ``station, time`` (each
    day at 12:00 UTC within the source's datetime window, NaN where a station has no solution):
    ``east``, ``north``, ``up`` (mm, relative to the station's first day in the window),
    ``sigma_up`` (mm); coords ``lon`` (-180..180), ``lat``, ``height``. Screened like the
    velocities: days with a non-finite position or a sigma <= 0 dropped, a station given twice
    kept once (the longer series), stations with no day in the window or outside every
    interferogram frame dropped; each counted in the attrs and logged.

The frames are ingested on the cluster while the hydrology, factor and GNSS files are read
beside them: with a Dask client as one task on a worker (:func:`read_tables_on_worker`; the
driver's GIL stays free for the frames' graphs and the scheduler, and the task's log records are
re-emitted on the driver), without one on a thread of the driver. Either way the reads go
through a :class:`ReadAhead` context that records the writes; those datasets are written after
the frames, from the stage's own thread, so the product is the one reading and writing in turn
would give. A frame that fails stops (or cancels) the reading; an unreadable table file is
raised once the frames are written. The frames' file headers (georeferencing and completeness
checks) are opened in turn on another thread, the next frame's while the cluster writes the
current one (:func:`~ncp_subsidence.stages._ingest_frames.open_frame_headers`), so the workers
do not wait for them between frames; that thread also plans each frame once (its adapter and
increment: :class:`~ncp_subsidence.stages._ingest_frames.FramePlan`) for its ingest.

Unreadable interferogram assets follow ``ingest.on_error``: ``fail`` raises; ``nan`` fills NaN,
counts them, logs them and records them in the dataset's attrs.

Incremental runs (``ingest.incremental``, on by default). When discovery finds items the
previous ingest did not have, and every item it had is unchanged (same id, dates, ``updated``
stamp and asset hrefs), only the new items are read: new interferograms are appended to
``ifg/<frame>`` along ``pair``, new months to ``hydro/<source>`` along ``time``, each as a new
part of the dataset (see :mod:`ncp_subsidence.io.stores`), and datasets whose items did not
change are carried over without a byte written. Anything else (an item removed or republished,
a new grid, a month inside the existing record, ``ingest.max_parts`` reached, ``--force``)
rewrites that dataset whole. Interferograms are ordered by secondary then reference date, so
pairs that arrive in acquisition order append exactly where one run on everything puts them.
Each dataset records the items that made it: ``source_item_ids`` and ``source_items_digest``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import xarray as xr

from ..io.readers import unique_pairs
from ..logcapture import captured_records, emit_records
from ..pipeline import Stage, StageContext
from ..sources import load_items, source_names
from ._ingest_factors import _read_factor, ingest_factors
from ._ingest_frames import (
    FramePlan,
    append_frame,
    open_frame_headers,
    pair_order,
    plan_frame,
    spatial_chunks,
    write_frame,
)
from ._ingest_gnss import ingest_gnss, ingest_gnss_series
from ._ingest_hydro import _read_grace, ingest_hydro, month_midpoints

__all__ = [
    "STAGE",
    "IngestStage",
    "_read_factor",
    "_read_grace",
    "month_midpoints",
    "pair_order",
    "spatial_chunks",
]

log = logging.getLogger(__name__)


#: seconds a failed stage waits for the table reads it abandoned before raising
ABANDON_WAIT_S = 10.0


class _Abandoned(Exception):
    """Raised on the read-ahead thread once the stage has failed: stop reading."""


class ReadAhead:
    """A stage context for reading ahead on a thread: reads go through, writes wait.

    ``run(work, *args)`` calls ``work(self, *args)`` on the calling thread; every attribute of
    the wrapped :class:`StageContext` is available except that :meth:`write`, :meth:`reuse` and
    :meth:`write_file` are recorded instead of done. :meth:`replay` (on the stage's thread,
    after the frames) re-raises what ``work`` raised, or does the recorded calls in order: the
    product's datasets and their bytes are those of reading and writing one after the other,
    and nothing is written from the thread (a store that fails under the frames leaves no
    second writer behind). :meth:`abandon` makes the thread's next use of the context raise,
    so a failed stage does not wait for the rest of its files.
    """

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        if self._stop.is_set():
            raise _Abandoned(name)
        return getattr(self._ctx, name)

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self._stop.is_set():
            raise _Abandoned(method)
        self._calls.append((method, args, kwargs))

    def write(self, dataset: str | None, ds: xr.Dataset, **kwargs: Any) -> None:
        self._record("write", dataset, ds.copy(), **kwargs)

    def reuse(self, dataset: str | None) -> None:
        self._record("reuse", dataset)

    def write_file(self, relpath: str, data: bytes | str) -> None:
        self._record("write_file", relpath, data)

    def run(self, work: Any, *args: Any) -> None:
        try:
            work(self, *args)
        except BaseException as err:  # noqa: BLE001 -- re-raised by replay() on the stage's thread
            self._error = err

    def abandon(self) -> None:
        self._stop.set()

    def recorded(self) -> tuple[list[tuple[str, tuple[Any, ...], dict[str, Any]]], Any]:
        """The recorded calls (method, args, kwargs), in order, and what ``work`` raised."""
        return self._calls, self._error

    def replay(self) -> None:
        _replay(self._ctx, *self.recorded())


def _replay(ctx: Any, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]], error: Any) -> None:
    """Raise ``error``, or do the recorded ``calls`` on ``ctx`` in order."""
    if error is not None:
        raise error
    for method, args, kwargs in calls:
        getattr(ctx, method)(*args, **kwargs)


def ingest_tables(ctx: Any, names: list[str]) -> None:
    """Hydrology, factors, GNSS velocities and series (every source but the frames)."""
    ingest_hydro(ctx, names)
    ingest_factors(ctx, names)
    if "gnss" in names:
        ingest_gnss(ctx, load_items(ctx.store, "gnss", config=ctx.config))
    if "gnss_series" in names:
        ingest_gnss_series(ctx, load_items(ctx.store, "gnss_series", config=ctx.config))


def read_tables_on_worker(
    ctx: StageContext, names: list[str], level: int
) -> tuple[list[Any], Any, list[logging.LogRecord]]:
    """Read the table files (:func:`ingest_tables`) on a worker; nothing is written there.

    ``ctx`` is the stage's context without its client. Returns the writes the reads asked for
    (``(method, args, kwargs)``, their datasets loaded), what the reads raised (or None) and the
    package's log records at the driver's ``level``, for the driver to re-emit, raise or write.
    """
    ahead = ReadAhead(ctx)
    with captured_records(level) as records:
        ahead.run(ingest_tables, names)
    calls, error = ahead.recorded()
    for method, args, _kwargs in calls:
        if method == "write":
            args[1].load()
    return calls, error, records


class _TablesOnThread:
    """The table files read on a thread of the driver (no Dask client)."""

    def __init__(self, ctx: Any, names: list[str]) -> None:
        self.ahead = ReadAhead(ctx)
        self.thread = threading.Thread(
            target=self.ahead.run,
            args=(ingest_tables, names),
            name="ncp-ingest-tables",
            daemon=True,  # a failed stage waits for it at most ABANDON_WAIT_S (below)
        )
        self.thread.start()

    def abandon(self) -> None:
        # the thread stops at its next step; one long read (a source of many files) is not
        # waited for past ABANDON_WAIT_S, so an interrupted run ends promptly
        self.ahead.abandon()
        self.thread.join(ABANDON_WAIT_S)

    def finish(self) -> None:
        self.thread.join()
        self.ahead.replay()


class _TablesOnWorker:
    """The table files read by one task on a worker (:func:`read_tables_on_worker`)."""

    def __init__(self, ctx: Any, names: list[str]) -> None:
        self.ctx = ctx
        remote = dataclasses.replace(ctx, client=None, compute=None, datasets=[], parts={})
        level = logging.getLogger("ncp_subsidence").getEffectiveLevel()
        self.future = ctx.client.submit(
            read_tables_on_worker,
            remote,
            names,
            level,
            key=f"ingest-tables-{uuid.uuid4().hex}",
            pure=False,
        )

    def abandon(self) -> None:
        self.future.cancel()

    def finish(self) -> None:
        calls, error, records = self.future.result()
        emit_records(records)  # in their order, with the worker's times and process
        _replay(self.ctx, calls, error)


class IngestStage(Stage):
    """Stream discovered products into chunked Zarr cubes (see the module docstring)."""

    name = "ingest"
    reads: tuple[str, ...] = ("discover",)

    def run(self, ctx: StageContext) -> None:
        opts = ctx.options
        names = source_names(ctx.store)
        # the hydrology, factor and GNSS files are read while the cluster ingests the frames:
        # on a worker with a client, else on a thread; their writes wait for the frames
        tables = (_TablesOnWorker if ctx.client is not None else _TablesOnThread)(ctx, names)
        frames = [
            (name.split("/", 1)[1], load_items(ctx.store, name, config=ctx.config))
            for name in names
            if name.startswith("interferograms/")
        ]
        # the frames' file headers are opened in turn on one thread: the next frame's while the
        # cluster writes the current one, so the workers do not wait for them between frames
        stop = threading.Event()
        opening = ThreadPoolExecutor(1, thread_name_prefix="ncp-ingest-headers")
        try:
            headers = [
                opening.submit(open_frame_headers, ctx, frame, items, stop)
                for frame, items in frames
            ]
            for (frame, items), ahead in zip(frames, headers, strict=True):
                plan, opened = ahead.result()
                self._ingest_frame(ctx, frame, items, opts, opened=opened, plan=plan)
        except BaseException:
            stop.set()  # the headers' thread stops at its next file
            tables.abandon()
            raise
        finally:
            opening.shutdown(wait=True, cancel_futures=True)
        tables.finish()

    def _ingest_frame(
        self,
        ctx: Any,
        frame: str,
        items: list[Any],
        opts: Any,
        opened: Any = None,
        plan: FramePlan | None = None,
    ) -> None:
        """Ingest one frame: reuse, append to or write ``ifg/<frame>`` (``plan``: decided ahead
        by :func:`open_frame_headers`; None: decided here, the repeated pairs named first)."""
        name = f"ifg/{frame}"
        if plan is None:
            items, duplicates = unique_pairs(sorted(items, key=pair_order))
        else:
            items, duplicates = plan.items, plan.duplicates
        if duplicates:
            log.warning(
                "frame %s: %d interferogram(s) repeat a pair already listed and are skipped: %s",
                frame,
                len(duplicates),
                ", ".join(i.id for i in duplicates[:5]) + (" ..." if len(duplicates) > 5 else ""),
            )
        if plan is None:
            plan = plan_frame(ctx, frame, items, duplicates)
        adapter, increment = plan.adapter, plan.increment
        if increment is not None:
            previous, added = increment
            if previous.attrs.get("duplicate_items") != json.dumps([i.id for i in duplicates]):
                log.info("frame %s: the repeated pairs changed; rewriting the frame", frame)
            elif not added:
                ctx.reuse(name)
                log.info("frame %s: no new interferograms, %d kept", frame, previous.sizes["pair"])
                return
            elif self._append_frame(
                ctx, frame, previous, items, added, opts, adapter, opened=opened
            ):
                return
        self._write_frame(ctx, frame, items, duplicates, opts, adapter, opened=opened)

    def _append_frame(
        self,
        ctx: Any,
        frame: str,
        previous: xr.Dataset,
        items: list[Any],
        added: list[Any],
        opts: Any,
        adapter: Any,
        opened: Any = None,
    ) -> bool:
        """Append ``added`` (of ``items``) as a new part of ``ifg/<frame>``; False on a new grid."""
        return append_frame(ctx, frame, previous, items, added, opts, adapter, opened)

    def _write_frame(
        self,
        ctx: Any,
        frame: str,
        items: list[Any],
        duplicates: list[Any],
        opts: Any,
        adapter: Any,
        opened: Any = None,
    ) -> None:
        """Write ``ifg/<frame>`` whole from ``items`` (``opened``: headers opened ahead)."""
        write_frame(ctx, frame, items, duplicates, opts, adapter, opened)


STAGE = IngestStage()
