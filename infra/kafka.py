"""Kafka plumbing shared by the relay and the projectors: topic name, partitioning, clients.

Partitions are chosen by the relay itself with Kafka's own keyed partitioner (murmur2), so the
projectors can tell from the event store which partition any event belongs to and fill a gap
straight from the store."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any
from uuid import UUID

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

log = logging.getLogger(__name__)

TOPIC = "ledger.events"
WATERMARK_TYPE = "ledger.watermark"
DEFAULT_PARTITIONS = 6


def topic_name(prefix: str) -> str:
    return f"{prefix}{TOPIC}"


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
    # Idempotence is off: a producer id does not survive a broker that restarts empty, and
    # duplicates are harmless here (projectors skip positions they already applied).
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=8 * 1024 * 1024,
        retries=5,
        request_timeout_ms=15000,
        max_block_ms=15000,
    )


def consumer(bootstrap_servers: str, group_id: str, **overrides: Any) -> KafkaConsumer:
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1500,
        "max_poll_records": 5000,
        "fetch_max_bytes": 32 * 1024 * 1024,
        "max_partition_fetch_bytes": 8 * 1024 * 1024,
        "fetch_max_wait_ms": 20,
    }
    options.update(overrides)
    return KafkaConsumer(**options)


def ensure_topic(bootstrap_servers: str, topic: str, partitions: int) -> int:
    """Create the topic if missing; answer its partition count."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    try:
        try:
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
            log.info("created topic %s with %d partitions", topic, partitions)
        except TopicAlreadyExistsError:
            pass
        described = admin.describe_topics([topic])
        count = len(described[0]["partitions"]) if described else partitions
        return count or partitions
    finally:
        admin.close()
