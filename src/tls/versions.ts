import type { SecureVersion } from "node:tls";

/** The config's `tls.minVersion` in node:tls terms. */
export const TLS_VERSIONS: Record<"1.0" | "1.1" | "1.2" | "1.3", SecureVersion> = {
  "1.0": "TLSv1",
  "1.1": "TLSv1.1",
  "1.2": "TLSv1.2",
  "1.3": "TLSv1.3",
};
