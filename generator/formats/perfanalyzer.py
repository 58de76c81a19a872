"""Read perf_analyzer's CSV (``-f out.csv``) into typed rows.

Columns become snake_case keys. Every latency column is in microseconds in the CSV: it is kept as
``<name>_us`` (float) and also given as ``<name>_ms``. ``Concurrency`` is an int, ``Request Rate`` and
``Inferences/Second`` (``throughput_infer_per_sec``) are floats, GPU metric columns (``--collect-metrics``,
``gpu_uuid:value;`` lists) are kept as strings. When the CSV has no ``Avg latency`` column (the default, not
``--verbose-csv``), ``avg_latency_us`` is the sum of the client/network/server components, which is how
perf_analyzer computes its printed average.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

# CSV header -> key stem. Latency stems get _us and _ms; the rest are listed in _PLAIN.
_NAMES = {
    "Concurrency": "concurrency",
    "Request Rate": "request_rate",
    "Inferences/Second": "throughput_infer_per_sec",
    "Client Send": "client_send",
    "Network+Server Send/Recv": "network_server_send_recv",
    "Server Queue": "server_queue",
    "Server Compute Input": "server_compute_input",
    "Server Compute Infer": "server_compute_infer",
    "Server Compute Output": "server_compute_output",
    "Client Recv": "client_recv",
    "p50 latency": "p50_latency",
    "p90 latency": "p90_latency",
    "p95 latency": "p95_latency",
    "p99 latency": "p99_latency",
    "Avg latency": "avg_latency",
    "request/response": "request_response",
    "response wait": "response_wait",
}
_INT = {"concurrency"}
_FLOAT = {"request_rate", "throughput_infer_per_sec"}
_COMPONENTS = (
    "client_send", "network_server_send_recv", "server_queue", "server_compute_input",
    "server_compute_infer", "server_compute_output", "client_recv",
)


def _stem(header: str) -> str:
    header = header.strip()
    if header in _NAMES:
        return _NAMES[header]
    return re.sub(r"[^0-9a-z]+", "_", header.lower()).strip("_")


def _is_latency(stem: str) -> bool:
    return stem not in _INT and stem not in _FLOAT and "gpu" not in stem and "memory" not in stem


def parse_csv(path: str | os.PathLike) -> list[dict]:
    """One dict per row (per concurrency or request rate), typed, µs latencies with _ms twins."""
    rows = []
    with open(Path(path), newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return []
        for raw in reader:
            if not raw or not any(cell.strip() for cell in raw):
                continue
            row: dict = {}
            for name, cell in zip(header, raw):
                stem = _stem(name)
                cell = cell.strip()
                if stem in _INT:
                    row[stem] = int(float(cell))
                elif stem in _FLOAT:
                    row[stem] = float(cell)
                elif _is_latency(stem):
                    try:
                        us = float(cell)
                    except ValueError:
                        row[stem] = cell
                        continue
                    row[f"{stem}_us"] = us
                    row[f"{stem}_ms"] = us / 1000.0
                else:
                    row[stem] = cell
            if "avg_latency_us" not in row and all(f"{c}_us" in row for c in _COMPONENTS):
                row["avg_latency_us"] = sum(row[f"{c}_us"] for c in _COMPONENTS)
                row["avg_latency_ms"] = row["avg_latency_us"] / 1000.0
            rows.append(row)
    return rows
