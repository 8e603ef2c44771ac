import type { Served } from "../../src/stats/collector.ts";

/** One response as the request handler reports it: a GET, 200 (403 for a refusal, `label` null), from `agent`. */
export const served = (agent: string, url: string, label: string | null, bytes: number): Served => ({
  agent,
  client: agent,
  url,
  label,
  bytes,
  method: "GET",
  status: label === null ? 403 : 200,
  elapsedMs: 1,
});
