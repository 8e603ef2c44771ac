/** One column of a scenario table: how to read it from a target's result and how to print it. */
export interface Column<R> {
  title: string;
  value(result: R): number | string | undefined;
  format?(value: number): string;
  /** Whether a ratio of this column means anything (false for counts of errors, labels…). */
  ratio?: boolean;
}

export interface Row<R> {
  name: string;
  result: R | undefined;
}

/** Which rows are divided by which: each of `of` by each of `to`, e.g. every cachegate by nginx and Varnish. */
export interface Ratios {
  of: string[];
  to: string[];
}

/**
 * A markdown table: one row per target, then a row per ratio: the figures of
 * each `of` target divided by those of each `to` target of the same run. A
 * ratio is left out ("—") when either side is missing or the divisor is zero.
 */
export function scenarioTable<R>(title: string, columns: Column<R>[], rows: Row<R>[], ratios: Ratios): string {
  const cell = (col: Column<R>, result: R | undefined): string => {
    if (result === undefined) return "—";
    const v = col.value(result);
    if (v === undefined || (typeof v === "number" && Number.isNaN(v))) return "—";
    return typeof v === "number" ? (col.format ?? fmt)(v) : v;
  };
  const numberOf = (col: Column<R>, name: string): number | undefined => {
    const result = rows.find((r) => r.name === name)?.result;
    const v = result === undefined ? undefined : col.value(result);
    return typeof v === "number" && Number.isFinite(v) ? v : undefined;
  };
  const ratioCell = (col: Column<R>, name: string, to: string): string => {
    if (col.ratio === false) return "—";
    const a = numberOf(col, name);
    const b = numberOf(col, to);
    if (a === undefined || b === undefined || b === 0) return "—";
    return `${(a / b).toFixed(a / b >= 10 ? 1 : 2)}×`;
  };

  const header = ["target", ...columns.map((c) => c.title)];
  const body = rows.map((r) => [r.name, ...columns.map((c) => cell(c, r.result))]);
  for (const name of ratios.of)
    for (const to of ratios.to) body.push([`*${name} ÷ ${to}*`, ...columns.map((c) => ratioCell(c, name, to))]);
  return [`### ${title}`, "", markdown(header, body)].join("\n");
}

/** Pads cells so the table also reads well as plain text. */
export function markdown(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? `${"-".repeat(w + 1)}-` : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** Numbers with thousands separators; small ones with a few significant digits. */
export function fmt(v: number): string {
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString("en-US");
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export const ms = (v: number) => (v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${fmt(v)} ms`);
export const us = (v: number) => `${fmt(v)} µs`;
export const mib = (bytes: number) => `${fmt(bytes / 1024 / 1024)} MiB`;
export const int = (v: number) => Math.round(v).toLocaleString("en-US");
