"""`ledger export --parquet DIR`: the log and the read models as Parquet files, incrementally,
and the source that reads such a directory back (`ledger sql --parquet DIR`).

Layout of DIR:

    manifest.json                                  position exported up to, and what is where
    events/day=YYYY-MM-DD/part-<first>-<last>.parquet   events, by UTC day of recorded_at
    read_models/<table>.parquet                    each read-model table, whole, as of the export

Events are partitioned by the day they were *recorded*, not the day they occurred: recorded_at
grows with the position, so an incremental export only ever adds files to the newest days and a
day, once past, never changes; occurred_at is business time and may be backdated by years (an
import, `ledger simulate`), which would scatter every export over old partitions. Filters on
recorded_at prune files; occurred_at is a column like any other.

Incremental: the manifest keeps the high-water position. An export copies the events above it
into new files (named by their first and last position) and rewrites the read-model files
(read models change in place and carry no change position). Files are written under temporary
names and renamed; the manifest is replaced last, so an interrupted export leaves files above
the manifest's position, which the next export deletes before writing them again."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from infra.analytics.source import EVENTS_SCHEMA, AnalyticsSource, ArrowData, Snapshot

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
MAX_ROWS_PER_FILE = 1_000_000
PART_NAME = re.compile(r"^part-(\d+)-(\d+)\.parquet$")


@dataclass(frozen=True)
class Manifest:
    position: int = 0
    read_models_position: int = 0
    read_model_tables: tuple[str, ...] = ()
    exported_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "position": self.position,
            "read_models_position": self.read_models_position,
            "read_model_tables": list(self.read_model_tables),
            "exported_at": self.exported_at,
            "events_partitioning": "events/day=<UTC day of recorded_at>/part-<first>-<last position>.parquet",
        }


@dataclass(frozen=True)
class ExportStats:
    events_written: int
    files_written: int
    position: int
    previous_position: int
    read_model_rows: int


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not path.exists():
        return Manifest()
    data = json.loads(path.read_text())
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: export format {data.get('format_version')} is not {FORMAT_VERSION}")
    return Manifest(
        position=int(data["position"]),
        read_models_position=int(data["read_models_position"]),
        read_model_tables=tuple(data["read_model_tables"]),
        exported_at=data.get("exported_at"),
    )


def export_parquet(source: AnalyticsSource, directory: Path) -> ExportStats:
    """Write what is new since the last export of `directory` (everything the first time)."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(directory)
    _remove_unfinished(directory, manifest.position)
    with source.read(events_after=manifest.position) as snapshot:
        # Whole, to partition it by day (an export is a command of its own, not a server's copy).
        events = _whole(snapshot.events) if snapshot.events is not None else pa.table({})
        read_models = {name: _whole(copy()) for name, copy in snapshot.read_models.items()}
    files = _write_events(directory / "events", events)
    read_model_rows = _write_read_models(directory / "read_models", read_models, manifest.read_model_tables)
    _write_manifest(
        directory,
        Manifest(
            position=snapshot.position,
            read_models_position=snapshot.read_models_position,
            read_model_tables=tuple(sorted(read_models)),
            exported_at=datetime.now(UTC).isoformat(),
        ),
    )
    return ExportStats(events.num_rows, files, snapshot.position, manifest.position, read_model_rows)


def _event_files(events_dir: Path) -> list[Path]:
    return sorted(events_dir.glob("day=*/part-*.parquet")) if events_dir.exists() else []


def _remove_unfinished(directory: Path, position: int) -> None:
    for path in _event_files(directory / "events"):
        match = PART_NAME.match(path.name)
        if match and int(match.group(1)) > position:
            path.unlink()
    for leftover in directory.rglob("*.tmp"):
        leftover.unlink()


def _write_events(events_dir: Path, events: pa.Table) -> int:
    if events.num_rows == 0:
        return 0
    days = pc.cast(events["recorded_at"], pa.date32())
    order = pc.sort_indices(days)  # stable: position order is kept within a day
    events, days = events.take(order), days.take(order)
    written = 0
    start = 0
    for entry in pc.value_counts(days).to_pylist():  # in order of first appearance: sorted
        day, count = entry["values"], entry["counts"]
        for chunk_start in range(start, start + count, MAX_ROWS_PER_FILE):
            chunk = events.slice(chunk_start, min(MAX_ROWS_PER_FILE, start + count - chunk_start))
            positions = chunk["position"]
            first, last = pc.min(positions).as_py(), pc.max(positions).as_py()
            target = events_dir / f"day={day.isoformat()}" / f"part-{first:012d}-{last:012d}.parquet"
            _write_atomically(chunk, target)
            written += 1
        start += count
    return written


def _whole(data: ArrowData) -> pa.Table:
    return data.read_all() if isinstance(data, pa.RecordBatchReader) else data


def _write_read_models(target_dir: Path, read_models: dict[str, pa.Table], previous: tuple[str, ...]) -> int:
    rows = 0
    for name, table in read_models.items():
        _write_atomically(table, target_dir / f"{name}.parquet")
        rows += table.num_rows
    for gone in set(previous) - set(read_models):
        (target_dir / f"{gone}.parquet").unlink(missing_ok=True)
    return rows


def _write_atomically(table: pa.Table, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    pq.write_table(table, temporary, compression="zstd")
    os.replace(temporary, target)


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    temporary = directory / (MANIFEST + ".tmp")
    temporary.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    os.replace(temporary, directory / MANIFEST)


class ParquetSource:
    """An export directory as an engine's source: `ledger sql --parquet DIR` queries it without
    any database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if not (directory / MANIFEST).exists():
            raise FileNotFoundError(f"{directory} holds no export ({MANIFEST} is missing)")

    def head(self) -> int:
        return read_manifest(self.directory).position

    @contextmanager
    def read(self, events_after: int | None) -> Iterator[Snapshot]:
        manifest = read_manifest(self.directory)
        events = None
        if events_after is not None:
            events = self._events(events_after, manifest.position)  # whole: DuckDB scans it in parallel
        read_models = {
            name: functools.partial(pq.read_table, self.directory / "read_models" / f"{name}.parquet")
            for name in manifest.read_model_tables
        }
        yield Snapshot(events_after, manifest.position, events, read_models, manifest.read_models_position)

    def _events(self, after: int, upto: int) -> pa.Table:
        files = [str(p) for p in _event_files(self.directory / "events")]
        if not files:
            return EVENTS_SCHEMA.empty_table()
        dataset = ds.dataset(files, format="parquet")
        wanted = (ds.field("position") > after) & (ds.field("position") <= upto)
        return dataset.to_table(filter=wanted).sort_by("position")
