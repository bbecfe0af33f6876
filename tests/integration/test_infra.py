"""The local stack against the real thing: a KRaft broker and a PostgreSQL server, no mocks.

These prove what every other integration test takes for granted: `up` is idempotent, the
project's topics exist as topics.py declares them and carry messages, Postgres answers, and
`down` leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from serve_app.infra import stack as infra_stack
from serve_app.infra.common import descendants, pids_matching, wait_until
from serve_app.infra.stack import StackInfo
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


def test_status_reports_both_parts_running(stack: StackInfo) -> None:
    parts = infra_stack.status(stack.home)

    assert parts["kafka"]["running"] is True
    assert parts["kafka"]["address"] == stack.kafka_bootstrap
    assert parts["postgres"]["running"] is True
    assert parts["postgres"]["address"] == stack.postgres_dsn
    assert stack.env() == {"KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "DATABASE_URL": stack.postgres_dsn}


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


@pytest.fixture
def scratch_home() -> Iterator[Path]:
    """A throw-away stack home under the repo's `.stack/tmp`.

    Not under pytest's tmp_path: that tree is mode 0700 and owned by root, and as root the server
    runs as the postgres user, which could not reach its data dir there.
    """
    base = REPO_ROOT / ".stack" / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="down-", dir=base))
    home.chmod(0o755)
    try:
        yield home
    finally:
        infra_stack.down(home)  # a safety net when the test failed half-way; harmless otherwise
        shutil.rmtree(home, ignore_errors=True)


def test_down_leaves_no_process_behind(scratch_home: Path) -> None:
    infra_stack.up(scratch_home)
    parts = infra_stack.status(scratch_home)
    kafka_pid, pg_pid = parts["kafka"]["pid"], parts["postgres"]["pid"]
    assert isinstance(kafka_pid, int) and isinstance(pg_pid, int)
    family = [kafka_pid, pg_pid, *descendants(pg_pid)]  # the postmaster's backends and workers too

    infra_stack.down(scratch_home)

    assert wait_until(lambda: all(_gone(pid) for pid in family), 10), [p for p in family if not _gone(p)]
    assert pids_matching(str(scratch_home)) == []
    infra_stack.down(scratch_home)  # a second down is harmless
    assert not any(part["running"] for part in infra_stack.status(scratch_home).values())
