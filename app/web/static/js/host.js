// One host: charts of every series over a chosen range, grouped by metric family, and energy.
import { ApiError, get, pool } from "./api.js";
import { Chart, toColumns } from "./charts.js";
import { el, $ } from "./dom.js";
import { ago, epoch, tags, value } from "./fmt.js";

export const RANGES = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };
export const DEFAULT_RANGE = "24h";
// Window sizes the page asks for (whole multiples of 30 s); the first giving <= MAX_POINTS wins.
const STEPS = [30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const MAX_POINTS = 400;

export function stepFor(rangeS) {
  return STEPS.find((s) => rangeS / s <= MAX_POINTS) || STEPS[STEPS.length - 1];
}

export function resolution(step) {
  for (const [unit, s] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (step % s === 0) return step / s + unit;
  }
  return step + "s";
}

const family = (metric) => metric.split(".")[0];

export class HostView {
  constructor() {
    this.host = null;
    this.range = DEFAULT_RANGE;
    this.charts = new Map(); // metric -> Chart
    this.groups = new Map(); // family -> the group's element
    this.gen = 0; // bumped on each new host or range: an older load's answer is dropped
    addEventListener("resize", () => this.charts.forEach((c) => c.resize()));
  }

  // A new host or range: drop the charts; a refresh keeps them and redraws in place.
  open(host, range) {
    range = RANGES[range] ? range : DEFAULT_RANGE;
    if (host !== this.host || range !== this.range) {
      this.charts.forEach((c) => c.destroy());
      this.charts.clear();
      this.groups.clear();
      $("#charts").replaceChildren();
      $("#energy").replaceChildren();
      this.gen++;
    }
    this.host = host;
    this.range = range;
    $("#host-title").textContent = host;
    this.rangeButtons();
  }

  rangeButtons() {
    const buttons = Object.keys(RANGES).map((r) => {
      const b = el("button", { type: "button", "aria-pressed": String(r === this.range), dataset: { range: r } }, r);
      b.addEventListener("click", () => {
        location.hash = "host=" + encodeURIComponent(this.host) + "&range=" + r;
      });
      return b;
    });
    const box = $("#ranges");
    if (box.children.length !== buttons.length) box.replaceChildren(...buttons);
    for (const b of box.children) b.setAttribute("aria-pressed", String(b.dataset.range === this.range));
  }

  async load() {
    const host = this.host;
    const gen = this.gen;
    const state = await get("hosts/" + encodeURIComponent(host)).catch((e) => {
      if (e instanceof ApiError && e.status === 404) throw new ApiError(404, "host " + host + " has never written");
      throw e;
    });
    const rangeS = RANGES[this.range];
    const step = stepFor(rangeS);
    const end = Math.ceil(Date.now() / 1000 / step) * step;
    const start = end - rangeS;
    const q = { host, start: String(start), end: String(end), resolution: resolution(step) };
    const metrics = [...new Set(state.series.map((s) => s.metric))].sort();
    const hasPower = state.series.some((s) => s.unit === "W");
    const [answers, energy] = await Promise.all([
      pool(metrics, 6, (metric) => get("series", { ...q, metric })),
      hasPower ? get("energy", q) : Promise.resolve(null),
    ]);
    const failed = answers.find((a) => a.err);
    if (failed) throw failed.err;
    if (gen !== this.gen) return; // the user moved on while this was loading
    const seen = epoch(state.last_seen);
    $("#host-seen").textContent = "last seen " + ago(Date.now() / 1000 - seen) + " · " + state.series.length +
      " series · " + this.range + " at " + q.resolution + " windows";
    Object.assign($("#host").dataset, { resolution: q.resolution, start: q.start, end: q.end });
    this.draw(metrics, answers.map((a) => a.ok), start, step, rangeS / step);
    this.energy(energy);
  }

  draw(metrics, answers, start, step, n) {
    for (const [metric, chart] of this.charts) {
      if (!metrics.includes(metric)) {
        chart.destroy();
        this.charts.delete(metric);
      }
    }
    metrics.forEach((metric, i) => {
      let chart = this.charts.get(metric);
      if (!chart) {
        chart = new Chart(metric);
        this.charts.set(metric, chart);
        this.group(family(metric)).append(chart.node);
      }
      chart.update(toColumns(answers[i], start, step, n));
    });
  }

  group(name) {
    let g = this.groups.get(name);
    if (!g) {
      g = el("section", { class: "family", dataset: { family: name } }, el("h2", {}, name), el("div", { class: "grid" }));
      this.groups.set(name, g);
      const box = $("#charts");
      const after = [...box.children].find((c) => c.dataset.family > name);
      box.insertBefore(g, after || null);
    }
    return g.lastChild;
  }

  energy(answer) {
    const box = $("#energy");
    if (!answer) {
      box.replaceChildren();
      return;
    }
    const rows = answer.series.map((s) =>
      el("tr", {}, el("th", { scope: "row" }, s.metric + (Object.keys(s.tags).length ? " " + tags(s.tags) : "")),
        el("td", {}, value(s.energy_wh, "Wh"))));
    box.replaceChildren(
      el("h2", {}, "Energy over " + this.range),
      el("p", { class: "total" }, el("strong", { dataset: { wh: String(answer.total_wh) } }, value(answer.total_wh, "Wh")), " in total"),
      el("table", {}, el("tbody", {}, ...rows)),
    );
  }
}
