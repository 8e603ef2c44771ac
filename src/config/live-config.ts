import * as v from "valibot";
import { GatewayError } from "../errors.ts";
import { toFieldErrors } from "./issues.ts";
import { hasPath, isObject, type Json, type JsonObject, leaves, mergePatch } from "./merge-patch.ts";
import { type Config, ConfigSchema } from "./schema.ts";

export type Source = "default" | "env" | "api";

export interface Change {
  path: string;
  old: unknown;
  new: unknown;
}

export interface LiveConfigOptions {
  /** What the environment sets (CACHEGATE_*), as a partial document. */
  env: JsonObject;
  /** What the admin API set before, as persisted; applied over env. */
  overrides: JsonObject;
  /** Persists the admin API's overrides. */
  save: (overrides: JsonObject) => void;
}

/** Runs before a change is committed; throwing refuses the change (e.g. a port that cannot be bound). */
export type Applier = (next: Config, prev: Config, changes: Change[]) => Promise<void>;

/**
 * The configuration as it is now: defaults, then the environment, then what
 * operators changed through the admin API (persisted, so it survives a
 * restart). A patch is merged, validated whole, applied, then persisted — or
 * refused with every bad field named, changing nothing.
 */
export class LiveConfig {
  private overrides: JsonObject;
  private appliers: Applier[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  current: Config;
  /** Persisted overrides that no longer validated at start (reported, not applied). */
  readonly ignored: ReturnType<typeof toFieldErrors> = [];

  constructor(private readonly opts: LiveConfigOptions) {
    this.overrides = opts.overrides;
    const combined = v.safeParse(ConfigSchema, mergePatch(opts.env, opts.overrides));
    if (combined.success) {
      this.current = combined.output;
    } else {
      // A bad persisted value must not keep the gateway down: start from the environment and say why.
      this.ignored = toFieldErrors(combined.issues);
      this.overrides = {};
      this.current = v.parse(ConfigSchema, opts.env);
    }
  }

  onApply(applier: Applier): void {
    this.appliers.push(applier);
  }

  /** Where each leaf value came from. */
  sources(): Record<string, Source> {
    const out: Record<string, Source> = {};
    for (const path of leaves(this.current).keys()) {
      out[path] = hasPath(this.overrides, path) ? "api" : hasPath(this.opts.env, path) ? "env" : "default";
    }
    return out;
  }

  /**
   * Validates and applies a merge patch; throws a 400 GatewayError naming each bad field.
   * Patches run one at a time: one that arrives while another is being applied (a port
   * rebind takes a moment) is merged over its result instead of over what was there before.
   */
  patch(patch: Json): Promise<Change[]> {
    const run = this.queue.then(() => this.apply(patch));
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * A worker process takes a change its primary validated and saved: it is
   * validated again (a message is input too), applied here, not saved again.
   */
  adopt(doc: unknown): Promise<void> {
    const run = this.queue.then(async () => {
      const next = v.parse(ConfigSchema, doc);
      const prev = this.current;
      const changes = diff(prev, next);
      for (const apply of this.appliers) await apply(next, prev, changes);
      this.current = next;
    });
    this.queue = run.catch(() => {});
    return run;
  }

  private async apply(patch: Json): Promise<Change[]> {
    if (!isObject(patch)) {
      throw new GatewayError(
        400,
        "invalid_config",
        'the body must be a JSON object with the fields to change, e.g. {"cacheMode":{"port":8081}}',
      );
    }
    const overrides = pruneEmpty(mergePatch(this.overrides, patch) as JsonObject);
    const result = v.safeParse(ConfigSchema, mergePatch(this.opts.env, overrides));
    if (!result.success) {
      throw new GatewayError(400, "invalid_config", "invalid configuration; nothing was changed", {
        details: toFieldErrors(result.issues),
      });
    }
    const prev = this.current;
    const next = result.output;
    const changes = diff(prev, next);
    if (changes.length === 0) {
      this.overrides = overrides;
      this.opts.save(overrides);
      return changes;
    }
    for (const apply of this.appliers) await apply(next, prev, changes);
    this.opts.save(overrides);
    this.overrides = overrides;
    this.current = next;
    return changes;
  }
}

function diff(prev: Config, next: Config): Change[] {
  const before = leaves(prev);
  const changes: Change[] = [];
  for (const [path, value] of leaves(next)) {
    const old = before.get(path);
    if (JSON.stringify(old) !== JSON.stringify(value)) changes.push({ path, old, new: value });
  }
  return changes;
}

/** `{"cacheMode": {}}` left by removing the last override of a section is no override at all. */
function pruneEmpty(doc: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(doc)) {
    if (isObject(value)) {
      const inner = pruneEmpty(value);
      if (Object.keys(inner).length > 0) out[key] = inner;
    } else out[key] = value;
  }
  return out;
}
