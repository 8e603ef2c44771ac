/** Bandwidth saved per day over the last 30 days (UTC), with uPlot served by the gateway itself (/ui/uplot.js). */

import { bytes } from "./format.js";
import uPlot from "./uplot.js";

const DAYS = 30;
const DAY_MS = 86_400_000;

/** The last 30 UTC days, oldest first, as "YYYY-MM-DD". */
function lastDays(now) {
  const today = Math.floor(now / DAY_MS) * DAY_MS;
  return Array.from({ length: DAYS }, (_, i) => new Date(today - (DAYS - 1 - i) * DAY_MS).toISOString().slice(0, 10));
}

/** The chart's columns: days (in seconds, uPlot's x unit), saved and without-caching bytes summed over kinds. */
export function savingsSeries(bandwidth, now) {
  const days = lastDays(now);
  const at = new Map(days.map((d, i) => [d, i]));
  const saved = days.map(() => 0);
  const without = days.map(() => 0);
  for (const row of bandwidth) {
    const i = at.get(row.day);
    if (i === undefined) continue;
    saved[i] += row.bytesSaved;
    without[i] += row.bytesWithoutCache;
  }
  return [days.map((d) => Date.parse(d) / 1000), saved, without];
}

export function createSavingsChart(el) {
  let plot;
  let shown = "";
  const width = () => Math.max(300, el.clientWidth - 16);
  const options = () => ({
    width: width(),
    height: 240,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] } },
    axes: [{}, { size: 70, values: (_u, splits) => splits.map(bytes) }],
    series: [
      { label: "Day (UTC)", value: (_u, ts) => (ts == null ? "–" : new Date(ts * 1000).toISOString().slice(0, 10)) },
      {
        label: "Saved",
        stroke: "#1f6f5c",
        fill: "rgba(31, 111, 92, 0.55)",
        paths: uPlot.paths.bars({ size: [0.7, 28] }),
        value: (_u, v) => (v == null ? "–" : bytes(v)),
      },
      {
        label: "Without caching",
        stroke: "#8a9a93",
        width: 1.5,
        dash: [6, 4],
        points: { show: false },
        value: (_u, v) => (v == null ? "–" : bytes(v)),
      },
    ],
  });
  new ResizeObserver(() => plot?.setSize({ width: width(), height: 240 })).observe(el);

  return {
    /** Draws the figures; redraws only when they changed (the refresh does not flicker the chart). */
    update(bandwidth, now) {
      const data = savingsSeries(bandwidth, now);
      const key = JSON.stringify(data);
      if (key === shown) return;
      shown = key;
      if (plot) plot.setData(data);
      else plot = new uPlot(options(), data, el);
    },
    clear() {
      plot?.destroy();
      plot = undefined;
      shown = "";
    },
  };
}
