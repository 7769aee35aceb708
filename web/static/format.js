// Amounts are integers in minor units with an ISO 4217 code. They are shown with the code's
// exponent (JPY 0, EUR 2, KWD 3) through an exact decimal string, never through a float.

const EXPONENTS = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0,
  UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  CLF: 4, UYW: 4,
};

export const LOCALE = navigator.language || "en-US";

export function exponent(currency) {
  return EXPONENTS[currency] ?? 2;
}

/** "-1234.50" from (-123450, "EUR"): the exact decimal the minor units stand for. */
export function decimalString(minor, currency) {
  const places = exponent(currency);
  const negative = minor < 0;
  let digits = String(Math.abs(minor));
  if (places > 0) {
    digits = digits.padStart(places + 1, "0");
    digits = `${digits.slice(0, -places)}.${digits.slice(-places)}`;
  }
  return negative ? `-${digits}` : digits;
}

const formatters = new Map();
function formatter(key, options) {
  if (!formatters.has(key)) formatters.set(key, new Intl.NumberFormat(LOCALE, options));
  return formatters.get(key);
}

export function money(minor, currency) {
  if (minor === null || minor === undefined || !currency) return "—";
  const places = exponent(currency);
  const f = formatter(`money:${currency}`, {
    style: "currency",
    currency,
    minimumFractionDigits: places,
    maximumFractionDigits: places,
  });
  return f.format(decimalString(minor, currency)); // a string keeps every digit exact
}

/** Short amounts for chart axes ("€12.3K"): for reading a scale, not for accounting. */
export function compactMoney(major, currency) {
  return formatter(`compact:${currency}`, {
    style: "currency",
    currency,
    notation: "compact",
    maximumFractionDigits: 1,
  }).format(major);
}

export function majorUnits(minor, currency) {
  return minor / 10 ** exponent(currency);
}

export function integer(n) {
  return formatter("int", { maximumFractionDigits: 0 }).format(n);
}

export function percent(rate, digits = 1) {
  return formatter(`pct:${digits}`, {
    style: "percent",
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(rate);
}

export function quantity(value) {
  if (value === null || value === undefined) return "—";
  return formatter("qty", { maximumFractionDigits: 3 }).format(value);
}

const dateFormat = new Intl.DateTimeFormat(LOCALE, { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
const dateTimeFormat = new Intl.DateTimeFormat(LOCALE, {
  day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZone: "UTC",
});

/** Dates and times are UTC, as the ledger's daily series are. */
export function day(value) {
  if (!value) return "—";
  const d = typeof value === "string" && value.length === 10 ? new Date(`${value}T00:00:00Z`) : new Date(value);
  return dateFormat.format(d);
}

export function dateTime(value) {
  return value ? `${dateTimeFormat.format(new Date(value))} UTC` : "—";
}

/** "2025-11-03" of a Date, in UTC. */
export function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "—";
}

export function humanize(text) {
  return String(text || "").replaceAll("_", " ");
}
