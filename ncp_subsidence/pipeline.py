"""Run stages in order, skip the ones already done, resume the ones a crash interrupted.

A stage declares the products it reads and writes one product (its own name) made of one or
more datasets. Before running it, the pipeline computes its fingerprint::

    sha256(stage name + its config section + the fingerprints of the products it reads
           + the package version [+ anything the stage adds, e.g. its sources])

If the store's current version of the product has that fingerprint, the stage is skipped. If a
pending (interrupted) version has it, the stage resumes into that version and its region writes
skip what is already written. Otherwise a fresh version is written and published when complete.
``force`` recomputes a stage and everything downstream of it into fresh versions.

The stages are those of :data:`STAGES`, in order: each name maps to the module whose ``STAGE``
object (a :class:`Stage`) runs it, imported when a run needs it. A run uses the resolved config
(:func:`~ncp_subsidence.config.resolve_config`), as :func:`~ncp_subsidence.config.load_config`
returns it, so the CLI and the Python API fingerprint the same settings.

>>> from ncp_subsidence.config import Config
>>> report = run_pipeline(Config(), stages=["discover"])   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from . import __version__
from .config import Config, redacted_dump, resolve_config
from .errors import ConfigError, DataError, NcpError, StoreError
from .io.cube import write_cube
from .io.stores import ProductRecord, ProductStore, open_store
from .progress import labelled

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

__all__ = [
    "STAGES",
    "RunReport",
    "Stage",
    "StageContext",
    "StageLike",
    "StageResult",
    "fingerprint",
    "load_stage",
    "resolve_stages",
    "run_pipeline",
]

log = logging.getLogger(__name__)

#: The pipeline's stages in order (:data:`~ncp_subsidence.config.STAGE_NAMES`): name -> the
#: module whose ``STAGE`` runs it, imported by :func:`load_stage` when a run needs it.
STAGES: Mapping[str, str] = MappingProxyType(
    {
        "discover": "ncp_subsidence.stages.discover",
        "ingest": "ncp_subsidence.stages.ingest",
        "sbas": "ncp_subsidence.stages.sbas",
        "adjust": "ncp_subsidence.stages.adjust",
        "mosaic": "ncp_subsidence.stages.mosaic",
        "hydro": "ncp_subsidence.stages.hydro",
        "factors": "ncp_subsidence.stages.factors",
        "geodetector": "ncp_subsidence.stages.geodetector",
        "analysis": "ncp_subsidence.stages.analysis",
        "report": "ncp_subsidence.stages.report",
    }
)


class StageLike(Protocol):
    """What the pipeline needs of a stage object (a :class:`Stage`, or any object like one).

    Attributes
    ----------
    name : str
        The stage name, its config section and the product group it writes.
    reads : tuple of str
        Products it reads (upstream stage names).
    """

    name: str
    reads: tuple[str, ...]

    def run(self, ctx: StageContext) -> None:
        """Build the graph and write the datasets through ``ctx.write``."""


class Stage:
    """Base of the pipeline's stages: set :attr:`name` and :attr:`reads`, implement :meth:`run`.

    Attributes
    ----------
    name : str
        The stage name, its config section and the product group it writes.
    reads : tuple of str
        Products it reads (upstream stage names).
    """

    name: str = ""
    reads: tuple[str, ...] = ()

    def run(self, ctx: StageContext) -> None:
        """Build the graph and write the datasets through ``ctx.write``."""
        raise NotImplementedError(f"stage {self.name!r} does not define run()")

    def fingerprint_extra(self, config: Config) -> Any:
        """What the stage's product depends on besides its config section and inputs (JSON-able;
        e.g. the sources ``discover`` reads); None by default."""
        return None


@dataclass
class StageContext:
    """What a running stage gets: config, store, client, its version, and write helpers."""

    config: Config
    store: ProductStore
    stage: str
    version: str
    client: Client | None = None
    compute: Callable[[Any], Any] | None = None
    datasets: list[str] = field(default_factory=list)
    previous: ProductRecord | None = None
    """The stage's current complete product before this run (None when forced or new): what an
    incremental stage appends to."""
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def options(self) -> Any:
        """This stage's options section of the config (None for stages without one)."""
        return getattr(self.config, self.stage, None)

    def open(self, stage: str, dataset: str | None = None, **kwargs: Any) -> xr.Dataset:
        """Open a dataset of the current version of an upstream product."""
        return self.store.open(stage, dataset, **kwargs)

    def upstream_datasets(self, stage: str) -> tuple[str, ...]:
        """Names of the datasets in the current version of an upstream product."""
        record = self.store.record(stage)
        if record is None:
            raise StoreError(
                f"product {stage!r} has no complete version; run stage {stage!r} first"
            )
        return record.datasets

    def find_variable(self, stage: str, variable: str) -> xr.DataArray:
        """``variable`` from whichever dataset of the current ``stage`` product holds it.

        Raises
        ------
        DataError
            If no dataset of the product has it.
        """
        names = self.upstream_datasets(stage)
        for name in names:
            ds = self.open(stage, None if name == "." else name)
            if variable in ds.data_vars:
                return ds[variable]
        raise DataError(
            f"product {stage!r} has no variable {variable!r} in its datasets {list(names)}; "
            f"rerun stage {stage!r}"
        )

    def write(
        self,
        dataset: str | None,
        ds: xr.Dataset,
        *,
        region_dim: str | None = None,
        chunks_per_region: int | None = None,
        append_dim: str | None = None,
    ) -> str:
        """Write one dataset of this stage's product (template, then resumable regions).

        With ``append_dim``, ``ds`` holds only the slices new since :attr:`previous` (new pairs,
        new months): it is written as a new part, and the dataset reads back as the previous
        parts followed by this one, concatenated along ``append_dim``. Nothing previously
        written is touched.
        """
        name = dataset or "."
        if append_dim is not None:
            if self.previous is None or name not in self.previous.datasets:
                raise StoreError(
                    f"cannot append to {self.stage}/{name}: the stage has no previous product "
                    "holding it; write it whole"
                )
            dim, versions = self.previous.dataset_parts(dataset)
            if dim not in (None, append_dim):
                raise StoreError(
                    f"{self.stage}/{name} was appended along {dim!r}, not {append_dim!r}"
                )
            self.parts[name] = {"dim": append_dim, "versions": [*versions, self.version]}
        else:
            self.parts.pop(name, None)
        ds = ds.copy()
        ds.attrs.setdefault("ncp_subsidence_version", __version__)
        ds.attrs.setdefault("ncp_subsidence_stage", self.stage)
        ds.attrs["input_kind"] = _input_kind(self.config)
        section = self.options
        if section is not None and hasattr(section, "model_dump"):
            ds.attrs.setdefault(
                "ncp_subsidence_options", json.dumps(redacted_dump(section), sort_keys=True)
            )
        path = write_cube(
            self.store,
            self.stage,
            self.version,
            dataset,
            ds,
            region_dim=region_dim,
            chunks_per_region=chunks_per_region,
            compute=self.compute,
        )
        if name not in self.datasets:
            self.datasets.append(name)
        return path

    def reuse(self, dataset: str | None) -> None:
        """Carry a dataset of :attr:`previous` over unchanged (no byte is written)."""
        name = dataset or "."
        if self.previous is None or name not in self.previous.datasets:
            raise StoreError(f"cannot reuse {self.stage}/{name}: no previous product holds it")
        dim, versions = self.previous.dataset_parts(dataset)
        self.parts[name] = {"dim": dim, "versions": versions}
        if name not in self.datasets:
            self.datasets.append(name)

    def write_file(self, relpath: str, data: bytes | str) -> str:
        """Write a non-Zarr file (CSV, JSON, HTML, PNG) inside this stage's version."""
        return self.store.write_file(f"{self.stage}/{self.version}/{relpath}", data)


@dataclass(frozen=True)
class StageResult:
    """What happened to one stage in a run."""

    stage: str
    action: str  # "skipped" | "ran" | "resumed"
    version: str
    fingerprint: str
    seconds: float


@dataclass
class RunReport:
    """The outcome of :func:`run_pipeline`."""

    store: str
    results: list[StageResult] = field(default_factory=list)

    def __getitem__(self, stage: str) -> StageResult:
        for r in self.results:
            if r.stage == stage:
                return r
        raise KeyError(stage)

    def summary(self) -> str:
        lines = [f"store: {self.store}"]
        for r in self.results:
            lines.append(f"  {r.stage:<12} {r.action:<8} {r.version}  {r.seconds:7.1f} s")
        return "\n".join(lines)


def fingerprint(stage: StageLike, config: Config, inputs: Mapping[str, str]) -> str:
    """The fingerprint of ``stage`` given ``config`` and its inputs' fingerprints."""
    section = getattr(config, stage.name, None)
    options = (
        redacted_dump(section) if section is not None and hasattr(section, "model_dump") else None
    )
    # Stage's default where a stage-like object (not derived from Stage) has none
    extra = getattr(type(stage), "fingerprint_extra", Stage.fingerprint_extra)(stage, config)
    payload = {
        "stage": stage.name,
        "options": options,
        "inputs": dict(sorted(inputs.items())),
        "package_version": __version__,
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def load_stage(name: str) -> StageLike:
    """The ``STAGE`` object of stage ``name``, from its module in :data:`STAGES`."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
    return importlib.import_module(STAGES[name]).STAGE


def resolve_stages(names: Iterable[str | StageLike] | None = None) -> list[StageLike]:
    """Turn stage names (or stage objects) into stage objects, in the order given.

    None means every stage of :data:`STAGES` in pipeline order (:func:`load_stage`).
    """
    return [
        load_stage(item) if isinstance(item, str) else item
        for item in (STAGES if names is None else names)
    ]


def _downstream(stages: Sequence[StageLike], forced: set[str]) -> set[str]:
    out = set(forced)
    for s in stages:  # stages are in pipeline order, so one pass closes the set
        if set(s.reads) & out:
            out.add(s.name)
    return out


def _input_kind(config: Config) -> str:
    """``twin``, ``real`` or ``mixed``: what every product records about its inputs."""
    from .sources import input_kind

    return input_kind(config)


def _new_version(fp: str) -> str:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"v{stamp}-{fp[:8]}-{secrets.token_hex(2)}"


def check_inputs(
    config: Config, stages: Iterable[str | StageLike] | None, store: ProductStore | None = None
) -> ProductStore | None:
    """Check, writing nothing, that every product the stages read exists or is made by the run.

    Returns the store when one had to be opened for the check (``None`` when the run makes all
    its own inputs). Raises :class:`StoreError` naming the stage and the product it lacks, or the
    missing store, before a store, a cluster or a root attribute is created.
    """
    produced: set[str] = set()
    needed: list[tuple[str, str]] = []
    for stage in resolve_stages(stages):
        needed += [(stage.name, up) for up in stage.reads if up not in produced]
        produced.add(stage.name)
    if not needed:
        return store
    if store is None:
        try:
            store = open_store(config.store, must_exist=True)
        except StoreError as err:
            name, upstream = needed[0]
            raise StoreError(
                f"stage {name!r} reads product {upstream!r}, but there is no product store at "
                f"{config.store.url!r} yet; run stage {upstream!r} first (or include it in this "
                "run), or give the --store a run wrote"
            ) from err
    for name, upstream in needed:
        if store.record(upstream) is None:
            raise StoreError(
                f"stage {name!r} reads product {upstream!r}, which has no complete version "
                f"in {store.url!r}; run stage {upstream!r} first (or include it in this run)"
            )
    return store


def run_pipeline(
    config: Config,
    stages: Iterable[str | StageLike] | None = None,
    *,
    force: Iterable[str] = (),
    client: Client | None = None,
    store: ProductStore | None = None,
    compute: Callable[[Any], Any] | None = None,
) -> RunReport:
    """Run ``stages`` in order against the configured store.

    Parameters
    ----------
    config : Config
        The configuration; the run uses it resolved (:func:`~ncp_subsidence.config.resolve_config`:
        on the twin, grids left unset follow the preset), as ``load_config`` returns it.
    stages : iterable of str or stage objects, optional
        What to run; default every stage of :data:`STAGES`, in pipeline order.
    force : iterable of str
        Stages to recompute even when their fingerprint matches; everything downstream too.
    client : distributed.Client, optional
        Where dask computes (None: dask's current default scheduler).
    store : ProductStore, optional
        An open store; default opens ``config.store``.
    compute : callable, optional
        Computes each region write's delayed object (default ``dask.compute``; the CLI passes
        one that shows a progress bar).

    Returns
    -------
    RunReport
        Per stage: skipped, ran or resumed, the version, the fingerprint and the time taken.
    """
    config = resolve_config(config)
    plan = resolve_stages(stages)
    names = [s.name for s in plan]
    unknown_force = set(force) - set(names)
    if unknown_force:
        raise ConfigError(
            f"--force names stage(s) {sorted(unknown_force)} that are not in this run ({', '.join(names)})"
        )
    forced = _downstream(plan, set(force))
    store = check_inputs(config, plan, store) or open_store(config.store)
    report = RunReport(store=store.url)
    store.update_root_attrs(
        {
            "ncp_subsidence_version": __version__,
            "config": redacted_dump(config),
            "input_kind": _input_kind(config),
            "software": _software_versions(),
            "last_run": {"started": _now(), "stages": names, "completed": None},
        }
    )
    run_start = time.perf_counter()
    for k, stage in enumerate(plan, start=1):
        step = f"stage {k}/{len(plan)} {stage.name}"
        inputs: dict[str, str] = {}
        for upstream in stage.reads:
            record = store.record(upstream)
            if record is None:
                raise StoreError(
                    f"stage {stage.name!r} reads product {upstream!r}, which has no complete version "
                    f"in {store.url!r}; run stage {upstream!r} first (or include it in this run)"
                )
            inputs[upstream] = record.fingerprint
        fp = fingerprint(stage, config, inputs)
        current = store.record(stage.name)
        if current is not None and current.fingerprint == fp and stage.name not in forced:
            log.info("%s: up to date (version %s), skipped", step, current.version)
            report.results.append(StageResult(stage.name, "skipped", current.version, fp, 0.0))
            continue
        pending = store.pending(stage.name)
        if pending and pending.get("fingerprint") == fp and stage.name not in forced:
            version, action = pending["version"], "resumed"
            log.info("%s: resuming interrupted version %s", step, version)
        else:
            if pending:
                store.delete(f"{stage.name}/{pending['version']}")
            version, action = _new_version(fp), "ran"
            store.begin(stage.name, version, fp)
            log.info("%s: running (version %s)", step, version)
        t0 = time.perf_counter()
        ctx = StageContext(
            config,
            store,
            stage.name,
            version,
            client=client,
            compute=compute,
            previous=None if stage.name in forced else current,
        )
        try:
            with labelled(step):
                stage.run(ctx)
            record = ProductRecord(
                version=version,
                fingerprint=fp,
                datasets=tuple(ctx.datasets),
                completed_at=_now(),
                package_version=__version__,
                inputs=inputs,
                parts={k: v for k, v in ctx.parts.items() if k in ctx.datasets},
            )
            store.publish(stage.name, record, keep_versions=config.store.keep_versions)
        except Exception as err:
            _raise_if_store_failed(err, store, stage.name)
            raise
        seconds = time.perf_counter() - t0
        log.info(
            "%s: done in %.1f s (%.0f s since the run started)",
            step,
            seconds,
            time.perf_counter() - run_start,
        )
        report.results.append(StageResult(stage.name, action, version, fp, seconds))
    last_run = store.root_attrs().get("last_run", {})
    store.update_root_attrs({"last_run": {**last_run, "completed": _now()}})
    return report


def _raise_if_store_failed(err: BaseException, store: ProductStore, stage: str) -> None:
    """Turn a remote store's raw client error (botocore, aiohttp...) into one clear StoreError.

    Raised when the store stopped answering after its retries while ``stage`` read or wrote it:
    the message names the store, the stage, the retry setting and what a rerun does. A
    :class:`StoreError` raised by the store's own calls (opening a group) over a lost connection
    (a connect or timeout error, not a refusal such as a missing bucket or denied access) gets
    the same message: which stage, and that a rerun resumes.
    """
    if "://" not in store.url:
        return  # a local store
    if isinstance(err, NcpError) and not isinstance(err, StoreError):
        return  # already one of ours (a DataError, a NetworkError of a source...)
    root = store.root.strip("/")
    chain: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for e in chain:
        network = isinstance(e, ConnectionError | TimeoutError)
        remote = network or any(
            c.__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp")
            for c in type(e).__mro__
        )
        # a lost connection, not a refusal: builtin or named so (EndpointConnectionError...)
        lost = network or any(w in type(e).__name__ for w in ("onnect", "Timeout"))
        if remote and root in str(e) and (lost or not isinstance(err, StoreError)):
            raise StoreError(
                f"store {store.url!r} stopped answering while stage {stage!r} used it, after the "
                f"configured retries: {type(e).__name__}: {e}. Nothing of {stage!r} was "
                "published; check the endpoint and the network (retries: "
                "store.storage_options.config_kwargs.retries), then rerun: the stage resumes "
                "from its last completed region"
            ) from err


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "numpy",
        "scipy",
        "dask",
        "distributed",
        "xarray",
        "zarr",
        "fsspec",
        "pystac-client",
        "stackstac",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out
