"""SERVE_FRONT: Ray's HAProxy mode gets the machine's haproxy on loopback, or a clear refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_app.rest.serve_front import SETUP_HOOK, haproxy_ports, loopback_haproxy, ray_switches, runtime_env
from treasury.settings import ConfigError, RuntimeSettings

HAPROXY = RuntimeSettings(serve_front="haproxy")


def found(name: str) -> str | None:
    return "/usr/sbin/haproxy" if "haproxy" in name else None


def test_the_proxy_needs_no_switch_and_no_hook() -> None:
    proxy = RuntimeSettings()
    assert proxy.serve_front == "proxy"
    assert ray_switches(proxy, {"RAY_ADDRESS": "10.0.0.1:6379"}, which=lambda name: None) == {}
    assert runtime_env(proxy, {"A": "1"}) == {"env_vars": {"A": "1"}}


def test_haproxy_mode_runs_the_machines_haproxy_with_a_short_drain_and_quick_health_checks() -> None:
    switches = ray_switches(HAPROXY, {}, which=found)
    assert switches == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
                        "RAY_SERVE_HAPROXY_BINARY_PATH": "/usr/sbin/haproxy",
                        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "3",
                        "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "2"}
    assert runtime_env(HAPROXY, switches) == {"env_vars": switches, "worker_process_setup_hook": SETUP_HOOK}


def test_a_named_binary_is_kept() -> None:
    named = {"RAY_SERVE_HAPROXY_BINARY_PATH": "/opt/haproxy-3/haproxy"}
    assert ray_switches(HAPROXY, named, which=found)["RAY_SERVE_HAPROXY_BINARY_PATH"] == "/opt/haproxy-3/haproxy"


def test_without_haproxy_the_refusal_says_how_to_get_it() -> None:
    with pytest.raises(ConfigError, match="SERVE_FRONT: haproxy needs the haproxy binary: apt-get install -y haproxy"):
        ray_switches(HAPROXY, {}, which=lambda name: None)


def test_a_cluster_keeps_serves_proxy() -> None:
    with pytest.raises(ConfigError, match=r"SERVE_FRONT: .* RAY_ADDRESS names a cluster"):
        ray_switches(HAPROXY, {"RAY_ADDRESS": "10.0.0.1:6379"}, which=found)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_haproxy_mode_takes_a_loopback_serve_host(host: str) -> None:
    assert RuntimeSettings(serve_front="haproxy", serve_host=host).serve_host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "api.internal"])
def test_haproxy_mode_refuses_a_serve_host_the_network_reaches(host: str) -> None:
    """haproxy's hop to the replicas is plain HTTP on SERVE_HOST."""
    with pytest.raises(ConfigError, match="SERVE_FRONT: haproxy needs SERVE_HOST on loopback"):
        RuntimeSettings.from_env({"SERVE_FRONT": "haproxy", "SERVE_HOST": host})
    assert RuntimeSettings.from_env({"SERVE_HOST": host}).serve_front == "proxy"


def test_an_unknown_front_is_named() -> None:
    with pytest.raises(ConfigError, match="SERVE_FRONT"):
        RuntimeSettings.from_env({"SERVE_FRONT": "nginx"})


def test_haproxy_listens_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray 2.60's template binds haproxy's stats and Prometheus frontends to every interface."""
    from ray.serve._private import haproxy

    monkeypatch.setattr(haproxy, "HAPROXY_CONFIG_TEMPLATE", haproxy.HAPROXY_CONFIG_TEMPLATE)
    assert "bind *:{{ config.stats_port }}" in haproxy.HAPROXY_CONFIG_TEMPLATE  # what the hook is for
    loopback_haproxy()
    template = haproxy.HAPROXY_CONFIG_TEMPLATE
    assert "bind 127.0.0.1:{{ config.stats_port }}" in template
    assert "bind 127.0.0.1:{{ config.metrics_port }}" in template
    assert "bind *:" not in template and "bind :" not in template


@pytest.mark.parametrize("bind", ["0.0.0.0:7000", "*:7000", ":7000", "[::]:7000", ":::7000"])
def test_a_template_with_another_open_bind_stops_the_worker(monkeypatch: pytest.MonkeyPatch, bind: str) -> None:
    from ray.serve._private import haproxy

    monkeypatch.setattr(haproxy, "HAPROXY_CONFIG_TEMPLATE", f"frontend other\n    bind {bind}\n")
    with pytest.raises(RuntimeError, match="every interface"):
        loopback_haproxy()


def test_deploy_up_refuses_haproxy_before_joining_the_cluster() -> None:
    from serve_app.job import cluster
    from treasury.settings import PolicyConfig

    with pytest.raises(ConfigError, match="SERVE_FRONT: haproxy runs only under `treasury-orch run`"):
        cluster.up("203.0.113.1:6379", HAPROXY, PolicyConfig())  # a documentation address: never reached


def test_haproxy_files_of_the_stopped_node_are_removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ray.serve._private import constants

    from serve_app.rest.serve_front import remove_haproxy_files

    monkeypatch.setattr(constants, "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", str(tmp_path / "haproxy.cfg"))
    for node in ("stopped-node", "other-node"):
        (tmp_path / node).mkdir()
        (tmp_path / node / "haproxy.cfg").write_text("global\n")
    remove_haproxy_files(RuntimeSettings(), "stopped-node")  # Serve's proxy: nothing of haproxy's is touched
    assert (tmp_path / "stopped-node").is_dir()
    remove_haproxy_files(HAPROXY, "stopped-node")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-node"]


def test_haproxy_opens_serves_port_and_its_own_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ports as Ray reads them: its defaults, or what its settings name."""
    from ray.serve._private import constants

    assert haproxy_ports(RuntimeSettings()) == {}
    assert haproxy_ports(RuntimeSettings(serve_front="haproxy", serve_port=8100)) == {
        "SERVE_PORT": 8100, "RAY_SERVE_HAPROXY_STATS_PORT": 8404, "RAY_SERVE_HAPROXY_METRICS_PORT": 9101}
    monkeypatch.setattr(constants, "RAY_SERVE_HAPROXY_STATS_PORT", 18404)
    assert haproxy_ports(HAPROXY)["RAY_SERVE_HAPROXY_STATS_PORT"] == 18404
