"""The only place a Dask client is made.

``connect(options)`` is a context manager yielding a :class:`distributed.Client` for the
configured cluster kind:

- ``local`` (default): a :class:`distributed.LocalCluster` of processes, one thread each, BLAS
  threads pinned to 1 on the workers (MintPy measured the gain; dask does the same by default);
- ``address``: an existing scheduler;
- ``gateway``: dask-gateway (JupyterHub / daskhub), adaptive between ``adapt_minimum`` and
  ``adapt_maximum``, or a fixed ``n_workers``;
- ``kubernetes``: the dask-kubernetes operator (``KubeCluster`` from :func:`kubernetes_spec`);
- ``coiled``: a Coiled cluster (``coiled.Cluster(**coiled_kwargs(options))``).

The manifests and walkthroughs for each platform are in ``deploy/``.

The last three are optional extras imported lazily; a missing one raises a :class:`ConfigError`
that names the ``pip install`` to run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .config import ClusterOptions
from .errors import ConfigError, NetworkError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "BLAS_ENV",
    "RESTRICTED_CONTAINER",
    "RESTRICTED_POD",
    "coiled_kwargs",
    "connect",
    "gateway_auth",
    "harden_pod",
    "kubernetes_spec",
    "tls_env",
]

log = logging.getLogger(__name__)

#: Environment that pins BLAS/OpenMP to one thread in every worker process.
BLAS_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def _probe_scheduler(address: str | None, timeout_s: float) -> None:
    """Fail at once when nothing listens at a ``tcp://``/``tls://`` scheduler address.

    distributed retries a refused connection until its timeout (30 s by default) before it
    says anything; a refused TCP connect is final, so it is reported straight away. Other
    schemes (``inproc://``, ``ucx://``) and slow networks are left to distributed's timeout.
    """
    import socket
    from urllib.parse import urlsplit

    if not address or not address.startswith(("tcp://", "tls://")):
        return
    parts = urlsplit(address)
    if parts.hostname is None or parts.port is None:
        return
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=min(timeout_s, 5.0)):
            pass
    except ConnectionRefusedError as err:
        raise NetworkError(
            f"cannot reach the Dask scheduler at {address!r}: connection refused (nothing "
            "listens there); check cluster.address and that the scheduler runs "
            f"(cluster.connect_timeout_s={timeout_s:g} s applies to slow networks)"
        ) from err
    except OSError:
        return  # unresolved or slow: distributed's own timeout decides


def _missing_extra(kind: str, package: str, err: ImportError) -> ConfigError:
    return ConfigError(
        f"cluster.kind {kind!r} needs the package {package!r}, which is not installed "
        f'({err}); install it with: pip install "ncp-subsidence[cluster]"'
    )


@contextlib.contextmanager
def connect(options: ClusterOptions | None = None) -> Iterator[Client]:
    """Start or join the configured Dask cluster and yield a client; close what was started.

    Parameters
    ----------
    options : ClusterOptions, optional
        The ``cluster`` section of the config; default a LocalCluster.

    Yields
    ------
    distributed.Client
    """
    options = options or ClusterOptions()
    import dask
    from distributed import Client

    kind = options.kind
    if kind == "local":
        from distributed import LocalCluster

        n_workers = options.n_workers or max(1, os.cpu_count() or 1)
        with dask.config.set(
            {"distributed.nanny.pre-spawn-environ": {**_pre_spawn_env(), **BLAS_ENV}}
        ):
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=options.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=options.dashboard_address,
                memory_limit=options.memory_limit,
            )
        try:
            with Client(cluster) as client:
                log.info(
                    "local cluster: %d workers x %d thread(s); dashboard %s",
                    n_workers,
                    options.threads_per_worker,
                    client.dashboard_link,
                )
                yield client
        finally:
            cluster.close()
        return

    if kind == "address":
        _probe_scheduler(options.address, options.connect_timeout_s)
        try:
            client = Client(options.address, timeout=f"{options.connect_timeout_s}s")
        except OSError as err:
            raise NetworkError(
                f"cannot reach the Dask scheduler at {options.address!r} within "
                f"cluster.connect_timeout_s={options.connect_timeout_s:g} s: {err}; check "
                "cluster.address, that the scheduler runs, or raise cluster.connect_timeout_s"
            ) from err
        try:
            log.info(
                "connected to scheduler %s; dashboard %s", options.address, client.dashboard_link
            )
            yield client
        finally:
            client.close()
        return

    if kind == "gateway":
        try:
            from dask_gateway import Gateway
        except ImportError as err:
            raise _missing_extra(kind, "dask-gateway", err) from err
        g = options.gateway
        gateway = Gateway(
            address=g.address,
            proxy_address=g.proxy_address,
            public_address=g.public_address,
            auth=gateway_auth(options),
        )
        try:
            try:
                cluster = gateway.new_cluster(**g.cluster_options)
            except OSError as err:
                raise NetworkError(
                    f"cannot reach the dask-gateway server at {g.address!r}: {err}; check cluster.gateway.address"
                ) from err
            try:
                if g.adapt_maximum is not None:
                    cluster.adapt(minimum=g.adapt_minimum, maximum=g.adapt_maximum)
                else:
                    cluster.scale(options.n_workers or 2)
                with cluster.get_client() as client:
                    log.info(
                        "gateway cluster %s; dashboard %s", cluster.name, cluster.dashboard_link
                    )
                    yield client
            finally:
                cluster.shutdown()
                _close_gateway(cluster.gateway)
        finally:
            _close_gateway(gateway)
        return

    if kind == "kubernetes":
        try:
            from dask_kubernetes.operator import KubeCluster
        except ImportError as err:
            raise _missing_extra(kind, "dask-kubernetes", err) from err
        spec = kubernetes_spec(options)
        cluster = KubeCluster(
            custom_cluster_spec=spec,
            namespace=options.kubernetes.namespace,
            shutdown_on_close=True,
        )
        try:
            with Client(cluster) as client:
                log.info(
                    "kubernetes cluster %s; dashboard %s",
                    options.kubernetes.name,
                    client.dashboard_link,
                )
                yield client
        finally:
            cluster.close()
        return

    if kind == "coiled":
        try:
            import coiled
        except ImportError as err:
            raise _missing_extra(kind, "coiled", err) from err
        cluster = coiled.Cluster(**coiled_kwargs(options))
        try:
            with Client(cluster) as client:
                log.info("coiled cluster; dashboard %s", client.dashboard_link)
                yield client
        finally:
            cluster.close()
        return

    raise ConfigError(f"unknown cluster.kind {kind!r}")  # pragma: no cover - pydantic forbids it


def _close_gateway(gateway: Any) -> None:
    """Close a ``dask_gateway.Gateway`` once, for good.

    dask-gateway 2026.3's ``Gateway.__del__`` closes the gateway again when it is collected, and
    with distributed 2026.8 that second close raises (the ``loop`` property refuses a stopped
    loop), an "exception ignored" at garbage collection. Dropping the loop runner after the
    first close makes ``__del__`` a no-op.
    """
    if not hasattr(gateway, "_loop_runner"):
        return
    try:
        gateway.close()
    finally:
        with contextlib.suppress(AttributeError):
            del gateway._loop_runner


def _pre_spawn_env() -> dict[str, Any]:
    import dask

    return dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})


def gateway_auth(options: ClusterOptions) -> Any:
    """The ``auth`` given to ``dask_gateway.Gateway``: a ``BasicAuth`` for ``simple``/``basic``.

    The server's ``SimpleAuthenticator`` (and any basic-auth authenticator) reads HTTP basic
    credentials, so both kinds send ``username`` and ``password``; ``jupyterhub`` and
    ``kerberos`` are passed by name; None lets dask-gateway read its own config.
    """
    g = options.gateway
    if g.auth in ("simple", "basic"):
        from dask_gateway.auth import BasicAuth

        password = g.password.get_secret_value() if g.password else None
        return BasicAuth(g.username, password)
    return g.auth


def coiled_kwargs(options: ClusterOptions) -> dict[str, Any]:
    """The keyword arguments ``connect`` passes to ``coiled.Cluster``.

    Only options that are set are passed, so Coiled's own defaults apply to the rest. With a
    ``container`` (the repository's image, whose entrypoint is ``ncp-subsidence``) the entrypoint
    is ignored, so Coiled can start ``dask scheduler`` / ``dask worker`` in it.
    """
    c = options.coiled
    kwargs: dict[str, Any] = {
        "n_workers": options.n_workers or 4,
        "worker_memory": c.worker_memory,
        "spot_policy": c.spot_policy,
        "environ": dict(BLAS_ENV),
    }
    if c.name:
        kwargs["name"] = c.name
    if c.region:
        kwargs["region"] = c.region
    if c.worker_cpu:
        kwargs["worker_cpu"] = c.worker_cpu
    if c.software:
        kwargs["software"] = c.software
    if c.container:
        kwargs["container"] = c.container
        kwargs["ignore_container_entrypoint"] = True
    if c.idle_timeout:
        kwargs["idle_timeout"] = c.idle_timeout
    return kwargs


#: Where pods mount the TLS Secret (``ca.crt``, ``tls.crt``, ``tls.key``) and scratch space.
TLS_DIR = "/etc/dask/tls"
SCRATCH_DIR = "/tmp"

#: The pod-level fields of the Kubernetes *restricted* Pod Security Standard (plus no service
#: account token: Dask pods never talk to the Kubernetes API).
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}

#: The container-level fields of the restricted standard, with a read-only root filesystem.
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
}


def tls_env(role: str) -> dict[str, str]:
    """Dask config (as environment variables) that makes ``role`` require TLS.

    ``role`` is ``scheduler``, ``worker`` or ``client``; each uses the Secret's one certificate
    (``tls.crt``/``tls.key``, signed by ``ca.crt``) and refuses unencrypted connections.
    """
    key = f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}"
    return {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": f"{TLS_DIR}/ca.crt",
        f"{key}__CERT": f"{TLS_DIR}/tls.crt",
        f"{key}__KEY": f"{TLS_DIR}/tls.key",
    }


def harden_pod(pod: dict[str, Any], role: str | None, tls_secret: str | None) -> dict[str, Any]:
    """Make a pod spec meet the restricted Pod Security Standard, in place, and return it.

    Every container gets :data:`RESTRICTED_CONTAINER` and a writable ``emptyDir`` at
    :data:`SCRATCH_DIR` (Dask spills and matplotlib caches there, as the root filesystem is
    read-only); the pod gets :data:`RESTRICTED_POD` and no service-account token. With
    ``tls_secret`` and a Dask ``role`` the Secret is mounted at :data:`TLS_DIR` and
    :func:`tls_env` set.
    """
    pod["securityContext"] = json.loads(json.dumps(RESTRICTED_POD))
    pod["automountServiceAccountToken"] = False
    volumes = pod.setdefault("volumes", [])
    volumes.append({"name": "scratch", "emptyDir": {}})
    if tls_secret and role:
        volumes.append(
            {"name": "dask-tls", "secret": {"secretName": tls_secret, "defaultMode": 0o400}}
        )
    for container in pod.get("containers", []):
        container["securityContext"] = json.loads(json.dumps(RESTRICTED_CONTAINER))
        mounts = container.setdefault("volumeMounts", [])
        mounts.append({"name": "scratch", "mountPath": SCRATCH_DIR})
        env = {
            "HOME": SCRATCH_DIR,
            "DASK_TEMPORARY_DIRECTORY": SCRATCH_DIR,
            "MPLCONFIGDIR": f"{SCRATCH_DIR}/matplotlib",
        }
        if tls_secret and role:
            mounts.append({"name": "dask-tls", "mountPath": TLS_DIR, "readOnly": True})
            env.update(tls_env(role))
        container.setdefault("env", []).extend({"name": k, "value": v} for k, v in env.items())
    return pod


def kubernetes_spec(options: ClusterOptions) -> dict[str, Any]:
    """The DaskCluster manifest for the dask-kubernetes operator.

    Built with ``dask_kubernetes.operator.make_cluster_spec`` and patched:

    - the operator still emits the removed ``dask-scheduler``/``dask-worker`` console scripts;
      they become ``dask scheduler``/``dask worker``, set as the container ``command`` because
      the image's entrypoint is ``ncp-subsidence`` (``args`` alone would be appended to it);
    - workers run ``cluster.threads_per_worker`` threads, BLAS pinned to one thread;
    - scheduler and workers get their own resources (requests = limits);
    - S3 credentials come from the configured Secret (``envFrom``);
    - every pod meets the *restricted* Pod Security Standard (:func:`harden_pod`): non-root
      uid 1000, ``seccompProfile: RuntimeDefault``, all capabilities dropped, a read-only root
      filesystem with an ``emptyDir`` for scratch, no service-account token;
    - with ``kubernetes.tls_secret`` (the default) the scheduler listens on ``tls://`` only and
      workers join it over TLS with the Secret's certificate (the operator's own
      ``DASK_SCHEDULER_ADDRESS`` is ``tcp://``, so workers are given the address explicitly).
    """
    try:
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError as err:
        raise _missing_extra("kubernetes", "dask-kubernetes", err) from err
    k = options.kubernetes
    env = {**BLAS_ENV, **k.env}
    worker_resources = {
        "requests": {"cpu": k.worker_cpu, "memory": k.worker_memory},
        "limits": {"cpu": k.worker_cpu, "memory": k.worker_memory},
    }
    spec = make_cluster_spec(
        name=k.name,
        image=k.image,
        n_workers=options.n_workers or 2,
        resources=worker_resources,
        env=env,
        idle_timeout=k.idle_timeout,
    )
    # a JSON round trip: no objects shared between scheduler and worker (no YAML anchors)
    spec = json.loads(json.dumps(spec))
    parts = spec["spec"]
    parts["scheduler"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": k.scheduler_cpu, "memory": k.scheduler_memory},
        "limits": {"cpu": k.scheduler_cpu, "memory": k.scheduler_memory},
    }
    for container in _containers(spec):
        args = list(container.pop("args", None) or [])
        if args and args[0] in ("dask-scheduler", "dask-worker"):
            args = ["dask", args[0].split("-", 1)[1], *args[1:]]
        if args[:2] == ["dask", "worker"] and "--nthreads" not in args:
            args += ["--nthreads", str(options.threads_per_worker)]
        if k.tls_secret and args[:2] == ["dask", "scheduler"]:
            args += ["--protocol", "tls"]
        if k.tls_secret and args[:2] == ["dask", "worker"]:
            args.insert(2, f"tls://{k.name}-scheduler:8786")
        container["command"] = args[:2]
        container["args"] = args[2:]
        if k.s3_secret:
            container.setdefault("envFrom", []).append(
                {"secretRef": {"name": k.s3_secret, "optional": True}}
            )
    for role in ("scheduler", "worker"):
        harden_pod(parts[role]["spec"], role, k.tls_secret)
    return spec


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    s = spec.get("spec", {})
    for part in (s.get("scheduler", {}), s.get("worker", {})):
        yield from part.get("spec", {}).get("containers", [])
