// Customers: search (name, e-mail, external id), status filter, MRR and lifetime value
// (GET /v1/customers?q=&status=), each row opening the customer's page.

import { api } from "../api.js";
import { badge, h, pagedTable, segmented } from "../dom.js";
import { day, money } from "../format.js";

const STATUSES = [
  ["", "All"],
  ["active", "Active"],
  ["at_risk", "At risk"],
  ["churned", "Churned"],
];

export async function render(ctx) {
  const { main, params } = ctx;
  let q = params.get("q") || "";
  let status = params.get("status") || "";

  const table = pagedTable({
    label: "Customers",
    testid: "customers",
    columns: [
      {
        label: "Customer",
        render: (c) =>
          h(
            "div",
            {},
            h("a", { class: "primary-text", href: `#/customers/${c.id}` }, c.name || c.external_id),
            h("div", { class: "secondary-text" }, c.email),
          ),
      },
      { label: "Status", render: (c) => badge(c.status) },
      { label: "MRR", class: "num", render: (c) => money(c.mrr, c.currency) },
      { label: "Lifetime value", class: "num", render: (c) => money(c.lifetime_value, c.currency) },
      { label: "Currency", class: "hide-narrow", render: (c) => c.currency },
      { label: "Customer since", class: "hide-narrow", render: (c) => day(c.created_at) },
    ],
    empty: "No customer matches.",
    load: (cursor) => api("/v1/customers", { params: { q: q.trim(), status, cursor, limit: 25 } }),
    onRow: (c) => ctx.navigate(`customers/${c.id}`),
  });

  const search = h("input", {
    type: "search",
    id: "customer-search",
    placeholder: "Search name, e-mail or external id",
    "aria-label": "Search customers",
    value: q,
  });
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      q = search.value;
      ctx.setParams({ q: q.trim(), status });
      table.first();
    }, 250);
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      clearTimeout(timer);
      q = search.value;
      ctx.setParams({ q: q.trim(), status });
      table.first();
    }
  });
  const filter = segmented(STATUSES, status, (value) => {
    status = value;
    ctx.setParams({ q: q.trim(), status });
    table.first();
  }, "Customer status");

  main.append(
    h(
      "section",
      { class: "panel" },
      h("div", { class: "panel-head" }, h("h2", {}, "All customers"), h("div", { class: "toolbar" }, search, filter)),
      table.el,
    ),
  );
  await table.first();
}
