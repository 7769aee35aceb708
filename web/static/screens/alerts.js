// Alerts (GET /v1/alerts?severity=&type=&status=), resolved with a note by admin keys.

import { resolveAlert } from "../actions.js";
import { api } from "../api.js";
import { badge, h, pagedTable, segmented, select } from "../dom.js";
import { dateTime, humanize } from "../format.js";

const SEVERITIES = [["", "All severities"], ["critical", "Critical"], ["high", "High"], ["medium", "Medium"], ["low", "Low"]];
const TYPES = ["payment_failed", "invoice_overdue", "customer_at_risk", "subscription_canceled", "quota_threshold", "customer_inactive"];

export async function render(ctx) {
  const { main, params } = ctx;
  const filters = {
    status: params.get("status") ?? "open",
    severity: params.get("severity") || "",
    type: params.get("type") || "",
  };
  const update = () => {
    ctx.setParams(filters);
    table.first();
  };
  const columns = [
    { label: "Severity", render: (a) => badge(a.severity) },
    { label: "Type", render: (a) => humanize(a.type) },
    {
      label: "Alert",
      render: (a) =>
        h(
          "div",
          {},
          h("div", { class: "clamp-2" }, a.message),
          h("div", { class: "secondary-text" }, a.customer_id ? h("a", { href: `#/customers/${a.customer_id}` }, a.customer_name || a.customer_id) : a.subject),
          a.note ? h("div", { class: "secondary-text" }, `Note: ${a.note}`) : null,
        ),
    },
    { label: "Status", render: (a) => badge(a.status) },
    { label: "Raised", class: "hide-narrow", render: (a) => dateTime(a.raised_at) },
  ];
  if (ctx.can("admin")) {
    columns.push({
      label: "Actions",
      class: "actions",
      render: (a) =>
        a.status === "open"
          ? h("button", {
              type: "button",
              class: "small",
              dataset: { action: "resolve" },
              onclick: () =>
                resolveAlert(a, () => {
                  ctx.afterWrite();
                  return table.reload();
                }),
            }, "Resolve…")
          : null,
    });
  }
  const table = pagedTable({
    label: "Alerts",
    testid: "alerts",
    columns,
    empty: "No alert matches. All clear.",
    load: (cursor) => api("/v1/alerts", { params: { ...filters, cursor, limit: 25 } }),
  });
  main.append(
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "panel-head" },
        h("h2", {}, "Alerts"),
        h(
          "div",
          { class: "toolbar" },
          segmented([["open", "Open"], ["resolved", "Resolved"], ["", "All"]], filters.status, (v) => {
            filters.status = v;
            update();
          }, "Alert status"),
          select("Severity", SEVERITIES, filters.severity, (v) => {
            filters.severity = v;
            update();
          }, "alert-severity"),
          select("Type", [["", "All types"], ...TYPES.map((t) => [t, humanize(t)])], filters.type, (v) => {
            filters.type = v;
            update();
          }, "alert-type"),
        ),
      ),
      table.el,
    ),
  );
  await table.first();
}
