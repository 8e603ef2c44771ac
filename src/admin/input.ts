import * as v from "valibot";
import { toFieldErrors } from "../config/issues.ts";
import { GatewayError } from "../errors.ts";

const MAX_BODY = 64 * 1024;

/** Reads a JSON request body, with errors that say what to send instead. */
export async function readJson<T>(req: Request): Promise<T> {
  const type = req.headers.get("content-type") ?? "";
  if (!/^application\/(merge-patch\+)?json\b/i.test(type)) {
    const got = type || "no Content-Type";
    throw new GatewayError(
      415,
      "unsupported_media_type",
      `send the body as JSON with Content-Type: application/json (got "${got}")`,
    );
  }
  const text = await req.text();
  if (text.length > MAX_BODY)
    throw new GatewayError(413, "body_too_large", `the body is larger than ${MAX_BODY} bytes`);
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new GatewayError(400, "invalid_json", `the body is not valid JSON (${(err as Error).message})`);
  }
}

/** Validates admin input against a schema; a 400 naming every bad field, e.g. "invalid agent; nothing was created". */
export function parseInput<T extends v.GenericSchema>(schema: T, input: unknown, refusal: string): v.InferOutput<T> {
  const result = v.safeParse(schema, input);
  if (!result.success) {
    throw new GatewayError(400, "invalid_request", refusal, { details: toFieldErrors(result.issues) });
  }
  return result.output;
}

/** A `?limit=` query parameter: a whole number from 1 to `max`, `fallback` when absent. */
export const limitParam = (max: number, fallback: number) =>
  v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d+$/, `must be a whole number from 1 to ${max}`),
      v.transform(Number),
      v.minValue(1, `must be from 1 to ${max}`),
      v.maxValue(max, `must be from 1 to ${max}`),
    ),
    String(fallback),
  );
