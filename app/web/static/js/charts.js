// One uPlot chart per metric: each tag set a line with its legend entry, values on hover.
import { el } from "./dom.js";
import { epoch, tags, value } from "./fmt.js";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
  "#17becf", "#7f7f7f", "#bcbd22"];
const HEIGHT = 180;

// The API's answer on the full grid of windows (start, end] at `step`: a gap stays a gap.
export function toColumns(answer, start, step, n) {
  const x = Array.from({ length: n }, (_, i) => start + step * (i + 1));
  const lines = answer.series.map((s) => {
    const y = new Array(n).fill(null);
    for (const p of s.points) {
      const i = Math.round((epoch(p.time) - start) / step) - 1;
      if (i >= 0 && i < n) y[i] = p.mean;
    }
    return { label: tags(s.tags) || answer.metric, unit: s.unit, y, count: s.points.length };
  });
  return { x, lines };
}

// A window with gaps on both sides draws no line: uPlot marks just those with a dot (a fresh
// install's first window, the first window after an outage).
function isolatedIn(y) {
  const out = [];
  for (let i = 0; i < y.length; i++) {
    if (y[i] != null && y[i - 1] == null && y[i + 1] == null) out.push(i);
  }
  return out;
}

const isolated = (u, sidx) => isolatedIn(u.data[sidx]);

export class Chart {
  constructor(metric) {
    this.metric = metric;
    this.plot = null;
    this.key = null;
    this.box = el("div", { class: "plot" });
    this.note = el("p", { class: "muted note" });
    this.caption = el("figcaption", {}, metric);
    this.node = el("figure", { class: "chart", dataset: { metric } }, this.caption, this.box, this.note);
  }

  options(cols) {
    const unit = cols.lines.length ? cols.lines[0].unit : "";
    const fmt = (u, v) => value(v, unit);
    return {
      width: Math.max(200, this.box.clientWidth || 600),
      height: HEIGHT,
      scales: { x: { time: true } },
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
      series: [
        {},
        ...cols.lines.map((l, i) => ({
          label: l.label,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          value: fmt,
          spanGaps: false,
          points: { show: true, size: 6, filter: isolated },
        })),
      ],
      axes: [{}, { size: 80, values: (u, splits) => splits.map((v) => value(v, unit)) }],
    };
  }

  // New columns: the same lines are redrawn in place; other lines rebuild the chart.
  update(cols) {
    const unit = cols.lines.length ? cols.lines[0].unit : "";
    this.caption.textContent = this.metric + (unit ? " (" + unit + ")" : "");
    const key = cols.lines.map((l) => l.label).join("\u0000") + "\u0000" + unit;
    const data = [cols.x, ...cols.lines.map((l) => l.y)];
    if (this.plot && key === this.key) {
      this.plot.setData(data);
    } else {
      if (this.plot) this.plot.destroy();
      this.key = key;
      this.plot = new window.uPlot(this.options(cols), data, this.box);
    }
    const points = cols.lines.reduce((a, l) => a + l.y.filter((v) => v !== null).length, 0);
    Object.assign(this.node.dataset, {
      points: String(points),
      isolated: String(cols.lines.reduce((a, l) => a + isolatedIn(l.y).length, 0)),
      windows: String(cols.x.length),
      lines: String(cols.lines.length),
    });
    this.note.textContent = points ? "" : "No data in this range.";
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(200, this.box.clientWidth), height: HEIGHT });
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    this.node.remove();
  }
}
