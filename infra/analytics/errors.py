"""Why an analytics query cannot be answered. Kept apart from the engine so that what names these
errors (the API's router, the CLI) does not load DuckDB and Arrow before a query asks for them:
an API process that never answers analytics keeps that memory."""

from __future__ import annotations


class AnalyticsError(Exception):
    """A query that cannot be answered as asked. `code` is stable (problem type, CLI message)."""

    code = "analytics_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StatementRefused(AnalyticsError):
    """Not a single read-only SELECT, or it reached for files, the network or extensions."""

    code = "statement_not_allowed"


class InvalidQuery(AnalyticsError):
    """SQL that does not parse, names unknown tables or columns, or fails while running."""

    code = "invalid_query"


class QueryTimedOut(AnalyticsError):
    code = "query_timeout"


class QueryTooLarge(AnalyticsError):
    code = "query_too_large"
