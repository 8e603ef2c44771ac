import * as v from "valibot";

/** One refused field, in the shape the admin API and the start-up check both report. */
export interface FieldError {
  path: string;
  value: unknown;
  rule: string;
  message: string;
}

export function toFieldErrors(issues: readonly v.BaseIssue<unknown>[]): FieldError[] {
  return issues.map((issue) => {
    const path = v.getDotPath(issue) ?? "(document)";
    if (issue.type === "strict_object" && issue.expected === "never") {
      // valibot reports an unknown field as an "Invalid key: Expected never"; say what it means, with the value sent.
      const value = issue.path?.[issue.path.length - 1]?.value;
      return { path, value, rule: "unknown_field", message: `${path} is not a setting; remove it, or check its spelling against GET /api/config` };
    }
    return { path, value: issue.input, rule: issue.type, message: `${path} ${issue.message}` };
  });
}
