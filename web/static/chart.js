// The MRR history chart (uPlot, vendored in vendor/): one point per day. Bars are the day's
// movements, gains stacked above zero (new, expansion, reactivation) and losses below
// (contraction, churn), on the left scale; the line is MRR at the end of the day, on the right.
// A click on a day, or Enter on the day picked with the arrow keys, drills down to it.

import { compactMoney, day, majorUnits, money } from "./format.js";
import { h } from "./dom.js";

export const KINDS = ["new", "expansion", "reactivation", "contraction", "churn"];
export const KIND_LABELS = {
  new: "New",
  expansion: "Expansion",
  reactivation: "Reactivation",
  contraction: "Contraction",
  churn: "Churn",
};

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function epochSeconds(isoDay) {
  return Date.parse(`${isoDay}T00:00:00Z`) / 1000;
}

/** Bars drawn in this order overlap into stacks: each series is the running total of the kinds
 * before it, so the visible part of each bar is its own kind. */
function stackedData(rows, currency) {
  const m = (v) => majorUnits(v, currency);
  const x = rows.map((r) => epochSeconds(r.date));
  const gain1 = rows.map((r) => m(r.new));
  const gain2 = rows.map((r, i) => gain1[i] + m(r.expansion));
  const gain3 = rows.map((r, i) => gain2[i] + m(r.reactivation));
  const loss1 = rows.map((r) => -m(r.contraction));
  const loss2 = rows.map((r, i) => loss1[i] - m(r.churn));
  const mrr = rows.map((r) => m(r.mrr));
  return [x, gain3, gain2, gain1, loss2, loss1, mrr];
}

export function mrrChart(host, rows, currency, { onPick, onHover }) {
  const uPlot = window.uPlot;
  const colors = {
    new: cssVar("--c-new"),
    expansion: cssVar("--c-expansion"),
    reactivation: cssVar("--c-reactivation"),
    contraction: cssVar("--c-contraction"),
    churn: cssVar("--c-churn"),
    mrr: cssVar("--c-mrr"),
    grid: cssVar("--grid"),
    text: cssVar("--muted"),
    accent: cssVar("--accent"),
  };
  const many = rows.length > 120;
  const bars = uPlot.paths.bars({ size: [many ? 0.9 : 0.7, 24, 1], align: 0 });
  const bar = (kind) => ({
    label: KIND_LABELS[kind],
    scale: "moves",
    fill: colors[kind],
    stroke: colors[kind],
    width: 0,
    paths: bars,
    points: { show: false },
  });
  const axis = (scale, side, format) => ({
    scale,
    side,
    stroke: colors.text,
    grid: { show: side === 3, stroke: colors.grid, width: 1 },
    ticks: { show: false },
    size: 64,
    gap: 6,
    font: `11px ${getComputedStyle(document.body).fontFamily}`,
    values: (u, values) => values.map(format),
  });
  const formatScale = (v) => (v === 0 ? "0" : compactMoney(v, currency));
  const options = {
    width: Math.max(host.clientWidth, 280),
    height: host.clientHeight || 320,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    legend: { show: false },
    padding: [12, 8, 0, 8],
    cursor: {
      y: false,
      points: { show: false },
      drag: { x: false, y: false, setScale: false },
    },
    scales: {
      x: { time: true },
      moves: {
        range: (u, min, max) => {
          const top = Math.max(Math.abs(min), Math.abs(max), 1);
          return [Math.min(min, 0) * 1.1 || -top * 0.05, Math.max(max, 0) * 1.1 || top * 0.05];
        },
      },
      mrr: { range: (u, min, max) => [0, Math.max(max, 1) * 1.08] },
    },
    axes: [
      {
        stroke: colors.text,
        grid: { show: false },
        ticks: { show: false },
        font: `11px ${getComputedStyle(document.body).fontFamily}`,
        space: 70,
      },
      axis("mrr", 1, formatScale),
      axis("moves", 3, formatScale),
    ],
    series: [
      {},
      bar("reactivation"),
      bar("expansion"),
      bar("new"),
      bar("churn"),
      bar("contraction"),
      {
        label: "MRR",
        scale: "mrr",
        stroke: colors.mrr,
        width: 2,
        fill: `${colors.accent}14`,
        points: { show: false },
      },
    ],
    hooks: {
      setCursor: [
        (u) => {
          const index = u.cursor.idx;
          if (index !== null && index !== undefined) onHover(rows[index], index);
        },
      ],
      draw: [
        (u) => {
          host.dataset.points = String(u.data[0].length);
          if (!host.dataset.drawn) {
            host.dataset.drawn = "1";
            performance.mark("mrr-chart-drawn");
          }
        },
      ],
    },
  };

  host.replaceChildren();
  const chart = new uPlot(options, stackedData(rows, currency), host);
  host._chart = chart; // for tests and benchmarks: where a day's bar is on screen
  host._rows = rows;
  let picked = rows.length - 1;

  const put = (index) => {
    picked = Math.min(Math.max(index, 0), rows.length - 1);
    const left = chart.valToPos(chart.data[0][picked], "x");
    chart.setCursor({ left, top: chart.over.clientHeight / 2 });
  };

  // The layout around the chart moves as the other panels load: measure where the plot is now.
  chart.over.addEventListener("mouseenter", () => chart.syncRect?.());
  chart.over.addEventListener("click", (event) => {
    const left = event.clientX - chart.over.getBoundingClientRect().left;
    const index = chart.posToIdx(left);
    if (index >= 0 && index < rows.length) {
      picked = index;
      onPick(rows[index]);
    }
  });
  host.addEventListener("keydown", (event) => {
    const step = { ArrowLeft: -1, ArrowRight: 1, PageUp: -7, PageDown: 7 }[event.key];
    if (step !== undefined) put(picked + step);
    else if (event.key === "Home") put(0);
    else if (event.key === "End") put(rows.length - 1);
    else if (event.key === "Enter" || event.key === " ") onPick(rows[picked]);
    else return;
    event.preventDefault();
  });
  host.addEventListener("focus", () => put(picked));

  const resize = new ResizeObserver(() => {
    const width = Math.max(host.clientWidth, 280);
    if (width !== chart.width) chart.setSize({ width, height: host.clientHeight || 320 });
  });
  resize.observe(host);
  return {
    chart,
    destroy() {
      resize.disconnect();
      chart.destroy();
    },
  };
}

/** The legend, with each kind's colour. */
export function legend() {
  return h(
    "div",
    { class: "legend", "aria-hidden": "true" },
    KINDS.map((kind) => h("span", {}, h("i", { class: `swatch-${kind}` }), KIND_LABELS[kind])),
    h("span", {}, h("i", { class: "line swatch-mrr" }), "MRR"),
  );
}

/** One day's figures in words (the hover and keyboard readout). */
export function describeDay(row, currency) {
  return [
    h("span", {}, h("b", {}, day(row.date))),
    h("span", {}, "MRR ", h("b", {}, money(row.mrr, currency))),
    ...KINDS.filter((k) => row[k]).map((k) =>
      h("span", { class: `kind-${k}` }, `${KIND_LABELS[k]} ${k === "contraction" || k === "churn" ? "−" : "+"}${money(row[k], currency)}`),
    ),
  ];
}
