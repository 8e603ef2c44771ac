import { readFile } from "node:fs/promises";
import type { ServerOptions } from "node:https";
import type { Config } from "../config/schema.ts";
import type { LeafMinter } from "./leaf-cache.ts";
import { TLS_VERSIONS } from "./versions.ts";

/** TLS options for the agent port, or undefined when it speaks plain HTTP: the operator's files, or a minted leaf. */
export async function agentListenerOptions(c: Config, minter: LeafMinter): Promise<ServerOptions | undefined> {
  const l = c.tls.agentListener;
  if (!l.enabled) return undefined;
  let cert: string;
  let key: string;
  if (l.certFile && l.keyFile) {
    [cert, key] = await Promise.all([readFile(l.certFile, "utf8"), readFile(l.keyFile, "utf8")]);
  } else {
    ({ cert, key } = await minter.leafForNames(l.names));
  }
  return { cert, key, minVersion: TLS_VERSIONS[c.tls.minVersion], ALPNProtocols: ["http/1.1"] };
}
