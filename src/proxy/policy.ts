import type { CachePipeline } from "../cache/pipeline.ts";
import { domainMatches } from "../config/domain-name.ts";
import type { Config } from "../config/schema.ts";
import { GatewayError } from "../errors.ts";

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

/** The platform cache (data dir) and, while Patch Mode is on, the patch cache (patch disk). */
export interface Pipelines {
  platform: CachePipeline;
  patch: () => CachePipeline | undefined;
}

/**
 * The cache a reachable host's requests go through: platform hosts in
 * Cache Mode, Patch Mode sources on the patch disk; none for the rest
 * (passed through uncached).
 */
export function cacheFor(reach: Reach, config: Config, pipelines: Pipelines): CachePipeline | undefined {
  if (reach === "platform") return config.cacheMode.enabled ? pipelines.platform : undefined;
  return reach === "patch" ? pipelines.patch() : undefined;
}

/** The 403 for a host policy refuses: what was refused and which setting would allow it. */
export function domainNotAllowed(host: string, config: Config): GatewayError {
  const allowed = config.allowedDomains.enabled
    ? ` and the Allowed Domains (${config.allowedDomains.domains.join(", ") || "none yet"})`
    : "";
  return new GatewayError(
    403,
    "domain_not_allowed",
    `${host} is not a domain this gateway may reach. ` +
      `Reachable: the platform domains (${config.platformDomains.join(", ")}, ` +
      `set by CACHEGATE_PLATFORM_DOMAINS or platformDomains)${allowed}. ` +
      "To allow it, add its bare domain to allowedDomains.domains and set allowedDomains.enabled to true " +
      "with PATCH /api/config on the admin port.",
  );
}
