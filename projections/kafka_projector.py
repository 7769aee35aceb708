"""A projector fed by Kafka: one consumer group per projector name, partitions shared between
its processes. The read-model changes and the checkpoints of the partitions they come from
commit in one PostgreSQL transaction:

- an event at or below the checkpoint was applied already: skipped (at-least-once delivery,
  rebalances, a broker refilled from position 1);
- an event whose `prev` header is above the checkpoint reveals a gap (the broker lost
  messages, or the consumer jumped ahead): the missing events of that partition are read from
  the event store and applied first;
- a message of the watermark topic for partition p ("every event of p up to W is at or below
  L") advances p's watermark to W once p is applied up to L; until then it waits in memory.
  Read-your-writes waits on the lowest watermark.

It subscribes to both topics with range assignment, so one process holds partition p of both. A
newly assigned watermark partition is read from its last message: the latest watermark says all
the earlier ones did.

Kafka offsets are committed after PostgreSQL, as a hint only: the checkpoint is the truth.

The partitions of one poll are applied together, in one transaction (the events of all of
them written set-based, every partition's checkpoint saved with them); if that fails, each
partition is applied on its own.

An event it cannot apply stops that partition (paused at that message) and is recorded, shown
and alerted (see `projections/failures.py`); the other partitions go on. The stopped partition
is tried again after a pause that doubles each time, and at every restart."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from psycopg import Connection
from psycopg_pool import ConnectionPool

from infra import kafka as k
from infra.background import BackgroundLoop
from infra.relay import event_from_message
from projections.checkpoints import (
    Checkpoint,
    adopt_kafka_feed,
    lock_checkpoint,
    lock_checkpoints,
    relax_commit,
    save_checkpoint,
    save_checkpoints,
)
from projections.core import StoredEventRow
from projections.failures import (
    ProjectionFailure,
    describe_error,
    is_passing,
    report_resume,
    report_stop,
)
from projections.runner import Apply, OnFailure, OnResume, apply_all, apply_one, read_range

log = logging.getLogger(__name__)

MAX_PENDING_WATERMARKS = 1024  # per partition; dropping the oldest only delays read-your-writes


def _header(record: ConsumerRecord, name: str) -> str:
    for key, value in record.headers or []:
        if key == name:
            return bytes(value).decode()
    raise ValueError(f"message at offset {record.offset} has no '{name}' header")


def _position_and_prev(record: ConsumerRecord) -> tuple[int, int]:
    """The `position` and `prev` headers, in one pass over the headers."""
    position = prev = None
    for key, value in record.headers or ():
        if key == "position":
            position = int(bytes(value))
        elif key == "prev":
            prev = int(bytes(value))
    if position is None or prev is None:
        missing = "position" if position is None else "prev"
        raise ValueError(f"message at offset {record.offset} has no '{missing}' header")
    return position, prev


class _OnAssignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs assignments of the events topic and prepares new partitions after the next poll
    (blocking consumer calls are not allowed in here):

    - an events partition with no committed offset is read from its beginning: a broker that
      restarted empty (or a recreated topic) has none, and the consumer's old position would
      point past the new log's end. Re-reading costs only skips;
    - a watermark partition is read from its last message."""

    def __init__(self, projector: KafkaProjector, on_assigned: Callable[[set[int]], None] | None) -> None:
        self.projector = projector
        self.on_assigned = on_assigned
        self.unchecked: set[TopicPartition] = set()
        self.revoked_at: float | None = None  # a rebalance began and no assignment ended it yet

    def prepare_new_partitions(self) -> None:
        consumer = self.projector.consumer
        while self.unchecked:
            tp = self.unchecked.pop()
            if tp not in consumer.assignment():
                continue
            if tp.topic == self.projector.watermark_topic:
                end = consumer.end_offsets([tp])[tp]
                start = consumer.beginning_offsets([tp])[tp]
                consumer.seek(tp, max(start, end - 1))
            elif consumer.committed(tp) is None:
                log.info(
                    "projector %s: partition %d has no committed offset; reading it from the start",
                    self.projector.name,
                    tp.partition,
                )
                consumer.seek_to_beginning(tp)

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        events = sorted(tp.partition for tp in revoked if tp.topic == self.projector.topic)
        log.info("projector %s: partitions revoked %s", self.projector.name, events)
        self.revoked_at = time.monotonic()
        self.projector.forget(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        events = {tp.partition for tp in assigned if tp.topic == self.projector.topic}
        log.info("projector %s: partitions assigned %s", self.projector.name, sorted(events))
        self.revoked_at = None
        self.unchecked.update(assigned)
        if self.on_assigned is not None:
            self.on_assigned(events)


class ConsumerStuck(KafkaError):  # type: ignore[misc]
    """The consumer began a rebalance and never finished it."""


@dataclass
class _Stopped:
    failure: ProjectionFailure
    retry_at: float


class KafkaProjector:
    RETRY_FIRST_SECONDS = 5.0
    RETRY_MAX_SECONDS = 300.0
    #: A rebalance (joining takes about 3 s; it waits at most `max_poll_interval_ms`, 30 s, for
    #: members that do not rejoin) not done after this long will never be: after a broker
    #: restarted empty, kafka-python (3.0.12) sometimes receives its new assignment and never
    #: applies it, polling in vain. A new consumer then takes its place.
    REBALANCE_STUCK_SECONDS = 45.0
    TOPIC_CHECK_SECONDS = 5.0

    def __init__(
        self,
        pool: ConnectionPool,
        bootstrap_servers: str,
        topic: str,
        name: str = "core",
        *,
        apply: Apply | None = None,
        consumer_factory: Callable[[], KafkaConsumer] | None = None,
        on_assigned: Callable[[set[int]], None] | None = None,
        on_failure: OnFailure | None = None,
        on_resume: OnResume | None = None,
        max_poll_records: int = 5000,
    ) -> None:
        self.pool = pool
        self.max_poll_records = max_poll_records
        self.topic = topic
        self.watermark_topic = k.watermark_topic_for(topic)
        self.name = name
        from projections.registry import projector

        self.apply = apply or projector(name)
        self.on_failure = on_failure
        self.on_resume = on_resume
        self.partitions = self._partition_count(bootstrap_servers)
        self.pending: dict[int, list[tuple[int, int]]] = {}  # (watermark, last position) per partition
        self.applied: dict[int, int] = {}  # the last position this process saw applied, per partition
        self.stopped: dict[int, _Stopped] = {}
        self.retry_delay: dict[int, float] = {}
        self.bootstrap_servers = bootstrap_servers
        self.consumer_factory = consumer_factory
        self.on_assigned = on_assigned
        self.topic_id = self._relayed_topic_id()
        self._topic_checked_at = time.monotonic()
        self._join()
        adopt_kafka_feed(pool, name, list(range(self.partitions)))

    @property
    def group_id(self) -> str:
        """One consumer group per projector and topic: a topic created anew (a broker that lost
        it) is read by a new group, which neither resumes at offsets of the old topic nor waits
        for members that went with it."""
        base = f"ledger-projector-{self.name}"
        # The id's last characters: random in every UUID version (v7 begins with the time).
        return f"{base}-{self.topic_id.replace('-', '')[-12:]}" if self.topic_id else base

    def _join(self) -> None:
        if self.consumer_factory is not None:
            self.consumer = self.consumer_factory()
        else:
            self.consumer = k.consumer(
                self.bootstrap_servers, group_id=self.group_id, max_poll_records=self.max_poll_records
            )
        self.assignments = _OnAssignments(self, self.on_assigned)
        self.consumer.subscribe([self.topic, self.watermark_topic], listener=self.assignments)

    def _relayed_topic_id(self) -> str | None:
        """The id of the topic the relay fills (it changes when the relay had to recreate it)."""
        with self.pool.connection() as conn:
            row: Any = conn.execute(
                "SELECT topic_id FROM relay_state WHERE topic = %s", (self.topic,)
            ).fetchone()
        return row["topic_id"] if row is not None else None

    def _rejoin_if_topic_replaced(self) -> None:
        """When the relay says the topic is another one (a broker that lost it; a topic some
        client created with too few partitions, which the relay recreated), a new consumer joins
        the new topic's group: consumers do not reliably follow a topic recreated under them."""
        if time.monotonic() - self._topic_checked_at < self.TOPIC_CHECK_SECONDS:
            return
        self._topic_checked_at = time.monotonic()
        current = self._relayed_topic_id()
        if current is None or current == self.topic_id:
            return
        log.info("projector %s: %s is a new topic; joining it with a new consumer", self.name, self.topic)
        self.close()
        self.pending.clear()
        self.stopped.clear()
        self.applied.clear()
        self.topic_id = current
        self._join()

    def _partition_count(self, bootstrap_servers: str) -> int:
        with self.pool.connection() as conn:
            row: Any = conn.execute(
                "SELECT partitions FROM relay_state WHERE topic = %s", (self.topic,)
            ).fetchone()
        if row is not None:
            return int(row["partitions"])
        return k.ensure_topic(bootstrap_servers, self.topic, k.DEFAULT_PARTITIONS)

    # -------------------------------------------------------------- the loop

    def run_once(self, timeout_ms: int = 200) -> int:
        """Poll once and apply what came; answers how many events were applied."""
        self._rejoin_if_topic_replaced()
        self._resume_due_partitions()
        began = self.assignments.revoked_at
        if began is not None and time.monotonic() - began > self.REBALANCE_STUCK_SECONDS:
            raise ConsumerStuck(
                f"projector {self.name}: the consumer began a rebalance {time.monotonic() - began:.0f} s ago"
                " and never got its partitions; a new consumer takes its place"
            )
        batches: dict[TopicPartition, list[ConsumerRecord]] = self.consumer.poll(timeout_ms=timeout_ms)
        self.assignments.prepare_new_partitions()
        # Watermarks first, in memory: a partition's events then settle them in their own
        # transaction; only those reached without new events need one more.
        marked = [tp.partition for tp in batches if tp.topic == self.watermark_topic]
        for tp, records in batches.items():
            if tp.topic == self.watermark_topic:
                self._enqueue_watermarks(tp.partition, records)
        events = {
            tp: records
            for tp, records in batches.items()
            if tp.topic == self.topic and tp.partition not in self.stopped
        }
        # A partition whose watermark came without new events settles it in the same transaction
        # as the poll's events, not in a transaction of its own per partition (read-your-writes
        # waits on the lowest watermark, so on every partition's).
        for partition in marked:
            tp = TopicPartition(self.topic, partition)
            if tp not in events and self._watermark_due(partition):
                events[tp] = []
        applied = self._consume_poll(events)
        for partition in marked:
            self._settle_watermark_alone(partition)
        if batches:
            # Offsets are a hint; the checkpoint in PostgreSQL decides what is applied. So they
            # are committed without waiting for the broker: a round trip less before the next
            # poll, which is commit-to-visible lag (about 5 ms a poll on a loaded machine).
            try:
                self.consumer.commit_async(callback=_offsets_committed)
            except KafkaError:
                log.info("committing offsets failed (rebalance?); continuing", exc_info=True)
        return applied

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Partitions another process takes over: what this one knew of them is its now."""
        for tp in partitions:
            if tp.topic == self.watermark_topic:
                self.pending.pop(tp.partition, None)
            else:
                self.stopped.pop(tp.partition, None)
                self.applied.pop(tp.partition, None)

    # -------------------------------------------------------------- events

    def _consume_poll(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> int:
        """All the partitions of a poll in one transaction (one set-based write, one commit);
        if that fails, each partition on its own, as `_consume_events` does (a partition with
        no records only settles its watermark; left out here, `_settle_watermark_alone` does it)."""
        if len(polled) <= 1:
            return sum(self._consume_events(tp, records) for tp, records in polled.items() if records)
        try:
            return self._apply_partitions(polled)
        except Exception as error:
            if is_passing(error):
                raise
            log.info(
                "projector %s: a poll of %d partitions failed together (%s); applying each on its own",
                self.name,
                len(polled),
                describe_error(error),
            )
            return sum(self._consume_events(tp, records) for tp, records in polled.items() if records)

    def _apply_partitions(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> int:
        with self.pool.connection() as conn, conn.transaction():
            # Locked in partition order: two processes never wait on each other in a cycle.
            records_of = {tp.partition: records for tp, records in polled.items()}
            checkpoints = lock_checkpoints(conn, self.name, list(records_of), relax=True)
            pending = [self._pending(conn, c, records_of[c.partition]) for c in checkpoints]
            everything = sorted((e for events in pending for e in events), key=lambda e: e.position)
            if everything:
                apply_all(conn, everything, self.apply)
            for checkpoint, events in zip(checkpoints, pending, strict=True):
                if events:
                    checkpoint.position = events[-1].position
                self._settle_watermark(checkpoint)
            resumed = save_checkpoints(conn, self.name, checkpoints)
        for checkpoint in resumed:
            self._resumed(checkpoint.partition, checkpoint.position)
        return len(everything)

    def _pending(
        self, conn: Connection[Any], checkpoint: Checkpoint, records: list[ConsumerRecord]
    ) -> list[StoredEventRow]:
        """The events of a partition's records not applied yet, gaps filled from the store."""
        pending: list[StoredEventRow] = []
        for record in records:
            position, prev = _position_and_prev(record)
            last = pending[-1].position if pending else checkpoint.position
            if prev > last:
                pending.extend(self._missing(conn, checkpoint.partition, last, prev))
                last = pending[-1].position if pending else checkpoint.position
            if position <= last:
                continue  # applied already
            pending.append(event_from_message(record.value))
        return pending

    def _consume_events(self, tp: TopicPartition, records: list[ConsumerRecord]) -> int:
        if tp.partition in self.stopped:
            return 0  # fetched before the partition was paused
        try:
            return self._apply_partition(tp.partition, records)
        except Exception as error:
            if is_passing(error):
                raise
            log.warning(
                "projector %s: a batch of partition %d failed (%s); going through it one event at a time",
                self.name,
                tp.partition,
                describe_error(error),
            )
            return self._apply_singly(tp, records)

    def _apply_partition(self, partition: int, records: list[ConsumerRecord]) -> int:
        with self.pool.connection() as conn, conn.transaction():
            relax_commit(conn)
            checkpoint = lock_checkpoint(conn, self.name, partition)
            pending = self._pending(conn, checkpoint, records)
            if pending:
                apply_all(conn, pending, self.apply)
                checkpoint.position = pending[-1].position
            self._settle_watermark(checkpoint)
            resumed = save_checkpoint(conn, self.name, checkpoint)
        if resumed:
            self._resumed(partition, checkpoint.position)
        return len(pending)

    def _missing(self, conn: Connection[Any], partition: int, after: int, prev: int) -> list[StoredEventRow]:
        """The events of this partition after `after`, up to `prev`, from the store."""
        found = [e for e in read_range(conn, after, prev) if self._partition_of(e) == partition]
        if found:
            log.warning("partition %d: filled a gap of %d events from the store", partition, len(found))
        return found

    def _partition_of(self, event: StoredEventRow) -> int:
        return k.partition_for(k.event_key(event.customer_id, event.stream_id), self.partitions)

    def _apply_singly(self, tp: TopicPartition, records: list[ConsumerRecord]) -> int:
        """The batch failed for a reason of its own: go through its events one at a time, taken
        from the store (the truth, whatever the messages hold), up to one that cannot be applied."""
        partition = tp.partition
        up_to = max((int(p) for r in records if (p := _position_or_none(r)) is not None), default=0)
        with self.pool.connection() as conn:
            after = lock_checkpoint(conn, self.name, partition).position
            events = [e for e in read_range(conn, after, up_to) if self._partition_of(e) == partition]
        applied = 0
        for event in events:
            try:
                saved = apply_one(self.pool, self.name, partition, event, self.apply, self._settle_watermark)
            except Exception as error:
                if is_passing(error):
                    raise
                failure = ProjectionFailure(
                    self.name, partition, event.position, event.type, describe_error(error)
                )
                self._stop(tp, records, failure)
                return applied
            if saved is not None:
                applied += 1
                if saved.passed_failure:
                    self._resumed(partition, saved.position)
        return applied

    # -------------------------------------------------------------- stopping and resuming

    def _stop(self, tp: TopicPartition, records: list[ConsumerRecord], failure: ProjectionFailure) -> None:
        """Pause the partition at the message of the event it cannot apply (the next poll and the
        committed offset start there) and record why."""
        at = next(
            (
                r.offset
                for r in records
                if (p := _position_or_none(r)) is not None and int(p) >= failure.position
            ),
            records[0].offset,
        )
        self.consumer.seek(tp, at)
        self.consumer.pause(tp)
        delay = self.retry_delay.get(tp.partition, self.RETRY_FIRST_SECONDS)
        self.retry_delay[tp.partition] = min(delay * 2, self.RETRY_MAX_SECONDS)
        self.stopped[tp.partition] = _Stopped(failure, time.monotonic() + delay)
        report_stop(self.pool, failure, self.on_failure)

    def _resume_due_partitions(self, now: float | None = None) -> None:
        moment = time.monotonic() if now is None else now
        for partition, stopped in list(self.stopped.items()):
            if moment >= stopped.retry_at:
                del self.stopped[partition]
                self.consumer.resume(TopicPartition(self.topic, partition))

    def retry_stopped_partitions(self) -> None:
        """Try the stopped partitions again at the next poll, without waiting for their turn."""
        self._resume_due_partitions(now=float("inf"))

    def _resumed(self, partition: int, position: int) -> None:
        self.retry_delay.pop(partition, None)
        report_resume(self.name, partition, position, self.on_resume)

    # -------------------------------------------------------------- watermarks

    def _enqueue_watermarks(self, partition: int, records: list[ConsumerRecord]) -> None:
        queue = self.pending.setdefault(partition, [])
        for record in records:
            data = orjson.loads(record.value)
            mark = (int(data["watermark"]), int(data["last_position"]))
            if not queue or mark[0] > queue[-1][0]:
                queue.append(mark)
        del queue[:-MAX_PENDING_WATERMARKS]

    def _watermark_due(self, partition: int) -> bool:
        """Whether a pending watermark of the partition may be reached (unknown: may be)."""
        queue = self.pending.get(partition)
        known = self.applied.get(partition)
        return queue is not None and bool(queue) and (known is None or queue[0][1] <= known)

    def _settle_watermark_alone(self, partition: int) -> None:
        """Advance a partition's watermark where no event of it came with the watermarks."""
        if not self._watermark_due(partition):
            return  # nothing reached yet (this process is the one applying the partition)
        with self.pool.connection() as conn, conn.transaction():
            relax_commit(conn)
            checkpoint = lock_checkpoint(conn, self.name, partition)
            before = checkpoint.watermark
            self._settle_watermark(checkpoint)
            if checkpoint.watermark != before:
                save_checkpoint(conn, self.name, checkpoint)

    def _settle_watermark(self, checkpoint: Checkpoint) -> None:
        """Advance the watermark over the pending watermarks the partition has reached."""
        self.applied[checkpoint.partition] = checkpoint.position
        queue = self.pending.get(checkpoint.partition)
        while queue and queue[0][1] <= checkpoint.position:
            watermark, _ = queue.pop(0)
            checkpoint.watermark = max(checkpoint.watermark, watermark)

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        except KafkaError:
            log.warning("closing the consumer failed", exc_info=True)


def _offsets_committed(offsets: object, response: object) -> None:
    if isinstance(response, Exception):
        log.info("committing offsets failed (%s: %s); continuing", type(response).__name__, response)


def _position_or_none(record: ConsumerRecord) -> str | None:
    for key, value in record.headers or []:
        if key == "position":
            text = bytes(value).decode()
            return text if text.isdigit() else None
    return None


class BackgroundKafkaProjection(BackgroundLoop):
    """A Kafka-fed projector in a daemon thread. After a passing failure its consumer is closed
    and a new one joins the group: whatever the failed batch held is consumed again."""

    def __init__(self, factory: Callable[[], KafkaProjector]) -> None:
        self.factory = factory
        self.projector: KafkaProjector | None = None
        super().__init__(
            "kafka-projector",
            self._consume,
            poll_seconds=0,
            max_idle_seconds=0,
            on_error=self._drop,
            on_stop=self._drop,
        )

    def _consume(self) -> int:
        if self.projector is None:
            self.projector = self.factory()
        self.projector.run_once()
        return 1  # poll() already waited; go straight back to it

    def _drop(self) -> None:
        if self.projector is not None:
            self.projector.close()
            self.projector = None
