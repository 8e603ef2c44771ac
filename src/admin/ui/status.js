/**
 * The status page: sign in with the admin token, then the figures,
 * refreshed every few seconds while the tab is visible.
 */
import { loadStatus, Refused, token } from "./api.js";
import { createSavingsChart } from "./chart.js";
import {
  clearAll,
  renderBandwidth,
  renderCards,
  renderDisks,
  renderDownloads,
  renderObjects,
  renderUpdated,
} from "./render.js";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
const chart = createSavingsChart($("chart"));
let timer;
let refreshing = false;

function show(message, id) {
  const el = $(id);
  el.textContent = message ?? "";
  el.hidden = !message;
}

function signedOut(message) {
  clearTimeout(timer);
  timer = undefined;
  token.clear();
  clearAll();
  chart.clear();
  $("status").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  show(message, "signin-error");
  $("token").focus();
}

function render({ stats, downloads, objects }) {
  const now = Date.now();
  renderCards(stats);
  renderDisks(stats);
  chart.update(stats.bandwidth, now);
  renderBandwidth(stats.bandwidth);
  renderDownloads(downloads, now);
  renderObjects(objects);
  renderUpdated(new Date(now));
}

/** One refresh; the next is scheduled when this one is done, so they never pile up on a slow gateway. */
async function refresh() {
  clearTimeout(timer);
  timer = undefined;
  const bearer = token.get();
  if (!bearer) return signedOut();
  if (refreshing) return;
  refreshing = true;
  try {
    const status = await loadStatus(bearer);
    if (token.get() !== bearer) return; // signed out (or in again) meanwhile: these figures are not to be shown
    render(status);
    show(undefined, "refresh-error");
  } catch (err) {
    if (err instanceof Refused) return signedOut(`Signed out: ${err.message}.`);
    // The gateway restarting, or the tunnel down: keep the last figures, say so, and try again.
    show(`Cannot refresh (${err.message}); the figures below are from the last refresh. Retrying.`, "refresh-error");
  } finally {
    refreshing = false;
  }
  if (token.get() && !document.hidden) timer = setTimeout(refresh, REFRESH_MS);
}

async function signIn(event) {
  event.preventDefault();
  const candidate = $("token").value.trim();
  if (!candidate) return show("Enter the admin token.", "signin-error");
  try {
    const status = await loadStatus(candidate);
    token.set(candidate);
    $("token").value = "";
    show(undefined, "signin-error");
    $("signin").hidden = true;
    $("status").hidden = false;
    $("signout").hidden = false;
    render(status);
    timer = setTimeout(refresh, REFRESH_MS);
  } catch (err) {
    const why = err instanceof Refused ? `That token was refused: ${err.message}.` : `Cannot sign in: ${err.message}.`;
    show(why, "signin-error");
  }
}

$("signin").addEventListener("submit", signIn);
$("signout").addEventListener("click", () => signedOut("Signed out."));
// A hidden tab stops refreshing; it catches up as soon as it is shown again.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && token.get() && timer === undefined) void refresh();
});

if (token.get()) {
  $("status").hidden = false;
  $("signout").hidden = false;
  void refresh();
} else signedOut();
