"""The relay: publishes the event log to Kafka in position order, and records how far it got
only after the broker acknowledged (acks=all). A crash between the two republishes a range that
projectors then skip, position by position.

Each message carries headers `type`, `position` and `prev` (the position of the previous event
sent to the same partition). After each batch the relay sends every partition a watermark
message (`type: ledger.watermark`): "every event up to W meant for this partition was sent",
which lets projectors advance the read-your-writes position of partitions with no new events.

If the broker lost what it had acknowledged (it restarted empty, or the topic was recreated),
the relay notices offsets going backwards and republishes from the lowest position any projector
is sure to have applied."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from psycopg_pool import ConnectionPool

from infra import kafka as k
from infra.background import BackgroundLoop
from projections.core import StoredEventRow

log = logging.getLogger(__name__)

RELAY_SELECT = (
    "SELECT notification_id AS position, originator_id AS stream_id, originator_version AS version,"
    " event_type AS type, occurred_at, recorded_at, customer_id, source, actor, correlation_id,"
    " causation_id, reason, schema_version, state"
    " FROM ledger_events WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
)


def message_value(row: dict[str, Any]) -> bytes:
    """The stored event's fields (SPEC section 2) and its payload, as JSON."""
    payload = orjson.Fragment(bytes(row["state"]))
    return orjson.dumps(
        {
            "position": row["position"],
            "stream_id": row["stream_id"],
            "version": row["version"],
            "type": row["type"],
            "occurred_at": row["occurred_at"],
            "recorded_at": row["recorded_at"],
            "customer_id": row["customer_id"],
            "source": row["source"],
            "actor": row["actor"],
            "correlation_id": row["correlation_id"],
            "causation_id": row["causation_id"],
            "reason": row["reason"],
            "schema_version": row["schema_version"],
            "payload": payload,
        }
    )


def event_from_message(value: bytes) -> StoredEventRow:
    """What a projector needs of a message (the inverse of `message_value`)."""
    from datetime import datetime
    from uuid import UUID

    data = orjson.loads(value)
    return StoredEventRow(
        position=data["position"],
        stream_id=UUID(data["stream_id"]),
        version=data["version"],
        type=data["type"],
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        recorded_at=datetime.fromisoformat(data["recorded_at"]),
        customer_id=UUID(data["customer_id"]) if data["customer_id"] else None,
        payload=data["payload"],
    )


class BrokerLostData(Exception):
    """The broker acknowledged less than it had before: it restarted empty or the topic is new."""


@dataclass
class RelayState:
    position: int
    partitions: int
    last_position: dict[int, int] = field(default_factory=dict)
    acked_offset: dict[int, int] = field(default_factory=dict)


class Relay:
    def __init__(
        self,
        pool: ConnectionPool,
        bootstrap_servers: str,
        topic: str,
        *,
        partitions: int = k.DEFAULT_PARTITIONS,
        batch_size: int = 5000,
    ) -> None:
        self.pool = pool
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.batch_size = batch_size
        self.partitions = k.ensure_topic(bootstrap_servers, topic, partitions)
        self._producer: KafkaProducer | None = None
        self.state = self._load_state()

    # -------------------------------------------------------------- state in PostgreSQL

    def _load_state(self) -> RelayState:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO relay_state (topic, partitions) VALUES (%s, %s) ON CONFLICT (topic) DO UPDATE"
                " SET partitions = excluded.partitions",
                (self.topic, self.partitions),
            )
            row: Any = conn.execute(
                "SELECT position FROM relay_state WHERE topic = %s", (self.topic,)
            ).fetchone()
            parts: Any = conn.execute(
                "SELECT partition, last_position, acked_offset FROM relay_partitions WHERE topic = %s",
                (self.topic,),
            ).fetchall()
        state = RelayState(int(row["position"]), self.partitions)
        for p in parts:
            state.last_position[p["partition"]] = int(p["last_position"])
            state.acked_offset[p["partition"]] = int(p["acked_offset"])
        return state

    def _save_state(self, state: RelayState) -> None:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE relay_state SET position = %s, updated_at = now() WHERE topic = %s",
                (state.position, self.topic),
            )
            for partition in range(self.partitions):
                conn.execute(
                    "INSERT INTO relay_partitions (topic, partition, last_position, acked_offset)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (topic, partition) DO UPDATE"
                    " SET last_position = excluded.last_position, acked_offset = excluded.acked_offset",
                    (
                        self.topic,
                        partition,
                        state.last_position.get(partition, 0),
                        state.acked_offset.get(partition, -1),
                    ),
                )

    # -------------------------------------------------------------- publishing

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = k.producer(self.bootstrap_servers)
        return self._producer

    def _drop_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except KafkaError:
                log.warning("closing the producer failed", exc_info=True)
            self._producer = None

    def publish_once(self) -> int:
        """Publish the next batch; answers how many events it published."""
        with self.pool.connection() as conn:
            rows: list[Any] = conn.execute(RELAY_SELECT, (self.state.position, self.batch_size)).fetchall()
        if not rows:
            return 0
        state = RelayState(
            self.state.position,
            self.partitions,
            dict(self.state.last_position),
            dict(self.state.acked_offset),
        )
        futures = []
        for row in rows:
            key = k.event_key(row["customer_id"], row["stream_id"])
            partition = k.partition_for(key, self.partitions)
            headers = [
                ("type", row["type"].encode()),
                ("position", str(row["position"]).encode()),
                ("prev", str(state.last_position.get(partition, 0)).encode()),
            ]
            futures.append(
                self.producer.send(
                    self.topic, key=key, value=message_value(row), headers=headers, partition=partition
                )
            )
            state.last_position[partition] = row["position"]
        state.position = rows[-1]["position"]
        futures.extend(self._watermarks(state))
        self.producer.flush()
        self._check_acknowledged(futures, state)
        self._save_state(state)
        self.state = state
        return len(rows)

    def _watermarks(self, state: RelayState) -> list[Any]:
        value = orjson.dumps({"type": k.WATERMARK_TYPE, "watermark": state.position})
        return [
            self.producer.send(
                self.topic,
                key=None,
                value=value,
                partition=partition,
                headers=[
                    ("type", k.WATERMARK_TYPE.encode()),
                    ("position", str(state.position).encode()),
                    ("prev", str(state.last_position.get(partition, 0)).encode()),
                ],
            )
            for partition in range(self.partitions)
        ]

    def _check_acknowledged(self, futures: list[Any], state: RelayState) -> None:
        """Wait for every acknowledgement. Per partition the relay remembers the lowest offset of
        its last batch: a broker that answers with offsets at or below it has lost data. (The
        lowest, not the highest: some Kafka-protocol brokers report a partition's end offset as
        the last batch's base offset + 1.)"""
        lowest: dict[int, int] = {}
        for future in futures:
            metadata = future.get(timeout=30)  # raises if the broker did not acknowledge
            lowest[metadata.partition] = min(lowest.get(metadata.partition, metadata.offset), metadata.offset)
        for partition, offset in lowest.items():
            if offset <= self.state.acked_offset.get(partition, -1):
                raise BrokerLostData(
                    f"partition {partition} acknowledged offset {offset}, "
                    f"at or below {self.state.acked_offset[partition]} acknowledged before"
                )
            state.acked_offset[partition] = offset

    def recover_from_data_loss(self) -> None:
        """Republish from the lowest position every projector is known to have applied."""
        with self.pool.connection() as conn:
            row: Any = conn.execute("SELECT min(watermark) AS low FROM projection_partitions").fetchone()
        restart_at = min(int(row["low"] or 0), self.state.position)
        log.warning("broker lost acknowledged data; republishing from position %d", restart_at)
        # prev 0 means "no earlier event in this partition is promised": projectors then only
        # skip what they already applied, and the republished range covers everything after.
        self.state = RelayState(restart_at, self.partitions)
        self._save_state(self.state)
        self._drop_producer()

    def verify_broker(self) -> bool:
        """Check the broker still holds what it acknowledged; if not, republish. Answers whether
        it had lost data. Run at start and when idle: a broker that restarted empty while nothing
        new was written would otherwise leave projectors waiting for messages that are gone."""
        if not self.state.acked_offset:
            return False
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None)
        try:
            partitions = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            ends = consumer.end_offsets(partitions)
        finally:
            consumer.close()
        lost = [
            tp.partition
            for tp, end in ends.items()
            if end is not None and end <= self.state.acked_offset.get(tp.partition, -1)
        ]
        if lost:
            log.warning("partitions %s hold less than the broker acknowledged", lost)
            self.recover_from_data_loss()
        return bool(lost)

    def run_once(self) -> int:
        try:
            return self.publish_once()
        except BrokerLostData:
            self.recover_from_data_loss()
            return 0
        except KafkaError:
            log.warning("publishing failed; will retry with a new producer", exc_info=True)
            self._drop_producer()
            raise

    def close(self) -> None:
        self._drop_producer()


class BackgroundRelay(BackgroundLoop):
    """The relay in a daemon thread; it also checks the broker still holds what it acknowledged
    every few seconds (see `Relay.verify_broker`)."""

    VERIFY_EVERY_SECONDS = 5.0

    def __init__(self, relay: Relay, poll_seconds: float = 0.05, max_idle_seconds: float = 0.1) -> None:
        self.relay = relay
        self._verified_at = 0.0
        super().__init__(
            "relay",
            self._publish,
            poll_seconds=poll_seconds,
            max_idle_seconds=max_idle_seconds,
            on_stop=relay.close,
        )

    def _publish(self) -> int:
        if time.monotonic() - self._verified_at > self.VERIFY_EVERY_SECONDS:
            self._verified_at = time.monotonic()
            self.relay.verify_broker()
        return self.relay.run_once()
