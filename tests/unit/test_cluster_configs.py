"""Deployment files under cluster/ agree with the code they deploy.

Every YAML file there is discovered by glob, so a new manifest is checked without editing this file: it must
parse, Ray clusters must be well-formed KubeRay / cluster-launcher specs, every promptfarm image reference must be
the Dockerfile's tag (= pyproject's version), the Dockerfile must install pyproject's exact pins, RayJob
entrypoints must name a real `jobs` module and a loadable config, the MLflow stack must be Postgres + proxied S3,
and no public Service may expose a Ray port (the dashboard above all). No network, no Docker, no Ray.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pytest
import yaml

from pipeline.config import load_config
from tests.conftest import ROOT

CLUSTER = ROOT / "cluster"
DOCKERFILE = CLUSTER / "Dockerfile"
YAML_FILES = sorted({*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml")})
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PUBLIC_SERVICE_TYPES = {"LoadBalancer", "NodePort"}
KUBERAY_KINDS = {"RayCluster", "RayJob", "RayService"}
# Ray's dashboard / Jobs API, GCS and client ports (and KubeRay's names for them): each runs code for its callers.
RAY_PORTS = {8265, 6379, 10001, "dashboard", "gcs", "client"}
# name[extras]==version, as written in pyproject dependencies and in the Dockerfile's pip lines.
PIN = re.compile(r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9_.-]*)(\[[^\]]*\])?==([0-9][\w.+!-]*)")
JOB_CALL = re.compile(r"python -m (jobs\.\w+) (\S+\.ya?ml)")


# ---- discovery -----------------------------------------------------------------------------------------------------


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def yaml_docs(path: Path) -> list:
    """Non-empty documents of a (possibly multi-document) YAML file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_docs() -> list[tuple[str, dict]]:
    """(file, document) for every parsable mapping document under cluster/; parse errors surface in their own test."""
    out = []
    for path in YAML_FILES:
        try:
            out += [(rel(path), d) for d in yaml_docs(path) if isinstance(d, dict)]
        except yaml.YAMLError:
            continue
    return out


DOCS = all_docs()


def of_kind(kind: str) -> list[tuple[str, dict]]:
    return [(f, d) for f, d in DOCS if d.get("kind") == kind]


def ray_cluster_specs() -> list[tuple[str, dict]]:
    """RayCluster specs: standalone ones and the ones RayJobs bring up."""
    return [(f, d["spec"]) for f, d in of_kind("RayCluster")] + [
        (f, d["spec"]["rayClusterSpec"]) for f, d in of_kind("RayJob") if "rayClusterSpec" in d.get("spec", {})]


def launcher_configs() -> list[tuple[str, dict]]:
    return [(f, d) for f, d in DOCS if "available_node_types" in d]


def walk(node) -> Iterator[tuple[str, object]]:
    """Every (key, value) pair in a nested structure of dicts and lists."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def mappings(node) -> Iterator[dict]:
    """Every dict in a nested structure, itself included (containers sit in lists, not under keys)."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from mappings(v)
    elif isinstance(node, list):
        for v in node:
            yield from mappings(v)


def pod_specs(spec: dict) -> list[dict]:
    """Pod specs of a RayCluster spec's head and worker groups."""
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [g["template"]["spec"] for g in groups]


def ids(items: list[tuple]) -> list[str]:
    """Test ids: the file each parametrised case comes from."""
    return [item[0] for item in items]


def cluster_texts() -> dict[str, str]:
    """Every text file under cluster/ (manifests, scripts, docs)."""
    return {rel(p): p.read_text() for p in sorted(CLUSTER.rglob("*")) if p.is_file()}


# ---- facts derived from the Dockerfile and pyproject ---------------------------------------------------------------


def dockerfile_instructions() -> str:
    """The Dockerfile without comments: pins mentioned in prose do not count as installed."""
    return "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#"))


def pins(text: str) -> dict[str, tuple[str, str]]:
    """{normalised name: (extras, version)} for every name==version in `text`."""
    return {m[1].lower().replace("_", "-"): (m[2] or "", m[3]) for m in PIN.finditer(text)}


def image_ref() -> str:
    """The reference the Dockerfile documents building (`docker build -f cluster/Dockerfile -t REF .`)."""
    m = re.search(r"docker build -f cluster/Dockerfile -t (\S+) \.", DOCKERFILE.read_text())
    assert m, "cluster/Dockerfile must document its build command with the image reference"
    return m[1]


def image_repo(ref: str) -> str:
    """'host/org/name:tag' -> 'host/org/name' (a ':' before the last '/' is a registry port, not a tag)."""
    head, _, tail = ref.rpartition("/")
    return f"{head}/{tail.split(':')[0]}" if head else tail.split(":")[0]


def image_tag(ref: str) -> str | None:
    tail = ref.rpartition("/")[2]
    return tail.split(":", 1)[1] if ":" in tail else None


def image_refs() -> list[tuple[str, str]]:
    """(file, reference) of every `image` / `*_image` value under cluster/."""
    return [(f, v) for f, d in DOCS for k, v in walk(d)
            if isinstance(k, str) and (k == "image" or k.endswith("_image")) and isinstance(v, str)]


# ---- commands, env and paths ---------------------------------------------------------------------------------------


def flag_value(args: list[str], flag: str) -> str | None:
    """Value following `flag` in an argv list (None if absent)."""
    return args[args.index(flag) + 1] if flag in args else None


def mlflow_server_commands() -> list[tuple[str, list[str], dict]]:
    """(file, argv, owner) for every `mlflow server ...` command; owner holds its env (k8s list or compose map)."""
    out = []
    for f, d in DOCS:
        for owner in mappings(d):
            argv = owner.get("command")
            if isinstance(argv, list) and [str(a) for a in argv[:2]] == ["mlflow", "server"]:
                out.append((f, [str(a) for a in argv], owner))
    return out


def env_names(owner: dict) -> set[str]:
    env = owner.get("env") or owner.get("environment") or {}
    return set(env) if isinstance(env, dict) else {e["name"] for e in env}


def env_value(container: dict, name: str) -> str | None:
    return next((e.get("value") for e in container.get("env", []) if e["name"] == name), None)


def storage_paths() -> set[str]:
    """Absolute storage_path of every experiment config named anywhere under cluster/ (relative ones are local)."""
    configs = {m for text in cluster_texts().values() for m in re.findall(r"jobs/configs/[\w.-]+\.ya?ml", text)}
    return {p for p in (load_config(ROOT / c).storage_path for c in configs) if p.startswith("/")}


def under(path: str, mount: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(mount))


# ---- every file ----------------------------------------------------------------------------------------------------


def test_cluster_files_are_present():
    # Discovery by glob must not silently find nothing: each deployment path has at least one file here.
    assert of_kind("RayCluster") and of_kind("RayJob"), "KubeRay manifests missing"
    assert launcher_configs(), "Ray cluster-launcher YAML missing"
    assert {f for f, _, _ in mlflow_server_commands()} >= {"cluster/mlflow/docker-compose.yaml",
                                                           "cluster/mlflow/k8s.yaml"}
    assert (CLUSTER / "start-local-head.sh").is_file() and (CLUSTER / "README.md").is_file()


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_yaml_parses(path: Path):
    docs = yaml_docs(path)
    assert docs, f"{rel(path)} holds no document"
    for d in docs:
        assert isinstance(d, dict), f"{rel(path)}: top level must be a mapping, got {type(d).__name__}"
        # A Kubernetes object needs both; files without `kind` (compose, launcher) are not Kubernetes objects.
        if "kind" in d:
            assert d.get("apiVersion") and d.get("metadata", {}).get("name"), f"{rel(path)}: {d['kind']} incomplete"
        if d.get("kind") in KUBERAY_KINDS:
            assert d["apiVersion"] == "ray.io/v1", f"{rel(path)}: {d['kind']} must use KubeRay's ray.io/v1 API"


# ---- KubeRay -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "spec"), ray_cluster_specs(), ids=ids(ray_cluster_specs()))
def test_ray_cluster_spec(file: str, spec: dict):
    ray_pin = pins("\n".join(PYPROJECT["project"]["dependencies"]))["ray"][1]
    assert spec.get("rayVersion") == ray_pin, f"{file}: rayVersion must equal pyproject's ray=={ray_pin}"
    assert spec.get("enableInTreeAutoscaling") is True and isinstance(spec.get("autoscalerOptions"), dict)
    assert spec.get("authOptions", {}).get("mode") == "token", f"{file}: Ray token auth must stay on"
    head = spec["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") not in PUBLIC_SERVICE_TYPES, f"{file}: head Service must be internal"
    assert head["template"]["spec"]["containers"], f"{file}: head has no container"
    groups = spec.get("workerGroupSpecs") or []
    for g in groups:
        lo, n, hi = g.get("minReplicas", 0), g.get("replicas", 0), g.get("maxReplicas", 0)
        assert 0 <= lo <= n <= hi and hi >= 1, f"{file}: group {g['groupName']} needs min <= replicas <= max"
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu", 0) for g in groups
            for c in g["template"]["spec"]["containers"] if "limits" in c.get("resources", {})]
    assert any(int(n) >= 1 for n in gpus), f"{file}: no worker group with nvidia.com/gpu in its container limits"


@pytest.mark.parametrize(("file", "spec"), ray_cluster_specs(), ids=ids(ray_cluster_specs()))
def test_ray_pods_mount_shared_storage_and_reach_mlflow(file: str, spec: dict):
    pvcs = {d["metadata"]["name"]: d["spec"] for _, d in of_kind("PersistentVolumeClaim")}
    services = {(d["metadata"]["name"], d["metadata"].get("namespace")): d["spec"] for _, d in of_kind("Service")}
    paths = storage_paths()
    assert paths, "no config under cluster/ uses an absolute (shared) storage_path"
    for pod in pod_specs(spec):
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
                  if "persistentVolumeClaim" in v}
        for c in pod["containers"]:
            for path in paths:
                # Tune results must land on a volume every node shares, or checkpoints die with their node.
                mounts = [m for m in c.get("volumeMounts", []) if m["name"] in claims and under(path, m["mountPath"])]
                assert mounts, f"{file}: container {c['name']} does not mount storage_path {path} from a PVC"
                claim = pvcs.get(claims[mounts[0]["name"]])
                assert claim and "ReadWriteMany" in claim["accessModes"], f"{file}: {path} needs a ReadWriteMany PVC"
            url = urlparse(env_value(c, "MLFLOW_TRACKING_URI") or "")
            name, _, rest = (url.hostname or "").partition(".")
            service = services.get((name, rest.split(".")[0] or None))
            assert service and url.port in [p["port"] for p in service["ports"]], (
                f"{file}: {c['name']} MLFLOW_TRACKING_URI={url.geturl()!r} names no MLflow Service under cluster/")


@pytest.mark.parametrize(("file", "job"), of_kind("RayJob"), ids=ids(of_kind("RayJob")))
def test_rayjob_runs_a_real_job_on_a_loadable_config(file: str, job: dict):
    spec = job["spec"]
    calls = JOB_CALL.findall(spec["entrypoint"])
    assert calls, f"{file}: entrypoint must run `python -m jobs.<name> CONFIG`"
    for module, config in calls:
        found = importlib.util.find_spec(module)
        assert found and found.origin and Path(found.origin).is_relative_to(ROOT / "jobs"), f"{file}: no {module}"
        load_config(ROOT / config)  # raises ConfigError naming the bad key
    # The configs ship in the image's WORKDIR; an entrypoint that changes directory must change into it.
    workdir = re.search(r"^WORKDIR (\S+)", dockerfile_instructions(), re.M)[1]
    cd = re.match(r"cd (\S+) &&", spec["entrypoint"])
    assert cd is None or cd[1] == workdir, f"{file}: entrypoint changes into {cd[1]}, the image's WORKDIR is {workdir}"
    runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML", "{}"))
    assert all(isinstance(v, str) for v in runtime_env.get("env_vars", {}).values()), "env var values must be strings"
    assert spec.get("shutdownAfterJobFinishes") is True, f"{file}: the job's GPUs must be released when it ends"


def test_rayjob_brings_up_the_same_cluster_as_raycluster():
    # Two copies of one spec drift apart unless something compares them.
    standalone = [d["spec"] for _, d in of_kind("RayCluster")]
    for file, job in of_kind("RayJob"):
        assert job["spec"].get("rayClusterSpec") in standalone, f"{file}: rayClusterSpec differs from raycluster.yaml"


# ---- Ray cluster launcher ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "cfg"), launcher_configs(), ids=ids(launcher_configs()))
def test_launcher_config(file: str, cfg: dict):
    assert cfg.get("cluster_name") and cfg["provider"]["type"] and cfg["provider"].get("region")
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types, f"{file}: head_node_type {cfg['head_node_type']!r} is not a node type"
    limit = cfg["max_workers"]
    for name, t in types.items():
        assert "node_config" in t and "resources" in t, f"{file}: node type {name} incomplete"
        if name != cfg["head_node_type"]:
            assert 0 <= t.get("min_workers", 0) <= t.get("max_workers", 0) <= limit, f"{file}: {name} bounds"
    assert sum(t.get("min_workers", 0) for t in types.values()) <= limit
    assert any(t["resources"].get("GPU", 0) >= 1 for t in types.values()), f"{file}: no node type with GPUs"
    run_options = " ".join(cfg["docker"].get("run_options", []))
    assert "RAY_AUTH_MODE=token" in run_options, f"{file}: Ray token auth must stay on"
    for path in storage_paths():
        assert any(under(path, m) for m in re.findall(r"-v \S+:(\S+)", run_options)), f"{file}: {path} not mounted"


# ---- images and pins -----------------------------------------------------------------------------------------------


def test_dockerfile_image_tag_is_the_project_version():
    ref = image_ref()
    assert image_tag(ref) == VERSION, f"image {ref} must be tagged with pyproject's version {VERSION}"
    assert f"-t {ref} ." in (CLUSTER / "README.md").read_text(), "cluster/README.md builds another image tag"


def test_every_image_reference_is_the_project_image_or_pinned():
    ref, refs = image_ref(), image_refs()
    assert refs
    for file, found in refs:
        if image_repo(found) == image_repo(ref):
            assert found == ref, f"{file}: {found} must be {ref}"
        else:
            # Third-party images (Postgres, MinIO) need a tag: untagged or `latest`, the same manifest would deploy
            # whatever version is newest that day.
            assert image_tag(found) not in (None, "latest"), f"{file}: {found} needs an explicit tag"


def test_ray_and_mlflow_processes_run_the_project_image():
    ref = image_ref()
    for file, spec in ray_cluster_specs():
        for pod in pod_specs(spec):
            assert all(c["image"] == ref for c in pod["containers"]), f"{file}: a Ray container runs another image"
    for file, cfg in launcher_configs():
        assert cfg["docker"]["image"] == ref, f"{file}: docker.image must be {ref}"
    for file, _, owner in mlflow_server_commands():
        assert owner.get("image") == ref, f"{file}: the MLflow server must run {ref} (mlflow pinned with the rest)"


def test_dockerfile_pins_equal_pyproject():
    wanted = pins("\n".join(PYPROJECT["project"]["dependencies"]))
    assert {"torch", "ray", "deepspeed", "transformers", "mlflow"} <= set(wanted)
    installed = pins(dockerfile_instructions())
    for name, (extras, version) in wanted.items():
        assert installed.get(name) == (extras, version), (
            f"cluster/Dockerfile pins {name} as {installed.get(name)}; pyproject pins {name}{extras}=={version}")
    text = dockerfile_instructions()
    torch = wanted["torch"][1]
    assert re.search(rf"torch=={re.escape(torch)} --index-url https://download\.pytorch\.org/whl/", text), (
        "torch must come from PyTorch's CUDA index")
    assert re.search(r"pip install [^\n]*-c constraints\.txt \.", text), "the project must install with constraints"
    assert pins((ROOT / "constraints.txt").read_text())["torch"] == ("", torch)
    assert "python3.11" in text and {"psycopg2-binary", "boto3"} <= set(re.findall(r'"([a-z0-9-]+)[><=]', text))


# ---- MLflow stack --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "argv", "owner"), mlflow_server_commands(), ids=ids(mlflow_server_commands()))
def test_mlflow_server_uses_postgres_and_proxied_s3(file: str, argv: list[str], owner: dict):
    backend = flag_value(argv, "--backend-store-uri") or ""
    artifacts = flag_value(argv, "--artifacts-destination") or ""
    assert backend.startswith("postgresql://"), f"{file}: backend store {backend!r} is not Postgres"
    assert urlparse(backend).password is None, f"{file}: the Postgres password belongs in PGPASSWORD, not argv"
    assert artifacts.startswith("s3://") and "--serve-artifacts" in argv, f"{file}: artifacts must be proxied S3"
    assert flag_value(argv, "--host") == "0.0.0.0" and flag_value(argv, "--port") == "5000"
    assert {"MLFLOW_S3_ENDPOINT_URL", "PGPASSWORD"} <= env_names(owner), f"{file}: S3 endpoint / DB password env"
    # The bucket the stack creates is the one MLflow writes to.
    bucket = urlparse(artifacts).netloc
    assert re.search(rf"mc mb [^\n]*local/{bucket}\b", Path(ROOT / file).read_text()), f"{file}: bucket not created"


def selects(policy: dict, labels: dict) -> bool:
    """Whether a NetworkPolicy's (non-empty) matchLabels pod selector picks pods carrying `labels`."""
    match = policy["spec"].get("podSelector", {}).get("matchLabels", {})
    return bool(match) and match.items() <= labels.items()


def test_network_policies_admit_only_named_pods_to_the_mlflow_stack():
    # MLflow has no login here: whoever reaches it can retag versions and move `champion`. Each Deployment of the
    # stack needs a NetworkPolicy whose every ingress rule names its peer pods (an empty `from` admits anyone).
    policies = [d for _, d in of_kind("NetworkPolicy")]
    stack = [(f, d) for f, d in of_kind("Deployment") if f.startswith("cluster/mlflow/")]
    assert {d["metadata"]["name"] for _, d in stack} >= {"mlflow", "postgres", "minio"}
    for file, dep in stack:
        labels, ns = dep["spec"]["template"]["metadata"]["labels"], dep["metadata"].get("namespace")
        mine = [p for p in policies if p["metadata"].get("namespace") == ns and selects(p, labels)]
        assert mine, f"{file}: no NetworkPolicy selects the {dep['metadata']['name']} pods"
        for pol in mine:
            assert "Ingress" in pol["spec"].get("policyTypes", ["Ingress"])
            for rule in pol["spec"].get("ingress", []):
                assert rule.get("from") and all(set(peer) == {"podSelector"} and peer["podSelector"]
                                                for peer in rule["from"]), (
                    f"{file}: NetworkPolicy {pol['metadata']['name']} admits more than named pods")
    peers = [peer["podSelector"].get("matchLabels") for pol in policies if selects(pol, {"app": "mlflow"})
             for rule in pol["spec"]["ingress"] for peer in rule["from"]]
    assert peers == [{"ray.io/is-ray-node": "yes"}], f"MLflow must admit only the Ray pods (KubeRay's label): {peers}"


# ---- exposure and secrets ------------------------------------------------------------------------------------------


def test_no_public_service_exposes_ray():
    for file, d in of_kind("Service") + of_kind("Ingress"):
        spec = d["spec"]
        ports = {p.get(k) for p in spec.get("ports", []) for k in ("port", "targetPort", "name")}
        backends = {v for k, v in walk(spec) if k in ("number", "name") and isinstance(v, int | str)}
        public = d["kind"] == "Ingress" or spec.get("type") in PUBLIC_SERVICE_TYPES
        assert not (public and RAY_PORTS & (ports | backends)), (
            f"{file}: {d['kind']} {d['metadata']['name']} publishes a Ray port (dashboard 8265, GCS, client)")


def test_compose_publishes_only_on_an_explicit_private_bind():
    for file, d in DOCS:
        for name, service in d.get("services", {}).items():
            for port in service.get("ports", []):
                # "HOST:PORT:PORT" with a loopback default; a bare "5000:5000" would listen on every interface.
                m = re.fullmatch(r"(?:\$\{\w+:-([\d.]+)\}|([\d.]+)):\d+:\d+", str(port))
                assert m and (m[1] or m[2]) == "127.0.0.1", f"{file}: {name} publishes {port} beyond loopback"


def test_no_credentials_inline():
    for file, d in of_kind("Secret"):
        pytest.fail(f"{file}: Secret {d['metadata']['name']} is committed; create it with kubectl instead")
    for file, d in DOCS:
        for key, value in walk(d):
            if key in ("env", "environment"):
                items = value.items() if isinstance(value, dict) else ((e["name"], e.get("value")) for e in value)
                for name, v in items:
                    if re.search(r"PASSWORD|SECRET|TOKEN", name) and v is not None:
                        assert str(v).startswith("${"), f"{file}: {name} has an inline value"


def test_jobs_and_configs_named_under_cluster_exist():
    # Commands in the README, scripts and comments are what people paste: they must name real modules and configs.
    texts = cluster_texts().values()
    modules = {m for text in texts for m in re.findall(r"python -m (jobs\.\w+)", text)}
    configs = {m for text in texts for m in re.findall(r"jobs/configs/[\w.-]+\.ya?ml", text)}
    assert "jobs.search" in modules and "jobs/configs/sst2-llama-70b.yaml" in configs
    assert all(importlib.util.find_spec(m) for m in modules), f"unknown jobs module among {sorted(modules)}"
    for config in sorted(configs):
        load_config(ROOT / config)


def test_local_head_script_binds_loopback_with_token_auth():
    script = CLUSTER / "start-local-head.sh"
    text = script.read_text()
    assert os.access(script, os.X_OK), "start-local-head.sh must be executable"
    for flag in ("--node-ip-address 127.0.0.1", "--dashboard-host 127.0.0.1", "--dashboard-port"):
        assert flag in text, f"start-local-head.sh lacks {flag}"
    assert 'RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"' in text, "token auth must be the default"
    subprocess.run(["bash", "-n", str(script)], check=True)  # syntax only; nothing starts
