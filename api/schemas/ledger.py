"""Response bodies of the double-entry ledger endpoints."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class AccountBalance(BaseModel):
    account: str
    currency: str
    debit: int = Field(description="sum of debits, minor units")
    credit: int = Field(description="sum of credits, minor units")
    balance: int = Field(description="debit - credit: positive is a debit balance")


class CurrencyTotals(BaseModel):
    currency: str
    debit: int
    credit: int
    balanced: bool = Field(description="debits equal credits")


class TrialBalance(BaseModel):
    as_of: date = Field(description="entries with occurred_at on or before the end of this UTC day")
    accounts: list[AccountBalance]
    totals: list[CurrencyTotals]
