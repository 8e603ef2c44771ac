import type { Config } from "../config/schema.ts";

/** What a PAC file needs to know: where the gateway is, as the agent reached it, and what to send through it. */
export interface PacTarget {
  /** The gateway's host as the agent named it (a name, an IPv4 address or a bracketed IPv6 address). */
  host: string;
  port: number;
  /** The agent port speaks TLS: `HTTPS host:port` (Chromium, Firefox) instead of `PROXY host:port`. */
  tls: boolean;
}

/** The domains a PAC file sends through the gateway: the ones the gateway lets agents reach. */
export function pacDomains(config: Config): { domains: string[]; everything: boolean } {
  const allowed = config.allowedDomains.enabled ? config.allowedDomains.domains : [];
  return { domains: [...new Set([...config.platformDomains, ...allowed])], everything: config.patchMode.enabled };
}

/**
 * A proxy auto-config file (the Netscape PAC format Windows' WinHTTP, browsers
 * and most agents read): the platform domains and the Allowed Domains, each
 * with its subdomains, through the gateway (the only hosts it lets agents
 * reach, so sending anything else would only earn a 403); in Patch Mode,
 * whose patch sources are any vendor site, every other host too but plain
 * names (intranet hosts). The gateway itself and the rest go DIRECT. No DIRECT
 * fallback after the gateway: where agents must pass the gateway, falling
 * back would hide that it is down. Written in ES3 (var, no arrow functions),
 * as the oldest PAC runtimes (WinHTTP's JScript) parse nothing newer.
 */
export function pacFile(target: PacTarget, config: Config, version: string): string {
  const { domains, everything } = pacDomains(config);
  const proxy = `${target.tls ? "HTTPS" : "PROXY"} ${target.host}:${target.port}`;
  const gatewayHost = target.host.replace(/^\[|\]$/g, "").toLowerCase();
  return `// cachegate ${version}: ${everything ? "Patch Mode is on: every host" : "the platform and allowed domains"} through the gateway, the rest DIRECT.
function FindProxyForURL(url, host) {
  var gateway = ${JSON.stringify(proxy)};
  var everything = ${everything};
  var domains = ${JSON.stringify(domains)};
  host = host.toLowerCase();
  if (host === ${JSON.stringify(gatewayHost)}) return "DIRECT";
  for (var i = 0; i < domains.length; i++) {
    if (host === domains[i] || dnsDomainIs(host, "." + domains[i])) return gateway;
  }
  if (everything && !isPlainHostName(host)) return gateway;
  return "DIRECT";
}
`;
}
