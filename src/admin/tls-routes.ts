import { Hono } from "hono";

/** GET /api/ca.pem: the certificate agents must trust for intercepted HTTPS. */
export function tlsRoutes(deps: { caPem: () => string }) {
  const app = new Hono();
  app.get("/api/ca.pem", (c) =>
    c.body(deps.caPem(), 200, {
      "content-type": "application/x-pem-file",
      "content-disposition": 'attachment; filename="cachegate-ca.pem"',
    }),
  );
  return app;
}
