"""Live configuration: a watcher follows Consul KV, every part follows ``orch_config_updates``.

One watcher (the named ``config-watcher`` actor) holds long-polling blocking queries on the KV
prefix, validates each snapshot with the same rules as start-up, and publishes every accepted
version as a ``ConfigUpdate``. The parts never talk to Consul: each shard, the coordinator and
each Serve replica runs a ``ConfigFollower`` on the one-partition topic, starting at its last
message (the version in force) and swapping its policy reference when a newer version arrives.
Kafka, not Consul, is the fan-out, so a part restarted by Ray finds the version in force
without a Consul client of its own, and a refused value never leaves the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import ray
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from actors import kafka_clients
from schemas.config_update import ConfigUpdate
from treasury.actor_names import CONFIG_WATCHER, NAMESPACE
from treasury.clock import utc_now
from treasury.live_config import KvFormatError, LiveConfig, Verdict, next_index, parse_kv
from treasury.logs import configure_logging
from treasury.metrics import ShardMetrics
from treasury.settings import PolicyConfig, RuntimeSettings, policy_from_mapping
from treasury.tls import client_context
from treasury.topics import ORCH_CONFIG_UPDATES

log = logging.getLogger("treasury.config")
WAIT_S = 10.0  # blocking-query wait: short enough that a stop is noticed quickly
RETRY_S = 1.0


def consul_tls(settings: RuntimeSettings) -> dict[str, Any]:
    """httpx's TLS options for Consul's HTTPS API: its CA, and our certificate when it verifies clients."""
    if settings.consul_cacert is None and settings.consul_client_cert is None:
        return {}
    return {"verify": client_context(settings.consul_cacert, settings.consul_client_cert, settings.consul_client_key)}


def base_url(consul_http_addr: str) -> str:
    """CONSUL_HTTP_ADDR as the consul CLI accepts it (`127.0.0.1:8500` or a URL) -> a base URL."""
    addr = consul_http_addr.strip().rstrip("/")
    return addr if "://" in addr else f"http://{addr}"


# ------------------------------------------------------------------------------------- the topic


def latest_update(bootstrap: str, timeout: float = 10.0) -> ConfigUpdate | None:
    """The last ConfigUpdate on the topic (the version in force), or None when there is none yet."""
    consumer = _tail_consumer(bootstrap)
    try:
        high = _assign_last(consumer)
        if high <= 0:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            update = _decode(msg.value())
            if msg.offset() is not None and msg.offset() + 1 >= high:  # type: ignore[operator]
                return update
        raise TimeoutError(f"could not read the last {ORCH_CONFIG_UPDATES.name} message within {timeout:.0f} s")
    finally:
        consumer.close()


def _tail_consumer(bootstrap: str) -> Consumer:
    # A group of its own that never commits: every follower reads every version, none steals one.
    return kafka_clients.consumer(bootstrap, group=f"treasury-config-{uuid.uuid4().hex[:12]}",
                                  **{"isolation.level": "read_uncommitted", "fetch.wait.max.ms": 20})


def _assign_last(consumer: Consumer) -> int:
    """Assign the topic's one partition at its last message; returns the high watermark."""
    tp = TopicPartition(ORCH_CONFIG_UPDATES.name, 0)
    low, high = consumer.get_watermark_offsets(tp, timeout=10) or (0, 0)
    consumer.assign([TopicPartition(ORCH_CONFIG_UPDATES.name, 0, max(low, high - 1))])
    return int(high)


def _decode(value: bytes | None) -> ConfigUpdate | None:
    try:
        return ConfigUpdate.model_validate_json(value or b"")
    except ValueError:
        log.warning("ignored a malformed message on %s", ORCH_CONFIG_UPDATES.name)
        return None


class ConfigFollower:
    """Applies each newer ConfigUpdate through ``apply``; runs on a daemon thread of its own part.

    ``apply`` swaps a reference (one assignment, atomic under the GIL), so a decision in progress
    finishes on the policy it started with and the next one uses the new version.
    """

    def __init__(self, bootstrap: str, apply: Callable[[PolicyConfig], None], part: str) -> None:
        self._bootstrap = bootstrap
        self._apply = apply
        self._part = part
        self.version = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"config-follower-{part}", daemon=True)

    def start(self) -> ConfigFollower:
        self._thread.start()
        return self

    def offer(self, update: ConfigUpdate | None) -> bool:
        """Apply ``update`` when it is newer than what this part has; True when it was applied."""
        if update is None or update.version <= self.version:
            return False
        self._apply(update.config)
        self.version = update.version
        log.info("%s applied configuration version %d", self._part, update.version,
                 extra={"config_version": update.version})
        return True

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = _tail_consumer(self._bootstrap)
            except KafkaException as exc:
                log.warning("%s: config follower cannot reach Kafka (%s); retrying", self._part, exc)
                self._stop.wait(RETRY_S)
                continue
            try:
                _assign_last(consumer)
                while not self._stop.is_set():
                    msg = consumer.poll(0.1)
                    if msg is not None and msg.error() is None:
                        self.offer(_decode(msg.value()))
            except KafkaException as exc:
                log.warning("%s: config follower lost Kafka (%s); re-reading the latest version", self._part, exc)
                self._stop.wait(RETRY_S)
            finally:
                consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def follow_if_live(
    settings: RuntimeSettings, apply: Callable[[PolicyConfig], None], part: str
) -> ConfigFollower | None:
    """A running follower when live configuration is on (CONSUL_HTTP_ADDR set), else None."""
    if not settings.consul_http_addr:
        return None
    return ConfigFollower(settings.kafka_bootstrap, apply, part).start()


# ----------------------------------------------------------------------------------- the watcher


class ConfigWatcher:
    """Blocking queries on the KV prefix -> validation -> one ConfigUpdate per accepted version."""

    def __init__(self, consul_http_addr: str, prefix: str, bootstrap: str, base: PolicyConfig,
                 producer: Producer | None = None, wait_s: float = WAIT_S,
                 tls: Mapping[str, Any] | None = None) -> None:
        self._url = f"{base_url(consul_http_addr)}/v1/kv/{prefix}"
        self._prefix = prefix
        self._bootstrap = bootstrap
        self._producer = producer or kafka_clients.producer(bootstrap, **{"linger.ms": 0})
        self._wait_s = wait_s
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(wait_s + 10.0, connect=5.0), **(tls or {}))
        self._index = 0
        self.live = LiveConfig(base)
        self.errors = 0

    async def start(self, seed: bool = True) -> None:
        """Resume at the version in force on the topic, and put missing keys in Consul.

        Seeding writes the base value of every spec key that Consul does not hold yet (`cas=0`:
        never over a value someone set), so `consul kv get -recurse` shows the whole policy.
        """
        latest = await asyncio.to_thread(latest_update, self._bootstrap)
        if latest is not None:
            self.live = LiveConfig(self.live.base, latest.config, latest.version)
        if seed:
            for key, value in self.live.base.as_wire().items():
                text = ",".join(value) if isinstance(value, list) else str(value)
                resp = await self._http.put(f"{self._url}{key}", params={"cas": 0}, content=text.encode())
                resp.raise_for_status()

    async def poll_once(self) -> Verdict | None:
        """One blocking query (returns at once on the first call); the verdict on what it read."""
        params: dict[str, Any] = {"recurse": "true"}
        if self._index > 0:
            params.update(index=self._index, wait=f"{self._wait_s:.0f}s")
        resp = await self._http.get(self._url, params=params)
        if resp.status_code not in (200, 404):  # 404: nothing under the prefix (every key deleted)
            resp.raise_for_status()
        previous, self._index = self._index, next_index(self._index, resp.headers.get("X-Consul-Index"))
        if previous > 0 and self._index == previous:
            return None  # the wait expired without a change
        values = parse_kv(resp.content if resp.status_code == 200 else b"[]", self._prefix)
        verdict = self.live.consider(values)
        if verdict.kind == "rejected":
            log.warning("configuration refused: %s: %s; version %d stays in force", verdict.key, verdict.reason,
                        verdict.version, extra={"config_key": verdict.key, "reason": verdict.reason,
                                                "config_version": verdict.version})
        elif verdict.kind == "accepted":
            await self._publish(verdict)
        return verdict

    async def _publish(self, verdict: Verdict) -> None:
        update = ConfigUpdate(version=verdict.version, source="consul", issued_ts=utc_now(), config=verdict.config)
        self._producer.produce(ORCH_CONFIG_UPDATES.name, value=update.model_dump_json().encode(),
                               headers=kafka_clients.headers(schema_version="config_update/1.0.0"))
        remaining = await asyncio.to_thread(self._producer.flush, 15.0)
        if remaining:
            raise RuntimeError(f"configuration version {verdict.version} not delivered to Kafka")
        log.info("configuration version %d accepted and published: %s", verdict.version, verdict.config.as_wire(),
                 extra={"config_version": verdict.version})

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll_once()
            except (httpx.HTTPError, KvFormatError, RuntimeError) as exc:
                self.errors += 1
                self._index = 0  # start over with a full read once Consul answers again
                log.warning("consul watch failed (%s); retrying in %.0f s", exc, RETRY_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_S)

    def metrics(self) -> ShardMetrics:
        return ShardMetrics(config_version=self.live.version, config_rejected=self.live.rejected)

    async def close(self) -> None:
        await self._http.aclose()
        await asyncio.to_thread(self._producer.flush, 5.0)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class ConfigWatcherActor:
    """The one watcher; Ray restarts it and it resumes at the version in force on the topic."""

    def __init__(self, settings: RuntimeSettings, base: dict[str, Any]) -> None:
        configure_logging()
        assert settings.consul_http_addr, "the watcher runs only with CONSUL_HTTP_ADDR set"
        self._core = ConfigWatcher(settings.consul_http_addr, settings.consul_kv_prefix, settings.kafka_bootstrap,
                                   policy_from_mapping(base), tls=consul_tls(settings))
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._running = False

    async def run(self) -> None:
        if self._running:
            return
        self._running = True
        while not self._stop.is_set():
            try:
                await self._core.start()
                await self._core.poll_once()  # the state of Consul now, published before anyone waits on ready
                break
            except (httpx.HTTPError, KafkaException, KvFormatError, RuntimeError, TimeoutError) as exc:
                log.warning("config watcher cannot start yet (%s); retrying in %.0f s", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
        self._started.set()
        try:
            await self._core.run(self._stop)
        finally:
            await self._core.close()

    async def ready(self) -> int:
        await self._started.wait()
        return self._core.live.version

    async def metrics(self) -> ShardMetrics:
        return self._core.metrics()

    async def stats(self) -> dict[str, Any]:
        live = self._core.live
        return {"version": live.version, "rejected": live.rejected, "errors": self._core.errors,
                "config": live.active.as_wire()}

    @ray.method(max_task_retries=0)
    async def stop(self) -> None:
        self._stop.set()
        ray.actor.exit_actor()


def start_watcher(settings: RuntimeSettings, base: PolicyConfig, *, detached: bool = False) -> Any | None:
    """Start (or find) the named watcher when CONSUL_HTTP_ADDR is set; its first version is out on return.

    ``detached`` as for the other actors: ``deploy up`` exits and the watcher stays."""
    if not settings.consul_http_addr:
        return None
    handle = ConfigWatcherActor.options(  # type: ignore[attr-defined]
        name=CONFIG_WATCHER, namespace=NAMESPACE, get_if_exists=True,
        lifetime="detached" if detached else None,
    ).remote(settings, base.as_wire())
    handle.run.remote()
    ray.get(handle.ready.remote(), timeout=60)
    return handle

