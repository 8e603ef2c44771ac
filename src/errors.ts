/**
 * The one error model. Domain modules (config, cache, tls, patch, net, …)
 * throw a GatewayError that says what was wrong and what to do instead; the
 * HTTP edges turn it into a response in one place each: the admin app as
 * JSON (`{ error, code, details }`), the proxy app and the tunnel refusals as
 * `cachegate: <message>` text. Anything else that reaches an edge is a bug
 * and becomes a plain 500 that points at the gateway log.
 */

/** Stable, machine-readable names for what went wrong; messages may be reworded, codes may not. */
export type ErrorCode =
  // Agent requests the proxy refuses.
  | "not_a_proxy_request"
  | "bad_request_target"
  | "bad_connect_target"
  | "request_loop"
  | "not_a_fleet_member"
  | "domain_not_allowed"
  | "connect_port_not_allowed"
  | "agent_credentials_required"
  // Upstream.
  | "upstream_address_refused"
  | "upstream_unresolvable"
  | "upstream_unreachable"
  | "upstream_timeout"
  | "upstream_certificate"
  | "upstream_malformed"
  | "upstream_proxy_unreachable"
  | "upstream_proxy_auth"
  | "upstream_proxy_refused"
  // Admin input and configuration.
  | "unauthorized"
  | "metrics_token_only"
  | "not_found"
  | "method_not_allowed"
  | "unsupported_media_type"
  | "body_too_large"
  | "invalid_json"
  | "invalid_request"
  | "not_in_a_fleet"
  | "invalid_config"
  | "invalid_environment"
  | "port_unavailable"
  | "tls_unusable"
  | "data_dir_unusable"
  | "patch_disk_unusable"
  | "patch_disk_in_use"
  | "verify_running"
  | "worker_unresponsive"
  | "internal";

/** One refused field, in the shape the admin API and the start-up check both report. */
export interface FieldError {
  path: string;
  value: unknown;
  rule: string;
  message: string;
}

export interface GatewayErrorOptions {
  /** Every refused field, for validation errors. */
  details?: readonly FieldError[];
  /** The underlying error, for the log; never shown to clients. */
  cause?: unknown;
  /** Response headers the error needs (Proxy-Authenticate on a 407, WWW-Authenticate on a 401). */
  headers?: Readonly<Record<string, string>>;
}

export class GatewayError extends Error {
  override name = "GatewayError";
  readonly details: readonly FieldError[] | undefined;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    /** The HTTP status an edge answers with. */
    readonly status: number,
    readonly code: ErrorCode,
    /** What was wrong and what to do instead, in words an operator or agent owner can act on. */
    message: string,
    opts: GatewayErrorOptions = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.details = opts.details;
    this.headers = opts.headers ?? {};
  }
}

/** What an edge shows for an error that is not a GatewayError: nothing of its internals. */
export const INTERNAL_ERROR = new GatewayError(500, "internal", "internal error; see the gateway log");

/** The error as an edge reports it: itself if it is a GatewayError, else the plain 500. */
export function asGatewayError(err: unknown): GatewayError {
  return err instanceof GatewayError ? err : INTERNAL_ERROR;
}
