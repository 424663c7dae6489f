// Calls to the API with the reader token the user typed once (kept in session storage).
const KEY = "fleetpulse.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  get auth() {
    return this.status === 401 || this.status === 403;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

// `/#token=T` signs in directly: store it, then remove it from the address bar and history.
export function takeTokenFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const t = params.get("token");
  if (t === null) return;
  params.delete("token");
  if (t.trim()) token.set(t.trim());
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// GET /api/v1/PATH?params as JSON; an ApiError carries the status and the server's message.
export async function get(path, params = {}) {
  const url = "/api/v1/" + path + (Object.keys(params).length ? "?" + new URLSearchParams(params) : "");
  for (let attempt = 0; ; attempt++) {
    const resp = await fetch(url, { headers: { Authorization: "Bearer " + (token.get() || "") } });
    if (resp.status === 429 && attempt < 3) {
      // a big fleet's refresh can outrun the token's rate limit: wait as told, then ask again
      await sleep(1000 * Math.min(5, Number(resp.headers.get("Retry-After")) || 1));
      continue;
    }
    const body = await resp.json().catch(() => null);
    if (resp.ok) return body;
    throw new ApiError(resp.status, (body && body.error) || resp.statusText || "request failed");
  }
}

// Run `fn` over `items` with at most `limit` calls in flight; results in the items' order.
export async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]).then((v) => ({ ok: v }), (e) => ({ err: e }));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
