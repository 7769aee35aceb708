"""The relay: publishes the event log to Kafka in position order, so that the topic holds the
whole log from position 1, each event once, and records how far it got only after the broker
acknowledged (acks=all).

Each message carries headers `type`, `position` and `prev` (the position of the previous event
sent to the same partition). After each batch the relay sends, on the watermark topic of its own,
one message per partition p: "every event up to W meant for partition p was sent, the last of
them at position L" (`{"watermark": W, "partition": p, "last_position": L}`). A projector that
has applied partition p up to L has applied it up to W, which lets read-your-writes advance on
partitions with no new events. The events topic carries events and nothing else.

What the topic holds decides where the relay goes on, not what the relay remembers: at start,
and whenever the broker may have lost data, it reads the last message of each partition and
publishes from the first position missing there, skipping events a partition already holds. So
a relay that crashed after the broker acknowledged and before it recorded sends nothing twice,
and a broker that lost data (Tansu restarted empty, a topic recreated, a partition truncated) is
refilled from the first missing position, from position 1 if need be. A topic the relay has not
filled itself (a new broker, such as the embedded one at every `ledger up`) is adopted if it
holds a clean prefix of the log (in practice: nothing), and otherwise recreated (if this ledger
published to that topic name before) or refused.

One relay publishes at a time: it holds a PostgreSQL advisory lock for its topic; another relay
of the same topic waits on standby."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson
import psycopg
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError, KafkaTimeoutError
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
KEYS_SELECT = (
    "SELECT notification_id AS position, customer_id, originator_id AS stream_id FROM ledger_events"
    " WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
)
NOT_A_POSITION = -1  # a message without a readable `position` header: not one of ours


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


@lru_cache(maxsize=65536)
def _uuid(text: str) -> UUID:
    """Ids repeat from event to event (a customer's, an invoice's): parsing each once saves
    a good part of a message's decoding."""
    return UUID(text)


# Streams of one event each (a usage record's id is new with every record; its rare correction
# may parse it again): looking them up in `_uuid` would only miss and evict ids that repeat.
_UNIQUE_STREAMS = frozenset({"UsageRecord.Recorded"})


def event_from_message(value: bytes) -> StoredEventRow:
    """What a projector needs of a message (the inverse of `message_value`)."""
    data = orjson.loads(value)
    customer_id = data["customer_id"]
    event_type = data["type"]
    stream_id = data["stream_id"]
    return StoredEventRow(
        position=data["position"],
        stream_id=UUID(stream_id) if event_type in _UNIQUE_STREAMS else _uuid(stream_id),
        version=data["version"],
        type=event_type,
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        recorded_at=datetime.fromisoformat(data["recorded_at"]),
        customer_id=_uuid(customer_id) if customer_id else None,
        payload=data["payload"],
    )


def watermark_value(watermark: int, partition: int, last_position: int) -> bytes:
    return orjson.dumps({"watermark": watermark, "partition": partition, "last_position": last_position})


def header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or []:
        if key == name:
            return bytes(value).decode()
    return None


class BrokerLostData(Exception):
    """The broker acknowledged less than it had before: it restarted empty or the topic is new."""


class ForeignTopic(Exception):
    """The topic holds messages that are not this ledger's log, and this ledger never wrote it."""


@dataclass
class RelayState:
    position: int  # every event up to here is in the topic
    partitions: int
    topic_id: str | None = None  # the topic this state describes (None: not known yet)
    last_position: dict[int, int] = field(default_factory=dict)  # the last event each partition holds
    acked_offset: dict[int, int] = field(default_factory=dict)  # lowest offset of the last batch

    def copy(self) -> RelayState:
        return RelayState(
            self.position, self.partitions, self.topic_id, dict(self.last_position), dict(self.acked_offset)
        )


def _published(recorded: RelayState | None) -> bool:
    """Whether this ledger published to the topic before (a topic id, or partitions written)."""
    return recorded is not None and (recorded.topic_id is not None or bool(recorded.last_position))


class Relay:
    #: While reading what the topic holds: a poll that brings nothing after the reported end
    #: means the end (Tansu reports a partition's end as its last batch's base offset + 1).
    READ_IDLE_MS = 200
    READ_TIMEOUT_SECONDS = 120.0

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
        self.watermark_topic = k.watermark_topic_for(topic)
        self.batch_size = batch_size
        recorded = self._load_state()
        self.partitions = recorded.partitions if recorded is not None else partitions
        self.published_before = _published(recorded)
        self.state = recorded or RelayState(0, self.partitions)
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._lease: psycopg.Connection[Any] | None = None
        self._reconciled = False
        self._failed_while_running = False  # a failed batch: a changed topic is then a loss
        # Projectors started before the first batch must agree on the partitions at once.
        self._record_partitions()
        for name in (self.topic, self.watermark_topic):
            if k.describe(self.admin, name) is None:
                k.create(self.admin, name, self.partitions)
        # Settle what the topic holds before projectors of this process start reading it.
        if self._hold_lease():
            self.reconcile()

    # -------------------------------------------------------------- state in PostgreSQL

    def _load_state(self) -> RelayState | None:
        with self.pool.connection() as conn:
            row: Any = conn.execute(
                "SELECT position, partitions, topic_id FROM relay_state WHERE topic = %s", (self.topic,)
            ).fetchone()
            parts: Any = conn.execute(
                "SELECT partition, last_position, acked_offset FROM relay_partitions WHERE topic = %s",
                (self.topic,),
            ).fetchall()
        if row is None:
            return None
        state = RelayState(int(row["position"]), int(row["partitions"]), row["topic_id"])
        for p in parts:
            state.last_position[p["partition"]] = int(p["last_position"])
            state.acked_offset[p["partition"]] = int(p["acked_offset"])
        return state

    def _record_partitions(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO relay_state (topic, partitions) VALUES (%s, %s) ON CONFLICT (topic) DO NOTHING",
                (self.topic, self.partitions),
            )

    def _save_state(self, state: RelayState) -> None:
        # Pipelined: one round trip for the state and every partition's row (after each batch).
        with self.pool.connection() as conn, conn.transaction(), conn.pipeline():
            conn.execute(
                "INSERT INTO relay_state (topic, partitions, position, topic_id) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (topic) DO UPDATE SET position = excluded.position,"
                " topic_id = excluded.topic_id, updated_at = now()",
                (self.topic, state.partitions, state.position, state.topic_id),
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
        self.published_before = True

    # -------------------------------------------------------------- one relay at a time

    def _lease_alive(self) -> bool:
        """Whether the session holding the lock still lives (checked before each batch is sent:
        if it died, another relay may have published meanwhile)."""
        if self._lease is None:
            return False
        try:
            self._lease.execute("SELECT 1")
            return True
        except psycopg.Error:
            log.warning("relay lost its database session; it takes the lock again before going on")
            self._release_lease()
            return False

    def _hold_lease(self) -> bool:
        """Whether this relay holds its topic's lock, taking it if free."""
        if self._lease is not None:
            return True
        conninfo = self.pool.conninfo if isinstance(self.pool.conninfo, str) else self.pool.conninfo()
        conn = psycopg.connect(conninfo, autocommit=True)
        row = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext('ledger-relay:' || %s)) AS held", (self.topic,)
        ).fetchone()
        if not (row and row[0]):
            conn.close()
            return False
        self._lease = conn
        # Another relay may have published while this one waited: start from what is recorded
        # and what the topic holds.
        recorded = self._load_state()
        self.published_before = _published(recorded)
        self.state = recorded or RelayState(0, self.partitions)
        self._reconciled = False
        return True

    def _release_lease(self) -> None:
        if self._lease is not None:
            with contextlib.suppress(psycopg.Error):
                self._lease.close()
            self._lease = None

    # -------------------------------------------------------------- Kafka clients

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = k.producer(self.bootstrap_servers)
        return self._producer

    @property
    def admin(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = k.admin(self.bootstrap_servers)
        return self._admin

    def _drop_clients(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except KafkaError:
                log.warning("closing the producer failed", exc_info=True)
            self._producer = None
        if self._admin is not None:
            try:
                self._admin.close()
            except KafkaError:
                log.warning("closing the admin client failed", exc_info=True)
            self._admin = None

    # -------------------------------------------------------------- publishing

    def publish_once(self) -> int:
        """Publish the next batch; answers how many events it went through (0: nothing to do,
        or another relay holds the topic)."""
        if not self._hold_lease():
            return 0
        if not self._reconciled:
            self.reconcile(lost=self._failed_while_running)
        with self.pool.connection() as conn:
            rows: list[Any] = conn.execute(RELAY_SELECT, (self.state.position, self.batch_size)).fetchall()
        if not rows or not self._lease_alive():
            return 0
        state = self.state.copy()
        futures = []
        for row in rows:
            key = k.event_key(row["customer_id"], row["stream_id"])
            partition = k.partition_for(key, self.partitions)
            if row["position"] <= state.last_position.get(partition, 0):
                continue  # the partition holds it already (see `reconcile`)
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
        marks = self._watermarks(state)
        self.producer.flush()
        self._check_acknowledged(futures, state)
        for mark in marks:
            mark.get(timeout=30)
        self._save_state(state)
        self.state = state
        return len(rows)

    def _watermarks(self, state: RelayState) -> list[Any]:
        return [
            self.producer.send(
                self.watermark_topic,
                key=str(partition).encode(),
                value=watermark_value(state.position, partition, state.last_position.get(partition, 0)),
                partition=partition,
                headers=[("type", k.WATERMARK_TYPE.encode()), ("position", str(state.position).encode())],
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

    # -------------------------------------------------------------- what the topic holds

    def reconcile(self, *, lost: bool = False) -> None:
        """Make the relay's state say what the topic holds, and go on from the first position
        missing there. `lost`: the broker was seen losing data while this relay ran."""
        topic_id = self._ensure_topics()
        ours = self.published_before and (topic_id is None or topic_id == self.state.topic_id)
        if ours:
            self._adopt_tails(lost)
        else:
            self._adopt_new_topic(topic_id, lost)
        self._reconciled = True
        self._failed_while_running = False

    def _adopt_tails(self, lost: bool) -> None:
        """The topic this relay filled: each partition holds a prefix of the log (Kafka truncates
        a partition at its end, never in its middle), up to its last message."""
        tails = {
            p: (positions[-1] if positions else 0) for p, positions in self._read(tail_only=True).items()
        }
        state = self.state.copy()
        behind = sorted(p for p, last in tails.items() if last < state.last_position.get(p, 0))
        for partition, last in tails.items():
            state.last_position[partition] = last
        if behind:
            state.position = min([state.position] + [tails[p] for p in behind])
            log.warning(
                "%s: partitions %s hold less than the broker acknowledged; refilling from position %d",
                self.topic,
                behind,
                state.position + 1,
            )
        elif lost:
            log.warning("%s: the broker may have lost data, but every partition holds its events", self.topic)
        state.acked_offset = {}
        self._save_state(state)
        self.state = state

    def _adopt_new_topic(self, topic_id: str | None, lost: bool) -> None:
        held = self._read(tail_only=False)
        if any(held.values()) and not self._is_clean_prefix(held):
            if not self.published_before:
                count = sum(len(v) for v in held.values())
                raise ForeignTopic(
                    f"topic {self.topic} holds {count} messages that are not this ledger's log from"
                    " position 1; delete the topic, or set LEDGER_KAFKA_TOPIC_PREFIX to use another one"
                )
            log.warning(
                "%s holds messages that are not this ledger's log in order (written before the broker"
                " lost it, or by an earlier version): recreating it",
                self.topic,
            )
            self._recreate(self.topic)
            info = k.describe(self.admin, self.topic)
            topic_id = info.topic_id if info is not None else None
            held = {p: [] for p in range(self.partitions)}
        state = RelayState(0, self.partitions, topic_id)
        for partition, positions in held.items():
            state.last_position[partition] = positions[-1] if positions else 0
        # Every partition holds a clean prefix: go on after the lowest of their last positions
        # (events at or below a partition's last one are skipped).
        state.position = min(state.last_position.values(), default=0)
        if lost:
            log.warning(
                "%s: the broker lost the topic (it restarted empty, or the topic was recreated);"
                " refilling it from position %d",
                self.topic,
                state.position + 1,
            )
        else:
            log.info(
                "%s is new on this broker: publishing the log into it from position %d",
                self.topic,
                state.position + 1,
            )
        self._save_state(state)
        self.state = state

    def _is_clean_prefix(self, held: dict[int, list[int]]) -> bool:
        """Whether each partition holds exactly its events of the log, in order, up to its last."""
        if any(NOT_A_POSITION in positions for positions in held.values()):
            return False
        highest = max((positions[-1] for positions in held.values() if positions), default=0)
        cursor = {p: 0 for p in held}
        after = 0
        while after < highest:
            with self.pool.connection() as conn:
                rows: list[Any] = conn.execute(KEYS_SELECT, (after, highest, 50_000)).fetchall()
            if not rows:
                break
            for row in rows:
                partition = k.partition_for(
                    k.event_key(row["customer_id"], row["stream_id"]), self.partitions
                )
                positions = held.get(partition, [])
                i = cursor.get(partition, 0)
                if i < len(positions):
                    if positions[i] != row["position"]:
                        return False
                    cursor[partition] = i + 1
            after = rows[-1]["position"]
        return all(cursor[p] == len(positions) for p, positions in held.items())

    def _ensure_topics(self) -> str | None:
        """Both topics exist with the relay's partition count; answers the events topic's id."""
        for topic in (self.topic, self.watermark_topic):
            info = k.describe(self.admin, topic)
            if info is None:
                k.create(self.admin, topic, self.partitions)
            elif info.partitions < self.partitions:
                mine = topic == self.watermark_topic or self.published_before
                if not mine or (info.topic_id is not None and info.topic_id == self.state.topic_id):
                    raise ForeignTopic(
                        f"topic {topic} has {info.partitions} partitions, the ledger publishes to"
                        f" {self.partitions}; delete the topic or set LEDGER_KAFKA_TOPIC_PREFIX"
                    )
                # Created by a client that merely asked about it after the broker lost it (Tansu
                # creates such topics with a partition count of its own): it holds nothing of ours.
                log.info(
                    "%s was created with %d partitions by another client: recreating it",
                    topic,
                    info.partitions,
                )
                self._recreate(topic)
        info = k.describe(self.admin, self.topic)
        return info.topic_id if info is not None else None

    def _recreate(self, topic: str) -> None:
        self.admin.delete_topics([topic])
        deadline = time.monotonic() + 30
        while True:
            k.create(self.admin, topic, self.partitions)
            info = k.describe(self.admin, topic)
            if info is not None and info.partitions >= self.partitions:
                return
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"could not recreate topic {topic}")
            if info is not None:  # recreated by someone else in between: again
                self.admin.delete_topics([topic])
            time.sleep(0.1)

    def _read(self, *, tail_only: bool) -> dict[int, list[int]]:
        """The positions each partition holds, in offset order: all of them, or those of its
        last batch (whose last one is what matters)."""
        held: dict[int, list[int]] = {p: [] for p in range(self.partitions)}
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        earliest = self.admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps})
        latest = self.admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
        starts = {
            tp: (max(latest[tp].offset - 1, earliest[tp].offset) if tail_only else earliest[tp].offset)
            for tp in tps
            if latest[tp].offset > earliest[tp].offset
        }
        if not starts:
            return held
        reader: KafkaConsumer = k.consumer(self.bootstrap_servers, None, fetch_max_wait_ms=50)
        try:
            reader.assign(list(starts))
            for tp, offset in starts.items():
                reader.seek(tp, offset)
            deadline = time.monotonic() + self.READ_TIMEOUT_SECONDS
            while True:
                batch = reader.poll(timeout_ms=self.READ_IDLE_MS)
                for tp, records in batch.items():
                    for record in records:
                        position = header(record.headers, "position")
                        kind = header(record.headers, "type")
                        valid = position is not None and position.isdigit() and kind != k.WATERMARK_TYPE
                        held[tp.partition].append(int(position) if valid and position else NOT_A_POSITION)
                reached = all(reader.position(tp) >= latest[tp].offset for tp in starts)
                if reached and not batch:
                    return held
                if time.monotonic() > deadline:
                    raise KafkaTimeoutError(f"reading {self.topic} to its end took too long")
        finally:
            reader.close()

    def verify_broker(self) -> bool:
        """Check the broker still holds what it acknowledged; if not, refill what it lost.
        Answers whether it had lost data. Run every few seconds: a broker that restarted empty
        while nothing new was written would otherwise leave projectors and other consumers
        without messages that are gone."""
        if not self._reconciled or self._lease is None:
            return False
        info = k.describe(self.admin, self.topic)
        lost = info is None or (info.topic_id is not None and info.topic_id != self.state.topic_id)
        if not lost and self.state.acked_offset:
            tps = {TopicPartition(self.topic, p): OffsetSpec.LATEST for p in self.state.acked_offset}
            latest = self.admin.list_partition_offsets(tps)
            lost = any(latest[tp].offset <= self.state.acked_offset[tp.partition] for tp in tps)
        if lost:
            self._drop_clients()
            self.reconcile(lost=True)
        return lost

    def run_once(self) -> int:
        try:
            return self.publish_once()
        except BrokerLostData as lost:
            log.warning("%s: %s", self.topic, lost)
            self._drop_clients()
            self.reconcile(lost=True)
            return 0
        except KafkaError:
            # Where a failed batch stopped is read back from the topic before going on.
            self._drop_clients()
            self._reconciled = False
            self._failed_while_running = True
            raise

    def close(self) -> None:
        self._drop_clients()
        self._release_lease()


class BackgroundRelay(BackgroundLoop):
    """The relay in a daemon thread; it also checks the broker still holds what it acknowledged
    every few seconds (see `Relay.verify_broker`)."""

    VERIFY_EVERY_SECONDS = 5.0

    def __init__(self, relay: Relay, poll_seconds: float = 0.05, max_idle_seconds: float = 0.1) -> None:
        self.relay = relay
        self._verified_at = time.monotonic()
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
