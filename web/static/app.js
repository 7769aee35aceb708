// The dashboard's entry point: sign-in, the shell (navigation, currency, theme) and the
// hash router. Screens live in screens/*.js; each gets a context and fills `main`.
// Routes carry only screen names, ids and filters (#/payments?status=failed), never the key.

import { api, ApiError, onApiError, session } from "./api.js";
import { clear, h, icon, notice } from "./dom.js";
import { money } from "./format.js";

const SCREENS = {
  overview: { title: "Overview", icon: "overview", load: () => import("./screens/overview.js") },
  customers: { title: "Customers", icon: "customers", load: () => import("./screens/customers.js") },
  subscriptions: { title: "Subscriptions", icon: "subscriptions", load: () => import("./screens/subscriptions.js") },
  payments: { title: "Payments", icon: "payments", load: () => import("./screens/payments.js") },
  invoices: { title: "Invoices", icon: "invoices", load: () => import("./screens/invoices.js") },
  quotas: { title: "Usage quotas", icon: "quotas", load: () => import("./screens/quotas.js") },
  alerts: { title: "Alerts", icon: "alerts", load: () => import("./screens/alerts.js") },
};
const CUSTOMER_PAGE = () => import("./screens/customer.js");

const root = document.getElementById("app");
const state = {
  me: null, // {role, permissions}
  currencies: [], // [{currency, mrr, first_day}], the largest MRR first
  currency: null,
  shell: null,
  cleanup: null,
};

export function can(permission) {
  return Boolean(state.me && state.me.permissions.includes(permission));
}

export function navigate(path) {
  window.location.hash = `#/${path}`;
}

// ------------------------------------------------------------------ theme

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem("ledger.theme", theme);
  } catch {
    /* private mode: the theme lasts for this page */
  }
  window.dispatchEvent(new CustomEvent("themechange", { detail: theme }));
}

function themeButton() {
  const button = h("button", { type: "button", class: "icon-button ghost", id: "theme-toggle" });
  const paint = () => {
    const dark = document.documentElement.dataset.theme === "dark";
    button.setAttribute("aria-label", dark ? "Switch to light theme" : "Switch to dark theme");
    button.title = button.getAttribute("aria-label");
    clear(button, icon(dark ? "sun" : "moon"));
  };
  button.addEventListener("click", () => {
    setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
    paint();
  });
  paint();
  return button;
}

// ------------------------------------------------------------------ sign-in

function signIn(message) {
  state.shell = null;
  const error = h("div", { id: "signin-error" }, message ? notice(message) : null);
  const input = h("input", {
    type: "password",
    id: "api-key",
    name: "api-key",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "lk_read_…",
    required: true,
  });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    {},
    h("div", { class: "field" }, h("label", { for: "api-key" }, "API key"), input),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    clear(error);
    const key = input.value.trim();
    try {
      const me = await api("/v1/api-keys/me", { key, quiet: true });
      if (!me.permissions.includes("read")) {
        throw new ApiError(403, {
          detail: `This is ${me.role === "ingest" ? "an" : "a"} ${me.role} key: it cannot read the dashboard. Use a read, audit or admin key.`,
        });
      }
      session.set(key);
      await start(me);
    } catch (failure) {
      clear(error, notice(failure));
      submit.disabled = false;
      input.focus();
    }
  });
  clear(
    root,
    h(
      "div",
      { class: "signin" },
      h(
        "div",
        { class: "panel" },
        h("div", { class: "brand", style: null }, h("span", { class: "brand-mark", "aria-hidden": "true" })),
        h("div", {}, h("h1", {}, "Billing ledger"), h("p", { class: "muted" }, "Sign in with an API key to open the finance and operations dashboard.")),
        form,
        error,
        h(
          "p",
          { class: "hint" },
          "Read keys see the figures; admin keys may also cancel, retry and resolve; audit keys see timelines. ",
          "The key is kept for this browser tab only and is never put in a URL.",
        ),
        h("div", { class: "toolbar" }, themeButton()),
      ),
    ),
  );
  input.focus();
}

function signOut(message) {
  session.clear();
  state.me = null;
  if (state.cleanup) state.cleanup();
  signIn(message);
}

// ------------------------------------------------------------------ shell

async function start(me, currencies = api("/v1/metrics/currencies")) {
  state.me = me;
  try {
    state.currencies = (await currencies).data;
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 401) return;
    state.currencies = [];
  }
  const saved = sessionStorage.getItem("ledger.currency");
  const known = state.currencies.map((c) => c.currency);
  state.currency = known.includes(saved) ? saved : known[0] || null;
  buildShell();
  route();
}

function currencyChooser() {
  const chooser = h("select", { id: "currency", "aria-label": "Currency" });
  for (const c of state.currencies) {
    chooser.append(
      h("option", { value: c.currency, selected: c.currency === state.currency }, `${c.currency} · ${money(c.mrr, c.currency)} MRR`),
    );
  }
  if (!state.currencies.length) chooser.append(h("option", { value: "" }, "No currency yet"));
  chooser.addEventListener("change", () => {
    state.currency = chooser.value;
    sessionStorage.setItem("ledger.currency", chooser.value);
    route();
  });
  return chooser;
}

function buildShell() {
  const nav = h("nav", { class: "nav", "aria-label": "Screens" });
  for (const [name, screen] of Object.entries(SCREENS)) {
    nav.append(h("a", { href: `#/${name}`, dataset: { screen: name } }, icon(screen.icon), h("span", {}, screen.title)));
  }
  const title = h("h1", { id: "screen-title" });
  const main = h("main", { id: "main", tabindex: "-1" });
  const roleBadge = h("span", { class: "role-badge", id: "role", title: `Signed in with a ${state.me.role} key` }, state.me.role);
  const logout = h(
    "button",
    { type: "button", class: "ghost icon-button", id: "sign-out", "aria-label": "Sign out", title: "Sign out" },
    icon("logout"),
  );
  logout.addEventListener("click", () => signOut());
  clear(
    root,
    h(
      "div",
      { class: "shell" },
      h(
        "aside",
        { class: "sidebar" },
        h("div", { class: "brand" }, h("span", { class: "brand-mark", "aria-hidden": "true" }), "Billing ledger"),
        nav,
        h("div", { class: "sidebar-foot" }, "Every figure is the API's. ", h("a", { href: "/docs" }, "API docs")),
      ),
      h(
        "div",
        { class: "content" },
        h(
          "header",
          { class: "topbar" },
          title,
          h("div", { class: "controls" }, currencyChooser(), roleBadge, themeButton(), logout),
        ),
        main,
      ),
    ),
  );
  state.shell = { nav, title, main };
  refreshAlertCount();
}

async function refreshAlertCount() {
  try {
    const open = await api("/v1/alerts", { params: { status: "open", severity: "critical", limit: 100 }, quiet: true });
    const link = state.shell?.nav.querySelector('[data-screen="alerts"]');
    if (!link) return;
    link.querySelector(".count")?.remove();
    if (open.data.length) {
      const n = open.data.length + (open.next_cursor ? "+" : "");
      link.append(h("span", { class: "count", title: `${n} open critical alerts` }, n));
    }
  } catch {
    /* the badge is a hint; the alerts screen shows any error */
  }
}

function parseRoute() {
  const raw = window.location.hash.replace(/^#\/?/, "") || "overview";
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  return { parts, params: new URLSearchParams(query) };
}

async function route() {
  if (!state.shell) return;
  if (state.cleanup) {
    state.cleanup();
    state.cleanup = null;
  }
  const { parts, params } = parseRoute();
  const [name, id] = parts;
  const screen = SCREENS[name] ? name : "overview";
  for (const link of state.shell.nav.querySelectorAll("a")) {
    if (link.dataset.screen === screen) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = state.shell.main;
  const title = name === "customers" && id ? "Customer" : SCREENS[screen].title;
  state.shell.title.textContent = title;
  document.title = `${title} · Billing ledger`;
  main.dataset.screen = name === "customers" && id ? "customer" : screen;
  clear(main);
  const context = {
    main,
    params,
    id,
    currency: state.currency,
    currencies: state.currencies,
    can,
    navigate,
    setParams(next) {
      const query = new URLSearchParams(Object.entries(next).filter(([, v]) => v));
      const path = id ? `${screen}/${id}` : screen;
      history.replaceState(null, "", `#/${path}${query.size ? `?${query}` : ""}`);
    },
    onCleanup(fn) {
      state.cleanup = fn;
    },
    afterWrite: refreshAlertCount,
  };
  try {
    const module = await (name === "customers" && id ? CUSTOMER_PAGE() : SCREENS[screen].load());
    await module.render(context);
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 401) return;
    clear(main, notice(failure, route));
  }
}

// ------------------------------------------------------------------ boot

onApiError((error) => {
  if (error.status === 401 && state.me) signOut(error);
});
window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (event) => {
  // Never a blank screen: an unexpected failure is said where the content would be.
  if (state.shell) append(state.shell.main, event.reason);
});

function append(main, reason) {
  if (!main.querySelector(".notice")) main.prepend(notice(reason));
}

async function boot() {
  const key = session.key;
  if (!key) return signIn();
  try {
    // Both at once: the first screen waits for one round trip, not two.
    const currencies = api("/v1/metrics/currencies", { quiet: true });
    currencies.catch(() => {}); // a refused key is reported by the first call
    const me = await api("/v1/api-keys/me", { quiet: true });
    await start(me, currencies);
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 401) session.clear();
    signIn(failure);
  }
}

boot();
