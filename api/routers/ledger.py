"""The double-entry ledger projected from the log: the trial balance, for auditors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import AuditKey, ReadConn, Today
from api.routing import LedgerRoute
from api.schemas.common import Currency, QueryDay
from api.schemas.ledger import TrialBalance
from projections.trial_balance import trial_balance

router = APIRouter(route_class=LedgerRoute, prefix="/v1/ledger", tags=["ledger"])


@router.get("/trial-balance", response_model=TrialBalance)
def get_trial_balance(
    _: AuditKey,
    conn: ReadConn,
    today: Today,
    as_of: Annotated[QueryDay | None, Query(description="a UTC day (YYYY-MM-DD); default today")] = None,
    currency: Annotated[Currency | None, Query(description="ISO 4217 code")] = None,
) -> dict[str, Any]:
    """Per account and currency: debits, credits and balance of every journal entry that
    occurred on or before `as_of`; per currency, the totals, whose debits equal their credits."""
    return trial_balance(conn, as_of=as_of or today, currency=currency)
