"""A single-node KRaft Kafka broker for development and tests, built from Maven Central jars.

Why this shape: the machines reach Maven Central but no archive mirror, and run no Docker; the
broker is therefore the `kafka_2.13` artifact and its dependencies, resolved once with `mvn` into a
per-user cache and run on the machine's Java 17+. Everything a broker writes lives under the stack
home, so deleting that folder is a full reset.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from devstack.common import (
    LOOPBACK,
    InfraError,
    file_lock,
    kill_tree,
    log,
    pid_alive,
    pid_matches,
    port_accepts,
    run_checked,
    spawn_daemon,
    stop_group,
    tail,
    wait_until,
)
from treasury.topics import Topic

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
POM = Path(__file__).with_name("kafka-pom.xml")
HEAP = "-Xmx768m"
NODE_ID = 1
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 30.0
MVN_TIMEOUT_S = 900.0
MARKER = "libs.complete.json"


@dataclass(frozen=True)
class KafkaPaths:
    """Where one stack's broker keeps its config, data and log (all under `<home>/kafka`)."""

    root: Path
    properties: Path
    data: Path
    log: Path


def paths(home: Path) -> KafkaPaths:
    root = home / "kafka"
    return KafkaPaths(root=root, properties=root / "server.properties", data=root / "data", log=root / "kafka.log")


def bootstrap(port: int) -> str:
    return f"{LOOPBACK}:{port}"


# ------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class KafkaTls:
    """The broker's side of mutual TLS: its key and certificate (a PKCS#12 keystore, which Java reads
    without conversion tools) and the CA its clients' certificates must come from (PEM)."""

    keystore: Path
    keystore_password: str
    ca: Path


def render_server_properties(port: int, controller_port: int, data_dir: Path, tls: KafkaTls | None = None) -> str:
    """server.properties for one process acting as both broker and KRaft controller, on loopback.

    Replication factors are 1 because there is one broker; auto-creation is off so that a typo in
    a topic name fails loudly instead of creating a one-partition topic that breaks key routing;
    the initial rebalance delay is 0 so consumer groups in tests form without a 3 s pause. With
    ``tls`` both listeners (clients and the controller) speak TLS 1.3 only and require a client
    certificate from the stack's CA; no plaintext listener is left.
    """
    protocol = "SSL" if tls else "PLAINTEXT"
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{LOOPBACK}:{controller_port}",
        "listeners": f"{protocol}://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"{protocol}://{LOOPBACK}:{port}",
        "listener.security.protocol.map": f"{protocol}:{protocol},CONTROLLER:{protocol}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": protocol,
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    if tls:
        settings |= {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(tls.keystore),
            "ssl.keystore.password": tls.keystore_password,
            "ssl.key.password": tls.keystore_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca),
            "ssl.client.auth": "required",
            "ssl.enabled.protocols": "TLSv1.3",
            "ssl.protocol": "TLSv1.3",
        }
    lines = ["# Written by devstack/kafka.py on every start; edits here are overwritten."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def parse_properties(text: str) -> dict[str, str]:
    """The key=value pairs of a Java properties file (comments and blanks skipped)."""
    pairs: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        pairs[key.strip()] = value.strip()
    return pairs


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID as 22 url-safe base64 characters, like `kafka-storage random-uuid`.

    Ids starting with '-' are skipped (Kafka does the same) because the CLI would read them as a flag.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def is_formatted(kafka_paths: KafkaPaths) -> bool:
    """StorageTool writes meta.properties into the log dir; its presence means "already formatted"."""
    return (kafka_paths.data / "meta.properties").is_file()


# ------------------------------------------------------------------------------------------ java & jars


def parse_java_major(version_output: str) -> int | None:
    """The major version in `java -version` output ("1.8.0_292" is 8, "17.0.15" is 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        return int(match.group(2))
    return major


def find_java(environ: dict[str, str] | None = None) -> str | None:
    """JAVA_HOME's java when set (what Java tooling honours), else the first on PATH."""
    env = os.environ if environ is None else environ
    java_home = env.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("java", path=env.get("PATH"))


def java_missing_message() -> str:
    return (
        f"java not found: Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+; "
        "install it (apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME"
    )


def java_too_old_message(java: str, major: int | None) -> str:
    found = "an unknown version" if major is None else f"Java {major}"
    return (
        f"{java} is {found} but Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+; "
        "install openjdk-17-jre-headless and put it first on PATH or in JAVA_HOME"
    )


def require_java() -> str:
    """The java executable to run the broker with, or an InfraError saying how to get one."""
    java = find_java()
    if java is None:
        raise InfraError(java_missing_message())
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [java, "-version"], capture_output=True, text=True, timeout=60, check=False
    )
    major = parse_java_major(done.stderr + done.stdout)
    if major is None or major < MIN_JAVA:
        raise InfraError(java_too_old_message(java, major))
    return java


def mvn_missing_message(cache: Path) -> str:
    return (
        f"mvn not found: it is needed once to fetch the Kafka {KAFKA_VERSION} jars into {cache}; "
        "install it (apt-get install -y maven)"
    )


def cache_root(environ: dict[str, str] | None = None) -> Path:
    """The per-user folder holding this Kafka version's jars, shared by every stack home.

    TREASURY_KAFKA_CACHE replaces `~/.cache/treasury-orch` (e.g. a temp dir to measure a cold start).
    """
    env = os.environ if environ is None else environ
    base = (
        Path(env["TREASURY_KAFKA_CACHE"]) if env.get("TREASURY_KAFKA_CACHE") else Path.home() / ".cache/treasury-orch"
    )
    return base.expanduser().resolve() / f"kafka-{KAFKA_VERSION}"


def pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def libs_complete(cache: Path, digest: str) -> bool:
    """True when the marker of a finished copy matches this pom and every jar it lists is still there."""
    marker = cache / MARKER
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    jars = recorded.get("jars")
    if recorded.get("pom_sha256") != digest or not isinstance(jars, list) or not jars:
        return False
    return all((cache / "libs" / str(jar)).is_file() for jar in jars)


def resolve_libs(cache: Path | None = None) -> Path:
    """The folder of broker jars, resolving them with Maven the first time (≈ 1 min cold).

    The copy goes to a scratch folder renamed into place and a marker is written last, so an
    interrupted resolve is never mistaken for a complete one.
    """
    cache = cache_root() if cache is None else cache
    digest = pom_digest()
    if libs_complete(cache, digest):
        return cache / "libs"
    with file_lock(cache / ".lock", what=f"the Kafka jar cache {cache}", timeout_s=MVN_TIMEOUT_S):
        if not libs_complete(cache, digest):  # another process may have finished while we waited
            _copy_dependencies(cache, digest)
    return cache / "libs"


def _copy_dependencies(cache: Path, digest: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError(mvn_missing_message(cache))
    pom = cache / "pom.xml"  # mvn runs on a copy: the package folder may be read-only
    shutil.copyfile(POM, pom)
    scratch = cache / f"libs.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"resolving Kafka {KAFKA_VERSION} jars with Maven into {cache} (first time only, ≈ 1 min cold)")
    started = time.monotonic()
    argv = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies"]
    run_checked(
        [*argv, f"-DoutputDirectory={scratch}"],
        what="mvn dependency:copy-dependencies",
        timeout_s=MVN_TIMEOUT_S,
        cwd=cache,
    )
    jars = sorted(p.name for p in scratch.glob("*.jar"))
    if not any(name.startswith(f"kafka_2.13-{KAFKA_VERSION}") for name in jars):
        raise InfraError(f"mvn finished but {scratch} has no kafka_2.13-{KAFKA_VERSION} jar; check {pom}")
    (cache / MARKER).unlink(missing_ok=True)
    shutil.rmtree(cache / "libs", ignore_errors=True)
    os.replace(scratch, cache / "libs")
    (cache / MARKER).write_text(json.dumps({"pom_sha256": digest, "jars": jars}, indent=1) + "\n")
    log(f"resolved {len(jars)} jars in {time.monotonic() - started:.1f} s")


# ------------------------------------------------------------------------------------------- lifecycle


def java_argv(java: str, libs: Path, main_class: str, *args: str, heap: str | None = None) -> list[str]:
    """A java command line on the cached jars; slf4j-simple logs get timestamps for the broker log."""
    argv = [java]
    if heap:
        argv += [heap, "-XX:+ExitOnOutOfMemoryError"]
    argv += [
        "-Djava.awt.headless=true",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]
    return argv


def write_properties(kafka_paths: KafkaPaths, port: int, controller_port: int, tls: KafkaTls | None = None) -> None:
    """The broker's properties, readable by their owner alone: with TLS they hold the keystore's password."""
    kafka_paths.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(kafka_paths.properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(render_server_properties(port, controller_port, kafka_paths.data, tls))


def make_keystore(kafka_paths: KafkaPaths, cert: Path, key: Path, ca: Path) -> KafkaTls:
    """A PKCS#12 keystore of the broker's certificate, under a fresh random password (dev only)."""
    kafka_paths.root.mkdir(parents=True, exist_ok=True)
    keystore = kafka_paths.root / "broker.p12"
    password = secrets.token_urlsafe(18)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise InfraError("openssl not found: it packs the broker's TLS keystore (apt-get install -y openssl)")
    run_checked([openssl, "pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-certfile", str(ca),
                 "-name", "kafka", "-out", str(keystore), "-passout", "env:KAFKA_KEYSTORE_PASSWORD"],
                what="openssl pkcs12 -export", timeout_s=60, env={**os.environ, "KAFKA_KEYSTORE_PASSWORD": password})
    keystore.chmod(0o600)
    return KafkaTls(keystore, password, ca)


def format_storage(java: str, libs: Path, kafka_paths: KafkaPaths) -> None:
    """Format the KRaft log dir once; later starts reuse it (topics and offsets survive restarts)."""
    if is_formatted(kafka_paths):
        return
    cluster_id = new_cluster_id()
    log(f"formatting Kafka storage in {kafka_paths.data} (cluster id {cluster_id})")
    started = time.monotonic()
    argv = java_argv(
        java, libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(kafka_paths.properties)
    )
    run_checked(argv, what="kafka StorageTool format", timeout_s=120, cwd=kafka_paths.root)
    log(f"formatted in {time.monotonic() - started:.1f} s")


def spawn(java: str, libs: Path, kafka_paths: KafkaPaths) -> int:
    """Launch the broker in the background; returns its pid (readiness is `wait_ready`'s job)."""
    argv = java_argv(java, libs, "kafka.Kafka", str(kafka_paths.properties), heap=HEAP)
    return spawn_daemon(argv, log_path=kafka_paths.log, cwd=kafka_paths.root)


def is_ours(pid: int | None, kafka_paths: KafkaPaths) -> bool:
    """True when `pid` is a live broker started on this home's server.properties."""
    return pid_matches(pid, "kafka.Kafka", str(kafka_paths.properties))


def _admin(bootstrap_servers: str, security: Mapping[str, str]) -> AdminClient:
    return AdminClient({**security, "bootstrap.servers": bootstrap_servers, "socket.connection.setup.timeout.ms": 2000})


def answers(bootstrap_servers: str, security: Mapping[str, str], timeout_s: float = 2.0) -> bool:
    """True when the broker serves metadata with itself registered (what every client needs first)."""
    try:
        metadata = _admin(bootstrap_servers, security).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def wait_ready(
    port: int, pid: int, kafka_paths: KafkaPaths, security: Mapping[str, str], timeout_s: float = READY_TIMEOUT_S,
    *, announce: bool = True,
) -> None:
    """Block until the broker answers an AdminClient, or fail early if its process died."""
    started = time.monotonic()
    address = bootstrap(port)

    def ready() -> bool:
        if not pid_alive(pid):
            raise InfraError(f"Kafka (pid {pid}) exited during start; see {kafka_paths.log}:\n{tail(kafka_paths.log)}")
        # A TCP probe first: the AdminClient would log a connection-refused line per try until then.
        return port_accepts(port) and answers(address, security)

    if not wait_until(ready, timeout_s, first_interval_s=0.2):
        raise InfraError(f"Kafka (pid {pid}) not answering on {address} after {timeout_s:.0f} s; see {kafka_paths.log}")
    if announce:
        log(f"kafka ready on {address} in {time.monotonic() - started:.1f} s (pid {pid})")


def _create_missing(admin: AdminClient, topics: Iterable[Topic]) -> None:
    new = [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1, config=dict(t.config)) for t in topics]
    if not new:
        return
    for name, future in admin.create_topics(new, operation_timeout=30, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise InfraError(f"creating topic {name} failed: {error}") from exc
        log(f"created topic {name}")


def ensure_topics(bootstrap_servers: str, topics: Iterable[Topic], security: Mapping[str, str],
                  timeout_s: float = 30.0) -> None:
    """Create the project's topics when missing and wait until every partition has a leader.

    Existing topics are left alone: their partition count is only reported when it differs, since
    adding partitions would move keys (accounts) to other partitions.
    """
    wanted = list(topics)
    admin = _admin(bootstrap_servers, security)
    existing = admin.list_topics(timeout=10).topics
    for topic in wanted:
        meta = existing.get(topic.name)
        if meta is not None and len(meta.partitions) != topic.partitions:
            log(f"topic {topic.name} has {len(meta.partitions)} partitions, topics.py says {topic.partitions}")
    _create_missing(admin, [t for t in wanted if t.name not in existing])

    def all_led() -> bool:
        current = admin.list_topics(timeout=5).topics
        for topic in wanted:
            meta = current.get(topic.name)
            if meta is None or meta.error is not None or not meta.partitions:
                return False
            if any(p.leader < 0 for p in meta.partitions.values()):
                return False
        return True

    if not wait_until(all_led, timeout_s):
        raise InfraError(f"topics on {bootstrap_servers} have no leader after {timeout_s:.0f} s; check the broker log")


def stop(pid: int | None, kafka_paths: KafkaPaths) -> None:
    """Controlled shutdown (SIGTERM), SIGKILL of the process group if it overstays its grace."""
    if pid is not None and is_ours(pid, kafka_paths):
        stop_group(pid, what="kafka", grace_s=STOP_GRACE_S)


def kill(pid: int | None, kafka_paths: KafkaPaths) -> None:
    """SIGKILL, no shutdown: what a crash looks like to clients (for chaos tests)."""
    if pid is not None and is_ours(pid, kafka_paths):
        kill_tree(pid, what="kafka")
