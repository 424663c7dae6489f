// Numbers for people: units scaled, times relative, tags as one line.
const BYTES = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

function scaled(v, base, names) {
  let i = 0;
  while (Math.abs(v) >= base && i < names.length - 1) {
    v /= base;
    i++;
  }
  return num(v) + " " + names[i];
}

export function num(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 0.01)) return v.toExponential(2);
  return v.toLocaleString("en", { maximumFractionDigits: a >= 100 ? 0 : a >= 10 ? 1 : 2 });
}

// A value with its unit: percent as %, bytes in KiB/MiB/GiB, the rest as sent.
export function value(v, unit) {
  if (v == null || !Number.isFinite(v)) return "–";
  if (unit === "percent") return num(v) + " %";
  if (unit === "B") return scaled(v, 1024, BYTES);
  if (unit === "B/s") return scaled(v, 1024, BYTES.map((b) => b + "/s"));
  if (unit === "W") return scaled(v, 1000, ["W", "kW", "MW"]);
  if (unit === "Wh") return scaled(v, 1000, ["Wh", "kWh", "MWh", "GWh"]);
  return unit ? num(v) + " " + unit : num(v);
}

export function ago(seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " d ago";
}

export const epoch = (rfc3339) => Date.parse(rfc3339) / 1000;

export function tags(t) {
  const keys = Object.keys(t || {}).sort();
  return keys.map((k) => k + "=" + t[k]).join(", ");
}
