"""MAX_CLOCK_SKEW_S (issue 16, point 6): a whole, non-negative number of seconds, refused clearly otherwise."""

from __future__ import annotations

import pytest

from treasury.settings import DEFAULT_MAX_CLOCK_SKEW_S, ConfigError, RuntimeSettings


def test_the_default_is_five_minutes_and_it_reaches_the_actors() -> None:
    assert RuntimeSettings().max_clock_skew_s == DEFAULT_MAX_CLOCK_SKEW_S == 300
    assert "MAX_CLOCK_SKEW_S" in RuntimeSettings.env_keys(include_driver_only=False)
    settings = RuntimeSettings.from_env({"MAX_CLOCK_SKEW_S": " 0 "})
    assert settings.max_clock_skew_s == 0 and settings.as_env()["MAX_CLOCK_SKEW_S"] == "0"
    assert RuntimeSettings.from_env(settings.as_env()) == settings


@pytest.mark.parametrize(("value", "reason"), [
    ("-1", "between 0 and"),
    ("1.5", "whole number of seconds"),
    ("5m", "whole number of seconds"),
    ("99999999999", "between 0 and"),
])
def test_a_bad_value_names_the_key_and_the_rule(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RuntimeSettings.from_env({"MAX_CLOCK_SKEW_S": value})
    assert str(refused.value).startswith("MAX_CLOCK_SKEW_S: ") and reason in str(refused.value)
