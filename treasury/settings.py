"""Configuration: the spec's policy keys (section 4) and the runtime's addresses.

Precedence is defaults -> environment -> Consul KV (watched at run time). Every value is
validated when it is read; a bad value stops start-up with the key and the reason, and a bad
live update is refused while the last good configuration stays in force.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from datetime import time
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from treasury.clock import parse_cutoff
from treasury.money import MAX_ABS_USD

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


class RuntimeSettings(BaseModel):
    """Where the parts live and how the work is split; read from the environment."""

    model_config = ConfigDict(frozen=True)

    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql://treasury@127.0.0.1:5432/treasury"
    shards: Annotated[int, Field(ge=1, le=64)] = 2
    var_window_days: Annotated[int, Field(ge=2, le=5000)] = 250
    serve_host: str = "127.0.0.1"
    serve_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    # Live configuration: unset means env/file configuration only, as fixed at start.
    consul_http_addr: str | None = None
    consul_kv_prefix: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-/]+/$")] = "treasury/config/"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        env = os.environ if environ is None else environ
        values = {field: env[key] for field, key in _RUNTIME_ENV.items() if env.get(key)}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0])
            raise ConfigError(f"{_RUNTIME_ENV.get(field, field)}: {first['msg']}") from exc

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in another process (actors, replicas)."""
        return {key: "" if getattr(self, field) is None else str(getattr(self, field))
                for field, key in _RUNTIME_ENV.items()}


_RUNTIME_ENV = {
    "kafka_bootstrap": "KAFKA_BOOTSTRAP",
    "database_url": "DATABASE_URL",
    "shards": "SHARDS",
    "var_window_days": "VAR_WINDOW_DAYS",
    "serve_host": "SERVE_HOST",
    "serve_port": "SERVE_PORT",
    "consul_http_addr": "CONSUL_HTTP_ADDR",
    "consul_kv_prefix": "CONSUL_KV_PREFIX",
}
