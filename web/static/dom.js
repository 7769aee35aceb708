// Small DOM helpers: element building, badges, messages, dialogs and the server-paginated table.
// Text always goes in as text nodes (never as HTML), so nothing the API answers can inject markup.

import { ApiError } from "./api.js";
import { humanize } from "./format.js";

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// Icons are fixed markup of this file, parsed once (never data from the API).
const ICONS = {
  overview: '<path d="M4 19h16M6 15v-4M11 15V6M16 15v-7"/>',
  customers: '<circle cx="9" cy="8" r="3.2"/><path d="M3.5 19c.8-3.2 3-5 5.5-5s4.7 1.8 5.5 5M16 5.5a3 3 0 0 1 0 5.5M17.5 14c1.7.6 2.8 2.2 3.2 5"/>',
  subscriptions: '<path d="M4 12a8 8 0 0 1 13.7-5.6L20 8.5M20 4v4.5h-4.5M20 12a8 8 0 0 1-13.7 5.6L4 15.5M4 20v-4.5h4.5"/>',
  payments: '<rect x="3" y="5.5" width="18" height="13" rx="2"/><path d="M3 10h18M7 15h4"/>',
  invoices: '<path d="M6 3h9l4 4v14H6z"/><path d="M14 3v5h5M9 12h7M9 16h7"/>',
  quotas: '<path d="M4 18a8 8 0 1 1 16 0"/><path d="m12 18 4-6"/>',
  alerts: '<path d="M12 4 3 19h18z"/><path d="M12 10v4M12 17h.01"/>',
  moon: '<path d="M20 14.5A8 8 0 0 1 9.5 4 8 8 0 1 0 20 14.5z"/>',
  sun: '<circle cx="12" cy="12" r="4"/><path d="M12 2v2M12 20v2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M2 12h2M20 12h2M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4"/>',
  logout: '<path d="M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10"/>',
};

export function icon(name) {
  const span = document.createElement("span");
  span.setAttribute("aria-hidden", "true");
  span.style.display = "inline-flex";
  span.innerHTML = `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">${ICONS[name]}</svg>`;
  return span;
}

const TONES = {
  active: "ok", succeeded: "ok", paid: "ok", resolved: "ok", ok: "ok",
  trialing: "info", pending: "info", open: "info", draft: "",
  at_risk: "warn", past_due: "warn", warning: "warn", medium: "warn", refunded: "",
  churned: "bad", canceled: "", failed: "bad", critical: "bad", exceeded: "bad", high: "bad",
  void: "", uncollectible: "bad", low: "",
};

export function badge(value, tone = TONES[value] ?? "") {
  return h("span", { class: `badge ${tone}`, dataset: { value } }, humanize(value));
}

/** A message in place of content: what went wrong and what to do, with a retry where it helps. */
export function notice(error, retry) {
  const isApi = error instanceof ApiError;
  const title = isApi ? error.headline : "Something went wrong";
  const detail = isApi ? error.explanation : String(error?.message || error);
  const fields = isApi && Array.isArray(error.problem.errors) ? error.problem.errors : [];
  return h(
    "div",
    { class: `notice ${isApi && error.status === 503 ? "warn" : "error"}`, role: "alert", dataset: { status: isApi ? error.status : "" } },
    h(
      "div",
      { class: "grow" },
      h("div", { class: "title" }, title),
      detail ? h("div", { class: "detail" }, detail) : null,
      fields.length ? h("ul", {}, fields.map((f) => h("li", {}, h("code", {}, f.field), ": ", f.message))) : null,
    ),
    retry ? h("button", { type: "button", onclick: retry }, "Retry") : null,
  );
}

export function toast(message, kind = "") {
  let host = document.querySelector(".toasts");
  if (!host) {
    host = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(host);
  }
  const el = h("div", { class: `toast ${kind}` }, message);
  host.append(el);
  setTimeout(() => el.remove(), 4000);
}

/**
 * A modal dialog (native <dialog>: focus stays inside, Esc closes). `body` is a node or a
 * function building the form's fields; `onConfirm(form)` runs the action and may throw an
 * ApiError, shown inside the dialog.
 */
export function openDialog({ title, body, confirmLabel, danger = false, onConfirm }) {
  const error = h("div");
  const confirm = h("button", { type: "submit", class: danger ? "danger solid" : "primary" }, confirmLabel);
  const cancel = h("button", { type: "button", value: "cancel" }, "Cancel");
  const form = h(
    "form",
    { method: "dialog" },
    h("h2", {}, title),
    typeof body === "function" ? body() : body,
    error,
    h("div", { class: "dialog-actions" }, cancel, confirm),
  );
  const dialog = h("dialog", { "aria-label": title }, form);
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    confirm.disabled = true;
    clear(error);
    try {
      await onConfirm(form);
      dialog.close();
    } catch (failure) {
      clear(error, notice(failure));
      confirm.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/**
 * A table paginated on the server: `load(cursor)` answers `{data, next_cursor}` (the API's
 * limit/cursor). Previous pages are remembered as the cursors that led to them.
 */
export function pagedTable({ columns, load, empty = "Nothing here yet.", onRow, label, testid }) {
  const tbody = h("tbody");
  const status = h("span", { "aria-live": "polite" });
  const prev = h("button", { type: "button", class: "small" }, "← Previous");
  const next = h("button", { type: "button", class: "small" }, "Next →");
  const wrap = h(
    "div",
    { class: "paged", dataset: { testid: testid || "" } },
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { "aria-label": label || null },
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class || null, scope: "col" }, c.label)))),
        tbody,
      ),
    ),
    h("div", { class: "pager" }, status, h("div", { class: "buttons" }, prev, next)),
  );
  const cursors = [null]; // cursors[i] loads page i
  let page = 0;
  let nextCursor = null;

  async function show(index) {
    prev.disabled = next.disabled = true;
    wrap.setAttribute("aria-busy", "true");
    clear(tbody, h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, h("span", { class: "skeleton" }))));
    try {
      const answer = await load(cursors[index]);
      page = index;
      nextCursor = answer.next_cursor;
      if (nextCursor && cursors.length === index + 1) cursors.push(nextCursor);
      const rows = answer.data.map((row) => {
        const tr = h(
          "tr",
          { class: onRow ? "clickable" : null, dataset: { id: row.id || row.customer_id || "" } },
          columns.map((c) => h("td", { class: c.class || null }, c.render(row))),
        );
        if (onRow) {
          tr.addEventListener("click", (event) => {
            if (!event.target.closest("button, a")) onRow(row);
          });
        }
        return tr;
      });
      clear(tbody, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty)));
      status.textContent = rows.length ? `Page ${page + 1} · ${rows.length} row${rows.length === 1 ? "" : "s"}` : "";
      prev.disabled = page === 0;
      next.disabled = !nextCursor;
    } catch (error) {
      clear(tbody, h("tr", {}, h("td", { colspan: columns.length }, notice(error, () => show(index)))));
      status.textContent = "";
      prev.disabled = index === 0;
    } finally {
      wrap.removeAttribute("aria-busy");
    }
  }

  prev.addEventListener("click", () => show(page - 1));
  next.addEventListener("click", () => show(page + 1));
  return {
    el: wrap,
    reload: () => show(page),
    first: () => {
      cursors.length = 1;
      return show(0);
    },
  };
}

/** A two-state-or-more button group bound to one value. */
export function segmented(options, current, onChange, label) {
  const group = h("div", { class: "segmented", role: "group", "aria-label": label });
  for (const [value, text] of options) {
    const button = h(
      "button",
      { type: "button", "aria-pressed": String(value === current), dataset: { value } },
      text,
    );
    button.addEventListener("click", () => {
      for (const b of group.children) b.setAttribute("aria-pressed", String(b === button));
      onChange(value);
    });
    group.append(button);
  }
  return group;
}

/** A labelled <select>. */
export function select(label, options, current, onChange, id) {
  const el = h(
    "select",
    { id, "aria-label": label },
    options.map(([value, text]) => h("option", { value, selected: value === current }, text)),
  );
  el.addEventListener("change", () => onChange(el.value));
  return el;
}
