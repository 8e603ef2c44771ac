import type { KindRuleConfig } from "../config/schema.ts";
import { firstMatch } from "../config/url-pattern.ts";

/** The kind of file a URL is, for the bandwidth table: the first matching rule (case-insensitive), else "other". */
export function kindOf(url: string, rules: readonly KindRuleConfig[]): string {
  return firstMatch(url, rules, { caseInsensitive: true })?.kind ?? "other";
}
