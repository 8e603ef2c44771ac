import { isIP } from "node:net";
import * as v from "valibot";
import { parseCidr } from "../net/ip.ts";
import { ClusterSection } from "./cluster.ts";
import { DomainList } from "./domain-name.ts";
import { ProxyUrl } from "./proxy-url.ts";
import { section } from "./section.ts";
import { patternProblem } from "./url-pattern.ts";

/**
 * The one configuration document. Defaults live here, types are inferred
 * from here, and the admin API validates patches against this same schema.
 */

/** Ports the seed appliance reserves for itself (see ../shared/seed). */
export const RESERVED_PORTS: ReadonlySet<number> = new Set([
  22, 23, 2379, 2380, 4001, 5514, 7001, 48081, 48082, 48083, 48084, 48085, 48086,
]);

export const Port = v.pipe(
  v.number("must be a whole number between 1 and 65535, e.g. 8080"),
  v.integer("must be a whole number between 1 and 65535, e.g. 8080"),
  v.minValue(1, "must be between 1 and 65535, e.g. 8080"),
  v.maxValue(65535, "must be between 1 and 65535, e.g. 8080"),
  v.check(
    (p) => !RESERVED_PORTS.has(p),
    "is reserved (22, 23, 2379, 2380, 4001, 5514, 7001 and 48081-48086 are not allowed); " +
      "choose another port, e.g. 8080",
  ),
);

const Seconds = v.pipe(
  v.number("must be a number of seconds"),
  v.integer("must be a whole number of seconds"),
  v.minValue(0, "must not be negative"),
);

const Pattern = v.pipe(
  v.string("must be a regular expression matched against the full URL"),
  v.nonEmpty('must not be empty; use "." to match every URL'),
  v.rawCheck(({ dataset, addIssue }) => {
    const problem = dataset.typed ? patternProblem(dataset.value) : null;
    if (problem) addIssue({ message: problem });
  }),
);

const FilePath = v.pipe(
  v.string("must be an absolute file path"),
  v.check((p) => p.startsWith("/") && !p.includes("\0"), "must be an absolute file path, e.g. /etc/cachegate/ca.pem"),
);

const ServerName = v.pipe(
  v.string("must be a host name or IP address"),
  v.check(
    (n) => isIP(n) !== 0 || /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(n),
    "must be a host name (gateway.example.com) or an IP address",
  ),
);

const CidrNetwork = v.pipe(
  v.string("must be a network in CIDR form, e.g. 10.20.0.0/16"),
  v.check((c) => {
    try {
      parseCidr(c);
      return true;
    } catch {
      return false;
    }
  }, "must be a network in CIDR form, e.g. 10.20.0.0/16 or fd00::/8"),
);

const PatchDiskPath = v.pipe(
  v.string("must be the mount path of the patch disk, e.g. /mnt/patch (only one patch disk is supported)"),
  v.check(
    (p) => !/[,;]/.test(p) && !/\s\//.test(p),
    "names more than one path; only one patch disk is supported, give a single mount path",
  ),
  v.check((p) => p.startsWith("/"), "must be an absolute path, e.g. /mnt/patch"),
);

/**
 * Freshness for responses that carry no caching headers of their own,
 * modelled on Squid's refresh_pattern: the first rule whose pattern matches
 * the URL applies. With a Last-Modified date the lifetime is lmFactor × the
 * document's age, clamped to [min, max]; without one it is `min`.
 */
export const TtlRule = v.pipe(
  v.strictObject({
    pattern: Pattern,
    min: Seconds,
    lmFactor: v.pipe(v.number(), v.minValue(0), v.maxValue(10)),
    max: Seconds,
    /**
     * Seconds past freshness during which a stale entry of a matching URL is served at once while one
     * revalidation runs in the background (nginx's proxy_cache_background_update), for origins that send no
     * stale-while-revalidate of their own. A response's must-revalidate or no-cache still forbids it.
     */
    staleWhileRevalidate: v.optional(Seconds),
  }),
  v.check((r) => r.min <= r.max, "min must not be greater than max"),
);

export const DEFAULT_TTL_RULES: v.InferOutput<typeof TtlRule>[] = [
  // Manifests change daily; a revalidation (304) is cheap, so keep them short.
  { pattern: "(manifest|\\.(json|xml|ya?ml|txt)$)", min: 60, lmFactor: 0.1, max: 3600 },
  // Installers and patches are versioned by name and rarely change.
  {
    pattern: "\\.(exe|msi|msp|msu|cab|rpm|deb|pkg|dmg|zip|gz|tgz|xz|bz2|zst|tar|iso|bin|run|sh)$",
    min: 86400,
    lmFactor: 0.2,
    max: 2592000,
  },
  // Anything else: the RFC 9111 §4.2.2 heuristic (10% of the document's age, at most a day).
  { pattern: ".", min: 0, lmFactor: 0.1, max: 86400 },
];

/** How the bandwidth table sorts URLs into kinds of file; the first match wins, else "other". */
export const KindRule = v.strictObject({
  kind: v.pipe(v.string(), v.regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be a short lower-case name such as "manifest"')),
  pattern: Pattern,
});

export const DEFAULT_KIND_RULES: v.InferOutput<typeof KindRule>[] = [
  { kind: "manifest", pattern: "(manifest|\\.(json|xml|ya?ml)$)" },
  { kind: "patch", pattern: "(patch|\\.(msu|msp|cab|delta)$)" },
  { kind: "installer", pattern: "\\.(exe|msi|pkg|dmg|rpm|deb|zip|tar\\.gz|tgz|sh|run)$" },
];

export const DEFAULT_PLATFORM_DOMAINS = ["qualys.com", "qualys.eu", "qualys.ca", "qualys.in"];

/** How full a disk may get (a fraction) before its cache evicts, and where eviction stops. */
const HighWatermark = v.pipe(
  v.number("must be a fraction of the disk, e.g. 0.9"),
  v.minValue(0.1, "must be at least 0.1"),
  v.maxValue(0.99, "must be at most 0.99"),
);
const LowWatermark = v.pipe(
  v.number("must be a fraction of the disk, e.g. 0.8"),
  v.minValue(0.05, "must be at least 0.05"),
  v.maxValue(0.98, "must be at most 0.98"),
);

const ConfigObject = v.strictObject({
  cacheMode: v.optional(
    section({
      enabled: v.optional(v.boolean("must be true or false"), false),
      port: v.optional(Port, 8080),
    }),
    {},
  ),
  platformDomains: v.optional(DomainList, DEFAULT_PLATFORM_DOMAINS),
  /**
   * Networks of the front ends (HAProxy with `option forwardfor`, a load balancer) whose X-Forwarded-For
   * names the agent behind them (net/client-address.ts); from anyone else the header is ignored.
   */
  trustedProxies: v.optional(v.array(CidrNetwork), []),
  allowedDomains: v.optional(
    section({
      enabled: v.optional(v.boolean("must be true or false"), false),
      domains: v.optional(DomainList, []),
    }),
    {},
  ),
  tls: v.optional(
    section({
      minVersion: v.optional(
        v.picklist(["1.0", "1.1", "1.2", "1.3"], 'must be one of "1.0", "1.1", "1.2", "1.3"'),
        "1.2",
      ),
      /** Hosts whose tunnels are never decrypted (certificate pinning); like Allowed Domains they are not cached. */
      doNotIntercept: v.optional(DomainList, []),
      /** An operator CA (e.g. a customer-signed intermediate) instead of the generated one: PEM files. */
      caCertFile: v.optional(FilePath),
      caKeyFile: v.optional(FilePath),
      /** The agent port itself speaks TLS (an HTTPS proxy: `curl --proxy https://gateway:8080`). */
      agentListener: v.optional(
        section({
          enabled: v.optional(v.boolean("must be true or false"), false),
          /** Names in the listener's certificate when it is minted from the gateway CA. */
          names: v.optional(v.array(ServerName), ["localhost", "127.0.0.1"]),
          certFile: v.optional(FilePath),
          keyFile: v.optional(FilePath),
        }),
        {},
      ),
    }),
    {},
  ),
  patchMode: v.optional(
    v.strictObject({
      enabled: v.optional(v.boolean("must be true or false"), false),
      /** Client networks admitted without agent credentials while Patch Mode is on. */
      clientNetworks: v.optional(v.array(CidrNetwork), []),
    }),
    {},
  ),
  patchDisk: v.optional(
    v.pipe(
      v.strictObject({
        /** The mount point of the one extra disk that holds patch objects and their index. */
        path: v.optional(PatchDiskPath),
        /** The seed asks for 150 GB free; newer vendor documents ask 250 GB. */
        minFreeBytes: v.optional(
          v.pipe(
            v.number("must be a number of bytes"),
            v.integer("must be a whole number of bytes"),
            v.minValue(0, "must not be negative"),
          ),
          150_000_000_000,
        ),
        /** Eviction starts when the disk is fuller than this fraction, and stops below lowWatermark. */
        highWatermark: v.optional(HighWatermark, 0.9),
        lowWatermark: v.optional(LowWatermark, 0.8),
      }),
      v.forward(
        v.check((d) => d.lowWatermark < d.highWatermark, "must be lower than patchDisk.highWatermark"),
        ["lowWatermark"],
      ),
    ),
    {},
  ),
  cache: v.optional(
    v.pipe(
      section({
        /** Upper bound of the blob store; least recently used entries go first. */
        maxSizeBytes: v.optional(
          v.pipe(v.number(), v.integer(), v.minValue(1024 * 1024, "must be at least 1 MiB (1048576)")),
          10 * 1024 ** 3,
        ),
        /**
         * The data disk's own limit, whatever maxSizeBytes says: eviction starts when the disk is
         * fuller than this fraction and stops below lowWatermark, so the store makes room instead of failing.
         */
        highWatermark: v.optional(HighWatermark, 0.95),
        lowWatermark: v.optional(LowWatermark, 0.9),
        ttlRules: v.optional(v.array(TtlRule), DEFAULT_TTL_RULES),
        /**
         * When the origin fails (5xx, unreachable) during revalidation and the response carries no
         * stale-if-error, serve the stale entry anyway (RFC 9111 §4.2.4 allows it unless must-revalidate,
         * no-cache or s-maxage forbid it). With stale-if-error=N (RFC 5861 §4), N decides instead.
         */
        serveStaleOnError: v.optional(v.boolean("must be true or false"), true),
      }),
      v.forward(
        v.check((c) => c.lowWatermark < c.highWatermark, "must be lower than cache.highWatermark"),
        ["lowWatermark"],
      ),
    ),
    {},
  ),
  stats: v.optional(
    section({
      kinds: v.optional(v.array(KindRule), DEFAULT_KIND_RULES),
    }),
    {},
  ),
  connect: v.optional(
    section({
      /** CONNECT tunnels may only reach these ports (Squid's SSL_ports). */
      ports: v.optional(v.array(Port), [443]),
    }),
    {},
  ),
  /** A corporate proxy or a parent gateway that every upstream fetch goes through (src/upstream/proxy-hop.ts). */
  upstreamProxy: v.optional(
    section({
      /** http://[user:pass@]host:port; unset means upstreams are reached directly. */
      url: v.optional(ProxyUrl),
      /** Hosts fetched directly, not through the proxy (each entry covers its subdomains). */
      bypass: v.optional(DomainList, []),
      /** PEM CA(s) trusted, besides the system store, for origins reached through the proxy: a parent gateway's CA. */
      caFile: v.optional(FilePath),
    }),
    {},
  ),
  cluster: v.optional(ClusterSection, {}),
});

/**
 * Cross-field rules are partial checks, so they are reported alongside other
 * bad fields, not only when all else is valid.
 */
export const ConfigSchema = v.pipe(
  ConfigObject,
  v.forward(
    v.partialCheck(
      [
        ["patchMode", "enabled"],
        ["cacheMode", "enabled"],
      ],
      (c) => !c.patchMode.enabled || c.cacheMode.enabled,
      "needs Cache Mode: Patch Mode uses the cache port, so set cacheMode.enabled to true as well",
    ),
    ["patchMode", "enabled"],
  ),
  v.forward(
    v.partialCheck(
      [
        ["patchMode", "enabled"],
        ["patchDisk", "path"],
      ],
      (c) => !c.patchMode.enabled || c.patchDisk.path !== undefined,
      "needs the patch disk: set patchDisk.path (or CACHEGATE_PATCH_DISK) to its mount path",
    ),
    ["patchMode", "enabled"],
  ),
  v.forward(
    v.partialCheck(
      [
        ["tls", "caCertFile"],
        ["tls", "caKeyFile"],
      ],
      (c) => (c.tls.caCertFile === undefined) === (c.tls.caKeyFile === undefined),
      "must be given together with tls.caCertFile (both or neither)",
    ),
    ["tls", "caKeyFile"],
  ),
  v.forward(
    v.partialCheck(
      [
        ["tls", "agentListener", "certFile"],
        ["tls", "agentListener", "keyFile"],
      ],
      (c) => (c.tls.agentListener.certFile === undefined) === (c.tls.agentListener.keyFile === undefined),
      "needs certFile and keyFile together (both or neither)",
    ),
    ["tls", "agentListener"],
  ),
);

export type Config = v.InferOutput<typeof ConfigSchema>;
export type ConfigInput = v.InferInput<typeof ConfigSchema>;
export type TtlRuleConfig = v.InferOutput<typeof TtlRule>;
export type KindRuleConfig = v.InferOutput<typeof KindRule>;
