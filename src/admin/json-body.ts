import { HTTPException } from "hono/http-exception";

const MAX_BODY = 64 * 1024;

/** Reads a JSON request body, with errors that say what to send instead. */
export async function readJson<T>(req: Request): Promise<T> {
  const type = req.headers.get("content-type") ?? "";
  if (!/^application\/(merge-patch\+)?json\b/i.test(type)) {
    throw new HTTPException(415, {
      message: `send the body as JSON with Content-Type: application/json (got "${type || "no Content-Type"}")`,
    });
  }
  const text = await req.text();
  if (text.length > MAX_BODY) throw new HTTPException(413, { message: `the body is larger than ${MAX_BODY} bytes` });
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new HTTPException(400, { message: `the body is not valid JSON (${(err as Error).message})` });
  }
}
