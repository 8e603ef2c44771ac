import { domainToASCII } from "node:url";
import { parse } from "tldts";
import * as v from "valibot";

/**
 * Bare domain names, as an operator types them into the seed's "Allowed
 * Domains" box: `microsoft.com`, never `https://www.microsoft.com`.
 * Each refusal says what to enter instead, because the person reading it is
 * usually mid-way through a configuration step.
 */
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Returns an explanation of why `input` is not a bare domain name, or null. */
export function domainNameProblem(input: string): string | null {
  const raw = input.trim();
  if (raw === "") return "is empty; enter a domain name such as microsoft.com";
  if (/\s/.test(raw)) return `contains spaces; enter one bare domain name per entry, such as microsoft.com`;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(raw);
  if (scheme) return `starts with ${scheme[0]}; enter only the domain, e.g. ${suggest(raw)}`;
  if (raw.includes("/")) return `contains a path; enter only the domain, e.g. ${suggest(raw)}`;
  if (raw.startsWith("*.")) return `is a wildcard; an entry already covers its subdomains, so enter ${suggest(raw)}`;
  if (/:\d*$/.test(raw)) return `contains a port; enter only the domain, e.g. ${suggest(raw)}`;
  if (/^www\./i.test(raw))
    return `starts with www.; enter ${suggest(raw)}, which covers www. and every other subdomain`;
  const ascii = domainToASCII(raw.replace(/\.$/, "").toLowerCase());
  if (ascii === "") return "is not a valid domain name; enter a name such as microsoft.com";
  if (ascii.length > 253)
    return "is longer than 253 characters, the limit for a domain name; enter a name such as microsoft.com";
  const labels = ascii.split(".");
  if (labels.some((l) => l === ""))
    return "has an empty label (two dots in a row, or a leading dot); enter a name such as microsoft.com";
  const bad = labels.find((l) => !LABEL.test(l));
  if (bad !== undefined) {
    return bad.length > 63
      ? `has a label longer than 63 characters ("${bad.slice(0, 20)}…"); enter a name such as microsoft.com`
      : `has an invalid label "${bad}" (letters, digits and inner hyphens only); enter a name such as microsoft.com`;
  }
  const parsed = parse(ascii, { allowPrivateDomains: true });
  if (parsed.isIp) {
    return "is an IP address; enter the domain name agents use, such as microsoft.com (the gateway matches names)";
  }
  // A public suffix alone (com, co.uk, github.io) would open every site under it.
  if (parsed.publicSuffix === ascii && (parsed.isIcann || parsed.isPrivate)) {
    return `is a public suffix, which would allow every site under it; enter one domain under it, such as example.${ascii}`;
  }
  return null;
}

/** Lower-case, punycode, no trailing dot. Only call on names without a problem. */
export function normalizeDomainName(input: string): string {
  return domainToASCII(input.trim().replace(/\.$/, "").toLowerCase());
}

/** The bare name hidden in a URL-shaped or wildcard entry, for error messages. */
function suggest(raw: string): string {
  const host = raw
    .replace(/^[a-z][a-z0-9+.-]*:\/\//i, "")
    .replace(/[/?#].*$/, "")
    .replace(/:\d*$/, "")
    .replace(/^\*\./, "")
    .replace(/^www\./i, "")
    .toLowerCase();
  return host === "" ? "microsoft.com" : host;
}

export const DomainName = v.pipe(
  v.string('must be a string such as "microsoft.com"'),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const problem = domainNameProblem(dataset.value);
    if (problem) addIssue({ message: problem });
  }),
  v.transform(normalizeDomainName),
);

/** A list of domain names, normalised and with duplicates removed (first wins). */
export const DomainList = v.pipe(
  v.array(DomainName, 'must be a list of domain names, e.g. ["microsoft.com"]'),
  v.transform((names) => [...new Set(names)]),
);

/** An entry matches itself and every subdomain: `qualys.com` covers `a.b.qualys.com`. */
export function domainMatches(host: string, domains: readonly string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  return domains.some((d) => h === d || h.endsWith(`.${d}`));
}
