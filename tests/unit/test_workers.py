"""Merging the backfill summaries of ``--workers N`` children."""

from __future__ import annotations

from bridge.run.workers import _merge


def part(partition: int, records: int, first: int, last: int, committed: int) -> dict:
    return {
        "topic": "t", "partition": partition, "records": records, "duplicates": 0, "dead_lettered": 0,
        "first_offset": first, "last_offset": last, "first_seq": first + 1, "last_seq": last + 1,
        "stream": "S", "start": first, "end": 100, "committed": committed, "stopped": None,
    }  # fmt: skip


def test_partitions_of_different_workers_are_listed_once_each() -> None:
    merged = _merge(
        [
            {"records": 10, "exit_code": 0, "elapsed_s": 2.0, "partitions": [part(1, 10, 0, 9, 10)]},
            {"records": 5, "exit_code": 0, "elapsed_s": 3.0, "partitions": [part(0, 5, 0, 4, 5)]},
        ]
    )
    assert [p["partition"] for p in merged["partitions"]] == [0, 1]
    assert merged["records"] == 15
    assert merged["elapsed_s"] == 3.0
    assert merged["exit_code"] == 0
    assert merged["workers"] == 2


def test_a_partition_that_moved_between_workers_is_combined() -> None:
    merged = _merge(
        [
            {"records": 40, "exit_code": 0, "partitions": [part(0, 40, 0, 39, 40)]},
            {"records": 60, "exit_code": 1, "error": "boom", "partitions": [part(0, 60, 40, 99, 100)]},
        ]
    )
    (p,) = merged["partitions"]
    assert (p["records"], p["first_offset"], p["last_offset"], p["committed"]) == (100, 0, 99, 100)
    assert merged["exit_code"] == 1
    assert merged["error"] == "boom"
