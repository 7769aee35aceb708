"""Kafka plumbing shared by the relay and the projectors: topic names, partitioning, clients.

Two topics: `ledger.events` carries the stored events and nothing else, so any Kafka client can
read it; `ledger.watermarks` carries the ledger's own control messages (read-your-writes
watermarks, see `infra/relay.py`). Both have the same partition count, and watermark partition
p speaks about events partition p.

Partitions are chosen by the relay itself with Kafka's own keyed partitioner (murmur2), so the
projectors can tell from the event store which partition any event belongs to and fill a gap
straight from the store.

The relay creates the topics. Every client here asks the broker not to create a topic it merely
looks up; Apache Kafka obeys, Tansu does not: right after it restarted empty, a projector asking
about `ledger.events` creates it with Tansu's own partition count (4). The relay then recreates
a topic with fewer partitions than it needs (it holds nothing yet)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from kafka.partitioner.default import murmur2

log = logging.getLogger(__name__)

TOPIC = "ledger.events"
WATERMARK_TOPIC = "ledger.watermarks"
WATERMARK_TYPE = "ledger.watermark"
DEFAULT_PARTITIONS = 6
NO_TOPIC_ID = {"", "AAAAAAAAAAAAAAAAAAAAAA", "00000000-0000-0000-0000-000000000000"}


def topic_name(prefix: str) -> str:
    return f"{prefix}{TOPIC}"


def watermark_topic_for(topic: str) -> str:
    """The watermark topic beside an events topic (same prefix)."""
    if topic.endswith(TOPIC):
        return topic[: -len(TOPIC)] + WATERMARK_TOPIC
    return f"{topic}.watermarks"


def event_key(customer_id: UUID | None, stream_id: UUID) -> bytes:
    """The message key: the customer where one applies, else the stream."""
    return str(customer_id or stream_id).encode()


@lru_cache(maxsize=65536)
def _murmur2(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for keyed records (the Java client's murmur2)."""
    return _murmur2(key) % partitions


def producer(bootstrap_servers: str) -> KafkaProducer:
    # Idempotent: a retried request is written once and in order. A broker that restarts empty
    # does not know the producer id any more; the relay then drops this producer for a new one.
    # zstd: brokers keep record batches as they were sent, compressed. The embedded broker keeps
    # the whole topic in memory: 864 bytes an event uncompressed, 130 with zstd (100,000 events
    # of the benchmark history; gzip 124 but half as fast to publish, lz4 216). Every Kafka
    # client since 2.1 reads zstd (kafka-python with the `zstandard` package).
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        compression_type="zstd",
        allow_auto_create_topics=False,
        linger_ms=5,
        # The most a partition's batch gathers before it is sent (a light flow sends after
        # `linger_ms` with less). Batches of 1 MiB rather than 256 KiB: the embedded broker held
        # 7% less for the same events (zstd sees more alike events at once), published 8% faster.
        batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
        retries=5,
        request_timeout_ms=15000,
        max_block_ms=15000,
    )


def consumer(bootstrap_servers: str, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "allow_auto_create_topics": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1500,
        # Also the rebalance timeout: how long a rebalance waits for a member that does not
        # rejoin (one that left without a word). Kafka's default, 5 minutes, stalls the group.
        "max_poll_interval_ms": 30000,
        "max_poll_records": 5000,
        # What a fetch may bring: zstd batches of about 50 bytes an event, so 1 MiB of a partition
        # is some 20,000 events, more than a poll takes (`max_poll_records`). Larger limits only
        # held more fetched data in memory while a projector caught up.
        "fetch_max_bytes": 8 * 1024 * 1024,
        "max_partition_fetch_bytes": 1024 * 1024,
        # How long the broker may hold a fetch that finds nothing new. The embedded broker (Tansu)
        # often answers such a fetch late when messages come meanwhile: produce-to-consume took
        # a median of about 30 ms with 100 here, 10-19 ms with 20, 8-10 ms with 10 (alone). In
        # the projector's process, sharing the interpreter with the relay on a loaded machine,
        # 10 showed no gain in commit-to-visible lag over 20: the extra fetches cost CPU there.
        "fetch_max_wait_ms": 20,
        # A recreated topic (after a broker lost it) is seen within seconds.
        "metadata_max_age_ms": 5000,
        # Range assignment gives one process partition p of both topics (same partition count).
        "partition_assignment_strategy": (RangePartitionAssignor,),
    }
    options.update(overrides)
    return KafkaConsumer(**options)


def admin(bootstrap_servers: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)


@dataclass(frozen=True)
class TopicInfo:
    topic_id: str | None  # None where the broker gives topics no id
    partitions: int


def describe(client: KafkaAdminClient, topic: str) -> TopicInfo | None:
    """The topic's id and partition count, or None if it does not exist (nothing is created)."""
    try:
        described = client.describe_topics([topic])
    except UnknownTopicOrPartitionError:
        return None
    if not described or described[0].get("error_code") or not described[0].get("partitions"):
        return None
    raw_id = described[0].get("topic_id")
    topic_id = None if raw_id is None or str(raw_id) in NO_TOPIC_ID else str(raw_id)
    return TopicInfo(topic_id, len(described[0]["partitions"]))


def create(client: KafkaAdminClient, topic: str, partitions: int) -> None:
    try:
        client.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        log.info("created topic %s with %d partitions", topic, partitions)
    except TopicAlreadyExistsError:
        pass


def ensure_topic(bootstrap_servers: str, topic: str, partitions: int) -> int:
    """Create the topic if missing; answer its partition count."""
    client = admin(bootstrap_servers)
    try:
        info = describe(client, topic)
        if info is None:
            create(client, topic, partitions)
            info = describe(client, topic)
        return info.partitions if info is not None else partitions
    finally:
        client.close()
