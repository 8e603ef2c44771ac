/**
 * The admin API as the page uses it. The token lives in sessionStorage
 * (gone when the tab closes) and travels only in the Authorization header,
 * never in a URL, where it would end up in history and logs.
 */

const KEY = "cachegate.adminToken";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/** The gateway refused the token (401, or 403 for a token that may not read these routes). */
export class Refused extends Error {}

export async function getJson(path, bearer = token.get()) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${bearer}` }, cache: "no-store" });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401 || res.status === 403) throw new Refused(body.error ?? `the gateway answered ${res.status}`);
  if (!res.ok) throw new Error(body.error ?? `${path} answered ${res.status}`);
  return body;
}

/** Everything the page shows, in one go: the figures of one moment. */
export async function loadStatus(bearer) {
  const [stats, downloads, top] = await Promise.all([
    getJson("/api/stats", bearer),
    getJson("/api/downloads", bearer),
    getJson("/api/stats/top-objects?limit=10", bearer),
  ]);
  return { stats, downloads: downloads.downloads, objects: top.objects };
}
