import { LRUCache } from "lru-cache";
import { RE2JS } from "re2js";

/**
 * URL patterns from the configuration (TTL rules, kinds of file), matched by
 * a linear-time engine (RE2). With a backtracking engine an operator's
 * pattern such as `(a+)+$` lets one crafted URL stall the event loop for
 * seconds (ReDoS); with RE2 every match takes time linear in the URL. RE2
 * has no lookaround and no backreferences: such patterns are refused when
 * the configuration is validated.
 */
export interface UrlPattern {
  test(url: string): boolean;
}

export interface PatternOptions {
  caseInsensitive?: boolean;
}

/** Compiled patterns by source: they come from the configuration, so this stays small. */
const compiled = new Map<string, UrlPattern>();

export function urlPattern(source: string, opts: PatternOptions = {}): UrlPattern {
  const key = `${opts.caseInsensitive ? "i" : "-"}${source}`;
  let pattern = compiled.get(key);
  if (!pattern) {
    const re = RE2JS.compile(source, opts.caseInsensitive ? RE2JS.CASE_INSENSITIVE : 0);
    pattern = { test: (url) => re.matcher(url).find() };
    compiled.set(key, pattern);
  }
  return pattern;
}

/** Why `source` cannot be a URL pattern, or null. */
export function patternProblem(source: string): string | null {
  try {
    RE2JS.compile(source);
    return null;
  } catch (err) {
    const why = (err as Error).message.replace(/^error parsing regexp: /, "");
    return `is not a pattern the gateway can match safely (${why}); use RE2 syntax, without lookaround or backreferences`;
  }
}

/** Answers per rule list and URL: agents ask for the same URLs again and again. */
const answers = new WeakMap<readonly object[], LRUCache<string, number>>();

/** The first of `rules` whose pattern matches `url` (the answer is remembered per rule list). */
export function firstMatch<T extends { pattern: string }>(
  url: string,
  rules: readonly T[],
  opts: PatternOptions = {},
): T | undefined {
  let memo = answers.get(rules);
  if (!memo) {
    memo = new LRUCache<string, number>({
      max: 10_000,
      maxSize: 8 * 1024 * 1024,
      sizeCalculation: (_, url) => url.length + 1,
    });
    answers.set(rules, memo);
  }
  let index = memo.get(url);
  if (index === undefined) {
    index = rules.findIndex((rule) => urlPattern(rule.pattern, opts).test(url));
    memo.set(url, index);
  }
  return index < 0 ? undefined : rules[index];
}
