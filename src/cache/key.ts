/**
 * The cache key: the absolute URL with scheme and host lower-cased and the
 * default port dropped (RFC 9110 §4.2.3), so `HTTP://Host:80/a` and
 * `http://host/a` are one entry. Path and query are kept byte for byte.
 */
export function cacheKey(url: string | URL): string {
  const u = typeof url === "string" ? new URL(url) : url;
  // URL already lower-cases scheme and host and drops default ports; the
  // fragment never reaches a server.
  return `${u.protocol}//${u.host}${u.pathname}${u.search}`;
}

/**
 * A variant names the request header values a response varies on
 * (RFC 9111 §4.1). Values are compared after trimming and collapsing
 * whitespace, which §4.1 allows ("normalizing").
 */
export function variantOf(vary: readonly string[] | null, headers: Headers): string {
  if (vary === null || vary.length === 0) return "";
  return vary.map((name) => `${name}:${(NORMALISE[name] ?? collapse)(headers.get(name) ?? "")}`).join("\n");
}

const collapse = (value: string) => value.trim().replace(/\s+/g, " ");

/**
 * Header values whose meaning does not depend on order, case or spacing,
 * normalised as Varnish normalises Accept-Encoding, so agents that send
 * `gzip, deflate` and `Deflate,gzip` share one stored variant.
 */
const NORMALISE: Record<string, (value: string) => string> = {
  "accept-encoding": (value) =>
    value
      .toLowerCase()
      .split(",")
      .map((coding) => coding.replace(/\s+/g, ""))
      .filter((coding) => coding !== "")
      .sort()
      .join(","),
};

/** The lower-cased, sorted header names of a Vary header; null when absent. `*` is handled by storability. */
export function parseVary(value: string | null): string[] | null {
  if (value === null) return null;
  const names = value
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
  return names.length === 0 ? null : [...new Set(names)].sort();
}

/**
 * A variant stored under an earlier normalisation, as variantOf would write
 * it now: entries stored before a normaliser existed keep matching.
 */
export function renormalise(variant: string): string {
  if (variant === "") return variant;
  return variant
    .split("\n")
    .map((line) => {
      const colon = line.indexOf(":");
      const normalise = NORMALISE[line.slice(0, colon)];
      return normalise ? `${line.slice(0, colon)}:${normalise(line.slice(colon + 1))}` : line;
    })
    .join("\n");
}
