import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import * as v from "valibot";
import type { AgentStore } from "../agents/agent-store.ts";
import { toFieldErrors } from "../config/issues.ts";
import type { Logger } from "../log.ts";
import { readJson } from "./json-body.ts";

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
    const parsed = v.safeParse(NewAgent, await readJson(c.req.raw));
    if (!parsed.success)
      throw new HTTPException(400, {
        message: "invalid agent; nothing was created",
        cause: toFieldErrors(parsed.issues),
      });
    const issued = await deps.agents.issue(parsed.output.name);
    deps.log.info("agent credentials issued", { id: issued.id, name: issued.name, username: issued.username });
    return c.json(issued, 201);
  });

  app.get("/api/agents", (c) => c.json({ agents: deps.agents.list() }));

  app.delete("/api/agents/:id", (c) => {
    const id = c.req.param("id");
    if (!/^\d+$/.test(id))
      throw new HTTPException(400, { message: `agent id must be a number from GET /api/agents; got "${id}"` });
    if (!deps.agents.revoke(Number(id)))
      throw new HTTPException(404, { message: `no agent with id ${id}; see GET /api/agents` });
    deps.log.info("agent credentials revoked", { id: Number(id) });
    return c.json({ revoked: Number(id) });
  });
  return app;
}
