"""``storage.history._series_closes``: close_series' packed tails (migration 008) turned into the
stream the window read works on, each account's newest closes first, and the accounts whose tail
was too short to hold them, to be read whole."""

from __future__ import annotations

import struct
from typing import Any

from storage.history import _NO_CLOSE, _calendar_days, _series_closes


def _row(ord_: int, first: int, closes: list[int | None], cut: bool = False) -> dict[str, Any]:
    """A _SERIES_TAIL row: big-endian int8 a calendar day from ``first``, None for no close."""
    packed = b"".join(struct.pack(">q", _NO_CLOSE if c is None else c) for c in closes)
    return {"ord": ord_, "first": first, "closes": packed, "cut": cut}


def test_newest_first_per_account_without_the_days_that_have_no_close() -> None:
    rows = [_row(1, 100, [10, None, 12, 13]), _row(3, 200, [None, -5, None])]
    codes, days, closes, short = _series_closes(rows, wanted=10)
    assert codes.tolist() == [0, 0, 0, 2]  # 0-based positions in the read's ids
    assert days.tolist() == [103, 102, 100, 201]
    assert closes.tolist() == [13, 12, 10, -5]
    assert short.tolist() == []


def test_only_the_wanted_newest_closes_are_kept() -> None:
    codes, days, closes, _ = _series_closes([_row(1, 0, [1, 2, 3, 4, 5])], wanted=2)
    assert (codes.tolist(), days.tolist(), closes.tolist()) == ([0, 0], [4, 3], [5, 4])


def test_a_cut_tail_with_too_few_closes_is_read_again_and_its_rows_left_out() -> None:
    rows = [_row(1, 0, [1, None, None], cut=True), _row(2, 0, [7, 8], cut=True), _row(3, 0, [9], cut=False)]
    codes, _, closes, short = _series_closes(rows, wanted=2)
    assert short.tolist() == [0]  # cut and holding 1 of 2: older days may hold the other
    assert codes.tolist() == [1, 1, 2]  # the uncut account with one close is all there is
    assert closes.tolist() == [8, 7, 9]


def test_no_rows() -> None:
    assert [len(a) for a in _series_closes([], wanted=5)] == [0, 0, 0, 0]


def test_calendar_days_hold_a_business_year_of_closes() -> None:
    assert _calendar_days(251) >= 251 * 7 // 5 + 20  # five closes a week, holidays beside
