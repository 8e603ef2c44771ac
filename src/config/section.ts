import * as v from "valibot";

const SECTION_MESSAGE = "must be a JSON object of settings; see GET /api/config for its fields";

/**
 * A section of the document: a JSON object with only its own fields.
 * valibot's objects also take an array, which would reset the section to
 * its defaults (`{"cacheMode": []}`), so anything but an object is refused.
 */
export function section<const T extends v.ObjectEntries>(entries: T) {
  const fields = v.strictObject(entries, SECTION_MESSAGE);
  return v.pipe(
    v.custom<v.InferInput<typeof fields>>(
      (x) => typeof x === "object" && x !== null && !Array.isArray(x),
      SECTION_MESSAGE,
    ),
    fields,
  );
}
