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
    return { path, value: issue.input, rule: issue.type, message: `${path} ${issue.message}` };
  });
}
