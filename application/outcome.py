"""What a use case answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class Outcome:
    """What a use case answers: the resource's receipt and the log position of its last event."""

    resource_id: UUID
    receipt: dict[str, Any]
    position: int
    created: bool = False
    recorded: bool = True  # whether the command recorded anything
