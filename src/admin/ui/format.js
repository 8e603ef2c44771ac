/** How the status page writes figures: bytes in decimal units as the seed's table does ("2 GB", "2 MB"). */

const UNITS = ["B", "kB", "MB", "GB", "TB", "PB"];

export function bytes(n) {
  if (!Number.isFinite(n)) return "–";
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

const integer = new Intl.NumberFormat("en-US");
export const count = (n) => integer.format(n);

export const percent = (fraction) => `${Math.round(fraction * 100)}%`;

/** "42 s", "3 min 5 s", "2 h 4 min". */
export function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
