import { Hono } from "hono";
import * as v from "valibot";
import type { AgentStore } from "../agents/agent-store.ts";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { parseInput, readJson } from "./input.ts";

const NewAgent = v.strictObject({
  name: v.pipe(
    v.string('must be a string naming the agent or group, e.g. "branch-office-12"'),
    v.trim(),
    v.nonEmpty('must not be empty; e.g. "branch-office-12"'),
    v.maxLength(100, "must be at most 100 characters"),
    v.regex(/^[\p{L}\p{N} ._@()-]+$/u, "may contain letters, digits, spaces and . _ @ ( ) - only"),
  ),
});

/** Agent credentials for Patch Mode: issue (password shown once), list, revoke. */
export function agentRoutes(deps: { agents: AgentStore; log: Logger }) {
  const app = new Hono();

  app.post("/api/agents", async (c) => {
    const { name } = parseInput(NewAgent, await readJson(c.req.raw), "invalid agent; nothing was created");
    const issued = await deps.agents.issue(name);
    deps.log.info("agent credentials issued", { id: issued.id, name: issued.name, username: issued.username });
    return c.json(issued, 201);
  });

  app.get("/api/agents", (c) => c.json({ agents: deps.agents.list() }));

  app.delete("/api/agents/:id", (c) => {
    const id = c.req.param("id");
    if (!/^\d+$/.test(id)) {
      throw new GatewayError(400, "invalid_request", `agent id must be a number from GET /api/agents; got "${id}"`);
    }
    if (!deps.agents.revoke(Number(id))) {
      throw new GatewayError(404, "not_found", `no agent with id ${id}; see GET /api/agents`);
    }
    deps.log.info("agent credentials revoked", { id: Number(id) });
    return c.json({ revoked: Number(id) });
  });
  return app;
}
