"""The pure parts of the local stack: rendered configs, port choice, state parsing, error messages.

Nothing here starts a process or opens a socket; files are written under tmp_path only.
"""

from __future__ import annotations

import base64
import json
import socket
import string
from pathlib import Path

import pytest

from devstack import kafka, postgres, stack
from devstack.common import (
    LISTEN_PORTS,
    InfraError,
    choose_port,
    last_line,
    pick_free_port,
    port_is_free,
    port_taken_message,
    wait_until,
)
from devstack.stack import KafkaState, PostgresState, StackInfo, State

# ------------------------------------------------------------------------------------- server.properties


def _props(tmp_path: Path, port: int = 40001, controller_port: int = 40002) -> dict[str, str]:
    return kafka.parse_properties(kafka.render_server_properties(port, controller_port, tmp_path / "kafka" / "data"))


def test_server_properties_make_one_kraft_node_on_loopback(tmp_path: Path) -> None:
    props = _props(tmp_path)

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:40002"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:40001,CONTROLLER://127.0.0.1:40002"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:40001"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert "0.0.0.0" not in kafka.render_server_properties(40001, 40002, tmp_path)


def test_server_properties_suit_a_single_broker(tmp_path: Path) -> None:
    props = _props(tmp_path)

    factors = [k for k in props if k.endswith(("replication.factor", "min.isr"))]
    assert len(factors) >= 5
    assert all(props[k] == "1" for k in factors)
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")


def test_parse_properties_skips_comments_and_blanks() -> None:
    text = "# comment\n! also a comment\n\nkey = value\nurl=a=b\n"
    assert kafka.parse_properties(text) == {"key": "value", "url": "a=b"}


def test_kafka_paths_live_in_the_home(tmp_path: Path) -> None:
    paths = kafka.paths(tmp_path)
    for path in (paths.properties, paths.data, paths.log):
        assert path.is_relative_to(tmp_path / "kafka")


def test_cluster_ids_look_like_kafkas() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    alphabet = set(string.ascii_letters + string.digits + "-_")
    for cluster_id in ids:
        assert len(cluster_id) == 22 and set(cluster_id) <= alphabet
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_not_formatted_until_meta_properties_exists(tmp_path: Path) -> None:
    paths = kafka.paths(tmp_path)
    assert not kafka.is_formatted(paths)
    paths.data.mkdir(parents=True)
    (paths.data / "meta.properties").write_text("node.id=1\n")
    assert kafka.is_formatted(paths)


# --------------------------------------------------------------------------------------------- java


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ("bash: java: command not found", None),
    ],
)
def test_java_major_version_is_parsed(output: str, major: int | None) -> None:
    assert kafka.parse_java_major(output) == major


def test_java_home_wins_over_path(tmp_path: Path) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)

    assert kafka.find_java({"JAVA_HOME": str(tmp_path / "jdk"), "PATH": ""}) == str(java)
    assert kafka.find_java({"PATH": str(tmp_path / "nowhere")}) is None


# ------------------------------------------------------------------------------------------- jar cache


def test_cache_root_defaults_to_user_cache_and_can_be_moved(tmp_path: Path) -> None:
    assert kafka.cache_root({}) == Path.home().resolve() / ".cache/treasury-orch" / "kafka-4.1.1"
    assert kafka.cache_root({"TREASURY_KAFKA_CACHE": str(tmp_path)}) == tmp_path.resolve() / "kafka-4.1.1"


def _fake_cache(tmp_path: Path, digest: str, jars: list[str], present: list[str]) -> Path:
    (tmp_path / "libs").mkdir()
    for name in present:
        (tmp_path / "libs" / name).write_bytes(b"jar")
    (tmp_path / kafka.MARKER).write_text(json.dumps({"pom_sha256": digest, "jars": jars}))
    return tmp_path


def test_jar_cache_is_complete_only_with_marker_pom_and_every_jar(tmp_path: Path) -> None:
    jars = ["kafka_2.13-4.1.1.jar", "slf4j-simple-1.7.36.jar"]
    cache = _fake_cache(tmp_path, "abc", jars, present=jars)

    assert kafka.libs_complete(cache, "abc")
    assert not kafka.libs_complete(cache, "pom-changed")
    (cache / "libs" / jars[1]).unlink()
    assert not kafka.libs_complete(cache, "abc")


def test_jar_cache_without_marker_is_incomplete(tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "kafka_2.13-4.1.1.jar").write_bytes(b"jar")
    assert not kafka.libs_complete(tmp_path, "abc")
    (tmp_path / kafka.MARKER).write_text("{not json")
    assert not kafka.libs_complete(tmp_path, "abc")


def test_pom_names_the_broker_and_a_logging_binding() -> None:
    pom = kafka.POM.read_text()
    assert "<artifactId>kafka_2.13</artifactId>" in pom and "<version>4.1.1</version>" in pom
    assert "<artifactId>slf4j-simple</artifactId>" in pom and "<version>1.7.36</version>" in pom
    assert "<packaging>pom</packaging>" in pom


# --------------------------------------------------------------------------------------------- ports


def test_previous_port_is_kept_when_free() -> None:
    assert choose_port(41000, is_free=lambda p: True, pick=lambda: 50000) == 41000


def test_taken_previous_port_is_replaced() -> None:
    assert choose_port(41000, is_free=lambda p: p != 41000, pick=lambda: 50000) == 50000


def test_first_start_picks_a_port() -> None:
    assert choose_port(None, is_free=lambda p: True, pick=lambda: 50000) == 50000


def test_ports_promised_to_another_listener_are_avoided() -> None:
    picks = iter([50000, 50000, 50001])
    assert choose_port(50000, is_free=lambda p: True, pick=lambda: next(picks), avoid={50000}) == 50001


def test_listener_ports_stay_out_of_the_kernels_ephemeral_range() -> None:
    """The kernel gives ephemeral ports to outgoing connections at any moment; a listener's port
    chosen there can be taken before the listener binds it."""
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert LISTEN_PORTS.stop <= low or LISTEN_PORTS.start > high
    picked = [pick_free_port() for _ in range(20)]
    assert all(port in LISTEN_PORTS and port_is_free(port) for port in picked)


def test_a_picked_port_is_not_picked_again_before_its_listener_binds_it() -> None:
    """Tests and `run` pick several ports before anything binds them; random picks alone would
    sometimes give two listeners the same one."""
    ports = range(LISTEN_PORTS.start, LISTEN_PORTS.start + 25)
    picked = [pick_free_port(ports=ports, attempts=10_000) for _ in range(20)]
    assert len(set(picked)) == len(picked)


def test_a_full_listener_range_falls_back_to_the_kernels_choice() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        port = pick_free_port(ports=range(taken, taken + 1), attempts=3)
    assert port != taken and port_is_free(port)


def test_port_choice_gives_up_with_a_clear_error() -> None:
    with pytest.raises(InfraError, match="free port"):
        choose_port(None, is_free=lambda p: True, pick=lambda: 50000, avoid={50000}, attempts=3)


# ------------------------------------------------------------------------------------------- postgres


def test_postgres_conf_listens_on_loopback_with_sockets_in_the_home(tmp_path: Path) -> None:
    conf = postgres.render_conf(45432, tmp_path / "postgres" / "sockets", tmp_path / "postgres" / "data")

    assert "listen_addresses = '127.0.0.1'" in conf
    assert "port = 45432" in conf
    assert f"unix_socket_directories = '{tmp_path / 'postgres' / 'sockets'}'" in conf
    assert f"hba_file = '{tmp_path / 'postgres' / 'data' / 'treasury_hba.conf'}'" in conf
    assert "/var/run" not in conf and "ssl" not in conf


def test_postgres_conf_quotes_paths() -> None:
    conf = postgres.render_conf(1, Path("/tmp/o'brien/sockets"), Path("/tmp/o'brien/data"))
    assert "unix_socket_directories = '/tmp/o''brien/sockets'" in conf


def test_postgres_with_tls_takes_tls13_and_certificates_only(tmp_path: Path) -> None:
    conf = postgres.render_conf(1, tmp_path / "sockets", tmp_path / "data", tls=True)
    assert "ssl = on" in conf and "ssl_min_protocol_version = 'TLSv1.3'" in conf
    assert f"ssl_ca_file = '{tmp_path / 'data' / 'root.crt'}'" in conf
    assert "unix_socket_permissions = 0700" in conf
    hba = [line.split() for line in postgres.render_hba(tls=True).splitlines() if not line.startswith("#")]
    tcp = [line for line in hba if line[0] != "local"]
    assert tcp and all(line[0] == "hostssl" and line[4:] == ["cert", "map=treasury"] for line in tcp)
    plain = [line.split() for line in postgres.render_hba(tls=False).splitlines() if not line.startswith("#")]
    assert {line[0] for line in plain} == {"local", "host"}
    assert postgres.render_ident().splitlines()[-1].split() == ["treasury", "treasury-app", "treasury"]


def test_postgres_dsn_with_tls_verifies_the_server_and_presents_our_certificate(tmp_path: Path) -> None:
    from urllib.parse import parse_qs, urlsplit

    from devstack.certs import StackCerts

    dsn = postgres.dsn(45432, StackCerts(tmp_path))
    query = parse_qs(urlsplit(dsn).query)
    assert dsn.startswith("postgresql://treasury@127.0.0.1:45432/treasury?")
    assert query == {"sslmode": ["verify-full"], "sslrootcert": [str(tmp_path / "ca.pem")],
                     "sslcert": [str(tmp_path / "treasury-app.pem")], "sslkey": [str(tmp_path / "treasury-app.key")],
                     "ssl_min_protocol_version": ["TLSv1.3"]}


def test_kafka_with_tls_has_no_plaintext_listener(tmp_path: Path) -> None:
    tls = kafka.KafkaTls(tmp_path / "broker.p12", "pw", tmp_path / "ca.pem")
    props = kafka.parse_properties(kafka.render_server_properties(40001, 40002, tmp_path / "data", tls))
    assert props["listeners"] == "SSL://127.0.0.1:40001,CONTROLLER://127.0.0.1:40002"
    assert props["listener.security.protocol.map"] == "SSL:SSL,CONTROLLER:SSL"
    assert props["inter.broker.listener.name"] == "SSL"
    assert props["ssl.client.auth"] == "required" and props["ssl.enabled.protocols"] == "TLSv1.3"
    assert props["ssl.truststore.location"] == str(tmp_path / "ca.pem")
    assert "PLAINTEXT" not in kafka.render_server_properties(40001, 40002, tmp_path / "data", tls)


def test_kafka_clients_take_their_tls_settings_from_the_environment() -> None:
    from treasury.tls import kafka_security

    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/ca.pem",
           "KAFKA_SSL_CERTIFICATE_LOCATION": "/c.pem", "KAFKA_SSL_KEY_LOCATION": "/c.key", "OTHER": "x"}
    assert kafka_security(env) == {"security.protocol": "SSL", "ssl.ca.location": "/ca.pem",
                                           "ssl.certificate.location": "/c.pem", "ssl.key.location": "/c.key"}
    assert kafka_security({}) == {}


def test_socket_paths_beyond_sockaddr_un_are_detected() -> None:
    assert not postgres.socket_path_too_long(Path("/work/main/.stack/test/postgres/sockets"), 45432)
    assert postgres.socket_path_too_long(Path("/" + "x" * 100), 45432)


def test_dsn_and_bootstrap_shapes() -> None:
    assert postgres.dsn(45432) == "postgresql://treasury@127.0.0.1:45432/treasury"
    assert kafka.bootstrap(49092) == "127.0.0.1:49092"


def test_highest_postgres_version_is_chosen(tmp_path: Path) -> None:
    for version in ("9.6", "13", "15", "16"):
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        if version != "16":  # a leftover folder without server binaries does not count
            (bindir / "pg_ctl").write_text("")
    (tmp_path / "common").mkdir()

    assert postgres.highest_version_bindir(tmp_path) == tmp_path / "15" / "bin"
    assert postgres.highest_version_bindir(tmp_path / "absent") is None


def test_postmaster_pid_is_read_from_its_file(tmp_path: Path) -> None:
    paths = postgres.paths(tmp_path)
    assert postgres.postmaster_pid(paths) is None
    paths.data.mkdir(parents=True)
    (paths.data / "postmaster.pid").write_text("4242\n/data\n1700000000\n45432\n")
    assert postgres.postmaster_pid(paths) == 4242


# ------------------------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    "message",
    [
        kafka.java_missing_message(),
        kafka.java_too_old_message("/usr/bin/java", 11),
        kafka.java_too_old_message("/usr/bin/java", None),
        kafka.mvn_missing_message(Path("/root/.cache/treasury-orch/kafka-4.1.1")),
        postgres.missing_binaries_message(),
        port_taken_message(45432, "postgres"),
    ],
)
def test_error_messages_are_one_actionable_line(message: str) -> None:
    assert "\n" not in message
    assert any(hint in message for hint in ("install", "apt-get", "stop it", "JAVA_HOME"))


def test_java_messages_name_the_version_needed() -> None:
    assert "17" in kafka.java_missing_message()
    assert "Java 11" in kafka.java_too_old_message("/usr/bin/java", 11)


def test_port_message_names_the_port_and_its_user() -> None:
    message = port_taken_message(45432, "postgres")
    assert "45432" in message and "postgres" in message


def test_last_line_is_the_failure_reason() -> None:
    assert last_line("starting\n\nFATAL: port in use\n  \n") == "FATAL: port in use"
    assert last_line("") == "(no output)"


# ---------------------------------------------------------------------------------------------- state


def test_state_round_trips_through_its_file(tmp_path: Path) -> None:
    state = State(KafkaState(port=1, controller_port=2, pid=3), PostgresState(port=4, pid=5))
    stack.save_state(tmp_path, state)

    assert stack.load_state(tmp_path) == state
    assert state.ports_in_use() == {1, 2, 4}


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[]", '{"kafka": 3}', '{"kafka": {"port": "9092", "pid": true}}'],
)
def test_malformed_state_is_treated_as_empty(text: str) -> None:
    assert stack.parse_state(text) == State()


def test_missing_state_file_is_empty(tmp_path: Path) -> None:
    assert stack.load_state(tmp_path) == State()


def test_stack_info_env_matches_runtime_settings_names(tmp_path: Path) -> None:
    info = StackInfo("127.0.0.1:1", "postgresql://treasury@127.0.0.1:2/treasury", tmp_path,
                     "http://127.0.0.1:3", str(tmp_path / "token"))
    assert info.env() == {
        "KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "DATABASE_URL": "postgresql://treasury@127.0.0.1:2/treasury",
        "VAULT_ADDR": "http://127.0.0.1:3",
        "VAULT_TOKEN_FILE": str(tmp_path / "token"),
    }
    settings = info.settings(shards=3)
    assert settings.vault_addr == "http://127.0.0.1:3" and settings.shards == 3 and settings.signer == "vault"


def test_default_home_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREASURY_STACK_HOME", str(tmp_path))
    assert stack.default_home() == tmp_path
    monkeypatch.delenv("TREASURY_STACK_HOME")
    assert stack.default_home() == stack.REPO_ROOT / ".stack" / "dev"


def test_unknown_cli_action_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.main("restart") == 2
    assert "up, down or status" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- polling


def test_wait_until_returns_as_soon_as_the_condition_holds() -> None:
    calls = iter([False, False, True])
    assert wait_until(lambda: next(calls), 5.0, first_interval_s=0.001)


def test_wait_until_gives_up_at_its_deadline() -> None:
    assert not wait_until(lambda: False, 0.05, first_interval_s=0.01)
