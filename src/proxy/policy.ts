import { domainMatches } from "../config/domain-name.ts";
import type { Config } from "../config/schema.ts";

/**
 * Connection security: which hosts agents may reach through the gateway.
 * `platform` hosts are cached (in Cache Mode); `allowed` hosts pass through
 * uncached; in Patch Mode every other host is a `patch` source, cached on
 * the patch disk; otherwise it is refused.
 */
export type Reach = "platform" | "allowed" | "patch" | "denied";

export function reachOf(host: string, config: Config): Reach {
  const name = host.replace(/^\[|\]$/g, "");
  if (domainMatches(name, config.platformDomains)) return "platform";
  if (config.allowedDomains.enabled && domainMatches(name, config.allowedDomains.domains)) return "allowed";
  return config.patchMode.enabled ? "patch" : "denied";
}

/** The 403 body: what was refused and which setting would allow it. */
export function deniedMessage(host: string, config: Config): string {
  return (
    `${host} is not a domain this gateway may reach. ` +
    `Reachable: the platform domains (${config.platformDomains.join(", ")}, set by CACHEGATE_PLATFORM_DOMAINS or platformDomains)` +
    (config.allowedDomains.enabled
      ? ` and the Allowed Domains (${config.allowedDomains.domains.join(", ") || "none yet"})`
      : "") +
    `. To allow it, add its bare domain to allowedDomains.domains and set allowedDomains.enabled to true with PATCH /api/config on the admin port.`
  );
}
