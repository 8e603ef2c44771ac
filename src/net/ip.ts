import { isIP } from "node:net";

/** An IP address as a number, for prefix arithmetic. */
export interface Parsed {
  family: 4 | 6;
  value: bigint;
}

export interface Cidr {
  family: 4 | 6;
  prefix: bigint;
  shift: bigint;
}

function parseIPv4(s: string): bigint {
  let v = 0n;
  for (const octet of s.split(".")) v = (v << 8n) | BigInt(Number(octet));
  return v;
}

/** Parses an IPv6 literal (zone already stripped, validated by isIP): `::` compression and a trailing dotted IPv4. */
function parseIPv6(s: string): bigint {
  const groupsOf = (part: string): number[] => {
    if (part === "") return [];
    const out: number[] = [];
    for (const g of part.split(":")) {
      if (g.includes(".")) {
        const v4 = Number(parseIPv4(g));
        out.push(v4 >>> 16, v4 & 0xffff);
      } else out.push(parseInt(g, 16));
    }
    return out;
  };
  const gap = s.indexOf("::");
  const head = groupsOf(gap < 0 ? s : s.slice(0, gap));
  const tail = gap < 0 ? [] : groupsOf(s.slice(gap + 2));
  const groups = [...head, ...new Array<number>(Math.max(0, 8 - head.length - tail.length)).fill(0), ...tail];
  if (groups.length !== 8) throw new TypeError(`not an IP address: ${s}`);
  return groups.reduce((v, g) => (v << 16n) | BigInt(g), 0n);
}

export function parseIp(ip: string): Parsed {
  // Zone ids (fe80::1%eth0) select an interface; they do not change which address it is.
  const bare = ip.includes(":") ? ip.replace(/%.*$/, "") : ip;
  const family = isIP(ip);
  if (family === 4) return { family, value: parseIPv4(bare) };
  if (family === 6) return { family, value: parseIPv6(bare) };
  throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`);
}

const MAPPED = parseIPv6("::ffff:0:0"); // ::ffff:0:0/96, RFC 4291 §2.5.5.2

/** IPv4-mapped addresses are dialled as their IPv4 address, so compare and classify them as IPv4. */
export function canonical(p: Parsed): Parsed {
  return p.family === 6 && p.value >> 32n === MAPPED >> 32n ? { family: 4, value: p.value & 0xffffffffn } : p;
}

/** Parses `10.0.0.0/8` or `fd00::/8`; throws TypeError for anything else. */
export function parseCidr(cidr: string): Cidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr.trim());
  if (!m) throw new TypeError(`not a CIDR network: ${JSON.stringify(cidr)}`);
  const p = parseIp(m[1]!);
  const bits = p.family === 4 ? 32 : 128;
  const len = Number(m[2]);
  if (len > bits) throw new TypeError(`prefix length /${len} is longer than ${bits} bits`);
  const shift = BigInt(bits - len);
  return { family: p.family, prefix: p.value >> shift, shift };
}

export function inCidr(p: Parsed, c: Cidr): boolean {
  return p.family === c.family && p.value >> c.shift === c.prefix;
}
