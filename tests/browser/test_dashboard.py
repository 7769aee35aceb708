"""The dashboard as finance and ops people use it, in Chromium, against the running product: every
figure on screen is the API's, and the page's actions change what the API answers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Product, screenshot, sign_in, wait_for_overview

pytestmark = pytest.mark.browser

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}
EXPONENTS = {"JPY": 0}


def money_text(minor: int, currency: str) -> str:
    """How en-US writes an amount of minor units, with the currency's ISO 4217 exponent."""
    places = EXPONENTS.get(currency, 2)
    major = Decimal(minor).scaleb(-places)
    return f"{SYMBOLS[currency]}{major:,.{places}f}"


def card(page: Any, name: str) -> tuple[str, str]:
    el = page.locator(f"[data-card={name}]")
    return el.get_attribute("data-value") or "", el.locator(".value").inner_text()


def today() -> date:
    return datetime.now(UTC).date()


def test_each_card_equals_the_apis_figure_in_the_currency_with_the_most_mrr(
    page: Any, product: Product
) -> None:
    currencies = product.api("/v1/metrics/currencies", "read")["data"]
    currency = currencies[0]["currency"]
    assert currencies[0]["mrr"] == max(c["mrr"] for c in currencies)
    summary = product.api("/v1/metrics/summary", "read", currency=currency)

    sign_in(page, product, "read")
    wait_for_overview(page)

    assert page.locator("#currency").input_value() == currency
    assert card(page, "mrr") == (str(summary["mrr"]), money_text(summary["mrr"], currency))
    assert card(page, "arr") == (str(summary["mrr"] * 12), money_text(summary["mrr"] * 12, currency))
    assert card(page, "active_subscriptions") == (
        str(summary["active_subscriptions"]),
        f"{summary['active_subscriptions']:,}",
    )
    assert card(page, "failed_payments") == (
        str(summary["failed_payments"]),
        f"{summary['failed_payments']:,}",
    )
    rate = Decimal(str(summary["customer_churn_rate_30d"]))
    churn_value, churn_text = card(page, "customer_churn_rate_30d")
    assert (Decimal(churn_value), churn_text) == (rate, f"{rate * 100:.2f}%")
    assert card(page, "unpaid_total") == (
        str(summary["unpaid_total"]),
        money_text(summary["unpaid_total"], currency),
    )
    aging = product.api("/v1/receivables", "read", currency=currency, limit=1)["totals"]
    for bucket, amount in aging.items():
        assert page.locator(f".aging-row[data-bucket='{bucket}']").get_attribute("data-value") == str(amount)
    screenshot(page, "overview")

    # Another currency: the cards follow the chooser.
    other = currencies[1]["currency"]
    page.select_option("#currency", other)
    page.wait_for_function(
        "c => document.querySelector('#mrr-chart')?.dataset.drawn"
        " && document.querySelector('[data-card=mrr] .value').textContent.startsWith(c)",
        arg=SYMBOLS[other],
    )
    other_summary = product.api("/v1/metrics/summary", "read", currency=other)
    assert card(page, "mrr") == (str(other_summary["mrr"]), money_text(other_summary["mrr"], other))


@pytest.mark.parametrize("preset,days", [("30", 30), ("90", 90), ("180", 180), ("365", 365)])
def test_the_chart_has_one_point_per_day_of_the_chosen_range(
    page: Any, product: Product, preset: str, days: int
) -> None:
    sign_in(page, product, "read")
    wait_for_overview(page)

    page.click(f".segmented[aria-label='History range'] button[data-value='{preset}']")
    page.wait_for_selector(f"#mrr-chart[data-drawn][data-points='{days}']")

    chart = page.locator("#mrr-chart")
    first, last = chart.get_attribute("data-from"), chart.get_attribute("data-to")
    assert last == today().isoformat()
    assert first == (today() - timedelta(days=days - 1)).isoformat()
    currency = page.locator("#currency").input_value()
    api_rows = product.api("/v1/metrics/mrr", "read", currency=currency, to=last, **{"from": first})["data"]
    drawn = page.evaluate("() => document.querySelector('#mrr-chart')._rows")
    assert drawn == api_rows


def test_all_of_the_history_is_one_point_per_day_since_the_first_movement(
    page: Any, product: Product
) -> None:
    sign_in(page, product, "read")
    wait_for_overview(page)
    currency = page.locator("#currency").input_value()
    first_day = next(
        c["first_day"]
        for c in product.api("/v1/metrics/currencies", "read")["data"]
        if c["currency"] == currency
    )

    page.click(".segmented[aria-label='History range'] button[data-value='all']")

    expected = (today() - date.fromisoformat(first_day)).days + 1
    page.wait_for_selector(f"#mrr-chart[data-drawn][data-points='{expected}']")


def _busiest_day(rows: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = ("new", "expansion", "contraction", "churn", "reactivation")
    return max(rows, key=lambda r: (sum(1 for k in kinds if r[k]), sum(r[k] for k in kinds)))


def _drilled_rows(page: Any) -> list[tuple[str, str, str]]:
    rows = page.locator("#drilldown tbody tr")
    found = []
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        found.append((cells.nth(0).inner_text(), cells.nth(1).inner_text(), cells.nth(2).inner_text()))
    return found


def test_a_click_on_a_days_bar_lists_that_days_movements_as_the_api_does(page: Any, product: Product) -> None:
    sign_in(page, product, "read")
    wait_for_overview(page)
    currency = page.locator("#currency").input_value()
    rows = page.evaluate("() => document.querySelector('#mrr-chart')._rows")
    busiest = _busiest_day(rows)
    movements = product.api(
        "/v1/metrics/mrr/movements", "read", date=busiest["date"], currency=currency, limit=25
    )["data"]
    assert movements, "the busiest day of the history has movements"

    x, y = page.evaluate(
        """day => {
            const host = document.querySelector('#mrr-chart');
            const u = host._chart;
            const ts = Date.parse(day + 'T00:00:00Z') / 1000;
            const box = u.over.getBoundingClientRect();
            return [box.left + u.valToPos(ts, 'x'), box.top + box.height / 2];
        }""",
        busiest["date"],
    )
    page.mouse.move(x, y)
    page.mouse.click(x, y)

    page.wait_for_selector(f"#drill-title[data-date='{busiest['date']}']")
    page.wait_for_selector("#drilldown tbody tr td a")
    kinds = {
        "new": "New",
        "expansion": "Expansion",
        "contraction": "Contraction",
        "churn": "Churn",
        "reactivation": "Reactivation",
    }
    assert _drilled_rows(page) == [
        (m["customer_name"], kinds[m["kind"]], money_text(m["amount"], currency)) for m in movements
    ]
    screenshot(page, "overview-drilldown")


def test_the_keyboard_picks_a_day_and_opens_its_movements(page: Any, product: Product) -> None:
    sign_in(page, product, "read")
    wait_for_overview(page)

    page.focus("#mrr-chart")
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Enter")

    yesterday = (today() - timedelta(days=1)).isoformat()
    page.wait_for_selector(f"#drill-title[data-date='{yesterday}']")


def test_an_admin_cancels_a_subscription_now_from_the_page(page: Any, product: Product) -> None:
    sign_in(page, product, "admin")
    page.goto(product.url + "/#/subscriptions?status=active")
    row = (
        page.locator("[data-testid=subscriptions] tbody tr")
        .filter(has=page.locator("[data-action=cancel]"))
        .first
    )
    subscription_id = row.get_attribute("data-id")
    assert product.api(f"/v1/subscriptions/{subscription_id}")["status"] == "active"

    row.locator("[data-action=cancel]").click()
    page.locator("dialog label.choice", has_text="Now").click()
    page.locator("dialog button[type=submit]").click()
    page.wait_for_selector("dialog", state="detached")

    assert product.api(f"/v1/subscriptions/{subscription_id}")["status"] == "canceled"
    # the list of active subscriptions no longer holds it; the customer's page says canceled
    page.wait_for_selector(f"tr[data-id='{subscription_id}']", state="detached")
    customer_id = product.api(f"/v1/subscriptions/{subscription_id}")["customer_id"]
    page.goto(f"{product.url}/#/customers/{customer_id}")
    page.wait_for_selector(f"tr[data-id='{subscription_id}'] .badge[data-value=canceled]")


def test_a_subscription_shows_its_add_on_items_under_its_plan(page: Any, product: Product) -> None:
    sub = product.api("/v1/subscriptions", status="active", limit=1)["data"][0]
    add_on = {
        "code": f"extra-storage-{sub['currency'].lower()}-{sub['interval']}-{sub['interval_count']}",
        "name": "Extra storage",
        "currency": sub["currency"],
        "amount": 500,
        "interval": sub["interval"],
        "interval_count": sub["interval_count"],
    }
    admin = {"Authorization": f"Bearer {product.keys['admin']}"}
    defined = httpx.post(product.url + "/v1/plans", json=add_on, headers=admin, timeout=30)
    assert defined.status_code in (200, 201), defined.text
    bought = httpx.post(
        f"{product.url}/v1/subscriptions/{sub['id']}/items",
        json={"plan_code": add_on["code"], "quantity": 2},
        headers=admin,
        timeout=30,
    )
    assert bought.status_code == 201, bought.text
    item = bought.json()
    assert product.api(f"/v1/subscriptions/{sub['id']}", min_position=item["position"])["items"]

    sign_in(page, product, "read")
    page.goto(f"{product.url}/#/customers/{sub['customer_id']}")
    shown = page.locator(f"tr[data-id='{sub['id']}'] [data-item='{item['id']}']")
    shown.wait_for()
    assert shown.inner_text() == f"+ {add_on['code']} × 2"


def test_an_admin_retries_a_failed_payment_from_the_page(page: Any, product: Product) -> None:
    sign_in(page, product, "admin")
    page.goto(product.url + "/#/payments")
    row = (
        page.locator("[data-testid=payments] tbody tr").filter(has=page.locator("[data-action=retry]")).first
    )
    payment_id = row.get_attribute("data-id")
    before = product.api(f"/v1/payments/{payment_id}")
    assert before["status"] == "failed"
    screenshot(page, "payments")

    row.locator("[data-action=retry]").click()
    page.locator("dialog button[type=submit]").click()
    page.wait_for_selector("dialog", state="detached")

    after = product.api(f"/v1/payments/{payment_id}")
    assert (after["status"], after["attempt"]) == ("pending", before["attempt"] + 1)
    # the list of failed payments no longer holds it
    page.wait_for_selector(f"tr[data-id='{payment_id}']", state="detached")


def test_an_admin_resolves_an_alert_with_a_note_from_the_page(page: Any, product: Product) -> None:
    sign_in(page, product, "admin")
    page.goto(product.url + "/#/alerts?status=open&severity=critical")
    row = (
        page.locator("[data-testid=alerts] tbody tr").filter(has=page.locator("[data-action=resolve]")).first
    )
    alert_id = row.get_attribute("data-id")
    screenshot(page, "alerts")

    row.locator("[data-action=resolve]").click()
    page.fill("#resolve-note", "Called the customer; card updated")
    page.locator("dialog button[type=submit]").click()
    page.wait_for_selector("dialog", state="detached")

    resolved = product.api("/v1/alerts", status="resolved", limit=500)["data"]
    mine = next(a for a in resolved if a["id"] == alert_id)
    assert mine["note"] == "Called the customer; card updated"
    page.wait_for_selector(f"tr[data-id='{alert_id}']", state="detached")


def test_a_wrong_key_is_refused_with_a_clear_message(page: Any, product: Product) -> None:
    page.goto(product.url + "/")
    page.fill("#api-key", "lk_read_this-key-does-not-exist")
    page.click("button[type=submit]")

    message = page.locator("#signin-error [role=alert]")
    message.wait_for()
    assert "401" in message.inner_text()
    assert "unknown or has been revoked" in message.inner_text()
    assert page.locator("#main").count() == 0
    screenshot(page, "sign-in-refused")

    page.fill("#api-key", product.keys["ingest"])
    page.click("button[type=submit]")
    page.wait_for_selector("#signin-error [data-status='403']")
    assert "ingest key" in page.locator("#signin-error").inner_text()


def test_the_key_lives_in_the_tab_only_and_never_in_a_url(page: Any, product: Product) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    sign_in(page, product, "read")
    wait_for_overview(page)

    key = product.keys["read"]
    assert page.evaluate("() => sessionStorage.getItem('ledger.apiKey')") == key
    assert page.evaluate("() => JSON.stringify(localStorage)").find(key) == -1
    assert not [url for url in requested if key in url]
    assert key not in page.url


def test_a_read_key_sees_the_figures_but_no_actions(page: Any, product: Product) -> None:
    sign_in(page, product, "read")
    assert page.locator("#role").inner_text().lower() == "read"
    for screen, testid in (
        ("payments", "payments"),
        ("subscriptions", "subscriptions"),
        ("alerts", "alerts"),
    ):
        page.goto(f"{product.url}/#/{screen}")
        page.wait_for_selector(f"[data-testid={testid}] tbody tr")
        page.wait_for_selector(f"[data-testid={testid}]:not([aria-busy])")
        assert page.locator("[data-action]").count() == 0, screen


def test_dark_mode_switches_and_stays(page: Any, product: Product) -> None:
    sign_in(page, product, "read")
    wait_for_overview(page)
    light = page.evaluate("() => getComputedStyle(document.body).backgroundColor")

    page.click("#theme-toggle")

    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    dark = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert dark != light
    page.wait_for_selector("#mrr-chart[data-drawn]")
    screenshot(page, "overview-dark")
    page.reload()
    wait_for_overview(page)
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"


def test_every_screen_shows_the_apis_rows_and_is_saved_as_a_screenshot(page: Any, product: Product) -> None:
    sign_in(page, product, "admin")
    for screen in ("customers", "subscriptions", "payments", "invoices", "quotas", "alerts"):
        page.goto(f"{product.url}/#/{screen}")
        page.wait_for_selector(f"#main[data-screen={screen}] [data-testid]:not([aria-busy]) tbody tr")
        assert page.locator("#main .notice.error").count() == 0, screen
        screenshot(page, screen)

    # customers: search finds by name, and a row opens the customer's page with its timeline
    first = product.api("/v1/customers", "read", limit=1)["data"][0]
    page.goto(f"{product.url}/#/customers")
    page.fill("#customer-search", first["name"])
    page.keyboard.press("Enter")
    page.wait_for_selector(f"[data-testid=customers] tr[data-id='{first['id']}']")
    page.click(f"[data-testid=customers] tr[data-id='{first['id']}'] a")
    page.wait_for_selector("#main[data-screen=customer] #timeline-list li[data-position]")
    assert page.locator("#customer-profile").get_attribute("data-id") == first["id"]
    screenshot(page, "customer")


def test_the_overview_is_readable_on_a_phone(browser: Any, product: Product) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US", is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, product, "read")
        wait_for_overview(page)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, "nothing is wider than the screen"
        screenshot(page, "overview-phone")
    finally:
        context.close()
