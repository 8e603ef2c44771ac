import type { IncomingMessage, ServerResponse } from "node:http";
import * as v from "valibot";
import { NOT_IN_A_FLEET } from "../admin/stats-routes.ts";
import { GatewayError } from "../errors.ts";
import { PEER_HEADER } from "../proxy/hop-by-hop.ts";
import type { Fleet } from "./members.ts";

/** Where a member serves its figures to the other members, on its agent port. */
export const FLEET_STATS_PATH = "/fleet/stats";

/** How long another member may take to send its figures. */
const ANSWER_WITHIN_MS = 3000;

/** A member's figures as GET /api/stats gives them (JSON); summed field by field for the fleet. */
export type Figures = Record<string, unknown>;

export type MemberFigures =
  | { member: string; self: boolean; answered: true; stats: Figures }
  | { member: string; self: boolean; answered: false; error: string };

export interface FleetFigures {
  members: MemberFigures[];
  /** The answering members' figures added up; the bandwidth table per day and kind of file. */
  total: Figures;
}

/**
 * GET /api/stats?fleet=1: this member's figures and every other member's,
 * asked on their agent ports (as the members ask each other for objects),
 * and their sum: the whole fleet's bandwidth table from one place. A member
 * that does not answer within ANSWER_WITHIN_MS is listed with why, never left out.
 */
export async function gatherFleetFigures(fleet: Fleet, own: Figures): Promise<FleetFigures> {
  const self = fleet.self();
  if (self === undefined) throw new GatewayError(409, "not_in_a_fleet", NOT_IN_A_FLEET);
  const members = await Promise.all(
    fleet.view().map(async ({ member }): Promise<MemberFigures> => {
      if (member === self) return { member, self: true, answered: true, stats: own };
      try {
        const res = await fetch(`${member}${FLEET_STATS_PATH}`, {
          headers: { [PEER_HEADER]: self },
          signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
          proxy: false,
        } as RequestInit);
        if (res.status !== 200) throw new Error(`it answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
        // Summed field by field below: anything but a member's figures (another version, something else on
        // that port) is reported as not answering, never a 500 for the whole fleet's view.
        const stats = v.safeParse(MemberFiguresShape, await res.json());
        if (!stats.success) throw new Error(`its figures are not cachegate's: ${v.summarize(stats.issues)}`);
        return { member, self: false, answered: true, stats: stats.output };
      } catch (err) {
        return { member, self: false, answered: false, error: (err as Error).message };
      }
    }),
  );
  const answered = members.flatMap((m) => (m.answered ? [m.stats] : []));
  return { members, total: sum(answered) };
}

/** What a member's GET /fleet/stats must look like to be added up: an object, its bandwidth rows by day and kind. */
const MemberFiguresShape = v.looseObject({
  bandwidth: v.optional(v.array(v.looseObject({ day: v.string(), kind: v.string() }))),
});

/** Numbers add up; objects add up field by field; the bandwidth rows add up per day and kind. */
function sum(all: Figures[]): Figures {
  const out: Figures = {};
  for (const figures of all) {
    for (const [key, value] of Object.entries(figures)) {
      if (key === "bandwidth" && Array.isArray(value)) out[key] = addRows((out[key] as Row[]) ?? [], value as Row[]);
      else if (typeof value === "number") out[key] = ((out[key] as number) ?? 0) + value;
      else if (value !== null && typeof value === "object" && !Array.isArray(value))
        out[key] = sum([(out[key] as Figures) ?? {}, value as Figures]);
    }
  }
  return out;
}

type Row = { day: string; kind: string } & Record<string, unknown>;

function addRows(into: Row[], rows: Row[]): Row[] {
  const byKey = new Map(into.map((r) => [`${r.day}\t${r.kind}`, r]));
  for (const row of rows) {
    const key = `${row.day}\t${row.kind}`;
    const had = byKey.get(key);
    byKey.set(key, had ? ({ ...sum([had, row]), day: row.day, kind: row.kind } as Row) : { ...row });
  }
  return [...byKey.values()].sort((a, b) =>
    a.day === b.day ? a.kind.localeCompare(b.kind) : b.day.localeCompare(a.day),
  );
}

/**
 * The agent port's GET /fleet/stats: this member's figures, for the other
 * members only (the peer mark, from a listed member's address); anyone else
 * gets a 403 that says where the figures are (the admin API).
 */
export function fleetStatsPage(fleet: Fleet, figures: () => Promise<Figures>) {
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    if (req.method !== "GET" || (req.url ?? "").split("?", 1)[0] !== FLEET_STATS_PATH) return false;
    const member = req.headers[PEER_HEADER] === undefined ? undefined : fleet.memberAt(req.socket.remoteAddress);
    if (!member) {
      const error =
        "GET /fleet/stats is for the fleet members listed in CACHEGATE_PEERS; " +
        "operators read the fleet's figures with GET /api/stats?fleet=1 on any member's admin port";
      send(res, 403, { error, code: "not_a_fleet_member" });
      return true;
    }
    figures().then(
      (value) => send(res, 200, value),
      (err) => send(res, 500, { error: `this member could not read its figures: ${(err as Error).message}` }),
    );
    return true;
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
