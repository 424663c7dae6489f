// The page: sign-in, the fleet or one host (from the address's #fragment), refreshed in place.
import { ApiError, takeTokenFromHash, token } from "./api.js";
import { el, $, show } from "./dom.js";
import { Fleet } from "./fleet.js";
import { HostView } from "./host.js";

// Seconds between refreshes: 30, or ?refresh=N (1..3600) for a test or a wall screen.
const asked = Number(new URLSearchParams(location.search).get("refresh"));
const REFRESH_S = asked >= 1 && asked <= 3600 ? asked : 30;

const fleet = new Fleet();
const hostView = new HostView();
let view = null;
let busy = false;
let loads = 0;

function problem(text) {
  const p = $("#problem");
  p.textContent = text || "";
  p.hidden = !text;
}

function authMessage(e) {
  if (e.status === 401) return "The server refused this token (401: " + e.message + "). Paste a valid reader token.";
  return "This token may not read the fleet (403: " + e.message + "). Paste a reader token.";
}

function signIn(message) {
  token.clear();
  view = null;
  for (const id of ["fleet", "host"]) show(id, false);
  show("signin", true);
  show("signout", false);
  $("#crumbs").replaceChildren();
  problem(message);
  $("#token").focus();
}

async function load() {
  if (!view || busy) return;
  busy = true;
  try {
    await view.load();
    loads++;
    document.body.dataset.loads = String(loads);
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    problem("");
  } catch (e) {
    if (e instanceof ApiError && e.auth) signIn(authMessage(e));
    else problem("Could not load: " + (e instanceof ApiError ? e.status + " " : "") + e.message);
  } finally {
    busy = false;
  }
}

function route() {
  takeTokenFromHash();
  if (!token.get()) return signIn("");
  const params = new URLSearchParams(location.hash.slice(1));
  const host = params.get("host");
  show("signin", false);
  show("signout", true);
  show("fleet", !host);
  show("host", !!host);
  const crumbs = [el("a", { href: "#" }, "Fleet")];
  if (host) {
    hostView.open(host, params.get("range"));
    crumbs.push(" / ", el("span", { "aria-current": "page" }, host));
    view = hostView;
  } else {
    view = fleet;
  }
  $("#crumbs").replaceChildren(...crumbs);
  busy = false;
  load();
}

$("#signin").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const typed = $("#token").value.trim();
  $("#token").value = "";
  if (typed) token.set(typed);
  route();
});
$("#signout").addEventListener("click", () => signIn("Signed out."));
addEventListener("hashchange", route);
// A hidden tab asks nothing; it catches up as soon as it is shown again.
setInterval(() => document.hidden || load(), REFRESH_S * 1000);
document.addEventListener("visibilitychange", () => document.hidden || load());
document.body.dataset.refresh = String(REFRESH_S);
route();
