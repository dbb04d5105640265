"""The files under cluster/: parsed and checked without Ray, Kubernetes or a cloud (fast).

What a cluster needs from them: KubeRay manifests whose GPU requests agree with Ray's ``num-gpus``,
Ray 2.60.0 everywhere, S3 credentials from a Kubernetes Secret and no secret value in any file, a
RayJob that runs ``dl3d train synsin`` against S3, a ``ray up`` config whose GPU workers install
dl3d, a runtime environment Ray accepts, and only ``dl3d`` commands that exist (or are planned).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
RAY_VERSION = "2.60.0"

# Commands the cluster files may name before they are in `dl3d.jobs.cli.build_parser()`: planned
# (README "Planned commands", cluster/README.md). Once a command is in the CLI it is checked against
# the parser like any other; an entry here then only keeps a stale name from failing the suite.
PLANNED_COMMANDS = {
    ("train", "synsin"),   # dl3d train synsin --data URL --storage URL [--workers N] [--gpus-per-worker G] ...
    ("synsin", "render"),
    ("smpl", "fit"),
}

CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

# Field names of the KubeRay ray.io/v1 types (ray-operator/apis/ray/v1/*_types.go), so a misspelt
# field (which the API server may silently drop) fails here.
RAY_CLUSTER_SPEC_FIELDS = {
    "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations", "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs", "authOptions",
}
HEAD_GROUP_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType", "resources", "labels"}
WORKER_GROUP_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "rayStartParams",
    "template", "scaleStrategy", "numOfHosts", "resources", "labels",
}
AUTOSCALER_OPTIONS_FIELDS = {
    "resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds", "upscalingMode", "env",
    "envFrom", "volumeMounts", "version",
}
RAY_JOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionPolicy", "deletionStrategy", "entrypoint",
    "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
    "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend",
}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
# core/v1 Container fields.
CONTAINER_FIELDS = {
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "resizePolicy",
    "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe",
    "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "securityContext",
    "stdin", "stdinOnce", "tty",
}
# ray.runtime_env.RuntimeEnv.known_fields in Ray 2.60.0 (ray/runtime_env/runtime_env.py).
RUNTIME_ENV_FIELDS = {
    "py_modules", "py_executable", "java_jars", "working_dir", "conda", "pip", "uv", "container", "excludes",
    "env_vars", "_ray_release", "_ray_commit", "_inject_current_ray", "config", "worker_process_setup_hook",
    "_nsight", "_rocprof_sys", "image_uri",
}


# ---------------------------------------------------------------------------------------------- loading


def _yaml_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".yml"))


def _text_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all_docs() -> list[tuple[Path, Any]]:
    return [(p, d) for p in _yaml_files() for d in _docs(p)]


def _kind(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p, d in _all_docs() if isinstance(d, dict) and d.get("kind") == kind]


def _ray_cluster_specs() -> list[tuple[str, dict]]:
    """Every RayCluster spec: RayCluster objects and the rayClusterSpec of RayJobs."""
    specs = [(f"{p.name}: RayCluster {d['metadata']['name']}", d["spec"]) for p, d in _kind("RayCluster")]
    specs += [(f"{p.name}: RayJob {d['metadata']['name']}.rayClusterSpec", d["spec"]["rayClusterSpec"])
              for p, d in _kind("RayJob") if "rayClusterSpec" in d["spec"]]
    return specs


def _cluster_spec_params() -> list:
    """pytest params for the specs; [] when a file does not parse (test_yaml_parses then says why)."""
    try:
        return [pytest.param(where, spec, id=where) for where, spec in _ray_cluster_specs()]
    except Exception:  # noqa: BLE001 - reported by test_yaml_parses / test_kubernetes_objects_have_kind_and_metadata
        return []


def _groups(spec: dict) -> Iterator[tuple[str, dict]]:
    yield "head", spec["headGroupSpec"]
    for g in spec.get("workerGroupSpecs") or []:
        yield f"worker group {g.get('groupName')!r}", g


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def _quantity(value: Any) -> float:
    return float(str(value))


def _gpus(container: dict) -> tuple[float, float]:
    res = container.get("resources") or {}
    return (_quantity((res.get("requests") or {}).get("nvidia.com/gpu", 0)),
            _quantity((res.get("limits") or {}).get("nvidia.com/gpu", 0)))


# ---------------------------------------------------------------------------------------------- all YAML


def test_expected_files_exist():
    for name in ("kuberay/raycluster.yaml", "kuberay/rayjob-train-synsin.yaml", "ray-up.yaml", "env.yaml",
                 "README.md", "Dockerfile"):
        assert (CLUSTER / name).is_file(), f"cluster/{name} is missing"


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_yaml_parses(path):
    docs = _docs(path)
    assert docs, f"{path.name}: no YAML document"
    for d in docs:
        assert isinstance(d, dict), f"{path.name}: a document is {type(d).__name__}, not a mapping"


def test_kubernetes_objects_have_kind_and_metadata():
    for path in (CLUSTER / "kuberay").glob("*.yaml"):
        for d in _docs(path):
            assert d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"), \
                f"{path.name}: every Kubernetes object needs apiVersion, kind and metadata.name"
            if d["kind"] in ("RayCluster", "RayJob"):
                assert d["apiVersion"] == "ray.io/v1", f"{path.name}: {d['kind']} must use apiVersion ray.io/v1"
            assert d["kind"] != "Secret", f"{path.name}: no Secret manifests here; values would end up in git"


# ---------------------------------------------------------------------------------------------- RayCluster


def test_there_is_a_raycluster_and_a_rayjob():
    assert _kind("RayCluster"), "no RayCluster under cluster/"
    assert _kind("RayJob"), "no RayJob under cluster/"


@pytest.mark.parametrize("where,spec", _cluster_spec_params())
def test_ray_cluster_spec(where, spec):
    assert set(spec) <= RAY_CLUSTER_SPEC_FIELDS, f"{where}: unknown fields {set(spec) - RAY_CLUSTER_SPEC_FIELDS}"
    assert spec.get("rayVersion") == RAY_VERSION, f"{where}: rayVersion must be {RAY_VERSION!r}"
    assert set(spec.get("autoscalerOptions") or {}) <= AUTOSCALER_OPTIONS_FIELDS, f"{where}: autoscalerOptions"

    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_FIELDS, f"{where}: unknown headGroupSpec fields {set(head) - HEAD_GROUP_FIELDS}"
    assert isinstance(head.get("rayStartParams"), dict), f"{where}: headGroupSpec.rayStartParams is required"
    assert head["rayStartParams"].get("num-gpus") == "0", f"{where}: the head must start Ray with num-gpus \"0\""
    head_containers = _containers(head)
    assert head_containers and head_containers[0].get("image"), f"{where}: the head container needs an image"
    ports = {p["containerPort"] for p in head_containers[0].get("ports") or []}
    assert {6379, 8265, 10001} <= ports, f"{where}: the head should expose 6379 (GCS), 8265 (dashboard), 10001 (client)"
    assert _gpus(head_containers[0]) == (0, 0), f"{where}: the head asks for no GPU"

    workers = spec.get("workerGroupSpecs") or []
    assert workers, f"{where}: no workerGroupSpecs"
    gpu_groups = 0
    for g in workers:
        name = f"{where}: worker group {g.get('groupName')!r}"
        assert set(g) <= WORKER_GROUP_FIELDS, f"{name}: unknown fields {set(g) - WORKER_GROUP_FIELDS}"
        assert g.get("groupName"), f"{name}: groupName is required"
        assert isinstance(g.get("rayStartParams"), dict), f"{name}: rayStartParams is required"
        lo, hi = g.get("minReplicas", 0), g.get("maxReplicas")
        assert isinstance(hi, int) and 0 <= lo <= hi, f"{name}: need 0 <= minReplicas <= maxReplicas"
        assert lo <= g.get("replicas", lo) <= hi, f"{name}: replicas outside [minReplicas, maxReplicas]"
        requests, limits = _gpus(_containers(g)[0])
        if limits or requests:
            gpu_groups += 1
            assert requests == limits >= 1, f"{name}: nvidia.com/gpu requests ({requests}) and limits ({limits}) must match, >= 1"
            assert _quantity(g["rayStartParams"].get("num-gpus", -1)) == limits, \
                f"{name}: rayStartParams num-gpus must equal the container's nvidia.com/gpu ({limits})"
    assert gpu_groups, f"{where}: no worker group requests nvidia.com/gpu"


@pytest.mark.parametrize("where,spec", _cluster_spec_params())
def test_ray_pods(where, spec):
    images = set()
    for gname, group in _groups(spec):
        # KubeRay's CRD types rayStartParams as map[string]string: a YAML number is rejected.
        for k, v in group["rayStartParams"].items():
            assert isinstance(v, str), f"{where}: {gname} rayStartParams {k}: {v!r} must be a quoted string"
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for c in _containers(group):
            assert set(c) <= CONTAINER_FIELDS, f"{where}: {gname} container: unknown fields {set(c) - CONTAINER_FIELDS}"
            images.add(c.get("image"))
            shm = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == "/dev/shm"]
            assert shm, f"{where}: {gname}: mount a memory emptyDir at /dev/shm (Ray's object store; default is 64 MiB)"
            vol = volumes.get(shm[0]["name"], {})
            assert (vol.get("emptyDir") or {}).get("medium") == "Memory", f"{where}: {gname}: /dev/shm must be emptyDir medium Memory"
    assert len(images) == 1 and None not in images, f"{where}: head and workers must run one image, found {images}"


@pytest.mark.parametrize("where,spec", _cluster_spec_params())
def test_s3_credentials_come_from_a_secret(where, spec):
    for gname, group in _groups(spec):
        service_account = group["template"]["spec"].get("serviceAccountName")  # EKS IRSA / Pod Identity
        for c in _containers(group):
            env = {e["name"]: e for e in c.get("env") or []}
            secret_refs = [s["secretRef"] for s in c.get("envFrom") or [] if "secretRef" in s]
            for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                if var in env:
                    ref = (env[var].get("valueFrom") or {}).get("secretKeyRef") or {}
                    assert "value" not in env[var] and ref.get("name") and ref.get("key"), \
                        f"{where}: {gname}: {var} must come from valueFrom.secretKeyRef, not a value"
                else:
                    assert secret_refs or service_account, \
                        f"{where}: {gname}: {var} must come from a Secret (env secretKeyRef or envFrom) or an IAM role"


# ---------------------------------------------------------------------------------------------- secrets


_CRED_ASSIGNMENT = re.compile(r"\b(" + "|".join(CREDENTIAL_VARS) + r")[ \t]*[:=][ \t]*([^\s#,;)`]*)")
_PLACEHOLDER = re.compile(r"""^["']?(\$|<|\.\.\.|$)""")  # $VAR / ${VAR} / <placeholder> / ... / empty


@pytest.mark.parametrize("path", _text_files(), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_no_secret_values_in_any_file(path):
    text = path.read_text()
    for m in _CRED_ASSIGNMENT.finditer(text):
        assert _PLACEHOLDER.match(m.group(2)), \
            f"{path.name}: {m.group(1)} is given a value ({m.group(2)[:4]}...); use a Secret, an IAM role or a $VARIABLE"
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), f"{path.name}: looks like an AWS access key id"


def test_no_literal_credentials_in_parsed_yaml():
    def walk(node, where):
        if isinstance(node, dict):
            if node.get("name") in CREDENTIAL_VARS:
                assert "value" not in node, f"{where}: {node['name']} has a literal value"
            for k, v in node.items():
                if k in CREDENTIAL_VARS:
                    assert not isinstance(v, str) or _PLACEHOLDER.match(v), f"{where}: {k} has a literal value"
                walk(v, where)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    for path, doc in _all_docs():
        walk(doc, path.name)


# ---------------------------------------------------------------------------------------------- RayJob


def test_rayjob_trains_synsin_on_s3():
    for path, job in _kind("RayJob"):
        spec = job["spec"]
        where = f"{path.name}: RayJob {job['metadata']['name']}"
        assert set(spec) <= RAY_JOB_SPEC_FIELDS, f"{where}: unknown fields {set(spec) - RAY_JOB_SPEC_FIELDS}"
        assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), f"{where}: rayClusterSpec or clusterSelector, one of them"
        assert spec.get("submissionMode", "K8sJobMode") in SUBMISSION_MODES
        assert spec.get("shutdownAfterJobFinishes") is True, f"{where}: shutdownAfterJobFinishes: true frees the GPUs"
        assert isinstance(spec.get("backoffLimit", 0), int) and spec.get("backoffLimit", 0) >= 0
        if spec.get("runtimeEnvYAML"):
            _check_runtime_env(yaml.safe_load(spec["runtimeEnvYAML"]), f"{where}: runtimeEnvYAML")

        argv = shlex.split(spec["entrypoint"])
        assert argv[:3] == ["dl3d", "train", "synsin"], f"{where}: entrypoint must start with `dl3d train synsin`"
        opts = _options(argv[3:])
        for flag in ("--data", "--storage"):
            assert opts.get(flag, "").startswith("s3://"), f"{where}: {flag} must be an s3:// URL (shared by all nodes)"
        assert "--gpus-per-worker" in opts, f"{where}: entrypoint needs --gpus-per-worker"
        if "rayClusterSpec" in spec:
            # The cluster must hold the workers the entrypoint asks for.
            gpus = sum(g["maxReplicas"] * _gpus(_containers(g)[0])[1] for g in spec["rayClusterSpec"]["workerGroupSpecs"])
            wanted = int(opts.get("--workers", 1)) * float(opts["--gpus-per-worker"])
            assert wanted <= gpus, f"{where}: --workers x --gpus-per-worker = {wanted} GPUs, the cluster has {gpus}"


def _options(argv: list[str]) -> dict[str, str]:
    opts, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            key, _, val = argv[i].partition("=")
            if not val and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                val, i = argv[i + 1], i + 1
            opts[key] = val
        i += 1
    return opts


# ---------------------------------------------------------------------------------------------- ray up


def _ray_up() -> dict:
    return yaml.safe_load((CLUSTER / "ray-up.yaml").read_text())


def test_ray_up_config():
    cfg = _ray_up()
    assert cfg.get("cluster_name"), "ray-up.yaml: cluster_name"
    assert isinstance(cfg.get("max_workers"), int) and cfg["max_workers"] >= 1, "ray-up.yaml: max_workers"
    assert cfg.get("provider", {}).get("type"), "ray-up.yaml: provider.type"
    types = cfg.get("available_node_types") or {}
    head = cfg.get("head_node_type")
    assert head in types, "ray-up.yaml: head_node_type must name one of available_node_types"
    assert types[head].get("resources", {}).get("GPU", 0) == 0, "ray-up.yaml: the head node type gets no GPU resource"
    gpu_types = [n for n, t in types.items() if n != head and t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu_types, "ray-up.yaml: a worker node type with resources {GPU: >= 1}"
    for name in gpu_types:
        assert types[name].get("max_workers", cfg["max_workers"]) >= 1, f"ray-up.yaml: {name} max_workers"
    for name, t in types.items():
        # Ray's built-in default AMI is a CUDA 11.2-era image: every node type names its own.
        assert t["node_config"].get("ImageId"), f"ray-up.yaml: {name}: node_config.ImageId"


def test_ray_up_installs_dl3d_on_the_workers():
    cfg = _ray_up()
    image = (cfg.get("docker") or {}).get("image", "")
    commands = list(cfg.get("setup_commands") or []) + list(cfg.get("worker_setup_commands") or [])
    installs = [c for c in commands if re.search(r"\bpip3? install\b", c) and "dl3d" in c]
    assert installs or "dl3d" in image, \
        "ray-up.yaml: setup_commands (or worker_setup_commands) must pip-install dl3d, or docker.image must have it"
    if any("~/dl3d-src" in c or "dl3d-src" in c for c in commands):
        mounts = cfg.get("file_mounts") or {}
        assert any("dl3d-src" in k for k in mounts), "ray-up.yaml: setup_commands use the checkout from file_mounts"
    if "." in (cfg.get("file_mounts") or {}).values():
        assert ".gitignore" in (cfg.get("rsync_filter") or []), \
            "ray-up.yaml: syncing the checkout needs rsync_filter [.gitignore] (else .venv goes to every node)"


def test_ray_up_matches_rays_own_schema():
    """Ray 2.60's ray-schema.json, read from the installed package without importing Ray."""
    jsonschema = pytest.importorskip("jsonschema")
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ray is not installed")
    schema_path = Path(list(spec.submodule_search_locations)[0]) / "autoscaler" / "ray-schema.json"
    if not schema_path.is_file():
        pytest.skip(f"no {schema_path}")
    jsonschema.validate(_ray_up(), json.loads(schema_path.read_text()))


# ---------------------------------------------------------------------------------------------- env.yaml


def _check_runtime_env(env: Any, where: str) -> None:
    assert isinstance(env, dict), f"{where}: a runtime env is a mapping"
    assert set(env) <= RUNTIME_ENV_FIELDS, f"{where}: unknown runtime env fields {set(env) - RUNTIME_ENV_FIELDS}"
    env_vars = env.get("env_vars") or {}
    assert isinstance(env_vars, dict)
    for k, v in env_vars.items():
        assert isinstance(k, str) and isinstance(v, str), f"{where}: env_vars {k}: values must be strings, got {v!r}"
        assert k not in CREDENTIAL_VARS, f"{where}: no credentials in a runtime env (shown in the dashboard, committed)"
        if k.startswith("AWS_"):
            # Ray expands an unset ${VAR} to "", and botocore fails on e.g. AWS_DEFAULT_REGION="".
            assert "${" not in v, f"{where}: {k}: no ${{...}} reference for an AWS_* variable"
    # A working_dir of the checkout puts its dl3d/ (no dl3d.jobs / dl3d.workers) before the installed package.
    assert env.get("working_dir") not in (".", "./"), f"{where}: working_dir '.' hides the installed dl3d"
    for m in env.get("py_modules") or []:
        assert not str(m).endswith(".whl"), f"{where}: a wheel in py_modules is pip-installed with all its dependencies"


def test_env_yaml_is_a_valid_runtime_env():
    _check_runtime_env(yaml.safe_load((CLUSTER / "env.yaml").read_text()), "env.yaml")


# ---------------------------------------------------------------------------------------------- dl3d commands


@pytest.fixture(scope="module")
def cli() -> argparse.ArgumentParser:
    from dl3d.jobs.cli import build_parser

    return build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


# `dl3d` at a command position: after `-- `, a backtick, a path (`.venv/bin/dl3d`), `&&` or `$ `
# (not after `;` or `|`, which prose and tables use too).
_CMD_POS = r"(?:--[ \t]+|`|/|&&[ \t]*|\$[ \t]+)"
_CMD_ANYWHERE = re.compile(_CMD_POS + r"dl3d[ \t]+([^\n`]*)")
_CMD_OR_LINE_START = re.compile(r"(?:^[ \t]*|" + _CMD_POS + r")dl3d[ \t]+([^\n`]*)", re.M)


def _named_commands() -> list[tuple[str, list[str]]]:
    """(file, words after `dl3d`) for each command line named in the cluster files."""
    found: list[tuple[str, str]] = []
    for path in _text_files():
        text = path.read_text()
        if path.suffix == ".md":
            # Code only: fenced blocks and inline code (prose says "dl3d reads ...").
            blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
            inline = re.findall(r"`([^`\n][^`]*)`", re.sub(r"```.*?```", "", text, flags=re.S))
            found += [(path.name, m) for b in blocks + inline for m in _CMD_OR_LINE_START.findall(b)]
        elif path.suffix in (".yaml", ".yml"):
            found += [(path.name, m) for m in _CMD_ANYWHERE.findall(text)]            # comments included

            def strings(node):
                if isinstance(node, str):
                    yield node
                elif isinstance(node, dict):
                    for v in node.values():
                        yield from strings(v)
                elif isinstance(node, list):
                    for v in node:
                        yield from strings(v)

            for doc in _docs(path):
                for s in strings(doc):
                    found += [(path.name, m) for m in _CMD_OR_LINE_START.findall(s.replace("\n", " "))]
        else:
            found += [(path.name, m) for m in _CMD_ANYWHERE.findall(text)]
    words = []
    for where, rest in found:
        w = []
        for tok in rest.split():
            if not re.fullmatch(r"[a-z][a-z0-9-]*", tok):
                break
            w.append(tok)
        words.append((where, w))
    return words


def test_cluster_files_name_dl3d_commands():
    named = _named_commands()
    assert any(w[:2] == ["smpl", "export"] for _, w in named), "expected the README to show `dl3d smpl export`"
    assert any(w[:2] == ["train", "synsin"] for _, w in named)


def test_named_dl3d_commands_exist_or_are_planned(cli):
    problems = []
    for where, words in _named_commands():
        if tuple(words[:2]) in PLANNED_COMMANDS:
            continue
        parser, path = cli, []
        for w in words:
            subs = _subcommands(parser)
            if subs is None:  # a leaf command: the rest are its arguments
                break
            if w not in subs:
                problems.append(f"{where}: `dl3d {' '.join(path + [w])}` is not a dl3d command "
                                f"(choices: {sorted(subs)}; planned: {sorted(PLANNED_COMMANDS)})")
                break
            parser, path = subs[w], path + [w]
    assert not problems, "\n".join(problems)
