/** JSON values as the admin API receives them. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * RFC 7396 JSON Merge Patch: objects merge recursively, `null` removes a
 * member, anything else (arrays included) replaces. Returns a new value.
 */
export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return patch;
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/** Leaf paths of a document (`cacheMode.port`); arrays are leaves. */
export function leaves(doc: unknown, prefix = ""): Map<string, unknown> {
  const out = new Map<string, unknown>();
  if (!isObject(doc)) return out.set(prefix, doc);
  for (const [key, value] of Object.entries(doc)) {
    const path = prefix === "" ? key : `${prefix}.${key}`;
    for (const [p, v] of isObject(value) ? leaves(value, path) : [[path, value] as const]) out.set(p, v);
  }
  return out;
}

/** True when `doc` holds a value (or a section) at a dotted path. */
export function hasPath(doc: unknown, path: string): boolean {
  let node = doc;
  for (const key of path.split(".")) {
    if (!isObject(node) || !(key in node)) return false;
    node = node[key];
  }
  return true;
}
