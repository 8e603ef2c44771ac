import { configFromEnv, configInputFromEnv, runtimeFromEnv } from "./config/env.ts";
import { GatewayError } from "./errors.ts";
import { startGateway } from "./gateway.ts";
import { createLogger } from "./log.ts";

const log = createLogger();

try {
  configFromEnv(process.env); // reports bad CACHEGATE_* values by their variable names
  const gateway = await startGateway({
    config: configInputFromEnv(process.env),
    runtime: runtimeFromEnv(process.env),
    log,
  });
  const shutdown = async (signal: string) => {
    log.info("shutting down", { signal });
    await gateway.stop();
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
} catch (err) {
  if (err instanceof GatewayError && err.details) {
    log.error("cachegate cannot start: fix these settings", { errors: err.details.map((e) => e.message) });
  } else {
    log.error("cachegate cannot start", { error: err });
  }
  process.exit(1);
}
