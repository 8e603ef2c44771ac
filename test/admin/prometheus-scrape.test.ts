import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { agentGet, freePort } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { startOrigin } from "../support/origin.ts";
import { waitFor } from "../support/wait.ts";

const defer = cleanupAfterEach();
const started = new Set<Subprocess>();
afterAll(() => {
  for (const p of started) p.kill("SIGKILL");
});

const METRICS_TOKEN = "scraped-by-prometheus-0123456789";

/** The README's scrape job, as an operator would copy it, pointed at this gateway and this token file. */
async function readmeScrapeConfig(target: string, tokenFile: string): Promise<string> {
  const readme = await readFile(join(import.meta.dir, "../../README.md"), "utf8");
  const block = /```yaml\n(scrape_configs:[\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error("no scrape_configs yaml block in the README");
  const job = block
    .replace("/etc/prometheus/cachegate-metrics-token", tokenFile)
    .replace('"gateway:9090"', JSON.stringify(target));
  return `global:\n  scrape_interval: 1s\n${job}`;
}

describe("a real Prometheus server scraping the gateway", () => {
  test("accepts the README's scrape job and stores the gateway's series, read with the metrics token", async () => {
    const origin = startOrigin(() => new Response("x".repeat(500), { headers: { "cache-control": "max-age=60" } }));
    defer(() => origin.stop());
    const gw = await startTestGateway({ metricsToken: METRICS_TOKEN });
    defer(() => gw.close());
    expect((await agentGet(gw.proxyUrl, origin.url("/a.json"))).headers["x-cache"]).toBe("MISS");
    await gw.idle();
    expect((await agentGet(gw.proxyUrl, origin.url("/a.json"))).headers["x-cache"]).toBe("HIT");

    const dir = await mkdtemp(join(tmpdir(), "cachegate-prometheus-"));
    defer(() => rm(dir, { recursive: true, force: true }));
    const tokenFile = join(dir, "token");
    await writeFile(tokenFile, METRICS_TOKEN, { mode: 0o600 });
    const configFile = join(dir, "prometheus.yml");
    await writeFile(configFile, await readmeScrapeConfig(`127.0.0.1:${gw.adminPort}`, tokenFile));

    const check = Bun.spawnSync(["promtool", "check", "config", configFile]);
    expect({ exitCode: check.exitCode, err: check.stderr.toString() }).toEqual({ exitCode: 0, err: "" });

    const port = await freePort();
    const prometheus = Bun.spawn(
      [
        "prometheus",
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, "tsdb")}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    started.add(prometheus);
    defer(async () => {
      prometheus.kill();
      await prometheus.exited;
      started.delete(prometheus);
    });

    const query = async (q: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`).catch(
        () => undefined,
      );
      if (!res?.ok) return undefined;
      const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
      return body.data.result[0]?.value[1];
    };
    await waitFor("Prometheus to scrape the gateway", async () => (await query('up{job="cachegate"}')) === "1", 20_000);
    expect(await query('cachegate_requests_total{cache="HIT"}')).toBe("1");
    expect(await query('cachegate_requests_total{cache="MISS"}')).toBe("1");
    expect(await query("cachegate_served_bytes_total")).toBe("1000");
    expect(await query("cachegate_build_info")).toBe("1");

    const targets = (await (await fetch(`http://127.0.0.1:${port}/api/v1/targets`)).json()) as {
      data: { activeTargets: { health: string; lastError: string }[] };
    };
    expect(targets.data.activeTargets.map((t) => [t.health, t.lastError])).toEqual([["up", ""]]);
  }, 30_000);
});
