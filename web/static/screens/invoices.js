// Invoices (GET /v1/invoices?status=). A PDF link appears once the API serves invoice PDFs
// (GET /v1/invoices/{id}/pdf, read from /openapi.json); it is fetched with the key.

import { api, apiHas, openDocument } from "../api.js";
import { badge, h, pagedTable, segmented, toast } from "../dom.js";
import { day, money } from "../format.js";

const STATUSES = [
  ["", "All"],
  ["open", "Open"],
  ["paid", "Paid"],
  ["draft", "Draft"],
  ["uncollectible", "Uncollectible"],
  ["void", "Void"],
];

export async function invoiceColumns({ withCustomer = true } = {}) {
  const pdf = await apiHas("/v1/invoices/{invoice_id}/pdf");
  const columns = [
    { label: "Number", render: (i) => h("span", { class: "mono" }, i.number || "draft") },
  ];
  if (withCustomer) {
    columns.push({
      label: "Customer",
      render: (i) => h("a", { class: "primary-text", href: `#/customers/${i.customer_id}` }, i.customer_name || i.customer_id),
    });
  }
  columns.push(
    { label: "Status", render: (i) => badge(i.status) },
    { label: "Total", class: "num", render: (i) => money(i.total, i.currency) },
    { label: "Remaining", class: "num", render: (i) => money(i.amount_remaining, i.currency) },
    {
      label: "Due",
      class: "hide-narrow",
      render: (i) => {
        const overdue = i.status === "open" && i.amount_remaining > 0 && i.due_date && i.due_date < new Date().toISOString().slice(0, 10);
        return h("span", { class: overdue ? "delta-down" : null }, day(i.due_date), overdue ? " · overdue" : "");
      },
    },
    {
      // SPEC 8: what is done about it being unpaid (retries, reminders, the final action).
      label: "Dunning",
      class: "hide-narrow",
      render: (i) =>
        i.dunning
          ? h(
              "span",
              { title: `${i.dunning.steps_taken} step(s) taken; final action: ${i.dunning.final_action}` },
              i.dunning.state,
              i.dunning.attempts ? ` · ${i.dunning.attempts} failed` : "",
              i.dunning.next_action_at ? ` · next ${day(i.dunning.next_action_at)}` : "",
            )
          : "",
    },
  );
  if (pdf) {
    columns.push({
      label: "PDF",
      class: "actions",
      render: (i) =>
        i.number
          ? h("button", {
              type: "button",
              class: "small",
              onclick: () => openDocument(`/v1/invoices/${i.id}/pdf`).catch((e) => toast(e.message, "error")),
            }, "PDF")
          : null,
    });
  }
  return columns;
}

export async function render(ctx) {
  const { main, params } = ctx;
  let status = params.get("status") || "";
  const table = pagedTable({
    label: "Invoices",
    testid: "invoices",
    columns: await invoiceColumns(),
    empty: "No invoice here.",
    load: (cursor) => api("/v1/invoices", { params: { status, cursor, limit: 25 } }),
  });
  main.append(
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "panel-head" },
        h("h2", {}, "Invoices"),
        segmented(STATUSES, status, (value) => {
          status = value;
          ctx.setParams({ status });
          table.first();
        }, "Invoice status"),
      ),
      table.el,
    ),
  );
  await table.first();
}
