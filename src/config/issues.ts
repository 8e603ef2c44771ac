import * as v from "valibot";
import type { FieldError } from "../errors.ts";

/** valibot issues as the FieldErrors the admin API and the start-up check report. */
export function toFieldErrors(issues: readonly v.BaseIssue<unknown>[]): FieldError[] {
  return issues.map((issue) => {
    const path = v.getDotPath(issue) ?? "(document)";
    // The value as sent at that path: an issue's own input is the key for an unknown field,
    // the whole document for a cross-field check.
    const value = issue.path ? issue.path[issue.path.length - 1]!.value : issue.input;
    if (issue.type === "strict_object" && issue.expected === "never") {
      // valibot reports an unknown field as an "Invalid key: Expected never"; say what it means.
      return {
        path,
        value,
        rule: "unknown_field",
        message: `${path} is not a setting; remove it, or check its spelling against GET /api/config`,
      };
    }
    return { path, value, rule: issue.type, message: `${path} ${issue.message}` };
  });
}
