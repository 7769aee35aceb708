// One customer: who, status, MRR and lifetime value (GET /v1/customers/{id}); its subscriptions,
// invoices, payments and quotas (the list endpoints filtered by customer_id); and, for audit
// keys, the audit timeline of the customer and its subscriptions (GET /v1/audit/streams/{id}).

import { api } from "../api.js";
import { badge, clear, h, notice, pagedTable } from "../dom.js";
import { dateTime, day, humanize, money } from "../format.js";
import { invoiceColumns } from "./invoices.js";
import { paymentColumns } from "./payments.js";
import { quotaColumns } from "./quotas.js";
import { subscriptionColumns } from "./subscriptions.js";

function section(title, table, id) {
  return h(
    "section",
    { class: "panel", id, "aria-labelledby": `${id}-title` },
    h("div", { class: "panel-head" }, h("h2", { id: `${id}-title` }, title)),
    table.el,
  );
}

function initials(name) {
  return (name || "?")
    .split(/\s+/)
    .slice(0, 2)
    .map((w) => w[0] || "")
    .join("")
    .toUpperCase();
}

function describe(event) {
  const p = event.payload || {};
  const bits = [];
  for (const field of ["plan_code", "quantity", "status", "amount", "total", "at_period_end", "failure_code", "note", "email"]) {
    if (p[field] !== undefined && p[field] !== null && typeof p[field] !== "object") bits.push(`${humanize(field)}: ${p[field]}`);
  }
  return bits.join(" · ");
}

async function timeline(ctx, customer, subscriptionIds) {
  const body = h("ol", { class: "timeline", id: "timeline-list" });
  const panel = h(
    "section",
    { class: "panel", id: "timeline", "aria-labelledby": "timeline-title" },
    h("div", { class: "panel-head" }, h("h2", { id: "timeline-title" }, "Audit timeline"), h("span", { class: "muted" }, "every event of the customer and its subscriptions, as stored")),
    body,
  );
  if (!ctx.can("audit")) {
    clear(body, h("li", { class: "empty" }, "The audit timeline needs an audit or admin key."));
    return panel;
  }
  try {
    const streams = await Promise.all(
      [customer.id, ...subscriptionIds].map((id) => api(`/v1/audit/streams/${id}`, { params: { limit: 200 } })),
    );
    const events = streams.flatMap((s) => s.events).sort((a, b) => b.position - a.position);
    clear(
      body,
      events.map((e) =>
        h(
          "li",
          { dataset: { position: String(e.position) } },
          h("div", { class: "when" }, dateTime(e.occurred_at)),
          h(
            "div",
            {},
            h("div", { class: "what" }, humanize(e.type.replace(".", " "))),
            h("div", { class: "who" }, describe(e)),
            h("div", { class: "who" }, `#${e.position} · ${e.source}${e.actor ? ` · ${e.actor}` : ""}${e.reason ? ` · “${e.reason}”` : ""} · recorded ${dateTime(e.recorded_at)}`),
          ),
        ),
      ),
    );
  } catch (error) {
    clear(body, h("li", {}, notice(error)));
  }
  return panel;
}

export async function render(ctx) {
  const { main, id } = ctx;
  const customer = await api(`/v1/customers/${id}`);
  const header = h(
    "section",
    { class: "panel panel-body profile", id: "customer-profile", dataset: { id: customer.id } },
    h("div", { class: "avatar", "aria-hidden": "true" }, initials(customer.name || customer.external_id)),
    h(
      "div",
      {},
      h("h2", { style: null }, customer.name || customer.external_id, " ", badge(customer.status)),
      h("div", { class: "muted" }, customer.email, " · ", h("span", { class: "mono" }, customer.external_id)),
      h("div", { class: "muted" }, `Customer since ${day(customer.created_at)}`, customer.tax_rate_bps ? ` · VAT ${customer.tax_rate_bps / 100}%` : ""),
    ),
    h(
      "div",
      { class: "facts" },
      h("div", { class: "fact" }, h("div", { class: "label" }, "MRR"), h("div", { class: "value", dataset: { value: String(customer.mrr) } }, money(customer.mrr, customer.currency))),
      h("div", { class: "fact" }, h("div", { class: "label" }, "Lifetime value"), h("div", { class: "value" }, money(customer.lifetime_value, customer.currency))),
      h("div", { class: "fact" }, h("div", { class: "label" }, "Currency"), h("div", { class: "value" }, customer.currency)),
    ),
  );
  document.getElementById("screen-title").textContent = customer.name || customer.external_id;

  const mine = (path) => (cursor) => api(path, { params: { customer_id: id, cursor, limit: 10 } });
  let subscriptionIds = [];
  const subscriptions = pagedTable({
    label: "Subscriptions",
    testid: "customer-subscriptions",
    columns: subscriptionColumns(ctx, () => {
      ctx.afterWrite();
      return subscriptions.reload();
    }, { withCustomer: false }),
    empty: "No subscription.",
    load: async (cursor) => {
      const page = await mine("/v1/subscriptions")(cursor);
      subscriptionIds = [...new Set([...subscriptionIds, ...page.data.map((s) => s.id)])];
      return page;
    },
  });
  const invoices = pagedTable({
    label: "Invoices",
    testid: "customer-invoices",
    columns: await invoiceColumns({ withCustomer: false }),
    empty: "No invoice.",
    load: mine("/v1/invoices"),
  });
  const payments = pagedTable({
    label: "Payments",
    testid: "customer-payments",
    columns: paymentColumns(ctx, () => {
      ctx.afterWrite();
      return payments.reload();
    }, { withCustomer: false }),
    empty: "No payment.",
    load: mine("/v1/payments"),
  });
  const quotas = pagedTable({
    label: "Usage quotas",
    testid: "customer-quotas",
    columns: quotaColumns({ withCustomer: false }),
    empty: "No usage against a quota.",
    load: (cursor) => api("/v1/usage/quotas", { params: { customer_id: id, cursor, limit: 10 } }),
  });
  const back = h("a", { href: "#/customers" }, "← All customers");
  clear(
    main,
    back,
    header,
    section("Subscriptions", subscriptions, "customer-subscriptions"),
    h("div", { class: "grid-2" }, section("Invoices", invoices, "customer-invoices"), section("Usage quotas", quotas, "customer-quotas")),
    section("Payments", payments, "customer-payments"),
  );
  await Promise.all([subscriptions.first(), invoices.first(), payments.first(), quotas.first()]);
  main.append(await timeline(ctx, customer, subscriptionIds));
}
