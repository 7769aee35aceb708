// The writes the dashboard offers, each behind a dialog, each one call of the public API.
// Shown only to keys whose role may make them (admin).

import { api } from "./api.js";
import { h, openDialog, toast } from "./dom.js";
import { day, money } from "./format.js";

/** Cancel now or at the end of the current period: POST /v1/subscriptions/{id}/cancel. */
export function cancelSubscription(sub, done) {
  const choice = (value, title, text, checked) =>
    h(
      "label",
      { class: "choice" },
      h("input", { type: "radio", name: "when", value, checked }),
      h("span", {}, h("b", {}, title), h("span", { class: "muted" }, text)),
    );
  openDialog({
    title: "Cancel subscription",
    confirmLabel: "Cancel subscription",
    danger: true,
    body: () =>
      h(
        "div",
        { class: "field" },
        h("p", { class: "muted" }, `${sub.customer_name || "This customer"} · ${sub.plan_code} × ${sub.quantity} · ${money(sub.mrr, sub.currency)} MRR`),
        choice("period_end", "At period end", `It stays active until ${day(sub.current_period_end)}, then ends.`, true),
        choice("now", "Now", "It ends today; its MRR leaves today."),
      ),
    onConfirm: async (form) => {
      const atPeriodEnd = form.elements.when.value === "period_end";
      const answer = await api(`/v1/subscriptions/${sub.id}/cancel`, { method: "POST", body: { at_period_end: atPeriodEnd } });
      toast(atPeriodEnd ? `Cancellation scheduled for ${day(answer.current_period_end)}` : "Subscription canceled");
      await done(answer);
    },
  });
}

/** Record a new attempt of a failed payment: POST /v1/payments/{id}/retry. */
export function retryPayment(payment, done) {
  openDialog({
    title: "Retry payment",
    confirmLabel: "Retry payment",
    body: () =>
      h(
        "p",
        {},
        `Record attempt ${payment.attempt + 1} of ${money(payment.amount, payment.currency)} for ${payment.customer_name || "this customer"}. `,
        h("span", { class: "muted" }, "The payment is pending until its outcome is recorded."),
      ),
    onConfirm: async () => {
      const answer = await api(`/v1/payments/${payment.id}/retry`, { method: "POST", body: {} });
      toast(`Attempt ${answer.attempt} recorded: pending`);
      await done(answer);
    },
  });
}

/** Resolve an alert with a note: POST /v1/alerts/{id}/resolve. */
export function resolveAlert(alert, done) {
  openDialog({
    title: "Resolve alert",
    confirmLabel: "Resolve",
    body: () =>
      h(
        "div",
        { class: "field" },
        h("p", {}, alert.message),
        h("label", { for: "resolve-note" }, "Note (required)"),
        h("textarea", { id: "resolve-note", name: "note", required: true, maxlength: "2000", placeholder: "What was done, and by whom" }),
      ),
    onConfirm: async (form) => {
      const note = form.elements.note.value.trim();
      const answer = await api(`/v1/alerts/${alert.id}/resolve`, { method: "POST", body: { note } });
      toast("Alert resolved");
      await done(answer);
    },
  });
}
