// Usage quotas of the current period (GET /v1/usage/quotas?current=true): used against limit,
// with the state of SPEC section 4 (ok < 80% <= warning < 95% <= critical < 100% <= exceeded).

import { api } from "../api.js";
import { badge, h, pagedTable, segmented } from "../dom.js";
import { day, percent, quantity } from "../format.js";

export function quotaColumns({ withCustomer = true } = {}) {
  const columns = [];
  if (withCustomer) {
    columns.push({ label: "Customer", render: (q) => h("a", { class: "primary-text mono", href: `#/customers/${q.customer_id}` }, q.customer_id.slice(0, 8)) });
  }
  columns.push(
    {
      label: "Metric",
      // A quota that counts per value of a usage property (SPEC 10) names the group ("" is usage without it).
      render: (q) => (q.group_by ? h("span", {}, h("code", {}, q.metric), " ", h("span", { class: "muted" }, `${q.group_by}: ${q.group === "" ? "(none)" : q.group}`)) : h("code", {}, q.metric)),
    },
    { label: "Period", class: "hide-narrow", render: (q) => `${day(q.period_start)} → ${day(q.period_end)}` },
    { label: "Used", class: "num", render: (q) => `${quantity(q.used)} / ${q.limit === null ? "∞" : quantity(q.limit)}` },
    {
      label: "Usage",
      render: (q) => {
        const bar = h("span", { class: `progress ${q.state}`, role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(Math.round((q.percent || 0) * 100)) }, h("span"));
        bar.firstChild.style.width = `${Math.min(100, (q.percent || 0) * 100)}%`;
        return h("span", {}, bar, " ", q.percent === null ? "" : percent(q.percent, 0));
      },
    },
    { label: "State", render: (q) => badge(q.state) },
    { label: "Enforcement", class: "hide-narrow", render: (q) => q.enforcement },
  );
  return columns;
}

export async function render(ctx) {
  const { main, params } = ctx;
  let period = params.get("period") || "current";
  const table = pagedTable({
    label: "Usage quotas",
    testid: "quotas",
    columns: quotaColumns(),
    empty: "No usage recorded against a quota in this period.",
    load: (cursor) => api("/v1/usage/quotas", { params: { current: period === "current" ? "true" : "", cursor, limit: 25 } }),
  });
  main.append(
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "panel-head" },
        h("h2", {}, "Usage quotas"),
        segmented([["current", "Current period"], ["all", "All periods"]], period, (value) => {
          period = value;
          ctx.setParams({ period: value === "current" ? null : value });
          table.first();
        }, "Periods"),
      ),
      table.el,
    ),
  );
  await table.first();
}
