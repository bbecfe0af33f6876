"""Configuration: the spec's policy keys (section 4) and the runtime's addresses.

Precedence is defaults -> environment -> Consul KV (watched at run time). Every value is
validated when it is read; a bad value stops start-up with the key and the reason, and a bad
live update is refused while the last good configuration stays in force.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from treasury.business_calendar import CALENDARS, DEFAULT_CALENDAR, BusinessCalendar, calendar
from treasury.clock import parse_cutoff
from treasury.money import MAX_ABS_USD
from treasury.order_status import ApprovalRule

# How far ahead of the service's clock a balance's as-of time may be (MAX_CLOCK_SKEW_S): bank and
# connector clocks drift by seconds, a wrong year or a value date in the as-of field by far more.
DEFAULT_MAX_CLOCK_SKEW_S = 300
MAX_CLOCK_SKEW_LIMIT_S = 366 * 86_400

POLICY_KEYS = ("LIQ_BUFFER_PCT", "VAR_LIMIT_BPS", "SWEEP_CUTOFFS_UTC", "TARGET_LADDER_DAYS", "MIN_SWEEP_USD")


class ConfigError(ValueError):
    """A configuration value was refused; the message names the key and the reason."""


class PolicyConfig(BaseModel):
    """The decision policy's knobs, named exactly as the spec's keys.

    MIN_SWEEP_USD has no default in the spec; 100,000 USD is below the smallest ticket the
    target products trade in practice and keeps tiny, costly sweeps from churning.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    LIQ_BUFFER_PCT: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.30")
    VAR_LIMIT_BPS: Annotated[Decimal, Field(ge=0, le=10_000)] = Decimal("10")
    SWEEP_CUTOFFS_UTC: tuple[str, ...] = ("00:30", "15:30")
    TARGET_LADDER_DAYS: Annotated[int, Field(ge=1, le=366)] = 28
    MIN_SWEEP_USD: Annotated[Decimal, Field(gt=0, le=MAX_ABS_USD)] = Decimal("100000")

    @field_validator("SWEEP_CUTOFFS_UTC", mode="before")
    @classmethod
    def _parse_cutoffs(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text.replace("'", '"')) if text.startswith("[") else text.split(",")
        else:
            items = list(value)
        if not items:
            raise ValueError("at least one cut-off is required")
        cleaned = tuple(str(item).strip() for item in items)
        for item in cleaned:
            parse_cutoff(item)
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("cut-offs must be distinct")
        return tuple(sorted(cleaned))

    @field_validator("LIQ_BUFFER_PCT", "VAR_LIMIT_BPS", "MIN_SWEEP_USD", mode="before")
    @classmethod
    def _no_float_noise(cls, value: Any) -> Any:
        return str(value) if isinstance(value, float) else value

    def cutoff_times(self) -> tuple[time, ...]:
        return _cutoff_times(self.SWEEP_CUTOFFS_UTC)

    def as_wire(self) -> dict[str, Any]:
        """JSON-safe form (decimals as strings) for Kafka and REST."""
        return json.loads(self.model_dump_json())


@functools.lru_cache(maxsize=16)
def _cutoff_times(cutoffs: tuple[str, ...]) -> tuple[time, ...]:
    """Parsed once per distinct configuration: every decision needs them."""
    return tuple(sorted(parse_cutoff(c) for c in cutoffs))


def policy_from_mapping(values: Mapping[str, Any], base: PolicyConfig | None = None) -> PolicyConfig:
    """Overlay ``values`` (only known keys) on ``base``; raises ConfigError naming the bad key."""
    unknown = sorted(set(values) - set(POLICY_KEYS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown configuration key (known: {', '.join(POLICY_KEYS)})")
    merged = (base or PolicyConfig()).model_dump()
    merged.update(values)
    try:
        return PolicyConfig.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"{key}: {first['msg']} (got {first.get('input')!r})") from exc


def policy_from_env(environ: Mapping[str, str] | None = None) -> PolicyConfig:
    env = os.environ if environ is None else environ
    return policy_from_mapping({k: env[k] for k in POLICY_KEYS if k in env and env[k].strip()})


def _is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address; any other name may resolve to a network address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class RuntimeSettings(BaseModel):
    """Where the parts live and how the work is split; read from the environment."""

    model_config = ConfigDict(frozen=True)

    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql://treasury@127.0.0.1:5432/treasury"
    shards: Annotated[int, Field(ge=1, le=64)] = 2
    var_window_days: Annotated[int, Field(ge=2, le=5000)] = 250
    serve_host: str = "127.0.0.1"
    serve_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    # The pull front (serve_app/rest/plain.py): the same app as plain uvicorn processes for the
    # Bank-Connector's hot paths, where Ray Serve's proxy costs 10x the app's CPU (docs/performance.md).
    rest_pull_workers: Annotated[int, Field(ge=0, le=64)] = 0
    rest_pull_port: Annotated[int, Field(ge=1, le=65535)] = 8001
    # Serve's own front (serve_app/rest/serve_front.py): its proxy, or Ray's HAProxy mode on this
    # machine, where haproxy forwards in plain HTTP to each replica's own port on SERVE_HOST.
    serve_front: Literal["proxy", "haproxy"] = "proxy"
    # Keys: Vault Transit unless the development keyring is chosen explicitly (treasury/keyring.py).
    signer: Literal["vault", "dev"] = "vault"
    vault_addr: str | None = None
    vault_token: str | None = None
    vault_token_file: str | None = None
    transit_mount: str = "transit"
    order_signing_key: str = "sweep-orders"
    token_signing_key: str = "bank-connector"  # noqa: S105 - a Transit key name, not a secret
    data_key: str = "raw-events"
    dev_key_file: str = str(Path.home() / ".config" / "treasury-orch" / "dev-signer.key")
    # Callers: JWTs signed by token_signing_key, or nothing at all when explicitly switched off.
    auth: Literal["jwt", "off"] = "jwt"
    jwt_audience: str = "treasury-orchestrator"

    def key_names(self) -> dict[str, str]:
        """Transit key per role, as keyring.KEY_TYPES names the roles."""
        return {"order": self.order_signing_key, "token": self.token_signing_key, "data": self.data_key}

    # The TLS front (devstack/tls_front.py): all three files or none; port 0 = any free port.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    tls_host: str = "127.0.0.1"
    tls_port: Annotated[int, Field(ge=0, le=65535)] = 8443

    @field_validator("tls_cert_file", "tls_key_file", "tls_client_ca_file", "kafka_ssl_ca_location",
                     "kafka_ssl_certificate_location", "kafka_ssl_key_location", "vault_cacert", "vault_client_cert",
                     "vault_client_key", "consul_cacert", "consul_client_cert", "consul_client_key")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value.expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"{value} is not a file (make development ones with `bash scripts/dev_ca.sh`)")
        if not os.access(path, os.R_OK):
            raise ValueError(f"{value} is not readable by this user")
        return path

    @model_validator(mode="after")
    def _tls_all_or_none(self) -> RuntimeSettings:
        files = {"TLS_CERT_FILE": self.tls_cert_file, "TLS_KEY_FILE": self.tls_key_file,
                 "TLS_CLIENT_CA_FILE": self.tls_client_ca_file}
        missing = [key for key, value in files.items() if value is None]
        if 0 < len(missing) < len(files):
            raise ValueError(f"{missing[0]}: required with the other TLS files (a TLS front needs a "
                             "certificate, its key and the CA of the clients it accepts)")
        return self

    @model_validator(mode="after")
    def _haproxy_on_loopback(self) -> RuntimeSettings:
        if self.serve_front == "haproxy" and not _is_loopback(self.serve_host):
            raise ValueError(f"SERVE_FRONT: haproxy needs SERVE_HOST on loopback (got {self.serve_host!r}): haproxy "
                             "speaks plain HTTP to each replica's own port on SERVE_HOST, which must not be "
                             "reachable from the network (docs/security.md)")
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def local_serve_host(self) -> str:
        """Where a process on this machine reaches a server bound to ``SERVE_HOST`` (Serve, the pull
        front): over loopback when it listens on every address."""
        try:
            unspecified = ipaddress.ip_address(self.serve_host).is_unspecified
        except ValueError:  # a host name
            unspecified = not self.serve_host
        return "127.0.0.1" if unspecified else self.serve_host

    # Mutual TLS to the services (issue 18, docs/security.md): unset is plaintext, as a laptop's stack
    # is without `--tls`. Kafka's are librdkafka's settings (actors.kafka_clients reads them in every
    # process); Vault's and Consul's carry the names their own CLIs read. Postgres's are in the DSN
    # (``sslmode=verify-full&sslrootcert=...&sslcert=...&sslkey=...``), as libpq and asyncpg read them.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL"] = "PLAINTEXT"
    kafka_ssl_ca_location: Path | None = None
    kafka_ssl_certificate_location: Path | None = None
    kafka_ssl_key_location: Path | None = None
    vault_cacert: Path | None = None
    vault_client_cert: Path | None = None
    vault_client_key: Path | None = None
    consul_cacert: Path | None = None
    consul_client_cert: Path | None = None
    consul_client_key: Path | None = None

    @model_validator(mode="after")
    def _client_cert_with_key(self) -> RuntimeSettings:
        pairs = (("KAFKA_SSL_CERTIFICATE_LOCATION", self.kafka_ssl_certificate_location,
                  "KAFKA_SSL_KEY_LOCATION", self.kafka_ssl_key_location),
                 ("VAULT_CLIENT_CERT", self.vault_client_cert, "VAULT_CLIENT_KEY", self.vault_client_key),
                 ("CONSUL_CLIENT_CERT", self.consul_client_cert, "CONSUL_CLIENT_KEY", self.consul_client_key))
        for cert_key, cert, key_key, key in pairs:
            if (cert is None) != (key is None):
                missing = key_key if key is None else cert_key
                raise ValueError(f"{missing}: required with {key_key if missing == cert_key else cert_key} "
                                 "(a client certificate is presented with its key)")
        if self.kafka_security_protocol == "PLAINTEXT" and self.kafka_ssl_certificate_location is not None:
            raise ValueError("KAFKA_SECURITY_PROTOCOL: must be SSL when KAFKA_SSL_CERTIFICATE_LOCATION is set "
                             "(a certificate is never sent in clear)")
        return self

    # Autoscaling of the REST ingress on its replicas' P95 latency (spec section 10: 800 ms).
    serve_p95_target_ms: Annotated[float, Field(gt=0, le=600_000)] = 800.0
    serve_min_replicas: Annotated[int, Field(ge=1, le=64)] = 1
    serve_max_replicas: Annotated[int, Field(ge=1, le=64)] = 4
    serve_scale_in_quiet_s: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    serve_latency_window_s: Annotated[float, Field(ge=0.5, le=600)] = 10.0

    @field_validator("serve_max_replicas")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("serve_min_replicas")
        if low is not None and value < low:
            raise ValueError(f"must be at least SERVE_MIN_REPLICAS ({low})")
        return value

    # POST /balances: the largest body taken (bytes), read in chunks and refused with 413 as soon as it
    # is passed. 50 MB holds a month of a busy account's camt.053 entries; the parser's memory does
    # not grow with the file, only the body buffer does (up to this limit).
    rest_max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 31)] = 50_000_000

    dashboard_port: Annotated[int, Field(ge=1, le=65535)] = 8265
    prometheus_port: Annotated[int, Field(ge=0, le=65535)] = 9090
    # Live configuration: unset means env/file configuration only, as fixed at start.
    consul_http_addr: str | None = None
    consul_kv_prefix: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-/]+/$")] = "treasury/config/"
    # Time sanity (issue 16): a balance whose as-of time (when the bank says the balance held) is
    # further ahead of this service's clock than this many seconds is refused (REST 422, Kafka dead
    # letter): accepted, it would make every later real balance of its account stale. Value dates are
    # not as-of times: a forward-value balance (FWAV, booked figure only) is never refused by this,
    # and a date-only stamp counts from the start of its day. ``actors.account_state.future_dated``.
    max_clock_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S

    @field_validator("max_clock_skew_s", mode="before")
    @classmethod
    def _whole_seconds(cls, value: Any) -> int:
        """A non-negative whole number of seconds, at most a year; the message says which rule failed."""
        text = str(value).strip()
        if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"must be a whole number of seconds, 0 or more (got {value!r})")
        seconds = int(text)
        if not 0 <= seconds <= MAX_CLOCK_SKEW_LIMIT_S:
            raise ValueError(f"must be between 0 and {MAX_CLOCK_SKEW_LIMIT_S} seconds (got {seconds})")
        return seconds

    # How often a shard commits its consumed offsets (actors.offset_commits): each commit is a write
    # on the broker; what is not yet committed is durable already and replays as duplicates after a
    # crash. 0 commits after every batch.
    offset_commit_interval_ms: Annotated[int, Field(ge=0, le=60_000)] = 200

    # The money loop (issue 16, docs/settlement.md). An order not settled by a booked debit this long
    # after its cut-off is overdue (listed, counted); an investment whose maturity credit has not
    # come back this many days after its maturity date is overdue; a CARBON_NOTE matures this many
    # days after its value date (FED_RRP: the next business day; TBILL_4W: its decision's ladder).
    settlement_overdue_after_s: Annotated[int, Field(ge=0, le=MAX_CLOCK_SKEW_LIMIT_S)] = 21_600
    maturity_grace_days: Annotated[int, Field(ge=0, le=366)] = 1
    carbon_note_tenor_days: Annotated[int, Field(ge=1, le=3660)] = 91
    # Business days (issue 17, treasury/business_calendar.py): which days cut-offs count and
    # investments mature on: the Federal Reserve Banks' holidays (``fed``) or Monday to Friday.
    business_calendar: str = DEFAULT_CALENDAR

    @field_validator("business_calendar", mode="before")
    @classmethod
    def _valid_calendar(cls, value: Any) -> str:
        return _known_calendar(value)

    # Four-eyes approval (issue 20, docs/approval.md): an order of at least this many USD waits,
    # signed and pending but unpublished, for this many approvals by distinct people; 0 turns it off.
    approval_threshold_usd: Annotated[Decimal, Field(ge=0, le=MAX_ABS_USD)] = Decimal("25000000")
    approvals_required: Annotated[int, Field(ge=1, le=10)] = 2

    def approval_rule(self) -> ApprovalRule:
        return ApprovalRule(self.approval_threshold_usd, self.approvals_required)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        env = os.environ if environ is None else environ
        values = {field: env[key] for field, key in _RUNTIME_ENV.items() if env.get(key)}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            if not first["loc"]:  # a check over several keys names its key in the message
                raise ConfigError(str(first["msg"]).removeprefix("Value error, ")) from exc
            field = str(first["loc"][0])
            raise ConfigError(f"{_RUNTIME_ENV.get(field, field)}: {first['msg']}") from exc

    @staticmethod
    def env_keys(include_driver_only: bool = True) -> list[str]:
        """Every variable these settings read; without the driver-only TLS keys when asked."""
        return [key for key in _RUNTIME_ENV.values() if include_driver_only or not key.startswith("TLS_")]

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in another process (actors, replicas).

        The TLS keys are left out: only the driver runs the front, and a replica on another node
        would not find the files.
        """
        values = {key: getattr(self, field) for field, key in _RUNTIME_ENV.items() if not key.startswith("TLS_")}
        return {key: str(value) for key, value in values.items() if value is not None}


def _known_calendar(value: Any) -> str:
    """Exactly as ``business_calendar.active()`` reads it in every process (no case folding)."""
    if value not in CALENDARS:
        raise ValueError(f"must be one of {', '.join(CALENDARS)} (got {value!r})")
    return str(value)


def business_calendar_from_env(environ: Mapping[str, str] | None = None) -> BusinessCalendar:
    """``BUSINESS_CALENDAR`` alone, for a command that needs no other setting (``treasury-orch decide``);
    a bad value is the ConfigError ``RuntimeSettings.from_env`` would raise."""
    env = os.environ if environ is None else environ
    value = env.get("BUSINESS_CALENDAR") or DEFAULT_CALENDAR
    try:
        return calendar(_known_calendar(value))
    except ValueError as exc:
        raise ConfigError(f"BUSINESS_CALENDAR: {exc}") from exc


_RUNTIME_ENV = {
    "kafka_bootstrap": "KAFKA_BOOTSTRAP",
    "database_url": "DATABASE_URL",
    "shards": "SHARDS",
    "var_window_days": "VAR_WINDOW_DAYS",
    "serve_host": "SERVE_HOST",
    "serve_port": "SERVE_PORT",
    "rest_pull_workers": "REST_PULL_WORKERS",
    "rest_pull_port": "REST_PULL_PORT",
    "serve_front": "SERVE_FRONT",
    "signer": "SIGNER",
    "vault_addr": "VAULT_ADDR",
    "vault_token": "VAULT_TOKEN",
    "vault_token_file": "VAULT_TOKEN_FILE",
    "transit_mount": "TRANSIT_MOUNT",
    "order_signing_key": "ORDER_SIGNING_KEY",
    "token_signing_key": "TOKEN_SIGNING_KEY",
    "data_key": "DATA_KEY",
    "dev_key_file": "DEV_KEY_FILE",
    "auth": "AUTH",
    "jwt_audience": "JWT_AUDIENCE",
    "tls_cert_file": "TLS_CERT_FILE",
    "tls_key_file": "TLS_KEY_FILE",
    "tls_client_ca_file": "TLS_CLIENT_CA_FILE",
    "tls_host": "TLS_HOST",
    "tls_port": "TLS_PORT",
    "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "kafka_ssl_ca_location": "KAFKA_SSL_CA_LOCATION",
    "kafka_ssl_certificate_location": "KAFKA_SSL_CERTIFICATE_LOCATION",
    "kafka_ssl_key_location": "KAFKA_SSL_KEY_LOCATION",
    "vault_cacert": "VAULT_CACERT",
    "vault_client_cert": "VAULT_CLIENT_CERT",
    "vault_client_key": "VAULT_CLIENT_KEY",
    "consul_cacert": "CONSUL_CACERT",
    "consul_client_cert": "CONSUL_CLIENT_CERT",
    "consul_client_key": "CONSUL_CLIENT_KEY",
    "serve_p95_target_ms": "SERVE_P95_TARGET_MS",
    "serve_min_replicas": "SERVE_MIN_REPLICAS",
    "serve_max_replicas": "SERVE_MAX_REPLICAS",
    "serve_scale_in_quiet_s": "SERVE_SCALE_IN_QUIET_S",
    "serve_latency_window_s": "SERVE_LATENCY_WINDOW_S",
    "rest_max_body_bytes": "REST_MAX_BODY_BYTES",
    "dashboard_port": "RAY_DASHBOARD_PORT",
    "prometheus_port": "PROMETHEUS_PORT",
    "consul_http_addr": "CONSUL_HTTP_ADDR",
    "consul_kv_prefix": "CONSUL_KV_PREFIX",
    "max_clock_skew_s": "MAX_CLOCK_SKEW_S",
    "offset_commit_interval_ms": "OFFSET_COMMIT_INTERVAL_MS",
    "settlement_overdue_after_s": "SETTLEMENT_OVERDUE_AFTER_S",
    "maturity_grace_days": "MATURITY_GRACE_DAYS",
    "carbon_note_tenor_days": "CARBON_NOTE_TENOR_DAYS",
    "business_calendar": "BUSINESS_CALENDAR",
    "approval_threshold_usd": "APPROVAL_THRESHOLD_USD",
    "approvals_required": "APPROVALS_REQUIRED",
}
