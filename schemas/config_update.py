"""``ConfigUpdate``: one accepted version of the policy configuration, rebroadcast to every part."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import UtcDatetime
from treasury.settings import PolicyConfig


class ConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, title="ConfigUpdate")

    version: int = Field(ge=1, description="Monotonic; a part ignores a version it already has")
    source: str = Field(min_length=1, max_length=64, description="consul, env or cli")
    issued_ts: UtcDatetime
    config: PolicyConfig
