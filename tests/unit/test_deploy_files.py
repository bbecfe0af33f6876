"""The deployment files, checked without a cloud, a cluster or a Docker engine.

cluster.yaml goes through Ray's own cluster-launcher schema; the Serve config and the KubeRay
manifest's serveConfigV2 must equal what the code generates (and pass Serve's own config schema);
the Dockerfile and the manifest are linted for the things that bite in production.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from ray import serve
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

from serve_app.cli import artifacts, main
from serve_app.rest.deployment import APP_NAME, DEPLOYMENT_NAME, REQUIRED_ENV, Ingress, ingress_options
from treasury.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Where the parts are and who signs: what a cluster must set (the other keys have defaults).
CLUSTER_ENV = {"KAFKA_BOOTSTRAP", "DATABASE_URL", "SHARDS", "VAR_WINDOW_DAYS", "SERVE_HOST", "SERVE_PORT",
               "VAULT_ADDR"}



def load(relative: str) -> Any:
    return yaml.safe_load((ROOT / relative).read_text())


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / artifacts.LOCK).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


# ------------------------------------------------------------------------------------------ cluster.yaml


def test_cluster_yaml_validates_with_rays_schema() -> None:
    config = load("cluster.yaml")
    validate_config(prepare_config(copy.deepcopy(config)))
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert workers and all(t["max_workers"] > t.get("min_workers", 0) for t in workers)  # it can scale


def test_cluster_yaml_rejects_what_ray_would() -> None:
    """The validation above is real: Ray's schema refuses an unknown top-level key."""
    config = {**load("cluster.yaml"), "setup_comands": []}
    with pytest.raises(Exception, match="setup_comands"):
        validate_config(prepare_config(config))


def test_cluster_yaml_installs_this_checkout_and_starts_ray() -> None:
    config = load("cluster.yaml")
    home = f"/home/{config['auth']['ssh_user']}"
    mounts = {remote.replace(home, "~"): local for remote, local in config["file_mounts"].items()}
    checkout = next(remote for remote, local in mounts.items() if local == ".")
    setup = " && ".join(config["setup_commands"])
    assert f"-c {checkout}/{artifacts.LOCK}" in setup and setup.rstrip().endswith(checkout)
    head = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head and "--port=6379" in head and "--dashboard-host=0.0.0.0" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    worker = " ".join(config["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker
    env_file = next(remote for remote, local in mounts.items() if local.endswith("treasury.env"))
    for commands in (head, worker):
        assert f". {env_file} " in commands  # nodes export the env before ray start
    assert ".venv" in config["rsync_exclude"] and ".stack" in config["rsync_exclude"]


def test_env_example_names_every_runtime_key_and_is_ignored_by_git() -> None:
    example = (ROOT / "deploy/treasury.env.example").read_text()
    names = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert set(REQUIRED_ENV) | CLUSTER_ENV | {"VAULT_TOKEN_FILE"} <= names
    assert "RAY_worker_niceness=0" in example.splitlines()  # read by `ray start` (treasury.priority)
    assert "deploy/treasury.env" in (ROOT / ".gitignore").read_text().splitlines()


# ------------------------------------------------------------------------------------------ Serve config


def test_checked_in_serve_config_and_manifest_equal_the_generated_ones() -> None:
    assert artifacts.stale(ROOT) == [], "run `treasury-orch deploy serve-config --write`"
    assert main(["deploy", "serve-config", "--check", "--root", str(ROOT)]) == 0


def test_serve_config_comes_from_the_deployment_object() -> None:
    config = artifacts.serve_config()
    ServeDeploySchema.model_validate(config)  # what `serve deploy` checks before sending it
    [app] = config["applications"]
    assert (app["name"], app["route_prefix"], app["import_path"]) == (APP_NAME, "/", artifacts.APP_IMPORT_PATH)
    [dep] = app["deployments"]
    cfg = Ingress.options(**ingress_options(RuntimeSettings()))._deployment_config  # as deploy() runs it
    assert dep["name"] == DEPLOYMENT_NAME
    assert dep["max_ongoing_requests"] == cfg.max_ongoing_requests
    assert dep["health_check_period_s"] == cfg.health_check_period_s
    assert dep["ray_actor_options"] == {"num_cpus": Ingress.ray_actor_options["num_cpus"]}
    assert "num_replicas" not in dep  # the latency policy decides
    assert dep["autoscaling_config"]["max_replicas"] == cfg.autoscaling_config.max_replicas
    assert dep["autoscaling_config"]["policy"]["policy_function"] == "serve_app.rest.autoscaling:P95LatencyPolicy"
    assert app["args"] == {"required_env": list(REQUIRED_ENV)}


def latency_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """A stand-in custom policy: the generator must name it by import path."""
    return ctx.current_num_replicas, {}


def test_autoscaling_options_and_custom_policy_are_carried_into_the_file() -> None:
    scaled = Ingress.options(
        autoscaling_config={"min_replicas": 2, "max_replicas": 6, "metrics_interval_s": 1.0,
                            "policy": {"policy_function": latency_policy}},
        graceful_shutdown_timeout_s=30,
    )
    config = artifacts.serve_config(scaled)
    ServeDeploySchema.model_validate(config)
    [dep] = config["applications"][0]["deployments"]
    assert "num_replicas" not in dep
    auto = dep["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["metrics_interval_s"]) == (2, 6, 1.0)
    assert auto["policy"]["policy_function"].replace(":", ".") == f"{__name__}.latency_policy"
    assert dep["graceful_shutdown_timeout_s"] == 30
    rendered = artifacts.render_serve_config(config)
    assert yaml.safe_load(rendered) == config and rendered.startswith("# Generated")


def test_a_changed_deployment_makes_the_checked_in_files_stale(tmp_path: Path) -> None:
    (tmp_path / "deploy/kuberay").mkdir(parents=True)
    (tmp_path / artifacts.RAYSERVICE).write_text((ROOT / artifacts.RAYSERVICE).read_text())
    assert main(["deploy", "serve-config", "--check", "--root", str(tmp_path)]) == 1  # no serve_config.yaml yet
    assert main(["deploy", "serve-config", "--write", "--root", str(tmp_path)]) == 0
    assert artifacts.stale(tmp_path) == []
    changed = artifacts.generated(tmp_path, Ingress.options(max_ongoing_requests=7))
    artifacts.write(changed)
    assert artifacts.stale(tmp_path) == [tmp_path / artifacts.SERVE_CONFIG, tmp_path / artifacts.RAYSERVICE]


def test_serve_config_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "serve-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == artifacts.serve_config()


def test_splice_needs_a_serve_config_block() -> None:
    with pytest.raises(ValueError, match="serveConfigV2"):
        artifacts.splice_serve_config("kind: RayService\n", "a: 1\n")
    spliced = artifacts.splice_serve_config("spec:\n  serveConfigV2: |\n    old: 1\n\n    older: 2\n  next: x\n",
                                            "# comment\nnew: 2\n")
    assert yaml.safe_load(spliced) == {"spec": {"serveConfigV2": "new: 2\n", "next": "x"}}


def test_app_builder_names_the_missing_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_app.rest.deployment import app_builder
    from treasury.settings import ConfigError

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka:9092")
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        app_builder({"required_env": list(REQUIRED_ENV)})
    monkeypatch.setenv("DATABASE_URL", "postgresql://treasury@db:5432/treasury")
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    monkeypatch.delenv("SIGNER", raising=False)
    with pytest.raises(ConfigError, match="VAULT_ADDR"):  # no unsigned orders on a cluster either
        app_builder({})
    monkeypatch.setenv("VAULT_ADDR", "https://vault.internal:8200")
    monkeypatch.setenv("VAULT_TOKEN", "a-token-read-from-a-secret")
    app = app_builder({})
    assert isinstance(app, serve.Application)


# ------------------------------------------------------------------------------------------ the image


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_the_cli_as_a_non_root_user_from_a_pinned_slim_base() -> None:
    steps = dockerfile()
    [base] = [args for word, args in steps if word == "FROM"]
    image, _, tag = base.partition(":")
    assert image == "python" and tag.startswith("3.11.") and "slim" in tag and "latest" not in tag
    [entry] = [args for word, args in steps if word == "ENTRYPOINT"]
    script = next(iter(PYPROJECT["project"]["scripts"]))
    assert yaml.safe_load(entry) == [script]  # exec form, the console script pyproject declares
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_user = max(i for i, (word, _) in enumerate(steps) if word == "USER")
    assert all(word != "RUN" for word, _ in steps[last_user:])  # nothing runs as root after the switch
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert f"-r {artifacts.LOCK}" in runs and "--no-deps ." in runs
    copied = {shlex.split(args)[0] for word, args in steps if word == "COPY"}
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied and str(artifacts.LOCK) in copied



def test_the_local_stack_stays_out_of_the_wheel_and_the_image() -> None:
    """devstack/ starts Kafka, Postgres and the rest for development: never shipped, never copied."""
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not any(fnmatch.fnmatch("devstack", pattern) for pattern in packages)
    product = ("treasury", "schemas", "storage", "risk", "actors", "serve_app")
    assert all(any(fnmatch.fnmatch(p, pattern) for pattern in packages) for p in product)
    copied = {shlex.split(args)[0] for word, args in dockerfile() if word == "COPY"}
    assert not any(path.startswith("devstack") for path in copied)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "devstack" in ignored

def test_every_dependency_is_pinned_in_the_lock_within_its_bounds() -> None:
    pins = lock_pins()
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in {artifacts.LOCK}"
        assert req.specifier.contains(pins[name]), f"{req.name}=={pins[name]} outside {req.specifier}"
    dev = {canonicalize_name(Requirement(t).name) for t in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert not dev & {"pytest", "ruff", "mypy", "hypothesis"} & set(pins)  # dev tools stay out of the image


def test_runtime_pins_walk_this_venv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pins = artifacts.runtime_pins()
    names = {canonicalize_name(p.partition("==")[0]) for p in pins}
    assert {"ray", "fastapi", "uvicorn", "asyncpg", "confluent-kafka", "aiohttp"} <= names  # incl. ray's extras
    assert "pytest" not in names and "treasury-orch" not in names
    assert main(["deploy", "lock", "--write", "--root", str(tmp_path)]) == 0
    assert main(["deploy", "lock", "--check", "--root", str(tmp_path)]) == 0
    (tmp_path / artifacts.LOCK).write_text("ray==0.0.1\n")
    assert main(["deploy", "lock", "--check", "--root", str(tmp_path)]) == 1
    capsys.readouterr()
    assert main(["deploy", "lock"]) == 0
    assert capsys.readouterr().out == artifacts.render_lock(pins)


# ------------------------------------------------------------------------------------------ KubeRay


def manifest() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((ROOT / artifacts.RAYSERVICE).read_text()))
    [service] = [d for d in docs if d["kind"] == "RayService"]
    return dict(service)


def containers(service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    return [c for pod in pods for c in pod["spec"]["containers"]]


def test_rayservice_serves_the_generated_config() -> None:
    service = manifest()
    assert service["apiVersion"] == "ray.io/v1"
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == artifacts.serve_config()
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == lock_pins()["ray"]


def test_rayservice_pods_run_this_image_as_non_root_with_the_environment() -> None:
    service = manifest()
    version = PYPROJECT["project"]["version"]
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    assert all(p["spec"]["securityContext"]["runAsNonRoot"] is True for p in pods)
    for container in containers(service):
        image = container["image"]
        assert image.rsplit("/", 1)[-1] == f"treasury-orch:{version}", image  # a version tag, never latest
        names = {e["name"] for e in container["env"]}
        assert set(REQUIRED_ENV) | CLUSTER_ENV | {"VAULT_TOKEN"} <= names
        assert next(e for e in container["env"] if e["name"] == "VAULT_TOKEN")["valueFrom"]["secretKeyRef"]
        db = next(e for e in container["env"] if e["name"] == "DATABASE_URL")
        assert "secretKeyRef" in db["valueFrom"]  # the password never sits in the manifest
    serve_port = artifacts.serve_config()["http_options"]["port"]
    head_ports = {p["containerPort"] for p in containers(service)[0]["ports"]}
    assert serve_port in head_ports
    workers = cluster["workerGroupSpecs"]
    assert all(g["maxReplicas"] > g["minReplicas"] for g in workers) and cluster["enableInTreeAutoscaling"]
