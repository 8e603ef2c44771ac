import { GatewayError } from "../errors.ts";
import { type AddressGuard, checkBehindProxy } from "../net/address-guard.ts";
import { createHttp1Client, discard, markEndUnproven, UpstreamTimeout } from "../upstream/client.ts";
import type { Exchanged } from "../upstream/exchange.ts";
import { FramingError } from "../upstream/framing.ts";
import { type ProxyHop, proxyAuthError } from "../upstream/proxy-hop.ts";
import { addVia, stripHopByHop } from "./hop-by-hop.ts";

export interface UpstreamOptions {
  /** Resolves and checks the upstream address (connection security). */
  guard: AddressGuard;
  via: string;
  /** How long upstream may take to send its response head. */
  headersTimeoutMs?: number;
  /** Told how many body bytes each upstream response carried, once it ends (bandwidth accounting). */
  onBody?: (url: string, bytes: number) => void;
  /** The upstream proxy a request to this host goes through (upstreamProxy), or undefined to connect directly. */
  proxyFor?: (host: string) => ProxyHop | undefined;
}

/** Error codes of a certificate that does not verify (BoringSSL/OpenSSL names, as Bun reports them). */
const CERTIFICATE_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME|UNABLE_TO_GET_ISSUER/;

export type UpstreamFetch = (req: Request) => Promise<Response>;

/**
 * Sends a request upstream the way a proxy must: hop-by-hop headers removed
 * both ways, Via added to the request (the app adds it to responses), no
 * redirects followed, bodies passed on byte for byte (never decompressed).
 * It connects to the address the guard checked, with the original name in
 * Host and as the TLS server name, so a DNS answer that changes between
 * check and connect cannot redirect the request. A response body stream
 * ends cleanly only when its end was proven (see upstream/client.ts).
 *
 * Through an upstream proxy (upstream/proxy-hop.ts) an http:// request goes
 * in absolute form (RFC 9112 §3.2.2) with Proxy-Authorization, an https://
 * one through a CONNECT tunnel with TLS to the origin inside it. The proxy
 * resolves the name then: the guard still refuses an origin that is, or
 * resolves here to, a private address, but lets a name this host cannot
 * resolve through (behind a corporate proxy, often only the proxy can).
 */
export function createUpstreamFetch(opts: UpstreamOptions): UpstreamFetch & { close(): void } {
  const client = createHttp1Client({ headersTimeoutMs: opts.headersTimeoutMs, via: opts.via });

  const fetchUpstream = async function fetchUpstream(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const tls = url.protocol === "https:";
    const port = Number(url.port) || (tls ? 443 : 80);
    const name = url.hostname.replace(/^\[|\]$/g, "");
    const proxy = opts.proxyFor?.(name);
    // Through a proxy, the proxy connects (to the name): only the refusal of private origins applies here.
    let address = name;
    if (proxy) await checkBehindProxy(opts.guard, url.hostname, port);
    else address = (await opts.guard(url.hostname, port)).address;

    const headers = stripHopByHop(req.headers);
    headers.set("host", url.host);
    addVia(headers, opts.via);
    const originForm = `${url.pathname}${url.search}`;
    // RFC 9112 §3.2.2: to a proxy, the absolute form; the agent's own Proxy-Authorization was stripped above.
    const absolute = proxy && !tls;
    if (absolute && proxy.authorization) headers.set("proxy-authorization", proxy.authorization);
    let res: Exchanged;
    try {
      res = await client.request(
        { address, port, tls, name, ...(proxy ? { proxy } : {}) },
        {
          method: req.method,
          path: absolute ? `http://${url.host}${originForm}` : originForm,
          headers,
          body: req.body,
        },
      );
    } catch (err) {
      throw fetchError(url, err, proxy);
    }
    const { status, statusText } = res.head;
    if (absolute && status === 407) {
      // Only a proxy answers 407 (RFC 9110 §15.5.8): the proxy's word on the gateway's credentials, never relayed.
      discard(res.body);
      throw proxyAuthError(proxy);
    }
    if (status < 200 || status > 599) {
      discard(res.body);
      throw new GatewayError(
        502,
        "upstream_malformed",
        `upstream ${url.host} answered status ${status}, which a proxy cannot relay`,
      );
    }
    const body = res.body && opts.onBody ? counted(res.body, (n) => opts.onBody!(req.url, n)) : res.body;
    const response = new Response(body, { status, statusText, headers: responseHeaders(url, res) });
    if (tls && res.framing.kind === "close") markEndUnproven(response);
    return response;
  };
  return Object.assign(fetchUpstream, { close: client.close });
}

/**
 * The response's fields without hop-by-hop ones. RFC 9112 §6.3: when
 * Transfer-Encoding is present (chunked or close-delimited) any
 * Content-Length is wrong by definition and is not passed on.
 */
function responseHeaders(url: URL, res: Exchanged): Headers {
  const headers = new Headers();
  try {
    for (const [name, value] of res.head.fields) headers.append(name, value);
  } catch (err) {
    discard(res.body);
    const why = (err as Error).message;
    throw new GatewayError(502, "upstream_malformed", `upstream ${url.host} sent an invalid header (${why})`, {
      cause: err,
    });
  }
  const out = stripHopByHop(headers);
  if (res.framing.kind === "chunked" || res.framing.kind === "close") out.delete("content-length");
  return out;
}

/** Why a request upstream failed, as the agent is told it: a timeout, a certificate, framing, or the connection. */
function fetchError(url: URL, err: unknown, proxy: ProxyHop | undefined): GatewayError {
  if (err instanceof GatewayError) return err; // already says what failed (the upstream proxy)
  if (err instanceof UpstreamTimeout) {
    const through = proxy ? ` through the upstream proxy ${proxy.label}` : "";
    return new GatewayError(504, "upstream_timeout", `upstream ${url.host}${through} failed: ${err.message}`, {
      cause: err,
    });
  }
  if (err instanceof FramingError) {
    const message = `upstream ${url.host} sent a malformed response: ${err.message}`;
    return new GatewayError(502, "upstream_malformed", message, { cause: err });
  }
  const code = String((err as { code?: unknown }).code ?? "");
  if (CERTIFICATE_ERROR.test(code)) {
    return new GatewayError(
      502,
      "upstream_certificate",
      `the certificate of ${url.hostname} did not verify (${code}); the gateway trusts the system store plus ` +
        "NODE_EXTRA_CA_CERTS, so add the issuing CA there if this upstream is legitimate" +
        (proxy
          ? ` (through the upstream proxy ${proxy.label}: a parent gateway's CA goes in upstreamProxy.caFile)`
          : ""),
      { cause: err },
    );
  }
  const why = (err as Error).message;
  return new GatewayError(502, "upstream_unreachable", `upstream ${url.host} failed: ${why}`, { cause: err });
}

/** Passes a body through unchanged and reports its length when it ends, fails or is cancelled. */
function counted(body: ReadableStream<Uint8Array>, report: (bytes: number) => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  let reported = false;
  const done = () => {
    if (!reported) {
      reported = true;
      report(bytes);
    }
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done: end, value } = await reader.read();
          if (end) {
            done();
            return controller.close();
          }
          bytes += value.length;
          controller.enqueue(value);
        } catch (err) {
          done();
          controller.error(err);
        }
      },
      cancel(reason) {
        done();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
