"""Resident memory of every process of the running system, grouped so a reader can find each part."""

from __future__ import annotations

import psutil

GROUPS = (
    ("kafka broker", "kafka.Kafka"),
    ("postgres", "postgres"),
    ("ray shard", "AccountShardActor"),
    ("ray coordinator", "CoordinatorActor"),
    ("serve replica", "ServeReplica"),
    ("serve proxy/controller", "ServeController"),
    ("serve proxy/controller", "ProxyActor"),
    ("raylet", "raylet"),
    ("gcs_server", "gcs_server"),
    ("ray other", "ray::"),
    ("ray other", "ray/"),
)


def classify(cmdline: str) -> str | None:
    for label, needle in GROUPS:
        if needle in cmdline:
            return label
    return None


def rss_table(driver_pid: int) -> list[tuple[str, int, float]]:
    """(part, pid, RSS MiB) for every process of the system, the driver included."""
    rows: list[tuple[str, int, float]] = []
    for proc in psutil.process_iter(["pid", "cmdline", "memory_info"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            label = "driver (bench)" if proc.info["pid"] == driver_pid else classify(cmd)
            if label is not None and proc.info["memory_info"] is not None:
                rows.append((label, proc.info["pid"], proc.info["memory_info"].rss / 2**20))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(rows)


def print_rss(title: str, rows: list[tuple[str, int, float]]) -> None:
    print(f"\n{title}: RSS per process (MiB)")
    for label, pid, mib in rows:
        print(f"  {label:<24} pid {pid:<8} {mib:8.1f}")
    print(f"  {'total':<24} {'':<12} {sum(r[2] for r in rows):8.1f}")
