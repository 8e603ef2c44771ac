import { GatewayError } from "../errors.ts";
import type { Change } from "./live-config.ts";
import { isObject, type Json } from "./merge-patch.ts";
import { hasMaskedPassword, MASK, maskProxyUrl, withPasswordOf } from "./proxy-url.ts";
import type { Config } from "./schema.ts";

/**
 * The upstream proxy's password is the one secret in the configuration
 * document: GET /api/config and the log show it as ***, and a PATCH that
 * sends the masked URL back (an admin editing what GET showed) keeps the
 * stored password. To change the password, send the URL with the new one.
 */

const URL_PATH = "upstreamProxy.url";

/** The document as the admin API shows it: the proxy password masked. */
export function maskedConfig(config: Config): Config {
  const url = config.upstreamProxy.url;
  if (url === undefined) return config;
  return { ...config, upstreamProxy: { ...config.upstreamProxy, url: maskProxyUrl(url) } };
}

/** Changes as the log and the PATCH answer show them. */
export function maskedChanges(changes: Change[]): Change[] {
  const mask = (v: unknown) => (typeof v === "string" ? maskProxyUrl(v) : v);
  return changes.map((c) => (c.path === URL_PATH ? { ...c, old: mask(c.old), new: mask(c.new) } : c));
}

/**
 * A patch whose upstreamProxy.url has *** for its password gets the stored
 * one back, if the stored URL has the same user, host and port; otherwise
 * it is refused (*** would otherwise become the password).
 */
export function restoreMaskedPassword(patch: Json, current: Config): Json {
  if (!isObject(patch) || !isObject(patch.upstreamProxy)) return patch;
  const url = patch.upstreamProxy.url;
  if (typeof url !== "string" || !hasMaskedPassword(url.trim())) return patch;
  const stored = current.upstreamProxy.url;
  const sameProxy = stored !== undefined && maskProxyUrl(stored) === url.trim().replace(/\/$/, "");
  if (!sameProxy) {
    const message =
      `${URL_PATH} has ${MASK} as its password, which stands for the stored password of the same ` +
      "user@host:port only; send the real password";
    throw new GatewayError(400, "invalid_config", `invalid configuration; nothing was changed`, {
      details: [{ path: URL_PATH, value: url, rule: "masked_password", message }],
    });
  }
  return { ...patch, upstreamProxy: { ...patch.upstreamProxy, url: withPasswordOf(url.trim(), stored) } };
}
