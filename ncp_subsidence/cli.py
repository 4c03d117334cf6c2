"""The ``ncp-subsidence`` command: one entry point, one subcommand per job.

Imports of the heavy stack (dask, xarray, zarr...) happen inside the subcommands, so ``--help``
answers at once. This module alone configures logging, and it turns every exception into one
clear line on stderr and a non-zero exit (``--verbose`` shows the traceback).

Exit codes: 0 success, 1 runtime error (data, store, network), 2 bad usage or config, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import STAGE_NAMES

__all__ = ["build_parser", "main"]

STAGES = STAGE_NAMES  # config.py imports only pydantic and yaml: --help stays fast
#: Products ``export`` writes (:data:`ncp_subsidence.io.export.EXPORTABLE`, kept here so that
#: ``--help`` imports nothing heavy); the default leaves out ``ingest``.
EXPORTABLE = ("ingest", "sbas", "adjust", "mosaic", "hydro", "factors", "geodetector", "analysis")

log = logging.getLogger("ncp_subsidence")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ncp-subsidence")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="YAML config (default: all defaults, the embedded twin)",
    )
    p.add_argument(
        "--store", metavar="URL", help="store root (local path or s3://...), overrides store.url"
    )
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a config field, e.g. sbas.method=nsbas (repeatable)",
    )
    p.add_argument(
        "--force",
        metavar="STAGE",
        action="append",
        default=[],
        help="recompute STAGE and everything downstream (repeatable)",
    )
    p.add_argument(
        "--workers", type=int, metavar="N", help="number of local workers (cluster.n_workers)"
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="use an existing Dask scheduler (cluster.kind=address)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="ncp-subsidence",
        description="Map and explain land subsidence over the North China Plain: STAC -> Zarr -> SBAS -> "
        "GNSS adjustment -> mosaic -> GRACE downscaling -> geodetector -> report, on any Dask cluster.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_verbosity(parser, False)
    # the same flags after the subcommand (``ncp-subsidence run -q``); SUPPRESS keeps the global value
    common = argparse.ArgumentParser(add_help=False)
    _add_verbosity(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _sub_add = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return _sub_add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("demo", help="write the NCP twin and run every stage on it (a LocalCluster)")
    _add_run_options(p)
    p.add_argument(
        "--preset",
        choices=("tiny", "demo", "large"),
        default=None,
        help="twin size (default: demo)",
    )
    p.add_argument("--seed", type=int, default=None, help="twin seed (default 0)")

    p = sub.add_parser("run", help="run the pipeline (every stage, or --stages) as configured")
    _add_run_options(p)
    p.add_argument(
        "--stages",
        metavar="STAGE",
        nargs="+",
        choices=STAGES,
        help="run only these stages, in pipeline order",
    )

    p = sub.add_parser("config", help="write a default config, or check one")
    p.add_argument(
        "--check", metavar="FILE", help="validate FILE and print every error with its field path"
    )
    p.add_argument(
        "--out", "-o", metavar="FILE", help="write the default config to FILE instead of stdout"
    )
    p.add_argument(
        "--preset",
        choices=("ncp",),
        help="write a commented config for real data instead of the defaults (ncp: the plain)",
    )

    p = sub.add_parser(
        "sources",
        help="check every configured source (items, one asset's headers, credential) without running",
    )
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: all defaults)")

    p = sub.add_parser("twin", help="write the embedded NCP twin (products, STAC catalog, truth)")
    p.add_argument("--preset", choices=("tiny", "demo", "large"), default="demo")
    p.add_argument("--out", "-o", metavar="DIR", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser(
        "validate",
        help="compare a run's products with the twin's truth (exit 1 if any metric fails)",
    )
    p.add_argument("--truth", metavar="DIR", required=True, help="twin directory (holds truth/)")
    p.add_argument("--store", metavar="URL", required=True, help="store root of the run")
    p.add_argument(
        "--config", "-c", metavar="FILE", help="YAML config whose store.storage_options to use"
    )
    p.add_argument(
        "--out", "-o", metavar="DIR", default="validation", help="where the CSV and JSON go"
    )

    p = sub.add_parser(
        "export",
        help="write a run's products as COG, CF NetCDF, CSV and GeoJSON with a STAC catalog",
    )
    p.add_argument("--store", metavar="URL", required=True, help="store root of the run")
    p.add_argument("--out", "-o", metavar="DIR", required=True, help="output directory")
    p.add_argument(
        "--stages",
        metavar="STAGE",
        nargs="+",
        choices=EXPORTABLE,
        help=f"products to export (default: {' '.join(EXPORTABLE[1:])})",
    )
    p.add_argument(
        "--config", "-c", metavar="FILE", help="YAML config whose store.storage_options to use"
    )

    p = sub.add_parser(
        "catalog",
        help="write a static STAC catalog of provider interferograms (LiCSAR, HyP3) to ingest",
    )
    providers = p.add_subparsers(dest="provider", metavar="PROVIDER", required=True)
    q = providers.add_parser(
        "licsar",
        parents=[common],
        help="a COMET LiCSAR frame folder (or LiCSBAS GEOC): local, glob, s3:// or https://",
    )
    q.add_argument(
        "source", metavar="SRC", nargs=1, help="frame folder, GEOC folder, or folder of frames"
    )
    _add_catalog_options(q)
    q = providers.add_parser(
        "hyp3",
        parents=[common],
        help="ASF HyP3 InSAR product zips or folders: local, glob, s3:// or https://",
    )
    q.add_argument(
        "source", metavar="SRC", nargs="+", help="product zips, product folders, or their folder"
    )
    _add_catalog_options(q)

    for stage in STAGES:  # each runs through pipeline.STAGES, the table of stage modules
        p = sub.add_parser(
            stage, help=f"run only the {stage} stage (its inputs must exist in the store)"
        )
        _add_run_options(p)
    return parser


def _add_catalog_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", "-o", metavar="DIR", required=True, help="where catalog.json is written"
    )
    p.add_argument(
        "--frame",
        metavar="ID",
        help="frame id (LiCSAR: which frame of several; HyP3: default <A|D><relative orbit>)",
    )


def _add_verbosity(p: argparse.ArgumentParser, default: Any) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=default,
        help="debug logging and full tracebacks",
    )
    group.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=default,
        help="warnings and errors only, no progress bar",
    )


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    from .redaction import RedactingFilter

    handler.addFilter(RedactingFilter())  # credentials inside URLs never reach the log
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("ncp_subsidence").setLevel(level)
    _quiet_libraries(verbose)
    if not verbose:
        # worker processes log on their own stderr: their "Compute Failed" blocks (logged at
        # ERROR) and heartbeat tracebacks would precede our one-line error, which already says
        # what failed (the exception travels back to the client). Dask reads this at import in
        # each new worker process; --verbose keeps distributed's warnings and errors.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")


_NOISY = ("distributed", "werkzeug", "botocore", "s3fs", "fsspec", "rasterio", "urllib3", "asyncio")


def _quiet_libraries(verbose: bool) -> None:
    """Libraries log errors only (warnings with --verbose), through our handler alone.

    Called again once distributed is imported: its import installs its own handler and levels.
    """
    for name in _NOISY:
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR if not verbose else logging.WARNING)
        logger.handlers[:] = []
        logger.propagate = True
    # in-process workers (a threaded LocalCluster): their "Compute Failed" block is an ERROR
    logging.getLogger("distributed.worker").setLevel(
        logging.CRITICAL if not verbose else logging.WARNING
    )


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    from .errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like KEY=VALUE, e.g. sbas.method=nsbas")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _load(args: argparse.Namespace) -> Any:
    from .config import load_config

    overrides = _parse_set(args.set)
    if args.store:
        overrides["store.url"] = args.store
    if args.workers:
        overrides["cluster.n_workers"] = args.workers
    if args.scheduler:
        overrides["cluster.kind"] = "address"
        overrides["cluster.address"] = args.scheduler
    if getattr(args, "preset", None):
        overrides["sources.twin.preset"] = args.preset
    if getattr(args, "seed", None) is not None:
        overrides["sources.twin.seed"] = args.seed
    # resolved as every entry point resolves it (on the twin, unset grids follow the preset):
    # the CLI, the Python API and the notebooks run one config, with the same fingerprints
    return load_config(args.config, overrides)


def _compute_with_progress(client: Any, show: bool, quiet: bool = False) -> Any:
    """A compute hook for region writes: on a terminal, a Dask progress bar per region; off a
    terminal (a log file, CI, a pod), a log line of finished tasks every progress interval."""
    if client is None or quiet:
        return None
    if not show:
        from .progress import logged_compute

        return logged_compute(client, logging.getLogger("ncp_subsidence.progress"))
    from distributed import progress, wait

    def compute(delayed: Any) -> None:
        futures = client.compute(delayed)
        progress(futures)
        wait(futures)
        futures.result()

    return compute


def _run(args: argparse.Namespace, stages: Sequence[str] | None) -> int:
    import distributed  # noqa: F401  (its import configures logging; ours must win)

    from .cluster import connect

    _quiet_libraries(args.verbose)
    from .pipeline import check_inputs, resolve_stages, run_pipeline

    config = _load(args)
    plan = resolve_stages(stages)  # fail on unknown or unavailable stages before starting a cluster
    check_inputs(config, plan)  # and on missing inputs, before a store or a cluster is made
    show = not args.quiet and sys.stderr.isatty()
    with connect(config.cluster) as client:
        report = run_pipeline(
            config,
            plan,
            force=args.force,
            client=client,
            compute=_compute_with_progress(client, show, args.quiet),
        )
    print(report.summary())
    if "report" in {r.stage for r in report.results}:
        from .io.stores import open_store

        store = open_store(config.store)
        record = store.record("report")
        if record is not None:
            print(f"report: {store.url}/report/{record.version}/index.html")
            print(f"latest report (stable path): {store.latest_path('report')}")
    if args.command == "demo":
        from .sources import twin_directory

        print("check the run against the twin's truth:")
        print(
            f"  ncp-subsidence validate --truth {twin_directory(config)} --store {config.store.url}"
        )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .io.export import export_products

    options = None
    if args.config:
        from .config import load_config

        options = dict(load_config(args.config).store.storage_options or {}) or None
    result = export_products(args.store, args.out, args.stages, storage_options=options)
    print(
        f"exported {len(result.files)} file(s) of {len(result.items)} product(s) "
        f"({', '.join(result.items) or 'none'}) to {args.out}"
    )
    print(f"  STAC catalog: {result.catalog}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from .config import Config, load_config, to_yaml

    if args.check:
        from .sources import check_sources, input_kind

        cfg = load_config(args.check)
        check_sources(cfg)
        print(
            f"{args.check}: valid ({len(type(cfg).model_fields)} sections, "
            f"{input_kind(cfg)} inputs)"
        )
        return 0
    if args.preset:
        from .presets import PRESETS

        text = PRESETS[args.preset]
    else:
        text = to_yaml(Config())
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_sources(args: argparse.Namespace) -> int:
    from .config import load_config
    from .io.check import check_all
    from .sources import check_sources

    config = load_config(args.config)
    check_sources(config)
    results = check_all(config)
    if not results:
        print("no source is configured: every input is the synthetic twin")
        return 0
    for result in results:
        print(result.line())
    broken = [r for r in results if not r.ok]
    print(f"sources: {len(results) - len(broken)}/{len(results)} ok")
    return 1 if broken else 0


def _cmd_twin(args: argparse.Namespace) -> int:
    from .synthetic import write_twin

    manifest = write_twin(args.out, preset=args.preset, seed=args.seed)
    print(f"twin ({args.preset}, seed {args.seed}) written to {manifest.root}")
    print(f"  STAC catalog: {manifest.catalog}")
    print(f"  truth store:  {manifest.truth}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .validate import format_table, validate, write_table

    options = None
    if args.config:
        from .config import load_config

        options = dict(load_config(args.config).store.storage_options or {}) or None
    table = validate(args.truth, args.store, storage_options=options)
    csv, js = write_table(table, args.out)
    print(format_table(table))
    failed = [str(m) for m, ok in zip(table["metric"], table["pass"]) if not ok]
    print(
        f"validation: {len(table) - len(failed)}/{len(table)} within tolerance; wrote {csv}, {js}"
    )
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def _cmd_catalog(args: argparse.Namespace) -> int:
    import yaml

    from .io.products import hyp3, licsar
    from .io.products.catalog import write_catalog

    module, provider = {
        "licsar": (licsar, "COMET LiCSAR"),
        "hyp3": (hyp3, "ASF HyP3"),
    }[args.provider]
    items = module.items_from_source(list(args.source), frame=args.frame)
    frame = str(items[0].properties["ncp:frame"])
    path = write_catalog(
        items,
        args.out,
        collection_id=frame,
        title=f"{provider} interferograms of frame {frame}",
        description=f"{provider} unwrapped interferograms of frame {frame}, one item per pair, "
        f"catalogued by ncp-subsidence from {', '.join(args.source)}.",
    )
    print(f"{provider} catalog of {len(items)} pair(s) of frame {frame} written to {path}")
    snippet = {"sources": {"interferograms": {frame: {"kind": "static_catalog", "url": str(path)}}}}
    print("add to your config:")
    print(yaml.safe_dump(snippet, sort_keys=False).rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ncp-subsidence``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        if args.command == "config":
            return _cmd_config(args)
        if args.command == "twin":
            return _cmd_twin(args)
        if args.command == "validate":
            return _cmd_validate(args)
        if args.command == "catalog":
            return _cmd_catalog(args)
        if args.command == "export":
            return _cmd_export(args)
        if args.command == "sources":
            return _cmd_sources(args)
        if args.command == "demo":
            return _run(args, None)
        if args.command == "run":
            return _run(args, [s for s in STAGES if s in set(args.stages)] if args.stages else None)
        return _run(args, [args.command])
    except KeyboardInterrupt:
        print("ncp-subsidence: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.verbose:
            raise
        from .errors import ConfigError
        from .redaction import redact_text

        message = redact_text(str(err).strip()) or type(err).__name__
        first, *rest = message.splitlines()
        detail = "".join(f"\n{line}" for line in rest) if isinstance(err, ConfigError) else ""
        print(f"ncp-subsidence: error: {type(err).__name__}: {first}{detail}", file=sys.stderr)
        if not isinstance(err, ConfigError):
            print("ncp-subsidence: run with --verbose for the traceback", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
