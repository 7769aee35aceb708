// The public API, as the dashboard calls it. The key is kept in sessionStorage (this tab only)
// and sent as a bearer token; it never appears in a URL. Every failure becomes an ApiError with
// the problem+json answer, and a message a person can act on.

const KEY = "ledger.apiKey";
let lastPosition = 0; // read-your-writes: reads wait for the last write the page made
const listeners = new Set();

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set(key) {
    sessionStorage.setItem(KEY, key);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    lastPosition = 0;
  },
};

export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }

  // A headline and a sentence for people, by status.
  get headline() {
    switch (this.status) {
      case 0:
        return "The ledger API did not answer";
      case 401:
        return "Your key was not accepted (401)";
      case 403:
        return "Your key's role may not do this (403)";
      case 404:
        return "Not found (404)";
      case 409:
        return "Not possible in the current state (409)";
      case 422:
        return "The request was refused (422)";
      case 503:
        return "The ledger is catching up (503)";
      default:
        return this.problem.title ? `${this.problem.title} (${this.status})` : `Error ${this.status}`;
    }
  }

  get explanation() {
    if (this.status === 0) return "Check that the ledger is running and reachable, then retry.";
    if (this.status === 401) return "The key is unknown or has been revoked. Sign in again with a valid key.";
    if (this.status === 503) {
      const wait = this.retryAfter ? ` Retry in about ${this.retryAfter} s.` : "";
      const detail = this.problem.detail || "The read models have not reached the latest change yet";
      return `${detail.replace(/\.?$/, ".")}${wait}`;
    }
    return this.problem.detail || "";
  }
}

/** Be told of every failed call (the app signs out on 401). */
export function onApiError(listener) {
  listeners.add(listener);
}

function url(path, params) {
  const u = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") u.searchParams.set(name, value);
  }
  return u;
}

export async function api(path, { method = "GET", params, body, key, quiet = false } = {}) {
  const token = key ?? session.key;
  const headers = { Accept: "application/json, application/problem+json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const query = { ...params };
  if (method === "GET" && lastPosition > 0 && path.startsWith("/v1/") && !path.startsWith("/v1/audit")) {
    query.min_position = lastPosition;
  }
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch {
    throw report(new ApiError(0, { title: "Network error" }), quiet);
  }
  if (response.ok) {
    const answer = response.status === 204 ? null : await response.json();
    if (method !== "GET" && answer && Number.isInteger(answer.position)) {
      lastPosition = Math.max(lastPosition, answer.position);
    }
    return answer;
  }
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = { title: response.statusText };
  }
  throw report(new ApiError(response.status, problem, response.headers.get("Retry-After")), quiet);
}

function report(error, quiet) {
  if (!quiet) for (const listener of listeners) listener(error);
  return error;
}

/** Whether the API offers a path (read once from /openapi.json): screens show links, such as
 * invoice PDFs, only once the API has them. */
let paths = null;
export async function apiHas(path) {
  if (paths === null) {
    try {
      const response = await fetch("/openapi.json", { cache: "force-cache" });
      paths = response.ok ? Object.keys((await response.json()).paths || {}) : [];
    } catch {
      paths = [];
    }
  }
  return paths.includes(path);
}

/** Download a document that needs the key (a PDF): fetched with the bearer token, opened as a blob. */
export async function openDocument(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${session.key}` } });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
  const blob = await response.blob();
  const href = URL.createObjectURL(blob);
  window.open(href, "_blank", "noopener");
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
}
