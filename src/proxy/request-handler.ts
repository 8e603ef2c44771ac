import type { IncomingMessage, RequestListener } from "node:http";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Served } from "../stats/collector.ts";
import type { ProxyBindings } from "./app.ts";
import { toRequest, writeResponse } from "./node-adapter.ts";
import { refusalResponse } from "./refusal.ts";

export interface RequestHandlerOptions {
  fetch: (req: Request, env: ProxyBindings) => Response | Promise<Response>;
  log: Logger;
  /** This gateway's Via pseudonym, for the responses it makes itself. */
  via: string;
  /** Told about every response once its body has been sent (bandwidth accounting). */
  onServed?: (served: Served) => void;
}

/**
 * Turns node:http requests into Fetch Requests for the proxy app and writes
 * the answers back. `urlOf` says what URL a request target means: on the
 * proxy port an absolute URL; inside an intercepted tunnel a path on the
 * tunnel's host.
 */
export function createRequestHandler(
  opts: RequestHandlerOptions,
  urlOf: (req: IncomingMessage) => { url: string; form: ProxyBindings["form"]; agent: string; authenticated?: boolean },
): RequestListener {
  return (req, res) => {
    const { url, form, agent, authenticated } = urlOf(req);
    let request: Request;
    try {
      new URL(url); // WHATWG URL rules, stricter than Request's: e.g. a host "xn--a" that is not valid punycode
      request = toRequest(req, url);
    } catch {
      const message = `"${req.url}" is not a valid request target; send an absolute URL with a valid host name`;
      const refusal = refusalResponse(new GatewayError(400, "bad_request_target", message), opts.via);
      void writeResponse(res, refusal);
      return;
    }
    const env: ProxyBindings = { client: agent, form, authenticated };
    Promise.resolve(opts.fetch(request, env))
      .then(async (response) => {
        const bytes = await writeResponse(res, response);
        // env.client is the agent's user name if it authenticated.
        opts.onServed?.({ agent: env.client, url, label: response.headers.get("x-cache"), bytes });
      })
      .catch((error) => {
        opts.log.error("writing a response failed", { url, error });
        res.destroy();
      });
  };
}
