// Payments (GET /v1/payments?status=), failed first, with retry for admin keys.

import { retryPayment } from "../actions.js";
import { api } from "../api.js";
import { badge, h, pagedTable, segmented } from "../dom.js";
import { dateTime, money } from "../format.js";

const STATUSES = [
  ["failed", "Failed"],
  ["pending", "Pending"],
  ["succeeded", "Succeeded"],
  ["refunded", "Refunded"],
  ["all", "All"],
];

export function paymentColumns(ctx, reload, { withCustomer = true } = {}) {
  const columns = [];
  if (withCustomer) {
    columns.push({
      label: "Customer",
      render: (p) => h("a", { class: "primary-text", href: `#/customers/${p.customer_id}` }, p.customer_name || p.customer_id),
    });
  }
  columns.push(
    { label: "Amount", class: "num", render: (p) => h("div", {}, money(p.amount, p.currency), p.amount_refunded ? h("div", { class: "secondary-text" }, `refunded ${money(p.amount_refunded, p.currency)}`) : null) },
    { label: "Status", render: (p) => badge(p.status) },
    { label: "Attempt", class: "num", render: (p) => String(p.attempt) },
    { label: "Failure", render: (p) => (p.failure_code ? h("div", {}, h("code", {}, p.failure_code), h("div", { class: "secondary-text" }, p.failure_message || "")) : h("span", { class: "muted" }, "—")) },
    { label: "Created", class: "hide-narrow", render: (p) => dateTime(p.created_at) },
  );
  if (ctx.can("admin")) {
    columns.push({
      label: "Actions",
      class: "actions",
      render: (p) =>
        p.status === "failed"
          ? h("button", { type: "button", class: "small primary", dataset: { action: "retry" }, onclick: () => retryPayment(p, reload) }, "Retry…")
          : null,
    });
  }
  return columns;
}

export async function render(ctx) {
  const { main, params } = ctx;
  let status = params.get("status") || "failed";
  const table = pagedTable({
    label: "Payments",
    testid: "payments",
    columns: paymentColumns(ctx, () => {
      ctx.afterWrite();
      return table.reload();
    }),
    empty: "No payment here.",
    load: (cursor) => api("/v1/payments", { params: { status: status === "all" ? "" : status, cursor, limit: 25 } }),
  });
  main.append(
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "panel-head" },
        h("h2", {}, "Payments"),
        segmented(STATUSES, status, (value) => {
          status = value;
          ctx.setParams({ status });
          table.first();
        }, "Payment status"),
      ),
      table.el,
    ),
  );
  await table.first();
}
