"""Ids a request body refers to. The use cases say "no customer with id X"; when X is an id the
body named, the request is wrong, not the URL: 422 `unknown_reference` naming that field (a
missing resource in the path stays a 404 `not_found`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from domain.errors import NotFound


@contextmanager
def body_references(**ids: UUID | None) -> Iterator[None]:
    try:
        yield
    except NotFound as missing:
        named = {field: value for field, value in ids.items() if value is not None}
        if missing.field is not None or not named:
            raise
        # The use case's message names the id it did not find; the first named field otherwise.
        field = next((f for f, value in named.items() if str(value) in missing.message), next(iter(named)))
        raise NotFound(missing.message, field=field) from None
