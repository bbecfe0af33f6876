"""The CLI finds the local stack by itself, and says in one line when a part of the system is not there.

A newcomer runs `scripts/run.sh` in one terminal and `treasury-orch accounts list` in another,
without the addresses the run printed: the commands read the stack's recorded state instead, the
environment still wins, and without devstack (the wheel, the image) nothing changes.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import stack
from devstack.common import pick_free_port
from serve_app.cli import main
from serve_app.cli import stack_fallback as fb
from treasury.settings import RuntimeSettings


@pytest.fixture(autouse=True)
def no_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment that names no part of the system, as a fresh terminal's."""
    for key in (*RuntimeSettings.env_keys(), "TREASURY_STACK_HOME", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A stack home whose state.json records Kafka, Postgres and OpenBao, as `infra up` leaves it."""
    state = stack.State(kafka=stack.KafkaState(port=19092, controller_port=19093),
                        postgres=stack.PostgresState(port=15432), openbao=stack.OpenBaoState(port=18200))
    stack.save_state(tmp_path, state)
    return tmp_path


@pytest.fixture
def without_devstack(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As in the wheel and the image: `import devstack` fails."""
    monkeypatch.setitem(sys.modules, "devstack", None)
    monkeypatch.setitem(sys.modules, "devstack.stack", None)
    yield


def test_the_recorded_stack_is_used_when_the_environment_names_nothing(home: Path) -> None:
    settings = fb.resolve({"TREASURY_STACK_HOME": str(home)}).settings
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.database_url == "postgresql://treasury@127.0.0.1:15432/treasury"
    assert settings.vault_addr == "http://127.0.0.1:18200"
    assert settings.vault_token_file == str(home.resolve() / "openbao" / "root-token")


def test_the_environment_wins(home: Path) -> None:
    own_token = "s.mine"  # noqa: S105 - a stand-in, never sent anywhere
    env = {"TREASURY_STACK_HOME": str(home), "DATABASE_URL": "postgresql://me@db.example:6432/t",
           "KAFKA_BOOTSTRAP": "", "VAULT_TOKEN": own_token}
    settings = fb.resolve(env).settings
    assert settings.database_url == "postgresql://me@db.example:6432/t"
    assert settings.kafka_bootstrap == "127.0.0.1:19092"  # empty is unset, as RuntimeSettings reads it
    # an operator's own Vault token is never paired with the stack's OpenBao
    assert settings.vault_addr is None and settings.vault_token_file is None and settings.vault_token == own_token


def test_no_recorded_stack_means_the_defaults(tmp_path: Path) -> None:
    assert fb.resolve({"TREASURY_STACK_HOME": str(tmp_path / "never-started")}).settings == RuntimeSettings()


@pytest.mark.usefixtures("without_devstack")
def test_without_devstack_there_is_no_fallback_and_no_error(home: Path) -> None:
    where = fb.resolve({"TREASURY_STACK_HOME": str(home)})
    assert where.settings == RuntimeSettings() and where.home is None and not where.recorded
    line = str(fb.unreachable(fb.postgres_part(where.settings.database_url), where, ConnectionRefusedError()))
    assert "set DATABASE_URL" in line and "infra up" not in line  # no command that is not installed


def test_the_default_home_is_the_one_the_stack_uses(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    assert fb.stack_home({}) == stack.default_home({}) == stack.REPO_ROOT / ".stack" / "dev"
    monkeypatch.setenv("TREASURY_STACK_HOME", str(home))
    assert fb.stack_home({"TREASURY_STACK_HOME": str(home)}) == stack.default_home() == home


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_postgres_unreachable_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    port = pick_free_port()
    monkeypatch.setenv("TREASURY_STACK_HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"postgresql://treasury:secret@127.0.0.1:{port}/treasury")
    assert main(["accounts", "list"]) == 2
    out, err = capsys.readouterr()
    line = one_line(err)
    assert out == "" and line.startswith("treasury-orch accounts: Postgres at 127.0.0.1:")
    assert f":{port} " in line and "from DATABASE_URL" in line and "treasury-orch infra up" in line
    assert "secret" not in line


def test_the_recorded_address_is_named_with_its_home(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = pick_free_port()
    stack.save_state(tmp_path, stack.State(postgres=stack.PostgresState(port=port)))
    monkeypatch.setenv("TREASURY_STACK_HOME", str(tmp_path))
    assert main(["accounts", "add", "A1"]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"Postgres at 127.0.0.1:{port} is not reachable (recorded by the local stack in " in line


def test_openbao_unreachable_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("TREASURY_STACK_HOME", str(tmp_path))
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{pick_free_port()}")
    monkeypatch.setenv("VAULT_TOKEN", "s.test")
    assert main(["token", "--subject", "me", "--scopes", "orders:read"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("treasury-orch token: OpenBao at http://127.0.0.1:") and "VAULT_ADDR" in line
    assert "Connection refused" in line


def test_kafka_probe(tmp_path: Path) -> None:
    where = fb.resolve({"TREASURY_STACK_HOME": str(tmp_path), "KAFKA_BOOTSTRAP": f"127.0.0.1:{pick_free_port()}"})
    with pytest.raises(fb.Unreachable, match=r"^Kafka at 127\.0\.0\.1:\d+ is not reachable \(from KAFKA_BOOTSTRAP\)"):
        fb.require_kafka(where)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        fb.require_kafka(fb.resolve({"TREASURY_STACK_HOME": str(tmp_path),
                                     "KAFKA_BOOTSTRAP": f"127.0.0.1:{pick_free_port()},PLAINTEXT://127.0.0.1:{port}"}))


def test_bootstrap_entries() -> None:
    assert fb._host_port("127.0.0.1:9092") == ("127.0.0.1", 9092)
    assert fb._host_port(" SSL://broker.example:9093") == ("broker.example", 9093)
    assert fb._host_port("[::1]:9092") == ("::1", 9092)
    assert fb._host_port("broker") is None


def test_ray_unreachable_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    import ray

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.")

    monkeypatch.setenv("TREASURY_STACK_HOME", str(tmp_path))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    monkeypatch.setattr(ray, "init", refuse)
    assert main(["var", "recompute"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("treasury-orch var: Ray at 10.0.0.7:6379 is not reachable (from RAY_ADDRESS)")
    assert "scripts/run.sh" in line


def test_recorded_env_names_only_what_ran(tmp_path: Path) -> None:
    assert stack.recorded_env(tmp_path) == {}
    stack.save_state(tmp_path, stack.State(kafka=stack.KafkaState(port=19092),
                                           consul=stack.ConsulState(port=18500, pid=None)))
    assert stack.recorded_env(tmp_path) == {"KAFKA_BOOTSTRAP": "127.0.0.1:19092"}  # consul only while it runs


def test_a_tls_stack_lends_its_certificates_with_its_addresses() -> None:
    recorded = {"KAFKA_BOOTSTRAP": "127.0.0.1:1", "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CA_LOCATION": "/c/ca.pem", "VAULT_ADDR": "https://127.0.0.1:2",
                "VAULT_TOKEN_FILE": "/t", "VAULT_CACERT": "/c/ca.pem",
                "CONSUL_HTTP_ADDR": "https://127.0.0.1:3", "CONSUL_CLIENT_CERT": "/c/app.pem"}
    merged = fb.with_stack_fallback({}, recorded)
    assert merged == recorded
    # an operator's own Kafka is never given the stack's certificates, nor its own Vault the stack's CA
    mine = fb.with_stack_fallback({"KAFKA_BOOTSTRAP": "kafka.example:9093", "VAULT_ADDR": "https://vault.example"},
                                  recorded)
    assert "KAFKA_SECURITY_PROTOCOL" not in mine and "VAULT_CACERT" not in mine
    assert mine["CONSUL_CLIENT_CERT"] == "/c/app.pem"
