/**
 * Puts the figures on the page. Text goes in with textContent only: URLs
 * are chosen by agents and must never become markup. A table is rebuilt
 * only when what it shows changed, in one replaceChildren (no flicker, and
 * a selection in an unchanged table survives the refresh).
 */
import { bytes, count, duration, percent } from "./format.js";

const $ = (id) => document.getElementById(id);
const shown = new WeakMap(); // tbody → what it shows, as JSON

function cell(text, { className, title, value } = {}) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  if (title) td.title = title;
  if (value !== undefined) td.dataset.value = String(value); // the exact figure, for scripts and tests
  return td;
}

const bytesCell = (n) => cell(bytes(n), { className: "num", title: `${count(n)} bytes`, value: n });

function fill(tableId, items, toCells, emptyText, columns) {
  const tbody = $(tableId).tBodies[0];
  const key = JSON.stringify(items);
  if (shown.get(tbody) === key) return;
  shown.set(tbody, key);
  if (items.length === 0) {
    const td = cell(emptyText, { className: "empty" });
    td.colSpan = columns;
    const tr = document.createElement("tr");
    tr.append(td);
    return tbody.replaceChildren(tr);
  }
  tbody.replaceChildren(
    ...items.map((item) => {
      const tr = document.createElement("tr");
      tr.append(...toCells(item));
      return tr;
    }),
  );
}

function text(id, value) {
  const el = $(id);
  if (el.textContent !== value) el.textContent = value;
}

function progress(id, fraction) {
  $(id).value = Math.min(1, Math.max(0, fraction));
}

export function renderCards(stats) {
  text("hits", count(stats.hits));
  text("misses", count(stats.misses));
  text("coalesced", count(stats.coalesced));
  text("agents-active", count(stats.agents.active));
  text("saved-total", bytes(stats.bandwidthSaved));
}

const diskLine = (d) =>
  d.problem ??
  `Disk: ${percent(1 - d.freeBytes / d.totalBytes)} used, ${bytes(d.freeBytes)} free of ${bytes(d.totalBytes)}`;

export function renderDisks(stats) {
  const { cache, patchDisk } = stats;
  const share = cache.maxBytes > 0 ? cache.bytes / cache.maxBytes : 0;
  progress("cache-progress", share);
  text("cache-use", `${bytes(cache.bytes)} cached of ${bytes(cache.maxBytes)} allowed (${percent(share)})`);
  text("cache-disk", cache.disk ? diskLine(cache.disk) : "");
  if (!patchDisk.open) {
    progress("patch-progress", 0);
    text(
      "patch-use",
      patchDisk.path
        ? `Not in use (Patch Mode is off); configured: ${patchDisk.path}`
        : "Not configured (Patch Mode is off)",
    );
    text("patch-disk", "");
    return;
  }
  const used = patchDisk.totalBytes ? 1 - patchDisk.freeBytes / patchDisk.totalBytes : 0;
  progress("patch-progress", used);
  text("patch-use", `${bytes(patchDisk.cachedBytes)} of patches cached on ${patchDisk.path}`);
  text("patch-disk", diskLine(patchDisk));
}

export function renderBandwidth(rows) {
  fill(
    "bandwidth",
    rows,
    (r) => [
      cell(r.day),
      cell(r.kind),
      cell(count(r.agents), { className: "num", value: r.agents }),
      bytesCell(r.bytesWithoutCache),
      bytesCell(r.bytesWithCache),
      bytesCell(r.bytesSaved),
    ],
    "No traffic yet: rows appear once agents fetch through the gateway.",
    6,
  );
}

export function renderDownloads(downloads, now) {
  fill(
    "downloads",
    downloads.map((d) => ({ ...d, forMs: now - Date.parse(d.startedAt) })),
    (d) => {
      const bar = document.createElement("progress");
      // Without a Content-Length the size is unknown: an indeterminate bar (no value).
      if (d.expectedBytes !== null) {
        bar.max = Math.max(1, d.expectedBytes);
        bar.value = d.receivedBytes;
      }
      const where = d.worker === undefined ? d.cache : `${d.cache}, worker ${d.worker}`;
      const received =
        d.state === "asking"
          ? "asking upstream"
          : d.expectedBytes === null
            ? bytes(d.receivedBytes)
            : `${bytes(d.receivedBytes)} of ${bytes(d.expectedBytes)} (${percent(d.receivedBytes / Math.max(1, d.expectedBytes))})`;
      const td = document.createElement("td");
      td.append(bar);
      return [
        cell(d.url, { className: "url" }),
        cell(where),
        td,
        cell(received, { className: "num", value: d.receivedBytes }),
        cell(duration(d.forMs), { className: "num" }),
      ];
    },
    "No download in progress.",
    5,
  );
}

export function renderObjects(objects) {
  fill(
    "objects",
    objects,
    (o) => [
      cell(o.url, { className: "url", title: `last served from the cache ${o.lastServed}` }),
      cell(count(o.responses), { className: "num", value: o.responses }),
      o.size === null ? cell("evicted", { className: "num" }) : bytesCell(o.size),
      bytesCell(o.bytesSaved),
    ],
    "Nothing served from the cache yet.",
    4,
  );
}

export function renderUpdated(at) {
  text("updated", `Updated ${at.toLocaleTimeString()}`);
}

/** Signed out: nothing of what was shown stays on the page. */
export function clearAll() {
  for (const id of ["bandwidth", "downloads", "objects"]) {
    const tbody = $(id).tBodies[0];
    shown.delete(tbody);
    tbody.replaceChildren();
  }
  for (const id of ["hits", "misses", "coalesced", "agents-active", "saved-total"]) text(id, "–");
  for (const id of ["cache-use", "cache-disk", "patch-use", "patch-disk", "updated"]) text(id, "");
}
