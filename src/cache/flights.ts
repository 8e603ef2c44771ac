import type { StoredEntry } from "./cache-index.ts";
import type { Download } from "./download.ts";
import type { Representation } from "./respond.ts";

/** What the requests waiting on a fetch learn once its leader has the upstream response head. */
export type FlightHead =
  | {
      kind: "download";
      download: Download;
      rep: Representation;
      variant: string;
      vary: string[] | null;
      requestTime: number;
      responseTime: number;
    }
  | { kind: "entry"; entry: StoredEntry; stale: boolean } // revalidated (304), or stale served on an origin failure
  | { kind: "pass" } // not shareable (private, no-store, …): each waiting request asks upstream itself
  | { kind: "error"; error: Error };

/** A flight whose response is being stored: requests may read the body as it arrives. */
export type DownloadHead = Extract<FlightHead, { kind: "download" }>;

export interface Flight {
  readonly head: Promise<FlightHead>;
  /**
   * The head once it arrived. Requests already waiting when it came share it
   * (collapsed forwarding); a request arriving later is judged on freshness,
   * like a stored response (RFC 9111 §4).
   */
  readonly settled: FlightHead | undefined;
}

/** The leader's side of a flight. */
export interface LeadFlight extends Flight {
  settled: FlightHead | undefined;
  /** Tells the waiting requests what upstream answered. Anything but a download also lands the flight. */
  settle(head: FlightHead): void;
  /** The leader failed before it could settle: the waiting requests get the error, nobody waits forever. */
  abandon(error: Error): void;
  /** The fetch is over (a download stored or failed): later requests go through lookup again. */
  land(): void;
}

/**
 * The upstream fetches in progress, one per URL. As in Varnish, a request
 * for a URL that is being fetched waits on that fetch (its waiting list)
 * instead of starting its own, so coalescing is part of lookup.
 */
export function createFlights(now: () => number = Date.now) {
  const flights = new Map<string, LeadFlight>();
  const began = new WeakMap<LeadFlight, number>();
  let waiting = 0;

  return {
    get: (url: string): Flight | undefined => flights.get(url),

    begin(url: string): LeadFlight {
      const { promise, resolve } = Promise.withResolvers<FlightHead>();
      const flight: LeadFlight = {
        head: promise,
        settled: undefined,
        settle(head) {
          flight.settled = head;
          resolve(head);
          if (head.kind !== "download") flight.land();
        },
        abandon(error) {
          if (!flight.settled) flight.settle({ kind: "error", error });
        },
        land() {
          if (flights.get(url) === flight) flights.delete(url);
        },
      };
      flights.set(url, flight);
      began.set(flight, now());
      return flight;
    },

    /** Waits for a flight's head; meanwhile the request counts as waiting. */
    async wait(flight: Flight): Promise<FlightHead> {
      waiting++;
      try {
        return await flight.head;
      } finally {
        waiting--;
      }
    },

    /** Fetches whose response head has not arrived yet. */
    pending: () => {
      let n = 0;
      for (const flight of flights.values()) if (!flight.settled) n++;
      return n;
    },
    /** The fetches whose response head has not arrived yet: their URL and when each began. */
    asking(): { url: string; startedAt: number }[] {
      const out: { url: string; startedAt: number }[] = [];
      for (const [url, flight] of flights) if (!flight.settled) out.push({ url, startedAt: began.get(flight) ?? 0 });
      return out;
    },
    /** Requests waiting on another request's fetch for its response head. */
    waiting: () => waiting,
  };
}

export type Flights = ReturnType<typeof createFlights>;
