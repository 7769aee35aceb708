// Overview: the cards of GET /v1/metrics/summary, the MRR history of GET /v1/metrics/mrr with a
// day's drill-down (GET /v1/metrics/mrr/movements), and receivables aging (GET /v1/receivables).

import { api } from "../api.js";
import { describeDay, KIND_LABELS, legend, mrrChart } from "../chart.js";
import { badge, clear, h, notice, pagedTable, segmented } from "../dom.js";
import { day, integer, isoDay, money, percent } from "../format.js";

const RANGES = [
  ["30", "30 days"],
  ["90", "90 days"],
  ["180", "180 days"],
  ["365", "365 days"],
  ["all", "All"],
];
const BUCKETS = [
  ["current", "Not yet due"],
  ["1_30", "1–30 days"],
  ["31_60", "31–60 days"],
  ["61_90", "61–90 days"],
  ["90_plus", "90+ days"],
];

function card(name, label, sub) {
  const value = h("div", { class: "value" }, h("span", { class: "skeleton" }));
  const subline = sub ? h("div", { class: "sub" }, sub) : h("div", { class: "sub" });
  const el = h("section", { class: "panel card", dataset: { card: name }, "aria-label": label }, h("div", { class: "label" }, label), value, subline);
  return {
    el,
    set(text, raw, extra) {
      value.textContent = text;
      el.dataset.value = String(raw);
      if (extra !== undefined) clear(subline, extra);
    },
  };
}

function todayUtc() {
  return isoDay(new Date());
}

function daysBefore(iso, n) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - n);
  return isoDay(d);
}

export async function render(ctx) {
  const { main, currency, params } = ctx;
  if (!currency) {
    clear(
      main,
      h(
        "div",
        { class: "panel panel-body empty" },
        h("h2", {}, "No figures yet"),
        h("p", {}, "The ledger has no plans or customers yet. Run `ledger up --demo` for a demo history, or create plans and customers through the API."),
      ),
    );
    return;
  }
  const range = RANGES.some(([v]) => v === params.get("range")) ? params.get("range") : "180";

  // ---- cards
  const cards = {
    mrr: card("mrr", "MRR", "Monthly recurring revenue"),
    arr: card("arr", "ARR", "MRR × 12"),
    active: card("active_subscriptions", "Active subscriptions", "Active and past due"),
    failed: card("failed_payments", "Failed payments", h("a", { class: "sub", href: "#/payments?status=failed" }, "Review and retry →")),
    churn: card("customer_churn_rate_30d", "Customer churn", "Last 30 days"),
    unpaid: card("unpaid_total", "Unpaid", h("a", { class: "sub", href: "#/invoices?status=open" }, "Open invoices →")),
  };
  const cardsError = h("div", { class: "errors" });
  const cardRow = h("div", { class: "cards" }, Object.values(cards).map((c) => c.el));

  // ---- chart
  const chartHost = h("div", {
    class: "chart",
    id: "mrr-chart",
    tabindex: "0",
    role: "img",
    "aria-label": "MRR history. Use the left and right arrow keys to pick a day and Enter to list its movements.",
  });
  const readout = h("div", { class: "readout", "aria-live": "polite", id: "chart-readout" });
  const chartBody = h("div", { class: "chart-wrap" }, chartHost);
  const ranges = segmented(RANGES, range, (value) => {
    ctx.setParams({ range: value === "180" ? null : value });
    loadChart(value);
  }, "History range");
  const chartPanel = h(
    "section",
    { class: "panel", "aria-labelledby": "chart-title" },
    h("div", { class: "panel-head" }, h("h2", { id: "chart-title" }, "MRR and its movements"), legend(), ranges),
    chartBody,
    readout,
  );

  // ---- drill-down
  const drill = h("section", { class: "panel", id: "drilldown", hidden: true, "aria-labelledby": "drill-title" });

  // ---- aging
  const aging = h("div", { class: "panel-body aging", id: "aging" }, h("span", { class: "skeleton" }));
  const agingPanel = h(
    "section",
    { class: "panel", "aria-labelledby": "aging-title" },
    h("div", { class: "panel-head" }, h("h2", { id: "aging-title" }, "Receivables aging"), h("span", { class: "muted" }, `as of ${day(todayUtc())}`)),
    aging,
  );

  // ---- what needs attention: the open critical alerts
  const attention = h("ul", { class: "attention", id: "attention" }, h("li", {}, h("span", { class: "skeleton" })));
  const attentionPanel = h(
    "section",
    { class: "panel", "aria-labelledby": "attention-title" },
    h("div", { class: "panel-head" }, h("h2", { id: "attention-title" }, "Needs attention"), h("a", { href: "#/alerts?severity=critical" }, "All alerts →")),
    attention,
  );

  clear(main, cardsError, cardRow, h("div", { class: "grid-2" }, h("div", { class: "stack" }, chartPanel, drill), h("div", { class: "stack" }, agingPanel, attentionPanel)));

  let chart = null;
  let rows = [];
  ctx.onCleanup(() => {
    chart?.destroy();
    window.removeEventListener("themechange", redraw);
  });
  function redraw() {
    if (rows.length) draw();
  }
  window.addEventListener("themechange", redraw);

  function draw() {
    chart?.destroy();
    chart = mrrChart(chartHost, rows, currency, {
      onPick: (row) => showDay(row),
      onHover: (row) => clear(readout, describeDay(row, currency)),
    });
    clear(readout, describeDay(rows[rows.length - 1], currency), h("span", { class: "chart-hint" }, "Click a day, or focus the chart and use ← → and Enter, to see its customers."));
  }

  async function loadSummary() {
    try {
      const s = await api("/v1/metrics/summary", { params: { currency } });
      cards.mrr.set(money(s.mrr, currency), s.mrr);
      cards.arr.set(money(s.mrr * 12, currency), s.mrr * 12);
      cards.active.set(integer(s.active_subscriptions), s.active_subscriptions);
      cards.failed.set(integer(s.failed_payments), s.failed_payments);
      cards.churn.set(percent(s.customer_churn_rate_30d, 2), s.customer_churn_rate_30d);
      cards.unpaid.set(money(s.unpaid_total, currency), s.unpaid_total);
    } catch (error) {
      clear(cardsError, notice(error, loadSummary));
      for (const c of Object.values(cards)) c.set("—", "");
    }
  }

  async function loadChart(which) {
    const to = todayUtc();
    const first = ctx.currencies.find((c) => c.currency === currency)?.first_day;
    const from = which === "all" ? (first && first < to ? first : daysBefore(to, 29)) : daysBefore(to, Number(which) - 1);
    chartHost.removeAttribute("data-drawn");
    chartHost.dataset.from = from;
    chartHost.dataset.to = to;
    try {
      const series = await api("/v1/metrics/mrr", { params: { from, to, currency } });
      rows = series.data;
      draw();
      const start = rows[0].mrr;
      const end = rows[rows.length - 1].mrr;
      if (start > 0) {
        const change = (end - start) / start;
        const label = which === "all" ? "since the start" : `in ${rows.length} days`;
        cards.mrr.el.querySelector(".sub").replaceChildren(
          h("span", { class: change >= 0 ? "delta-up" : "delta-down" }, `${change >= 0 ? "▲" : "▼"} ${percent(Math.abs(change))}`),
          ` ${label}`,
        );
      }
    } catch (error) {
      clear(chartHost, notice(error, () => loadChart(which)));
    }
  }

  async function loadAging() {
    try {
      const answer = await api("/v1/receivables", { params: { currency, limit: 1 } });
      const totals = answer.totals || {};
      const biggest = Math.max(1, ...BUCKETS.map(([b]) => totals[b] || 0));
      const sum = BUCKETS.reduce((acc, [b]) => acc + (totals[b] || 0), 0);
      clear(
        aging,
        BUCKETS.map(([bucket, label]) =>
          h(
            "div",
            { class: "aging-row", dataset: { bucket, value: String(totals[bucket] || 0) } },
            h("span", {}, label),
            h("div", { class: "aging-bar", "aria-hidden": "true" }, h("span")),
            h("span", { class: "num" }, money(totals[bucket] || 0, currency)),
          ),
        ),
        h("div", { class: "aging-total" }, h("span", {}, "Total unpaid"), h("span", { class: "num" }, money(sum, currency))),
        h("a", { href: "#/invoices?status=open" }, "See open invoices →"),
      );
      for (const row of aging.querySelectorAll(".aging-row")) {
        row.querySelector(".aging-bar span").style.width = `${(100 * Number(row.dataset.value)) / biggest}%`;
      }
    } catch (error) {
      clear(aging, notice(error, loadAging));
    }
  }

  function showDay(row) {
    drill.hidden = false;
    const kinds = Object.keys(KIND_LABELS).filter((k) => row[k]);
    const table = pagedTable({
      label: `Movements on ${row.date}`,
      testid: "movements",
      columns: [
        {
          label: "Customer",
          render: (m) => h("a", { href: `#/customers/${m.customer_id}` }, m.customer_name || m.customer_id),
        },
        { label: "Movement", render: (m) => h("span", { class: `badge kind-${m.kind}`, dataset: { value: m.kind } }, KIND_LABELS[m.kind]) },
        { label: "Amount", class: "num", render: (m) => money(m.amount, currency) },
        { label: "MRR before", class: "num hide-narrow", render: (m) => money(m.mrr_before, currency) },
        { label: "MRR after", class: "num", render: (m) => money(m.mrr_after, currency) },
      ],
      empty: "No customer moved that day.",
      load: (cursor) => api("/v1/metrics/mrr/movements", { params: { date: row.date, currency, cursor, limit: 25 } }),
      onRow: (m) => ctx.navigate(`customers/${m.customer_id}`),
    });
    const close = h("button", { type: "button", class: "small ghost" }, "Close");
    close.addEventListener("click", () => {
      drill.hidden = true;
      chartHost.focus();
    });
    clear(
      drill,
      h(
        "div",
        { class: "panel-head" },
        h("h2", { id: "drill-title", dataset: { date: row.date } }, `Movements on ${day(row.date)}`),
        kinds.length
          ? h("div", { class: "legend" }, kinds.map((k) => h("span", { class: `kind-${k}` }, `${KIND_LABELS[k]} ${money(row[k], currency)}`)))
          : h("span", { class: "muted" }, "no movement"),
        badge(`MRR ${money(row.mrr, currency)}`, "info"),
        close,
      ),
      table.el,
    );
    table.first();
    drill.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  async function loadAttention() {
    try {
      const open = await api("/v1/alerts", { params: { status: "open", severity: "critical", limit: 5 } });
      clear(
        attention,
        open.data.length
          ? open.data.map((a) =>
              h(
                "li",
                {},
                badge(a.severity),
                h(
                  "div",
                  { class: "grow" },
                  h("div", { class: "msg" }, a.message),
                  h("div", { class: "muted" }, a.customer_id ? h("a", { href: `#/customers/${a.customer_id}` }, a.customer_name || "customer") : a.subject, " · ", day(a.raised_at)),
                ),
              ),
            )
          : h("li", { class: "muted" }, "No open critical alert."),
      );
    } catch (error) {
      clear(attention, h("li", {}, notice(error, loadAttention)));
    }
  }

  await Promise.all([loadSummary(), loadChart(range), loadAging(), loadAttention()]);
}
