from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.errors import CurrencyMismatch, InvalidValue
from domain.money import CURRENCY_EXPONENTS, Money, check_currency, divide_half_even, exponent
from tests.unit.factories import half_even_oracle

CURRENCIES = sorted(CURRENCY_EXPONENTS)
amounts = st.integers(min_value=-(10**15), max_value=10**15)
currencies = st.sampled_from(CURRENCIES)
nonzero = st.integers(min_value=-(10**6), max_value=10**6).filter(lambda d: d != 0)


# ---------------------------------------------------------------- construction


def test_money_is_an_integer_count_of_minor_units_in_a_known_currency() -> None:
    money = Money(1999, "EUR")
    assert (money.amount, money.currency) == (1999, "EUR")
    assert Money.zero("JPY") == Money(0, "JPY")


@pytest.mark.parametrize("amount", [19.99, 10.0, "1000", None, True, False])
def test_a_non_integer_amount_is_refused(amount: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        Money(amount, "EUR")  # type: ignore[arg-type]
    assert caught.value.field == "amount"


@pytest.mark.parametrize("code", ["EURO", "eur", "XXX", "", "BTC", " EUR"])
def test_an_unknown_currency_is_refused(code: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        Money(100, code)
    assert caught.value.field == "currency"
    with pytest.raises(InvalidValue):
        check_currency(code)
    with pytest.raises(InvalidValue):
        exponent(code)


def test_check_currency_returns_a_known_code_unchanged() -> None:
    assert check_currency("USD") == "USD"


@pytest.mark.parametrize(
    ("code", "digits"), [("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("CLF", 4)]
)
def test_each_currency_knows_its_minor_unit_exponent(code: str, digits: int) -> None:
    assert exponent(code) == digits


# ---------------------------------------------------------------- arithmetic


@given(amounts, amounts, amounts, currencies)
def test_addition_is_associative_and_commutative(a: int, b: int, c: int, cur: str) -> None:
    x, y, z = Money(a, cur), Money(b, cur), Money(c, cur)
    assert (x + y) + z == x + (y + z) == Money(a + b + c, cur)
    assert x + y == y + x


@given(amounts, amounts, amounts, currencies)
def test_subtraction_undoes_addition_and_regroups(a: int, b: int, c: int, cur: str) -> None:
    x, y, z = Money(a, cur), Money(b, cur), Money(c, cur)
    assert (x + y) - y == x
    assert x - (y + z) == (x - y) - z == Money(a - b - c, cur)
    assert -x == Money(-a, cur)
    assert x - x == Money.zero(cur)


@given(amounts, amounts, currencies, currencies)
def test_combining_two_currencies_is_refused(a: int, b: int, cur: str, other: str) -> None:
    assume(cur != other)
    x, y = Money(a, cur), Money(b, other)
    for combine in (
        lambda: x + y,
        lambda: x - y,
        lambda: x < y,
        lambda: x <= y,
        lambda: x > y,
        lambda: x >= y,
    ):
        with pytest.raises(CurrencyMismatch):
            combine()


@given(amounts, amounts, currencies)
def test_money_in_one_currency_is_ordered_by_amount(a: int, b: int, cur: str) -> None:
    x, y = Money(a, cur), Money(b, cur)
    assert (x < y) == (a < b)
    assert (x <= y) == (a <= b)
    assert (x > y) == (a > b)
    assert (x >= y) == (a >= b)


def test_equal_amounts_in_different_currencies_are_not_equal() -> None:
    assert Money(100, "EUR") != Money(100, "USD")


@given(amounts, st.integers(min_value=-1000, max_value=1000), currencies)
def test_times_multiplies_exactly(a: int, factor: int, cur: str) -> None:
    assert Money(a, cur).times(factor) == Money(a * factor, cur)


def test_is_negative_is_true_only_below_zero() -> None:
    assert Money(-1, "EUR").is_negative()
    assert not Money(0, "EUR").is_negative()
    assert not Money(1, "EUR").is_negative()


# ---------------------------------------------------------------- rounding


@given(st.integers(min_value=-(10**18), max_value=10**18), nonzero)
def test_divide_half_even_equals_round_half_even_of_the_exact_fraction(n: int, d: int) -> None:
    result = divide_half_even(n, d)
    assert result == half_even_oracle(n, d)
    error = Fraction(result) - Fraction(n, d)
    assert abs(error) <= Fraction(1, 2)
    if abs(error) == Fraction(1, 2):
        assert result % 2 == 0, "a tie goes to the even neighbour"


@pytest.mark.parametrize(
    ("n", "d", "expected"),
    [
        (5, 2, 2),  # 2.5 -> 2
        (7, 2, 4),  # 3.5 -> 4
        (-5, 2, -2),  # -2.5 -> -2
        (-7, 2, -4),  # -3.5 -> -4
        (1, 2, 0),  # 0.5 -> 0
        (3, 2, 2),  # 1.5 -> 2
        (5, -2, -2),  # a negative denominator rounds the same way
        (200000, 12, 16667),  # 16666.67
        (10, 3, 3),
        (20, 3, 7),
    ],
)
def test_divide_half_even_examples(n: int, d: int, expected: int) -> None:
    assert divide_half_even(n, d) == expected


def test_dividing_by_zero_is_refused() -> None:
    with pytest.raises(InvalidValue):
        divide_half_even(100, 0)
    with pytest.raises(InvalidValue):
        Money(100, "EUR").divided_by(0)
    with pytest.raises(InvalidValue):
        Money(100, "EUR").share(1, 0)


@given(amounts, nonzero, currencies)
def test_divided_by_rounds_half_even_once(a: int, d: int, cur: str) -> None:
    assert Money(a, cur).divided_by(d) == Money(half_even_oracle(a, d), cur)


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=1, max_value=10**6),
)
def test_share_is_within_half_a_minor_unit_of_the_exact_share(a: int, num: int, den: int) -> None:
    share = Money(a, "EUR").share(num, den)
    assert share.currency == "EUR"
    assert share.amount == half_even_oracle(a * num, den)
    assert abs(Fraction(share.amount) - Fraction(a * num, den)) <= Fraction(1, 2)


def test_share_rounds_once_not_per_step() -> None:
    # 1 cent x 3/2 = 1.5 -> 2. Rounding 1/2 first (-> 0) and then multiplying would give 0.
    assert Money(1, "EUR").share(3, 2) == Money(2, "EUR")
    # 1000 x 7/12 = 583.33 -> 583; dividing first gives round(83.33) x 7 = 581.
    assert Money(1000, "EUR").share(7, 12) == Money(583, "EUR")


# ---------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(1999, "EUR"), "19.99 EUR"),
        (Money(5, "EUR"), "0.05 EUR"),
        (Money(-5, "EUR"), "-0.05 EUR"),
        (Money(0, "USD"), "0.00 USD"),
        (Money(1500, "JPY"), "1500 JPY"),
        (Money(-1500, "JPY"), "-1500 JPY"),
        (Money(1234, "BHD"), "1.234 BHD"),
        (Money(12345, "CLF"), "1.2345 CLF"),
    ],
)
def test_format_shows_major_units_with_the_currency_exponent(money: Money, text: str) -> None:
    assert money.format() == text


def test_money_is_immutable() -> None:
    money = Money(100, "EUR")
    with pytest.raises(AttributeError):
        money.amount = 200  # type: ignore[misc]
