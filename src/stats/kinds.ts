import type { KindRuleConfig } from "../config/schema.ts";

const compiled = new Map<string, RegExp>();

/** The kind of file a URL is, for the bandwidth table: the first matching rule, else "other". */
export function kindOf(url: string, rules: readonly KindRuleConfig[]): string {
  for (const rule of rules) {
    let re = compiled.get(rule.pattern);
    if (!re) {
      re = new RegExp(rule.pattern, "i");
      compiled.set(rule.pattern, re);
    }
    if (re.test(url)) return rule.kind;
  }
  return "other";
}
