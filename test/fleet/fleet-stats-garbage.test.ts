import { expect, test } from "bun:test";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";

const defer = cleanupAfterEach();

test.each([
  ["null", "null"],
  ["bandwidth rows without a day", '{"requests":3,"bandwidth":[{"kind":"other","requests":3}]}'],
])(
  "a member whose figures are not a member's (%s) is listed as not answering; the fleet's view still adds up the rest",
  async (_, figures) => {
    const other = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) =>
        new URL(req.url).pathname === "/fleet/stats"
          ? new Response(figures, { headers: { "content-type": "application/json" } })
          : new Response("ok"),
    });
    defer(() => other.stop(true));
    const gw = await startTestGateway();
    defer(() => gw.close());
    const member = `http://127.0.0.1:${other.port}`;
    expect((await admin(gw).patch({ cluster: { peers: [gw.proxyUrl, member], self: gw.proxyUrl } })).status).toBe(200);

    const res = await admin(gw).get("/api/stats?fleet=1");
    expect(res.status).toBe(200);
    const { fleet } = (await res.json()) as {
      fleet: { members: { member: string; answered: boolean; error?: string }[] };
    };
    const listed = fleet.members.find((m) => m.member === member);
    expect(listed).toMatchObject({ answered: false });
    expect(listed?.error).toContain("not cachegate's");
    expect(fleet.members.find((m) => m.member === gw.proxyUrl)).toMatchObject({ answered: true });
  },
);
