#!/usr/bin/env python3
"""Peer benchmark: harvest ERDDAP dataset metadata the way erddapy users do, for comparison
with Trawl's harvester.

    erddapy_peer.py --server http://127.0.0.1:PORT/erddap [--limit N] [--methods a,b]

1. Lists the dataset ids with erddapy: the `allDatasets` table, column `datasetID`, via
   `ERDDAP.to_pandas(response="csv")` (erddapy's default `.csvp` isn't served by the fixture;
   `.csv` is what every ERDDAP serves too). The `allDatasets` row itself is dropped.
2. For each id, in a plain sequential loop, builds `e.get_info_url(dataset_id=id,
   response="csv")` and reads it, once per method:
   * `pandas_read_csv`: `pandas.read_csv(info_url)`, as erddapy's docs do (pandas fetches
     the URL itself with urllib: one new connection per request, no keep-alive).
   * `urlopen`: erddapy's own fetch, `erddapy.core.url.urlopen(info_url)` (a `requests.get`
     without a Session: also one new connection per request, and an lru_cache(maxsize=128)
     keyed by URL, which every distinct info URL misses), then a minimal `csv` parse of the
     ISO-8859-1 bytes.
   A non-200 answer or a parse failure is counted as an error, not fatal.

Prints one JSON line on stdout; progress and error samples go to stderr.
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import math
import sys
import time

import erddapy
import pandas as pd
from erddapy import ERDDAP
from erddapy.core import url as erddapy_url

INFO_COLUMNS = ["Row Type", "Variable Name", "Attribute Name", "Data Type", "Value"]
ALL_DATASETS = "allDatasets"
METHODS = ("pandas_read_csv", "urlopen")


class ParseError(Exception):
    pass


def list_dataset_ids(server: str, timeout: float) -> tuple[ERDDAP, list[str]]:
    e = ERDDAP(server=server, protocol="tabledap")
    e.dataset_id = ALL_DATASETS
    e.variables = ["datasetID"]
    # ERDDAP's .csv has a units line under the header (empty for datasetID); skip it.
    df = e.to_pandas(
        response="csv",
        requests_kwargs={"timeout": timeout},
        skiprows=[1],
        dtype=str,
    )
    ids = [i for i in df["datasetID"].dropna() if i and i != ALL_DATASETS]
    return e, ids


def check_rows(n_rows: int, n_globals: int) -> None:
    if n_rows == 0 or n_globals == 0:
        raise ParseError(f"{n_rows} rows, {n_globals} NC_GLOBAL attributes")


def make_pandas_fetch(encoding: str):
    def fetch(url: str) -> int:
        df = pd.read_csv(url, encoding=encoding, dtype=str)
        if list(df.columns) != INFO_COLUMNS:
            raise ParseError(f"columns {list(df.columns)[:6]}")
        # A body cut short leaves its last row short: pandas pads it with NaN.
        if df[["Row Type", "Variable Name", "Data Type"]].isna().any().any():
            raise ParseError("row with missing fields (body cut short?)")
        globals_ = df.loc[df["Variable Name"] == "NC_GLOBAL", ["Attribute Name", "Value"]]
        attrs = dict(zip(globals_["Attribute Name"], globals_["Value"]))
        check_rows(len(df), len(attrs))
        return len(df)

    return fetch


def make_urlopen_fetch(timeout: float):
    def fetch(url: str) -> int:
        data = erddapy_url.urlopen(url, requests_kwargs={"timeout": timeout})
        # ERDDAP writes .csv in ISO-8859-1 (and says so in Content-Type).
        text = data.read().decode("iso-8859-1")
        if not text.endswith("\n"):
            raise ParseError("body does not end with a newline (cut short?)")
        rows = csv.reader(io.StringIO(text, newline=""))
        header = next(rows, None)
        if header != INFO_COLUMNS:
            raise ParseError(f"header {header!r:.80}")
        n_rows = 0
        attrs = {}
        for row in rows:
            if len(row) != len(INFO_COLUMNS) or not row[0] or not row[3]:
                raise ParseError(f"row {n_rows + 1} is short: {len(row)} fields")
            n_rows += 1
            if row[1] == "NC_GLOBAL":
                attrs[row[2]] = row[4]
        check_rows(n_rows, len(attrs))
        return n_rows

    return fetch


def percentile_ms(sorted_seconds: list[float], p: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_seconds:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_seconds)))
    return round(sorted_seconds[rank - 1] * 1000, 3)


def run_method(name: str, fetch, urls: list[tuple[str, str]]) -> dict:
    latencies = []
    errors = 0
    kinds: collections.Counter = collections.Counter()
    samples = 0
    start = time.perf_counter()
    for dataset_id, url in urls:
        t0 = time.perf_counter()
        try:
            fetch(url)
        except Exception as exc:  # noqa: BLE001 - counted, not fatal
            errors += 1
            kinds[type(exc).__name__] += 1
            if samples < 3:
                samples += 1
                first_line = str(exc).strip().splitlines()[:3]
                print(f"[{name}] {dataset_id}: {type(exc).__name__}: {' '.join(first_line)[:200]}",
                      file=sys.stderr)
        latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    latencies.sort()
    n = len(urls)
    result = {
        "seconds": round(seconds, 4),
        "datasets_per_second": round(n / seconds, 2) if seconds > 0 else None,
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "mean_ms": round(sum(latencies) / n * 1000, 3) if n else None,
        "ok": n - errors,
        "errors": errors,
        "error_kinds": dict(kinds),
    }
    print(f"[{name}] {n} datasets in {seconds:.2f}s = {result['datasets_per_second']}/s, "
          f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, {errors} errors",
          file=sys.stderr)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="ERDDAP base URL, e.g. http://127.0.0.1:8081/erddap")
    ap.add_argument("--limit", type=int, default=None, help="fetch only the first N dataset ids")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma list of methods to run, in order (default: {','.join(METHODS)})")
    ap.add_argument("--pandas-encoding", default="ISO-8859-1",
                    help="encoding for pandas.read_csv (ERDDAP's .csv is ISO-8859-1; pandas' own "
                         "default utf-8, as in erddapy's docs, fails on non-ASCII values)")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="requests timeout for erddapy's urlopen (its default is 60 s)")
    args = ap.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        ap.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")

    t0 = time.perf_counter()
    e, ids = list_dataset_ids(args.server, args.timeout)
    list_seconds = time.perf_counter() - t0
    print(f"listed {len(ids)} datasets in {list_seconds:.3f}s", file=sys.stderr)
    if args.limit is not None:
        ids = ids[: max(0, args.limit)]
    urls = [(i, e.get_info_url(dataset_id=i, response="csv")) for i in ids]

    results = {}
    for method in methods:
        if method == "pandas_read_csv":
            results[method] = run_method(method, make_pandas_fetch(args.pandas_encoding), urls)
            results[method]["encoding"] = args.pandas_encoding
        elif method == "urlopen":
            # erddapy memoises fetches by URL (lru_cache maxsize=128): start cold, and report
            # the cache's counters to show every distinct info URL missed it.
            erddapy_url._urlopen.cache_clear()  # noqa: SLF001
            results[method] = run_method(method, make_urlopen_fetch(args.timeout), urls)
            info = erddapy_url._urlopen.cache_info()  # noqa: SLF001
            results[method]["cache_hits"] = info.hits
            results[method]["cache_misses"] = info.misses

    rates = [r["datasets_per_second"] for r in results.values() if r["datasets_per_second"]]
    print(json.dumps({
        "tool": "erddapy",
        "version": erddapy.__version__,
        "datasets": len(urls),
        "list_seconds": round(list_seconds, 4),
        "methods": results,
        "best_datasets_per_second": max(rates) if rates else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
