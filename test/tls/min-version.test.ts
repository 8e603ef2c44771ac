import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { admin } from "../support/admin.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { opensslHandshake } from "../support/tls-clients.ts";

/**
 * tls.minVersion: a client offering less is refused at the handshake, on
 * intercepted tunnels and on the TLS agent listener. The handshakes go to
 * localhost:443 through the proxy: the gateway answers the TLS itself, so
 * no origin is needed.
 */

let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
});

afterAll(async () => {
  await gw?.close();
});

async function setMinVersion(version: string): Promise<void> {
  const res = await admin(gw).patch({ tls: { minVersion: version } });
  expect(res.status).toBe(200);
}

const throughTunnel = (version: string) =>
  opensslHandshake({ connect: "localhost:443", servername: "localhost", version, proxyPort: gw.proxyPort });

describe("intercepted tunnels", () => {
  test("with the default minimum of TLS 1.2 a TLS 1.1 client is refused at the handshake", async () => {
    expect((await admin(gw).json("/api/config")).config.tls.minVersion).toBe("1.2");
    const old = await throughTunnel("-tls1_1");
    expect(old.protocol).toBeNull();
    expect(old.exitCode).not.toBe(0);
    expect(old.stderr).toMatch(/protocol version/i);
    expect((await throughTunnel("-tls1")).protocol).toBeNull();
  });

  test("with the default minimum TLS 1.2 and TLS 1.3 clients complete the handshake", async () => {
    expect((await throughTunnel("-tls1_2")).protocol).toBe("TLSv1.2");
    expect((await throughTunnel("-tls1_3")).protocol).toBe("TLSv1.3");
  });

  test("after lowering the minimum to 1.0, TLS 1.1 and TLS 1.0 clients are accepted", async () => {
    await setMinVersion("1.0");
    try {
      expect((await throughTunnel("-tls1_1")).protocol).toBe("TLSv1.1");
      expect((await throughTunnel("-tls1")).protocol).toBe("TLSv1");
    } finally {
      await setMinVersion("1.2");
    }
  });

  test("with a minimum of 1.3 a TLS 1.2 client is refused and a TLS 1.3 client accepted", async () => {
    await setMinVersion("1.3");
    try {
      const refused = await throughTunnel("-tls1_2");
      expect(refused.protocol).toBeNull();
      expect(refused.stderr).toMatch(/protocol version/i);
      expect((await throughTunnel("-tls1_3")).protocol).toBe("TLSv1.3");
    } finally {
      await setMinVersion("1.2");
    }
  });
});

describe("the TLS agent listener", () => {
  test("refuses clients below the minimum and follows a change of the minimum", async () => {
    const res = await admin(gw).patch({ tls: { agentListener: { enabled: true } } });
    expect(res.status).toBe(200);
    try {
      const direct = (version: string) =>
        opensslHandshake({ connect: `127.0.0.1:${gw.proxyPort}`, servername: "localhost", version });
      expect((await direct("-tls1_1")).protocol).toBeNull();
      expect((await direct("-tls1_2")).protocol).toBe("TLSv1.2");

      await setMinVersion("1.3");
      expect((await direct("-tls1_2")).protocol).toBeNull();
      expect((await direct("-tls1_3")).protocol).toBe("TLSv1.3");

      await setMinVersion("1.1");
      expect((await direct("-tls1_1")).protocol).toBe("TLSv1.1");
    } finally {
      await admin(gw).patch({ tls: { minVersion: null, agentListener: null } });
    }
  });
});
