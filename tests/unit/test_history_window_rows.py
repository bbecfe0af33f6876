"""``storage.history._newest_per_day``: the VaR window's rows read without DISTINCT ON, de-duplicated
in numpy as ``_WINDOW_CLOSES`` (DISTINCT ON the UTC day, newest as_of_ts, then newest id) would."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np

from storage.history import _days_of, _newest_per_day

US = 1_000_000


def _stamp(day: int, hour: int, second: int = 0) -> int:
    """µs since 2000-01-01 UTC of 2026-01-(day) hour:00:second UTC, as the binary timestamptz."""
    at = datetime(2026, 1, day, hour, 0, second, tzinfo=UTC) - datetime(2000, 1, 1, tzinfo=UTC)
    return (at.days * 86_400 + at.seconds) * US


def test_days_are_utc_days_also_before_2000() -> None:
    stamps = np.array([_stamp(5, 0), _stamp(5, 23, 59), -1, -86_400 * US, 0], dtype=np.int64)
    expected = [(date(2026, 1, 5) - date(1970, 1, 1)).days] * 2 + [10956, 10956, 10957]  # 2000-01-01 is day 10957
    assert _days_of(stamps).tolist() == expected


def test_the_newest_close_of_each_day_and_accounts_to_read_again() -> None:
    rows = [  # (account, as_of_ts, close): newest first per account, as the index gives them
        (0, _stamp(9, 22), 90), (0, _stamp(9, 21), 91), (0, _stamp(8, 21), 80), (0, _stamp(7, 21), 70),
        (1, _stamp(9, 21), 19), (1, _stamp(8, 21), 18),
        (2, _stamp(9, 21), 29), (2, _stamp(9, 21), 28), (2, _stamp(8, 21), 27),  # same as_of_ts: id decides
        (3, _stamp(9, 21), 39), (3, _stamp(8, 23), 38), (3, _stamp(8, 21), 37), (3, _stamp(7, 21), 36),
        (3, _stamp(6, 21), 35),  # full
    ]
    codes, stamps, closes = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    for order in (np.arange(len(rows)), np.random.default_rng(1).permutation(len(rows))):
        got_codes, days, got, again = _newest_per_day(codes[order], stamps[order], closes[order], limit=5)
        assert again.tolist() == [2, 3]  # 2: a tie; 3: five rows, four days, maybe a fifth not read
        assert got_codes.tolist() == [0, 0, 0, 1, 1]
        assert got.tolist() == [90, 80, 70, 19, 18]
        assert (np.diff(days[:3]) < 0).all()


def test_no_repeated_day_is_the_rows_as_read() -> None:
    codes = np.array([0, 0, 1], dtype=np.int64)
    stamps = np.array([_stamp(9, 21), _stamp(8, 21), _stamp(9, 21)], dtype=np.int64)
    got_codes, _, closes, again = _newest_per_day(codes, stamps, np.array([3, 2, 1], dtype=np.int64), limit=2)
    assert got_codes.tolist() == [0, 0, 1] and closes.tolist() == [3, 2, 1] and len(again) == 0
