import { GatewayError } from "../errors.ts";
import type { AddressGuard } from "../net/address-guard.ts";
import { addVia, stripHopByHop } from "./hop-by-hop.ts";

export interface UpstreamOptions {
  /** Resolves and checks the upstream address (connection security). */
  guard: AddressGuard;
  via: string;
  /** How long upstream may take to send its response head. */
  headersTimeoutMs?: number;
  /** Told how many body bytes each upstream response carried, once it ends (bandwidth accounting). */
  onBody?: (url: string, bytes: number) => void;
}

/** Error codes of a certificate that does not verify (BoringSSL/OpenSSL names, as Bun reports them). */
const CERTIFICATE_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME|UNABLE_TO_GET_ISSUER/;

export type UpstreamFetch = (req: Request) => Promise<Response>;

/**
 * Sends a request upstream the way a proxy must: hop-by-hop headers removed
 * both ways, Via added to the request (the app adds it to responses), no redirects followed, bodies passed on byte for
 * byte (never decompressed). It connects to the address the guard checked,
 * with the original name in Host, so a DNS answer that changes between
 * check and connect cannot redirect the request.
 */
export function createUpstreamFetch(opts: UpstreamOptions): UpstreamFetch {
  const headersTimeoutMs = opts.headersTimeoutMs ?? 30_000;

  return async function fetchUpstream(req) {
    const url = new URL(req.url);
    const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
    const target = await opts.guard(url.hostname, port);

    const headers = stripHopByHop(req.headers);
    headers.set("host", url.host);
    addVia(headers, opts.via);
    const direct = new URL(url);
    direct.hostname = target.family === 6 ? `[${target.address}]` : target.address;

    const abort = new AbortController();
    const timer = setTimeout(
      () => abort.abort(new Error(`no response within ${headersTimeoutMs / 1000} s`)),
      headersTimeoutMs,
    );
    let res: Response;
    try {
      res = await fetch(direct, {
        method: req.method,
        headers,
        body: req.body,
        redirect: "manual",
        decompress: false,
        signal: abort.signal,
        // TLS to the checked address still verifies the certificate for the name.
        tls: { serverName: url.hostname },
        duplex: "half",
      });
    } catch (err) {
      throw fetchError(url, err, abort.signal);
    } finally {
      clearTimeout(timer);
    }
    const body = res.body && opts.onBody ? counted(res.body, (n) => opts.onBody!(req.url, n)) : res.body;
    return new Response(body, { status: res.status, statusText: res.statusText, headers: stripHopByHop(res.headers) });
  };
}

/** Why a request upstream failed, as the agent is told it: a timeout, a certificate, or the connection. */
function fetchError(url: URL, err: unknown, signal: AbortSignal): GatewayError {
  if (signal.aborted) {
    const why = (signal.reason as Error).message;
    return new GatewayError(504, "upstream_timeout", `upstream ${url.host} failed: ${why}`, { cause: err });
  }
  const code = String((err as { code?: unknown }).code ?? "");
  if (CERTIFICATE_ERROR.test(code)) {
    return new GatewayError(
      502,
      "upstream_certificate",
      `the certificate of ${url.hostname} did not verify (${code}); the gateway trusts the system store plus ` +
        "NODE_EXTRA_CA_CERTS, so add the issuing CA there if this upstream is legitimate",
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
