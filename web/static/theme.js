// Runs before the first paint (a classic, blocking script): apply the saved theme, or the
// system's, so the page never flashes the other one. Only the theme is kept in localStorage;
// the API key lives in sessionStorage (this tab) and never in a URL.
(function () {
  var saved = null;
  try { saved = localStorage.getItem("ledger.theme"); } catch (e) { /* storage may be off */ }
  var dark = saved ? saved === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
})();
