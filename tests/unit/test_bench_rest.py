"""bench/rest's Serve switches: Ray's HAProxy mode gets the machine's haproxy, or a clear error."""

from __future__ import annotations

import pytest

from bench.rest import haproxy_mode, haproxy_switches

HA = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def test_other_switches_are_passed_as_given() -> None:
    plain = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    assert not haproxy_mode(plain)
    assert haproxy_switches(plain, which=lambda name: None) == plain


def test_haproxy_mode_runs_the_machines_haproxy() -> None:
    found = haproxy_switches(HA, which=lambda name: "/usr/sbin/haproxy" if "haproxy" in name else None)
    assert found == {**HA, "RAY_SERVE_HAPROXY_BINARY_PATH": "/usr/sbin/haproxy"}


def test_a_named_binary_is_kept() -> None:
    named = {**HA, "RAY_SERVE_HAPROXY_BINARY_PATH": "/opt/haproxy-3/haproxy"}
    assert haproxy_switches(named, which=lambda name: "/usr/sbin/haproxy") == named


def test_without_haproxy_the_benchmark_says_how_to_get_it() -> None:
    with pytest.raises(SystemExit, match="apt-get install -y haproxy"):
        haproxy_switches(HA, which=lambda name: None)


def test_haproxy_listens_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray 2.60's template binds haproxy's stats and Prometheus frontends to every interface."""
    from ray.serve._private import haproxy

    from bench.rest import loopback_haproxy

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

    from bench.rest import loopback_haproxy

    monkeypatch.setattr(haproxy, "HAPROXY_CONFIG_TEMPLATE", f"frontend other\n    bind {bind}\n")
    with pytest.raises(RuntimeError, match="every interface"):
        loopback_haproxy()
