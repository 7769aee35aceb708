"""Money: an integer count of minor units with an ISO 4217 currency code.

Division happens in exactly one place, `divide_half_even`, so that every rounding in the
ledger (yearly to monthly, proration, tax) is half-even and happens once.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import CurrencyMismatch, InvalidValue

# Active ISO 4217 codes (list one, 2024 edition) with their minor-unit exponent.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD "
    "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED "
    "VES WST XCD XCG YER ZAR ZMW ZWG"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 0 for code in _EXPONENT_0.split()},
    **{code: 2 for code in _EXPONENT_2.split()},
    **{code: 3 for code in _EXPONENT_3.split()},
    **{code: 4 for code in _EXPONENT_4.split()},
}


# The largest amount the ledger records, in minor units (10^15: ten trillion euros). Bounding every
# amount, given or computed, keeps every sum the ledger makes (an invoice's lines, a day's MRR)
# far inside 64 bits, which is what PostgreSQL's bigint columns and Kafka consumers hold.
MAX_AMOUNT = 10**15
# The largest quantity (seats, units on a line).
MAX_QUANTITY = 10**9


def check_amount(amount: int, field: str = "amount") -> int:
    """An amount is an integer count of minor units in [0, MAX_AMOUNT]."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_AMOUNT:
        raise InvalidValue(f"an amount is an integer of minor units in [0, {MAX_AMOUNT}]", field=field)
    return amount


def charge(unit_amount: int, quantity: int, field: str = "quantity") -> int:
    """unit_amount × quantity, refused (before it is recorded anywhere) when the result would
    pass MAX_AMOUNT."""
    check_amount(unit_amount, "unit_amount")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 <= quantity <= MAX_QUANTITY:
        raise InvalidValue(f"a quantity is an integer in [0, {MAX_QUANTITY}]", field=field)
    product = unit_amount * quantity
    if product > MAX_AMOUNT:
        raise InvalidValue(
            f"{quantity} × {unit_amount} = {product} passes the largest amount, {MAX_AMOUNT}", field=field
        )
    return product


def check_currency(code: str) -> str:
    """Return the code if it is an active ISO 4217 currency, else raise InvalidValue."""
    if code not in CURRENCY_EXPONENTS:
        raise InvalidValue(f"'{code}' is not an ISO 4217 currency code", field="currency")
    return code


def exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS[check_currency(currency)]


def divide_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half to even, in exact integer arithmetic."""
    if denominator == 0:
        raise InvalidValue("division by zero")
    # As `round(Fraction(numerator, denominator))` computes it, without making the Fraction.
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    quotient, remainder = divmod(numerator, denominator)
    doubled = 2 * remainder
    if doubled > denominator or (doubled == denominator and quotient & 1):
        quotient += 1
    return quotient


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidValue("an amount is an integer count of minor units", field="amount")
        check_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}", field="currency")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def times(self, factor: int) -> Money:
        return Money(self.amount * factor, self.currency)

    def divided_by(self, denominator: int) -> Money:
        """Split into `denominator` parts, rounded half-even once."""
        return Money(divide_half_even(self.amount, denominator), self.currency)

    def share(self, numerator: int, denominator: int) -> Money:
        """self × numerator / denominator, rounded half-even once (proration, tax)."""
        return Money(divide_half_even(self.amount * numerator, denominator), self.currency)

    def is_negative(self) -> bool:
        return self.amount < 0

    def format(self) -> str:
        exp = exponent(self.currency)
        sign = "-" if self.amount < 0 else ""
        units, minor = divmod(abs(self.amount), 10**exp)
        return f"{sign}{units}.{minor:0{exp}d} {self.currency}" if exp else f"{sign}{units} {self.currency}"
