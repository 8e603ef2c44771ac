import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import * as tls from "node:tls";
import { domainMatches } from "../config/domain-name.ts";
import { parseProxyUrl } from "../config/proxy-url.ts";
import type { Config } from "../config/schema.ts";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { authorityOf, type ProxyHop } from "./proxy-hop.ts";

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Reads the certificates of `file` (a parent gateway's CA), each one parsed
 * so a wrong file is refused when it is set, not at the first HTTPS fetch.
 */
export async function loadCaFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const why = (err as { code?: string }).code ?? (err as Error).message;
    throw caFileError(file, `cannot read it (${why})`, err);
  }
  const pems = text.match(PEM_CERT) ?? [];
  if (pems.length === 0) throw caFileError(file, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  for (const [i, pem] of pems.entries()) {
    try {
      new X509Certificate(pem);
    } catch (err) {
      throw caFileError(file, `certificate ${i + 1} does not parse (${(err as Error).message})`, err);
    }
  }
  return pems;
}

function caFileError(file: string, why: string, cause?: unknown): GatewayError {
  const message = `upstreamProxy.caFile ${file} ${why}; give a PEM file with the parent gateway's CA (its GET /api/ca.pem)`;
  return new GatewayError(400, "invalid_config", "invalid configuration; nothing was changed", {
    cause,
    details: [{ path: "upstreamProxy.caFile", value: file, rule: "ca_file", message }],
  });
}

/**
 * Where upstream fetches go under the live `upstreamProxy` setting: the
 * proxy hop for a host, or undefined for a direct fetch (no proxy, or the
 * host is in `bypass`). The CA file is read when the setting changes (an
 * applier, so a bad file refuses the change) and at start.
 */
export async function createUpstreamProxy(config: () => Config, log: Logger) {
  // The trust for origins behind the proxy, per CA file: the default store (system + NODE_EXTRA_CA_CERTS) plus the
  // file's CAs. The previous setting's stays until the next change, in case a later applier refuses this one.
  let trust = new Map<string, tls.SecureContext>();
  let generation = 0;
  let cached: { url: string; caFile: string | undefined; hop: ProxyHop } | undefined;

  async function load(next: Config, prev?: Config): Promise<void> {
    const file = next.upstreamProxy.caFile;
    const loaded = new Map<string, tls.SecureContext>();
    const kept = prev?.upstreamProxy.caFile;
    if (kept !== undefined && kept !== file && trust.has(kept)) loaded.set(kept, trust.get(kept)!);
    if (file !== undefined) {
      const ca = [...tls.getCACertificates("default"), ...(await loadCaFile(file))];
      loaded.set(file, tls.createSecureContext({ ca }));
    }
    trust = loaded;
    generation++;
    cached = undefined;
  }
  await load(config());

  function hop(url: string, c: Config): ProxyHop | undefined {
    const caFile = c.upstreamProxy.caFile;
    if (cached?.url === url && cached.caFile === caFile) return cached.hop;
    const parsed = parseProxyUrl(url);
    if (!parsed.ok) return undefined; // the schema refused it already
    const p = parsed.value;
    const credentials = p.username === undefined ? undefined : `${p.username}:${p.password ?? ""}`;
    const label = authorityOf(p.host, p.port);
    const secureContext = caFile === undefined ? undefined : trust.get(caFile);
    const result: ProxyHop = {
      host: p.host,
      port: p.port,
      label,
      ...(credentials ? { authorization: `Basic ${Buffer.from(credentials, "utf8").toString("base64")}` } : {}),
      ...(secureContext ? { secureContext } : {}),
      key: `${label}#${generation}`,
    };
    cached = { url, caFile, hop: result };
    return result;
  }

  return {
    /**
     * The proxy a request to `host` goes through, or undefined for a direct connection. `host` is a name or an IP
     * literal without brackets, as both callers (proxy/upstream.ts, proxy/tunnel.ts) have it already.
     */
    hopFor(host: string): ProxyHop | undefined {
      const c = config();
      const url = c.upstreamProxy.url;
      if (url === undefined || domainMatches(host, c.upstreamProxy.bypass)) return undefined;
      return hop(url, c);
    },
    /**
     * Applier: a new proxy setting takes effect for the next request; kept connections of the old one are unused.
     * Any change of the section reads the CA file again (so does setting it to null and back).
     */
    async apply(next: Config, prev: Config): Promise<void> {
      if (JSON.stringify(next.upstreamProxy) === JSON.stringify(prev.upstreamProxy)) return;
      await load(next, prev);
      const url = next.upstreamProxy.url;
      const parsed = url === undefined ? undefined : parseProxyUrl(url);
      log.info("upstream proxy set", {
        proxy: parsed?.ok ? authorityOf(parsed.value.host, parsed.value.port) : "none (direct)",
        bypass: next.upstreamProxy.bypass,
        caFile: next.upstreamProxy.caFile ?? null,
      });
    },
  };
}

export type UpstreamProxy = Awaited<ReturnType<typeof createUpstreamProxy>>;
