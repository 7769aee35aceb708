"""A projector fed by Kafka: one consumer group per projector name, partitions shared between
its processes. For each partition batch, the read-model changes and the partition's checkpoint
commit in one PostgreSQL transaction:

- an event at or below the checkpoint was applied already: skipped (at-least-once delivery,
  relay republishing, rebalances);
- an event whose `prev` header is above the checkpoint reveals a gap (the broker lost
  messages, or the consumer jumped ahead): the missing events of that partition are read from
  the event store and applied first;
- a watermark message advances the partition's watermark, which is what read-your-writes
  waits on.

Kafka offsets are committed after PostgreSQL, as a hint only: the checkpoint is the truth."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from psycopg import Connection
from psycopg_pool import ConnectionPool

from infra import kafka as k
from infra.background import BackgroundLoop
from infra.relay import event_from_message
from projections.checkpoints import Checkpoint, adopt_kafka_feed, lock_checkpoint, save_checkpoint
from projections.core import StoredEventRow
from projections.runner import Apply, apply_all, read_range

log = logging.getLogger(__name__)


def _header(record: ConsumerRecord, name: str) -> str:
    for key, value in record.headers or []:
        if key == name:
            return bytes(value).decode()
    raise ValueError(f"message at offset {record.offset} has no '{name}' header")


class _OnAssignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs assignments, and starts a partition with no committed offset from its beginning:
    a broker that restarted empty (or a recreated topic) has none, and the consumer's old
    position would point past the new log's end, waiting there for messages that never come.
    Re-reading from the start costs only skips: applied positions are not applied again."""

    def __init__(
        self, name: str, consumer: KafkaConsumer, on_assigned: Callable[[set[int]], None] | None
    ) -> None:
        self.name = name
        self.consumer = consumer
        self.on_assigned = on_assigned
        self.unchecked: set[TopicPartition] = set()

    def start_fresh_partitions_from_the_beginning(self) -> None:
        while self.unchecked:
            tp = self.unchecked.pop()
            if tp in self.consumer.assignment() and self.consumer.committed(tp) is None:
                log.info(
                    "projector %s: partition %d has no committed offset; reading it from the start",
                    self.name,
                    tp.partition,
                )
                self.consumer.seek_to_beginning(tp)

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        log.info("projector %s: partitions revoked %s", self.name, sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("projector %s: partitions assigned %s", self.name, sorted(tp.partition for tp in assigned))
        # Blocking consumer calls are not allowed in here: the check runs after the poll.
        self.unchecked.update(assigned)
        if self.on_assigned is not None:
            self.on_assigned({tp.partition for tp in assigned})


class KafkaProjector:
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
    ) -> None:
        self.pool = pool
        self.topic = topic
        self.name = name
        from projections.registry import projector

        self.apply = apply or projector(name)
        self.partitions = self._partition_count(bootstrap_servers)
        make = consumer_factory or (
            lambda: k.consumer(bootstrap_servers, group_id=f"ledger-projector-{name}")
        )
        self.consumer = make()
        self.assignments = _OnAssignments(name, self.consumer, on_assigned)
        self.consumer.subscribe([topic], listener=self.assignments)
        adopt_kafka_feed(pool, name, list(range(self.partitions)))

    def _partition_count(self, bootstrap_servers: str) -> int:
        with self.pool.connection() as conn:
            row: Any = conn.execute(
                "SELECT partitions FROM relay_state WHERE topic = %s", (self.topic,)
            ).fetchone()
        if row is not None:
            return int(row["partitions"])
        return k.ensure_topic(bootstrap_servers, self.topic, k.DEFAULT_PARTITIONS)

    def run_once(self, timeout_ms: int = 200) -> int:
        """Poll once and apply what came; answers how many events were applied."""
        batches: dict[TopicPartition, list[ConsumerRecord]] = self.consumer.poll(timeout_ms=timeout_ms)
        self.assignments.start_fresh_partitions_from_the_beginning()
        applied = 0
        for tp, records in batches.items():
            applied += self._apply_partition(tp.partition, records)
        if batches:
            try:
                self.consumer.commit()
            except KafkaError:
                # Offsets are a hint; the checkpoint in PostgreSQL decides what is applied.
                log.info("committing offsets failed (rebalance?); continuing", exc_info=True)
        return applied

    def _apply_partition(self, partition: int, records: list[ConsumerRecord]) -> int:
        applied = 0
        with self.pool.connection() as conn, conn.transaction():
            checkpoint = lock_checkpoint(conn, self.name, partition)
            pending: list[StoredEventRow] = []
            for record in records:
                kind = _header(record, "type")
                position = int(_header(record, "position"))
                prev = int(_header(record, "prev"))
                if prev > checkpoint.position and prev > (pending[-1].position if pending else 0):
                    pending.extend(self._missing(conn, partition, checkpoint, pending, prev))
                if kind == k.WATERMARK_TYPE:
                    self._flush(conn, pending, checkpoint)
                    applied += len(pending)
                    pending = []
                    checkpoint.watermark = max(checkpoint.watermark, position)
                    continue
                last = pending[-1].position if pending else checkpoint.position
                if position <= last:
                    continue  # applied already
                pending.append(event_from_message(record.value))
            self._flush(conn, pending, checkpoint)
            applied += len(pending)
            save_checkpoint(conn, self.name, checkpoint)
        return applied

    def _missing(
        self,
        conn: Connection[Any],
        partition: int,
        checkpoint: Checkpoint,
        pending: list[StoredEventRow],
        prev: int,
    ) -> list[StoredEventRow]:
        """The events of this partition after what was applied, up to `prev`, from the store."""
        after = pending[-1].position if pending else checkpoint.position
        found = [
            e
            for e in read_range(conn, after, prev)
            if k.partition_for(k.event_key(e.customer_id, e.stream_id), self.partitions) == partition
        ]
        if found:
            log.warning("partition %d: filled a gap of %d events from the store", partition, len(found))
        return found

    def _flush(self, conn: Connection[Any], pending: list[StoredEventRow], checkpoint: Checkpoint) -> None:
        if not pending:
            return
        apply_all(conn, pending, self.apply)
        checkpoint.position = pending[-1].position

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        except KafkaError:
            log.warning("closing the consumer failed", exc_info=True)


class BackgroundKafkaProjection(BackgroundLoop):
    """A Kafka-fed projector in a daemon thread. After a failure its consumer is closed and a
    new one joins the group: whatever the failed batch held is consumed again."""

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
