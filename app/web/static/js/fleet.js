// The fleet: every host, when it was last seen (silent for over 2 minutes: marked), a few figures.
import { get, pool } from "./api.js";
import { el, $ } from "./dom.js";
import { ago, epoch, value } from "./fmt.js";

export const SILENT_S = 120;
const COLUMNS = ["host", "seen", "cpu", "mem", "disk", "gpu", "power", "series"];

const pick = (state, metric, test = () => true) =>
  state.series.filter((s) => s.metric === metric && test(s.tags || {}));

// The few current figures of one host, from GET /api/v1/hosts/H ("–" where it has none).
export function figures(state) {
  if (!state) return {};
  const cpu = pick(state, "cpu.percent", (t) => t.cpu === "total")[0];
  const mem = pick(state, "mem.percent")[0];
  const disks = pick(state, "disk.percent").sort((a, b) => b.value - a.value);
  const gpus = pick(state, "gpu.utilization.percent");
  const watts = state.series.filter((s) => s.unit === "W");
  const out = {
    cpu: cpu && value(cpu.value, "percent"),
    mem: mem && value(mem.value, "percent"),
    disk: disks.length ? value(disks[0].value, "percent") + " " + (disks[0].tags.mount || "") : null,
    gpu: gpus.length
      ? value(gpus.reduce((a, s) => a + s.value, 0) / gpus.length, "percent") + (gpus.length > 1 ? " ×" + gpus.length : "")
      : null,
    power: watts.length ? value(watts.reduce((a, s) => a + s.value, 0), "W") : null,
  };
  for (const k of Object.keys(out)) out[k] = out[k] ? out[k].trim() : "–";
  return out;
}

function newRow(host) {
  const cells = Object.fromEntries(COLUMNS.map((c) => [c, el("td", { dataset: { col: c } })]));
  cells.host = el("th", { scope: "row", dataset: { col: "host" } },
    el("a", { href: "#host=" + encodeURIComponent(host) }, host));
  return { tr: el("tr", { dataset: { host } }, ...COLUMNS.map((c) => cells[c])), cells };
}

function fill(row, h, figs, now) {
  const silentFor = now - epoch(h.last_seen);
  const silent = silentFor > SILENT_S;
  row.tr.classList.toggle("silent", silent);
  row.tr.dataset.silent = String(silent);
  const when = el("time", { dateTime: h.last_seen, title: h.last_seen }, ago(silentFor));
  const badge = el("span", { class: "badge", title: "no data for over 2 minutes" }, "silent");
  row.cells.seen.replaceChildren(...(silent ? [when, " ", badge] : [when]));
  for (const c of ["cpu", "mem", "disk", "gpu", "power"]) row.cells[c].textContent = figs[c] || "–";
  row.cells.series.textContent = String(h.series);
}

export class Fleet {
  constructor() {
    this.rows = new Map(); // host -> {tr, cells}: updated in place, so keyboard focus survives
  }

  async load() {
    const hosts = (await get("hosts")).sort((a, b) => (a.host < b.host ? -1 : 1));
    const states = await pool(hosts, 6, (h) => get("hosts/" + encodeURIComponent(h.host)));
    const auth = states.find((s) => s.err && s.err.auth);
    if (auth) throw auth.err;
    const now = Date.now() / 1000;
    const body = $("#hosts tbody");
    const names = hosts.map((h) => h.host);
    if (names.join("\n") !== [...this.rows.keys()].join("\n")) {
      const old = this.rows;
      this.rows = new Map(names.map((n) => [n, old.get(n) || newRow(n)]));
      body.replaceChildren(...[...this.rows.values()].map((r) => r.tr));
    }
    hosts.forEach((h, i) => fill(this.rows.get(h.host), h, figures(states[i].ok), now));
    $("#fleet-empty").hidden = hosts.length > 0;
    document.body.dataset.hosts = String(hosts.length);
  }
}
