import { isIP } from "node:net";
import { domainToASCII } from "node:url";
import * as v from "valibot";

/**
 * The upstream proxy's address as operators write it (curl's and the
 * http_proxy convention): `http://[user:pass@]host:port`. Only plain HTTP
 * to the proxy: HTTPS origins are still reached end to end through CONNECT.
 */
export interface ProxyAddress {
  host: string;
  port: number;
  /** Basic credentials (RFC 9110 §11.7.1 Proxy-Authorization), percent-decoded. */
  username?: string;
  password?: string;
}

const EXAMPLE = "http://proxy.example.com:3128 or http://user:pass@10.0.0.1:3128";
/** Stands for the password in what GET /api/config shows. */
export const MASK = "***";

const SHAPE = /^http:\/\/(?:([^:@/?#]*)(?::([^@/?#]*))?@)?(\[[0-9a-fA-F:.]+\]|[^:@/?#\s[\]]+)(?::(\d*))?([/?#].*)?$/;

type Parsed = { ok: true; value: ProxyAddress } | { ok: false; problem: string };

/** Reads a proxy URL, or says what is wrong with it and what to write instead. */
export function parseProxyUrl(raw: string): Parsed {
  const fail = (problem: string): Parsed => ({ ok: false, problem });
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(raw);
  if (!scheme) return fail(`must start with http://, e.g. ${EXAMPLE}`);
  if (scheme[1]!.toLowerCase() !== "http") {
    return fail(
      `uses ${scheme[1]}://; only http:// proxies are supported (HTTPS origins stay encrypted end to end ` +
        `through CONNECT), e.g. ${EXAMPLE}`,
    );
  }
  const m = SHAPE.exec(raw.replace(/^http:/i, "http:"));
  if (!m) return fail(`is not of the form http://[user:pass@]host:port, e.g. ${EXAMPLE}`);
  const [, user, pass, rawHost = "", port, rest] = m;
  if (rest !== undefined && rest !== "/") {
    return fail(
      `must not have a path, query or fragment ("${rest.slice(0, 40)}"); give only http://[user:pass@]host:port`,
    );
  }
  if (port === undefined || port === "") return fail(`needs a port, e.g. http://${rawHost}:3128`);
  const portNumber = Number(port);
  if (!/^\d{1,5}$/.test(port) || portNumber < 1 || portNumber > 65535) return fail("has a port outside 1-65535");
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost.toLowerCase();
  if (rawHost.startsWith("[") ? isIP(host) !== 6 : isIP(host) === 0 && !validName(host)) {
    return fail(`has an invalid host "${rawHost}"; give a host name or an IP address, e.g. ${EXAMPLE}`);
  }
  const value: ProxyAddress = { host, port: portNumber };
  if (user !== undefined) {
    try {
      value.username = decodeURIComponent(user);
      value.password = decodeURIComponent(pass ?? "");
    } catch {
      return fail("has credentials with a broken %-escape; write special characters as %XX (@ is %40, : is %3A)");
    }
  }
  return { ok: true, value };
}

function validName(host: string): boolean {
  const ascii = domainToASCII(host);
  return ascii !== "" && ascii.split(".").every((l) => /^(?!-)[a-z0-9-]{1,63}(?<!-)$/.test(l));
}

/** `http://user:` (group 1) and the password (group 2) of a proxy URL with credentials, up to its `@`. */
const PASSWORD = /^(http:\/\/[^:@/?#]*:)([^@/?#]*)@/i;

/** The URL with its password replaced by *** (what GET /api/config and the log show). */
export function maskProxyUrl(raw: string): string {
  return raw.replace(PASSWORD, (_, head: string) => `${head}${MASK}@`);
}

/** True when the URL carries *** as its password: an admin sent back what GET /api/config showed. */
export function hasMaskedPassword(raw: string): boolean {
  return PASSWORD.exec(raw)?.[2] === MASK;
}

/** The same URL with the password of `stored` instead of ***. */
export function withPasswordOf(raw: string, stored: string): string {
  const password = PASSWORD.exec(stored)?.[2] ?? "";
  return raw.replace(PASSWORD, (_, head: string) => `${head}${password}@`);
}

export const ProxyUrl = v.pipe(
  v.string(`must be a URL such as ${EXAMPLE}`),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const parsed = parseProxyUrl(dataset.value.trim());
    if (!parsed.ok) addIssue({ message: parsed.problem });
  }),
  v.transform((s) => s.trim().replace(/\/$/, "")),
);
