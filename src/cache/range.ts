/** A byte range request, resolved against a known body size (RFC 9110 §14). */
export type RangeResult =
  | { kind: "full" }
  | { kind: "partial"; start: number; end: number } // end inclusive
  | { kind: "unsatisfiable" };

const SPEC = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/i;

/**
 * Resolves a `Range` header. Only single ranges are served as 206; a
 * multi-range or malformed header is ignored and the full body is sent,
 * which RFC 9110 §14.2 permits ("a server MAY ignore the Range header").
 */
export function resolveRange(header: string | null, size: number): RangeResult {
  if (header === null) return { kind: "full" };
  const m = SPEC.exec(header);
  if (!m) return { kind: "full" };
  const [, first = "", last = ""] = m;
  if (first === "" && last === "") return { kind: "full" };
  if (first === "") {
    // Suffix range: the last N bytes (§14.1.2). bytes=-0 is unsatisfiable.
    const n = Number(last);
    if (n === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "partial", start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== "" && Number(last) < start) return { kind: "full" }; // invalid spec: ignore (§14.1.1)
  if (start >= size) return { kind: "unsatisfiable" };
  return { kind: "partial", start, end };
}

/** The first byte a Range header asks for, before the size is known (to wait for it on a miss). */
export function rangeStart(header: string | null): number | "suffix" | null {
  const m = header === null ? null : SPEC.exec(header);
  if (!m) return null;
  if (m[1] === "") return m[2] === "" ? null : "suffix";
  return Number(m[1]);
}
