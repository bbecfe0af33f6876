"""Long-form history files -> right-aligned flow matrix, and the ``var compute`` command on top."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from risk.compute import compute_file, run_compute_cli
from risk.history import (
    HistoryError,
    account_series,
    build_matrix,
    flows_to_numpy,
    load_history,
    read_long,
)

HEADER = "account_id,date,net_flow_usd\n"


def write_csv(path: Path, body: str, header: str = HEADER) -> Path:
    path.write_text(header + body)
    return path


def test_csv_right_aligned_sorted_and_nan_padded(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "h.csv",
        "007,2024-01-03,2\n007,2024-01-02,1.5\nB,2024-01-02,\nA,2024-01-05,-3\n007,2024-01-04,4\n",
    )
    history = load_history(source, 4)
    assert history.account_ids == ["007", "A", "B"]  # leading zeros kept, sorted
    np.testing.assert_array_equal(
        history.flows,
        [[np.nan, 1.5, 2.0, 4.0], [np.nan, np.nan, np.nan, -3.0], [np.nan, np.nan, np.nan, np.nan]],
    )
    assert history.days.tolist() == [3, 1, 0]
    assert history.last_date.astype(str).tolist() == ["2024-01-04", "2024-01-05", "2024-01-02"]


def test_window_keeps_the_last_days(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "h.csv", "".join(f"X,2024-02-{d:02d},{d}\n" for d in range(1, 11)))
    np.testing.assert_array_equal(load_history(source, 3).flows, [[8.0, 9.0, 10.0]])


def test_parquet_sorted_dense_file_is_a_zero_copy_view(tmp_path: Path) -> None:
    dates = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-06"))
    table = pa.table(
        {
            "account_id": ["a"] * 5 + ["b"] * 5,
            "date": pa.array(np.concatenate([dates, dates])),
            "net_flow_usd": np.arange(10.0),
        }
    )
    pq.write_table(table, tmp_path / "h.parquet")
    history = load_history(tmp_path / "h.parquet", 3)
    np.testing.assert_array_equal(history.flows, [[2.0, 3.0, 4.0], [7.0, 8.0, 9.0]])
    assert history.flows.base is not None and not history.flows.flags.writeable  # Arrow's buffer


def test_parquet_unsorted_decimal_and_timestamps(tmp_path: Path) -> None:
    table = pa.table(
        {
            "account_id": pa.array([2, 1, 2], pa.int64()),
            "date": pa.array(np.array(["2024-01-02T10:00", "2024-01-01T00:00", "2024-01-01T23:59"], "M8[s]")),
            "net_flow_usd": pa.array([Decimal("1.25"), Decimal("-2.5"), Decimal("3")], pa.decimal128(10, 2)),
            "ignored": ["x", "y", "z"],
        }
    )
    target = tmp_path / "no-suffix"  # the format is sniffed from the magic bytes
    pq.write_table(table, target)
    history = load_history(target, 2)
    assert history.account_ids == ["1", "2"]
    np.testing.assert_array_equal(history.flows, [[np.nan, -2.5], [3.0, 1.25]])


def test_date32_and_string_dates_in_parquet(tmp_path: Path) -> None:
    table = pa.table({"account_id": ["a", "a"], "date": ["2024-01-02", "2024-01-01"], "net_flow_usd": [1.0, 2.0]})
    pq.write_table(table, tmp_path / "s.parquet")
    np.testing.assert_array_equal(load_history(tmp_path / "s.parquet", 2).flows, [[2.0, 1.0]])


def test_flows_to_numpy_zero_copy_and_nulls() -> None:
    dense = pa.array([1.0, 2.0])
    view = flows_to_numpy(dense)
    assert not view.flags.writeable
    np.testing.assert_array_equal(flows_to_numpy(pa.chunked_array([[1, None]], pa.int64())), [1.0, np.nan])


def test_parquet_null_typed_flow_column_is_missing_days(tmp_path: Path) -> None:
    table = pa.table({"account_id": ["A"], "date": ["2024-01-01"], "net_flow_usd": pa.nulls(1)})
    pq.write_table(table, tmp_path / "n.parquet")
    assert load_history(tmp_path / "n.parquet", 3).days.tolist() == [0]


def test_build_matrix_from_table_and_empty(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "e.csv", "")
    history = load_history(source, 5)
    assert history.account_ids == [] and history.flows.shape == (0, 5)


def test_all_null_flow_column_is_missing_days(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "n.csv", "A,2024-01-01,\nA,2024-01-02,\n")
    history = load_history(source, 2)
    assert history.days.tolist() == [0]


@pytest.mark.parametrize(
    ("header", "body", "column", "message"),
    [
        ("account_id,date\n", "A,2024-01-01\n", "net_flow_usd", "missing column"),
        ("date,net_flow_usd\n", "2024-01-01,1\n", "account_id", "missing column"),
        (HEADER, "A,2024-01-01,abc\n", "net_flow_usd", "non-numeric"),
        (HEADER, "A,2024-01-01,inf\n", "net_flow_usd", "infinite"),
        (HEADER, "A,2024-01-01,1\nA,2024-01-01,2\n", "date", "duplicate row for account 'A' on 2024-01-01"),
        (HEADER, "A,2024-13-01,1\n", "date", "ISO date"),
        (HEADER, "A,2024-01-01,1\n,2024-01-02,1\n", "account_id", "missing value in data row 2"),
        (HEADER, "A,,1\n", "date", "missing value in data row 1"),
        (HEADER, "A,5,1\n", "date", "ISO dates"),
    ],
)
def test_errors_name_the_column(tmp_path: Path, header: str, body: str, column: str, message: str) -> None:
    source = write_csv(tmp_path / "bad.csv", body, header)
    with pytest.raises(HistoryError, match=message) as caught:
        load_history(source, 10)
    assert caught.value.column == column


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("account_id", pa.array([1.5]), "expected text ids"),
        ("net_flow_usd", pa.array([True]), "non-numeric flows of type bool"),
    ],
)
def test_parquet_type_errors(tmp_path: Path, column: str, values: pa.Array, message: str) -> None:
    data = {"account_id": pa.array(["A"]), "date": pa.array(["2024-01-01"]), "net_flow_usd": pa.array([1.0])}
    data[column] = values
    pq.write_table(pa.table(data), tmp_path / "t.parquet")
    with pytest.raises(HistoryError, match=message):
        read_long(tmp_path / "t.parquet")


@pytest.mark.parametrize("window", [0, -3, True])
def test_window_must_be_positive(tmp_path: Path, window: int) -> None:
    source = write_csv(tmp_path / "w.csv", "A,2024-01-01,1\n")
    with pytest.raises(ValueError, match="window"):
        load_history(source, window)


def test_account_series(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "s.csv", "A,2024-01-02,2\nB,2024-01-01,9\nA,2024-01-01,1\n")
    table = read_long(source)
    account, dates, flows = account_series(table, "A")
    assert account == "A"
    assert dates.astype(str).tolist() == ["2024-01-01", "2024-01-02"]
    np.testing.assert_array_equal(flows, [1.0, 2.0])
    with pytest.raises(HistoryError, match="2 accounts"):
        account_series(table, None)
    single = read_long(write_csv(tmp_path / "one.csv", "Z,2024-01-01,1\n"))
    assert account_series(single, None)[0] == "Z"


def test_account_series_duplicates(tmp_path: Path) -> None:
    table = read_long(write_csv(tmp_path / "d.csv", "A,2024-01-01,1\nA,2024-01-01,2\n"))
    with pytest.raises(HistoryError, match="duplicate"):
        account_series(table, "A")


def test_build_matrix_directly_from_a_table(tmp_path: Path) -> None:
    table = read_long(write_csv(tmp_path / "d.csv", "B,2024-01-01,1\nA,2024-01-01,2\n"))
    history = build_matrix(table, 1)
    assert history.account_ids == ["A", "B"]


def test_compute_file_matches_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    dates = np.arange(np.datetime64("2023-01-02"), np.datetime64("2023-01-02") + 300)
    flows = {"A": rng.normal(0, 1e6, 300), "B": rng.normal(0, 1e3, 300)}
    lines = [f"{acc},{d},{float(v)!r}" for acc, values in flows.items() for d, v in zip(dates, values, strict=True)]
    source = write_csv(tmp_path / "f.csv", "\n".join(lines) + "\nC,2023-01-02,\n")
    rows = compute_file(source, 0.99, 250)
    assert [row["account_id"] for row in rows] == ["A", "B", "C"]
    for row in rows[:2]:
        last = flows[row["account_id"]][-250:]
        assert row["days"] == 250
        assert row["var_usd"] == max(0.0, -float(np.quantile(last, 1 - 0.99, method="inverted_cdf")))
        assert row["es_usd"] == pytest.approx(-np.mean(np.sort(last)[:3]), rel=1e-12)
    assert rows[2] == {"account_id": "C", "days": 0, "var_usd": None, "es_usd": None}


def test_compute_cli_prints_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_csv(tmp_path / "f.csv", "A,2024-01-01,-5\nA,2024-01-02,1\nB,2024-01-01,\n")
    assert run_compute_cli(str(source), 0.99, 250) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"account_id": "A", "days": 2, "var_usd": 5.0, "es_usd": 5.0},
        {"account_id": "B", "days": 0, "var_usd": None, "es_usd": None},
    ]


@pytest.mark.parametrize(
    ("body", "confidence", "window", "message"),
    [
        ("A,2024-01-01,x\n", 0.99, 250, "net_flow_usd: non-numeric"),
        ("A,2024-01-01,1\n", 1.5, 250, "confidence"),
        ("A,2024-01-01,1\n", 0.99, 0, "window"),
        ("A,2024-01-01,1,extra\n", 0.99, 250, "Expected 3 columns"),
    ],
)
def test_compute_cli_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, confidence: float, window: int, message: str
) -> None:
    source = write_csv(tmp_path / "bad.csv", body)
    assert run_compute_cli(str(source), confidence, window) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_compute_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_compute_cli(str(tmp_path / "absent.csv"), 0.99, 250) == 2
    assert "absent.csv" in capsys.readouterr().err
