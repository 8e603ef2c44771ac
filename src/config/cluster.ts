import * as v from "valibot";
import { section } from "./section.ts";

/**
 * A fleet member as CACHEGATE_PEERS lists it: its agent port, `http://host:port`.
 * Normalised (lower-case host, no trailing slash) so that every member, given
 * the same list in any spelling, ranks the same strings the same way.
 */
export const MemberUrl = v.pipe(
  v.string("must be a member's agent port as http://host:port, e.g. http://10.0.0.11:8080"),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const normalised = memberUrl(dataset.value);
    if (normalised === undefined) {
      addIssue({
        message:
          `"${dataset.value}" is not a member's agent port: write http://host:port with no path, ` +
          "query or credentials, e.g. http://10.0.0.11:8080",
      });
      return NEVER;
    }
    return normalised;
  }),
);

function memberUrl(raw: string): string | undefined {
  // The port is required: members talk to each other's agent ports, which are never implied.
  if (!/^http:\/\/[^/@?#\s]+:\d{1,5}\/?$/i.test(raw.trim())) return undefined;
  try {
    const url = new URL(raw.trim());
    const port = Number(url.port || 80);
    if (port < 1 || port > 65535) return undefined;
    return `http://${url.hostname}:${port}`;
  } catch {
    return undefined;
  }
}

/**
 * A fleet: several gateways that fetch each object once between them
 * (src/fleet/). Every member gets the same list, itself included, and is
 * told which entry it is.
 */
export const ClusterSection = v.pipe(
  section({
    peers: v.optional(v.array(MemberUrl), []),
    self: v.optional(MemberUrl),
  }),
  v.forward(
    v.check(
      (c) => new Set(c.peers).size === c.peers.length,
      "lists a member twice; give each member's agent port once",
    ),
    ["peers"],
  ),
  v.forward(
    v.check(
      (c) => c.peers.length === 0 || (c.self !== undefined && c.peers.includes(c.self)),
      "must name this member, as one entry of cluster.peers (CACHEGATE_PEERS), e.g. http://10.0.0.11:8080",
    ),
    ["self"],
  ),
);
