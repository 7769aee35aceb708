// Subscriptions (GET /v1/subscriptions?status=) with their add-on items, with cancel now / at period
// end for admin keys.

import { cancelSubscription } from "../actions.js";
import { api } from "../api.js";
import { badge, h, pagedTable, segmented } from "../dom.js";
import { day, money } from "../format.js";

const STATUSES = [
  ["", "All"],
  ["active", "Active"],
  ["trialing", "Trialing"],
  ["past_due", "Past due"],
  ["canceled", "Canceled"],
];

export function subscriptionColumns(ctx, reload, { withCustomer = true } = {}) {
  const columns = [];
  if (withCustomer) {
    columns.push({
      label: "Customer",
      render: (s) => h("a", { class: "primary-text", href: `#/customers/${s.customer_id}` }, s.customer_name || s.customer_id),
    });
  }
  columns.push(
    {
      label: "Plan",
      render: (s) =>
        h(
          "div",
          {},
          h("div", {}, s.plan_code),
          h("div", { class: "secondary-text" }, `× ${s.quantity} · every ${s.interval_count > 1 ? `${s.interval_count} ` : ""}${s.interval}${s.interval_count > 1 ? "s" : ""}`),
          // Add-on items, billed and counted in MRR beside the plan (SPEC section 10).
          (s.items || []).map((item) => h("div", { class: "secondary-text", dataset: { item: item.id } }, `+ ${item.plan_code} × ${item.quantity}`)),
        ),
    },
    {
      label: "Status",
      render: (s) => h("div", {}, badge(s.status), s.cancel_at_period_end && s.status !== "canceled" ? h("div", { class: "secondary-text" }, `ends ${day(s.current_period_end)}`) : null),
    },
    {
      label: "MRR",
      class: "num",
      // The monthly amount counts in MRR only while active or past due (SPEC section 4).
      render: (s) =>
        ["active", "past_due"].includes(s.status)
          ? money(s.mrr, s.currency)
          : h("span", { class: "muted", title: `${money(s.mrr, s.currency)} a month, not counted while ${s.status}` }, "—"),
    },
    { label: "Current period", class: "hide-narrow", render: (s) => `${day(s.current_period_start)} → ${day(s.current_period_end)}` },
  );
  if (ctx.can("admin")) {
    columns.push({
      label: "Actions",
      class: "actions",
      render: (s) =>
        s.status === "canceled" || s.cancel_at_period_end
          ? null
          : h("button", { type: "button", class: "small danger", dataset: { action: "cancel" }, onclick: () => cancelSubscription(s, reload) }, "Cancel…"),
    });
  }
  return columns;
}

export async function render(ctx) {
  const { main, params } = ctx;
  let status = params.get("status") || "";
  const table = pagedTable({
    label: "Subscriptions",
    testid: "subscriptions",
    columns: subscriptionColumns(ctx, () => {
      ctx.afterWrite();
      return table.reload();
    }),
    empty: "No subscription here.",
    load: (cursor) => api("/v1/subscriptions", { params: { status, cursor, limit: 25 } }),
  });
  main.append(
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "panel-head" },
        h("h2", {}, "Subscriptions"),
        segmented(STATUSES, status, (value) => {
          status = value;
          ctx.setParams({ status });
          table.first();
        }, "Subscription status"),
      ),
      table.el,
    ),
  );
  await table.first();
}
