"""The local stack against the real thing: a KRaft broker and a PostgreSQL server, no mocks.

These prove what every other integration test takes for granted: `up` is idempotent, the
project's topics exist as topics.py declares them and carry messages, Postgres answers, and
`down` leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from devstack import stack as infra_stack
from devstack.common import InfraError, descendants, pids_matching, wait_until
from devstack.stack import StackInfo
from treasury.keyring import VaultKeyring
from treasury.topics import ALL_TOPICS, CASH_POSITIONS, PARTITIONER, Topic

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """True once `pid` is out of the process table altogether (not even a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_up_twice_is_harmless(stack: StackInfo) -> None:
    before = infra_stack.status(stack.home)
    again = infra_stack.up(stack.home)
    after = infra_stack.status(stack.home)

    assert again == stack
    for part in ("kafka", "postgres"):
        assert isinstance(before[part]["pid"], int)
        assert after[part]["pid"] == before[part]["pid"]


def test_status_reports_every_part_running(stack: StackInfo) -> None:
    parts = infra_stack.status(stack.home)

    assert parts["kafka"]["running"] is True
    assert parts["kafka"]["address"] == stack.kafka_bootstrap
    assert parts["postgres"]["running"] is True
    assert parts["postgres"]["address"] == stack.postgres_dsn
    assert parts["openbao"]["running"] is True and parts["openbao"]["address"] == stack.vault_addr
    assert {part["transport"] for part in parts.values()} == {"plaintext"}
    assert stack.env() == {"KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "DATABASE_URL": stack.postgres_dsn,
                           "VAULT_ADDR": stack.vault_addr, "VAULT_TOKEN_FILE": stack.vault_token_file}
    token = Path(stack.vault_token_file)
    assert token.stat().st_mode & 0o777 == 0o600 and token.read_text().strip()
    # the dev server was provisioned with the service's Transit keys
    keyring = VaultKeyring.connect(stack.vault_addr, token.read_text().strip())
    assert set(keyring.public_keys("sweep-orders")) and set(keyring.public_keys("bank-connector"))
    plaintext, wrapped = keyring.new_data_key("raw-events")
    assert keyring.unwrap("raw-events", wrapped) == plaintext


def test_topics_exist_as_declared(kafka_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics

    for topic in ALL_TOPICS:
        assert topic.name in topics, topic.name
        assert len(topics[topic.name].partitions) == topic.partitions, topic.name

    resources = [ConfigResource(ResourceType.TOPIC, t.name) for t in ALL_TOPICS if t.config]
    for resource, future in admin.describe_configs(resources).items():
        configs = future.result(timeout=10)
        declared = next(t for t in ALL_TOPICS if t.name == resource.name).config
        for key, value in declared.items():
            assert configs[key].value == value, (resource.name, key)
    cash = ConfigResource(ResourceType.TOPIC, CASH_POSITIONS.name)
    assert admin.describe_configs([cash])[cash].result(timeout=10)["cleanup.policy"].value == "compact"


def _produce_one(bootstrap: str, topic: str, key: bytes, value: bytes) -> Message:
    """Produce one message and return its delivery report (which carries partition and offset)."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": PARTITIONER, "enable.idempotence": True})
    reports: list[tuple[object, Message]] = []
    producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: reports.append((err, msg)))
    assert producer.flush(15) == 0, "message not delivered within 15 s"
    error, message = reports[0]
    assert error is None, error
    return message


def _read_at(bootstrap: str, topic: str, partition: int, offset: int, timeout_s: float = 15.0) -> Message:
    """Read the message at (partition, offset) with a manual assign: no group join, no rebalance wait."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-infra-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    consumer.assign([TopicPartition(topic, partition, offset)])
    found: list[Message] = []

    def received() -> bool:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            found.append(message)
        return bool(found)

    try:
        assert wait_until(received, timeout_s, first_interval_s=0.01), f"nothing read from {topic}[{partition}]"
    finally:
        consumer.close()
    return found[0]


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_every_topic_carries_a_keyed_message(kafka_bootstrap: str, topic: Topic) -> None:
    key = f"acct-{uuid.uuid4()}".encode()
    value = f"probe {uuid.uuid4()}".encode()

    delivered = _produce_one(kafka_bootstrap, topic.name, key, value)
    partition, offset = delivered.partition(), delivered.offset()
    assert partition is not None and offset is not None
    read = _read_at(kafka_bootstrap, topic.name, partition, offset)

    assert (read.key(), read.value()) == (key, value)


async def test_postgres_answers(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == "treasury"
        assert await conn.fetchval("select current_user") == "treasury"
    finally:
        await conn.close()


@dataclass(frozen=True)
class StoppedStack:
    home: Path
    address: str  # the broker's bootstrap before `down`
    pids: list[int]  # broker, postmaster and the postmaster's children while they ran


@pytest.fixture(scope="module")
def stopped_stack() -> Iterator[StoppedStack]:
    """A second, throw-away stack brought up and down once, for the tests about `down`.

    Its home is under the repo's `.stack/tmp`, not pytest's tmp_path: that tree is mode 0700 and
    owned by root, and as root the server runs as the postgres user, which could not reach it.
    """
    base = REPO_ROOT / ".stack" / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="down-", dir=base))
    home.chmod(0o755)
    try:
        info = infra_stack.up(home)
        parts = infra_stack.status(home)
        kafka_pid, pg_pid = parts["kafka"]["pid"], parts["postgres"]["pid"]
        assert isinstance(kafka_pid, int) and isinstance(pg_pid, int)
        pids = [kafka_pid, pg_pid, *descendants(pg_pid)]
        infra_stack.down(home)
        yield StoppedStack(home, info.kafka_bootstrap, pids)
    finally:
        infra_stack.down(home)  # a safety net when set-up failed half-way; harmless otherwise
        shutil.rmtree(home, ignore_errors=True)


def test_down_leaves_no_process_behind(stopped_stack: StoppedStack) -> None:
    pids = stopped_stack.pids
    assert wait_until(lambda: all(_gone(pid) for pid in pids), 10), [p for p in pids if not _gone(p)]
    assert pids_matching(str(stopped_stack.home)) == []

    infra_stack.down(stopped_stack.home)  # a second down is harmless
    assert not any(part["running"] for part in infra_stack.status(stopped_stack.home).values())


def test_restart_refuses_a_port_someone_else_took(stopped_stack: StoppedStack) -> None:
    """A restarted broker must keep its address; if its port is gone, say so instead of moving."""
    port = int(stopped_stack.address.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the old broker's TIME_WAITs
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(InfraError, match="is taken by another process"):
            infra_stack.restart_kafka(stopped_stack.home)
    assert not infra_stack.status(stopped_stack.home)["kafka"]["running"]
