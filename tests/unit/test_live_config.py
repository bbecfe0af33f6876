"""Live configuration's pure rules: Consul KV listings, blocking-query indexes, what a change means,
the agent's rendered config and the settings that switch it on."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from actors.config_watcher import ConfigFollower, _decode, base_url
from devstack import consul, stack
from devstack.stack import ConsulState, StackInfo
from schemas.config_update import ConfigUpdate
from treasury.live_config import KvFormatError, LiveConfig, next_index, parse_kv, refusal_parts
from treasury.metrics import ShardMetrics, merge
from treasury.settings import ConfigError, PolicyConfig, RuntimeSettings, policy_from_mapping

PREFIX = "treasury/config/"


def entry(key: str, value: str | None, index: int = 7) -> dict[str, object]:
    encoded = None if value is None else base64.b64encode(value.encode()).decode()
    return {"Key": key, "Value": encoded, "Flags": 0, "CreateIndex": index, "ModifyIndex": index, "LockIndex": 0}


def listing(*entries: dict[str, object]) -> bytes:
    return json.dumps(list(entries)).encode()


# ------------------------------------------------------------------------------------------ parse_kv


def test_parse_kv_decodes_values_and_strips_the_prefix() -> None:
    body = listing(entry(PREFIX + "LIQ_BUFFER_PCT", "0.25\n"), entry(PREFIX + "SWEEP_CUTOFFS_UTC", "00:30,15:30"))

    assert parse_kv(body, PREFIX) == {"LIQ_BUFFER_PCT": "0.25", "SWEEP_CUTOFFS_UTC": "00:30,15:30"}


def test_parse_kv_skips_folders_and_other_prefixes_and_keeps_nested_paths() -> None:
    body = listing(entry(PREFIX, None), entry(PREFIX + "sub/", None), entry("other/LIQ_BUFFER_PCT", "0.9"),
                   entry(PREFIX + "sub/LIQ_BUFFER_PCT", "0.1"), entry(PREFIX + "MIN_SWEEP_USD", None))

    assert parse_kv(body, PREFIX) == {"sub/LIQ_BUFFER_PCT": "0.1", "MIN_SWEEP_USD": ""}


def test_parse_kv_reads_an_empty_prefix_as_no_keys() -> None:
    assert parse_kv(b"", PREFIX) == {}
    assert parse_kv(b"[]", PREFIX) == {}


@pytest.mark.parametrize("body", [b"<html>bad gateway</html>", b'{"Key": "x"}', b'[{"Value": "MQ=="}]',
                                  listing({"Key": PREFIX + "VAR_LIMIT_BPS", "Value": "***"})])
def test_parse_kv_refuses_what_is_not_a_kv_listing(body: bytes) -> None:
    with pytest.raises(KvFormatError):
        parse_kv(body, PREFIX)


# ---------------------------------------------------------------------------------------- next_index


@pytest.mark.parametrize(("previous", "header", "expected"), [
    (0, "42", 42),      # first read
    (42, "42", 42),     # wait expired, nothing changed
    (42, "57", 57),     # a change
    (57, "12", 0),      # went backwards: the agent restarted, read everything again
    (5, "0", 0),        # never wait on 0
    (5, None, 0),
    (5, "abc", 0),
])
def test_next_index_follows_consul_rules(previous: int, header: str | None, expected: int) -> None:
    assert next_index(previous, header) == expected


# ---------------------------------------------------------------------------------------- LiveConfig


def test_a_valid_snapshot_becomes_the_next_version_and_the_same_one_does_not() -> None:
    live = LiveConfig(PolicyConfig())

    first = live.consider({"LIQ_BUFFER_PCT": "0.30"})
    again = live.consider({"LIQ_BUFFER_PCT": "0.3"})
    changed = live.consider({"LIQ_BUFFER_PCT": "0.5"})

    assert (first.kind, first.version) == ("accepted", 1)  # the first snapshot announces Consul is live
    assert (again.kind, again.version) == ("unchanged", 1)
    assert (changed.kind, changed.version) == ("accepted", 2)
    assert Decimal("0.5") == changed.config.LIQ_BUFFER_PCT and live.active == changed.config


@pytest.mark.parametrize(("values", "key", "words"), [
    ({"LIQ_BUFFER_PCT": "1.7"}, "LIQ_BUFFER_PCT", "less than or equal to 1"),
    ({"LIQ_BUFFER_PCT": "abc"}, "LIQ_BUFFER_PCT", "decimal"),
    ({"SWEEP_CUTOFFS_UTC": "25:00"}, "SWEEP_CUTOFFS_UTC", "25:00"),
    ({"MIN_SWEEP_USD": ""}, "MIN_SWEEP_USD", "decimal"),
    ({"LIQ_BUFER_PCT": "0.2"}, "LIQ_BUFER_PCT", "unknown configuration key"),
])
def test_a_bad_value_is_refused_by_name_and_the_last_good_version_stays(
    values: dict[str, str], key: str, words: str
) -> None:
    live = LiveConfig(PolicyConfig())
    good = live.consider({"LIQ_BUFFER_PCT": "0.4"})

    verdict = live.consider({**{"LIQ_BUFFER_PCT": "0.4"}, **values})

    assert verdict.kind == "rejected" and verdict.key == key
    assert verdict.reason is not None and words.lower() in verdict.reason.lower()
    assert (verdict.version, verdict.config) == (1, good.config)
    assert (live.version, live.active, live.rejected) == (1, good.config, 1)


def test_deleting_a_key_returns_it_to_the_base_value() -> None:
    base = policy_from_mapping({"VAR_LIMIT_BPS": "12"})
    live = LiveConfig(base)
    live.consider({"VAR_LIMIT_BPS": "20"})

    verdict = live.consider({})

    assert verdict.kind == "accepted" and Decimal("12") == verdict.config.VAR_LIMIT_BPS and verdict.version == 2


def test_a_resumed_watcher_does_not_republish_the_version_in_force() -> None:
    active = policy_from_mapping({"LIQ_BUFFER_PCT": "0.2"})
    live = LiveConfig(PolicyConfig(), active, version=9)

    assert live.consider({"LIQ_BUFFER_PCT": "0.20"}).kind == "unchanged"
    assert live.consider({"LIQ_BUFFER_PCT": "0.21"}).version == 10


def test_refusal_parts_splits_key_and_reason() -> None:
    assert refusal_parts(ConfigError("VAR_LIMIT_BPS: too big")) == ("VAR_LIMIT_BPS", "too big")
    assert refusal_parts(ConfigError("no key here")) == ("config", "no key here")


# ----------------------------------------------------------------------------------------- followers


def update(version: int, **values: str) -> ConfigUpdate:
    return ConfigUpdate(version=version, source="consul", issued_ts=datetime.now(UTC),
                        config=policy_from_mapping(values))


def test_a_follower_applies_only_newer_versions() -> None:
    applied: list[PolicyConfig] = []
    follower = ConfigFollower("127.0.0.1:1", applied.append, "test")  # never started: no thread, no Kafka

    assert follower.offer(update(2, LIQ_BUFFER_PCT="0.5"))
    assert not follower.offer(update(2, LIQ_BUFFER_PCT="0.6"))
    assert not follower.offer(update(1, LIQ_BUFFER_PCT="0.7"))
    assert not follower.offer(None)
    assert follower.offer(update(3, LIQ_BUFFER_PCT="0.1"))

    assert [p.LIQ_BUFFER_PCT for p in applied] == [Decimal("0.5"), Decimal("0.1")] and follower.version == 3


def test_a_malformed_update_message_is_ignored() -> None:
    good = update(4, VAR_LIMIT_BPS="8")

    decoded = _decode(good.model_dump_json().encode())
    assert decoded is not None and (decoded.version, decoded.config) == (4, good.config)
    assert _decode(b'{"version": 0}') is None
    assert _decode(None) is None


def test_the_metric_shows_the_version_every_part_has_and_the_refusals() -> None:
    merged = merge([ShardMetrics(config_version=3), ShardMetrics(config_version=2, config_rejected=4),
                    ShardMetrics(config_version=3)])

    assert (merged.config_version, merged.config_rejected) == (2, 4)
    assert merge([]).config_version == 0


# ------------------------------------------------------------------------------------------ settings


def test_consul_settings_come_from_the_environment_and_round_trip() -> None:
    settings = RuntimeSettings.from_env({"CONSUL_HTTP_ADDR": "127.0.0.1:8501", "CONSUL_KV_PREFIX": "ops/treasury/"})

    assert settings.consul_http_addr == "127.0.0.1:8501" and settings.consul_kv_prefix == "ops/treasury/"
    assert RuntimeSettings.from_env(settings.as_env()) == settings
    plain = RuntimeSettings.from_env({})
    assert plain.consul_http_addr is None and plain.consul_kv_prefix == "treasury/config/"
    assert RuntimeSettings.from_env(plain.as_env()) == plain  # unset stays unset, never the text "None"


def test_a_prefix_without_trailing_slash_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="CONSUL_KV_PREFIX"):
        RuntimeSettings.from_env({"CONSUL_KV_PREFIX": "treasury/config"})


@pytest.mark.parametrize(("addr", "url"), [("127.0.0.1:8500", "http://127.0.0.1:8500"),
                                           ("http://127.0.0.1:8500/", "http://127.0.0.1:8500"),
                                           ("https://consul.internal", "https://consul.internal")])
def test_consul_http_addr_is_read_like_the_consul_cli(addr: str, url: str) -> None:
    assert base_url(addr) == url


# -------------------------------------------------------------------------------------------- infra


def test_agent_config_is_loopback_only_with_our_ports_and_no_extra_listeners(tmp_path: Path) -> None:
    config = json.loads(consul.render_config(consul.ConsulPorts(41001, 41002, 41003, 41004), tmp_path / "data"))

    assert (config["bind_addr"], config["client_addr"], config["advertise_addr"]) == ("127.0.0.1",) * 3
    assert config["ports"] == {"http": 41001, "serf_lan": 41002, "serf_wan": 41003, "server": 41004,
                               "dns": -1, "grpc": -1, "grpc_tls": -1, "https": -1}
    assert config["disable_update_check"] is True and config["data_dir"] == str(tmp_path / "data")


def test_agent_argv_is_dev_mode_on_the_home_config(tmp_path: Path) -> None:
    paths = consul.paths(tmp_path)

    assert consul.agent_argv(Path("/c/consul"), paths) == [
        "/c/consul", "agent", "-dev", f"-config-file={tmp_path / 'consul' / 'agent.json'}"]
    assert consul.http_addr(8555) == "http://127.0.0.1:8555"
    assert consul.http_addr(8555, tls=True) == "https://127.0.0.1:8555"


def test_consul_with_tls_serves_https_only_and_verifies_clients(tmp_path: Path) -> None:
    from devstack.certs import StackCerts

    certs = StackCerts(tmp_path / "certs")
    config = json.loads(consul.render_config(consul.ConsulPorts(41001, 41002, 41003, 41004), tmp_path / "data", certs))
    assert config["ports"]["http"] == -1 and config["ports"]["https"] == 41001
    tls = config["tls"]["defaults"]
    assert tls["verify_incoming"] is True and tls["tls_min_version"] == "TLSv1_3"
    assert tls["ca_file"] == str(certs.ca) and tls["cert_file"] == str(certs.cert("consul"))


def test_the_binary_cache_is_per_version_and_needs_its_marker(tmp_path: Path) -> None:
    cache = consul.cache_root({"TREASURY_CONSUL_CACHE": str(tmp_path)})
    assert cache == tmp_path.resolve() / f"consul-{consul.CONSUL_VERSION}"
    assert not consul.binary_complete(cache)
    cache.mkdir()
    (cache / "consul").write_bytes(b"\x7fELF")
    assert not consul.binary_complete(cache)  # a binary without the marker may be half written
    (cache / consul.MARKER).write_text(json.dumps({"version": "0.0.1"}))
    assert not consul.binary_complete(cache)
    (cache / consul.MARKER).write_text(json.dumps({"version": consul.CONSUL_VERSION}))
    assert consul.binary_complete(cache)
    assert consul.build_or_cached(cache) == cache / "consul"  # cached: nothing is built


def test_go_is_found_where_configured(tmp_path: Path) -> None:
    assert consul.find_go({"TREASURY_GO": "/opt/go/bin/go"}) == "/opt/go/bin/go"
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert consul.find_go({"PATH": str(tmp_path)}) == str(fake)
    env = consul.go_env(str(fake))
    assert env["CGO_ENABLED"] == "0" and env["PATH"].startswith(str(tmp_path))


def test_stack_state_keeps_consul_ports_and_the_env_exports_its_address() -> None:
    state = stack.parse_state(json.dumps({"consul": {"port": 1, "serf_lan_port": 2, "serf_wan_port": "x",
                                                     "server_port": 4, "pid": 9}}))

    assert state.consul == ConsulState(1, 2, None, 4, 9)
    assert {1, 2, 4} <= state.ports_in_use()
    vault = ("http://127.0.0.1:8", "/h/openbao/root-token")
    info = StackInfo("127.0.0.1:9", "postgresql://x", Path("/h"), *vault, consul_http_addr="http://127.0.0.1:1")
    assert info.env()["CONSUL_HTTP_ADDR"] == "http://127.0.0.1:1"
    assert "CONSUL_HTTP_ADDR" not in StackInfo("127.0.0.1:9", "postgresql://x", Path("/h"), *vault).env()
    assert stack.consul_enabled({"TREASURY_CONSUL": "1"}) and not stack.consul_enabled({})
