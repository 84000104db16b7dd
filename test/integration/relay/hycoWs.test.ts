// Conformance of the emulator with Microsoft's own client, hyco-ws (in a child process that trusts
// the emulator's certificate through NODE_EXTRA_CA_CERTS), and interop with our client both ways.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { connectHybridConnection, HybridConnectionListener } from '../../../lib/relay/hybridConnection';
import { createRelayApiFactory, type PreparedNamespace, type SessionKeys } from '../../../lib/relay/relayManager';
import { createSasToken } from '../../../lib/relay/sas';
import {
  LOCATION,
  namespaceName,
  RESOURCE_GROUP,
  startRelayTestEnv,
  SUBSCRIPTION,
  type RelayTestEnv,
} from './relayTestEnv';

interface ChildReply {
  ok: boolean;
  sha?: string;
  error?: string;
}

describe('hyco-ws against the emulator', () => {
  let env: RelayTestEnv;
  let prepared: PreparedNamespace;
  let keys: SessionKeys;
  let child: ChildProcess;
  let tmpDir: string;
  let replies: AsyncIterator<string>;
  let ourListener: HybridConnectionListener | undefined;

  const ask = async (command: Record<string, unknown>): Promise<ChildReply> => {
    child.stdin!.write(JSON.stringify(command) + '\n');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    try {
      const next = await replies.next();
      assert.ok(!next.done, 'the hyco-ws child exited');
      return JSON.parse(next.value) as ChildReply;
    } finally {
      clearTimeout(timer);
    }
  };

  before(async () => {
    env = await startRelayTestEnv();
    prepared = await env.manager.prepareNamespace({
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      location: LOCATION,
      name: namespaceName('hy'),
    });
    keys = await env.manager.getSessionKeys({
      subscriptionId: SUBSCRIPTION,
      resourceGroup: RESOURCE_GROUP,
      name: prepared.name,
      endpoint: prepared.endpoint,
    });
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-emulator-ca-'));
    const caFile = path.join(tmpDir, 'ca.pem');
    fs.writeFileSync(caFile, env.emulator.caCertPem);
    const port = new URL(prepared.endpoint).port;
    child = spawn(process.execPath, [path.join(__dirname, 'hycoWsChild.js')], {
      env: {
        ...process.env,
        NODE_EXTRA_CA_CERTS: caFile,
        HYCO_WS_CHILD_PARAMS: JSON.stringify({
          baseUrl: `wss://127.0.0.1:${port}/$hc/${prepared.hybridConnection}`,
          listen: keys.listen,
          send: keys.send,
        }),
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    replies = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  });

  after(async () => {
    await ourListener?.close({ dropConnections: true });
    if (child && child.exitCode === null) {
      const exited = once(child, 'exit');
      child.stdin!.write(JSON.stringify({ cmd: 'exit' }) + '\n');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(tmpDir, { recursive: true, force: true });
    await env.emulator.close();
  });

  it('a hyco-ws listener registers with its own token format and echoes for our sender', async () => {
    assert.deepEqual(await ask({ cmd: 'listen' }), { ok: true });
    const sender = await connectHybridConnection(
      prepared.endpoint,
      prepared.hybridConnection,
      createSasToken({ resourceUri: keys.audience, ...keys.send, expiresAt: new Date(Date.now() + 600_000) }),
      { ca: env.emulator.caCertPem },
    );
    const payload = randomBytes(256 * 1024);
    const chunks: Buffer[] = [];
    let got = 0;
    sender.write(payload);
    for await (const chunk of sender) {
      chunks.push(chunk as Buffer);
      got += (chunk as Buffer).length;
      if (got >= payload.length) break;
    }
    assert.ok(Buffer.concat(chunks).equals(payload));
    sender.destroy();
  });

  it('a hyco-ws sender round-trips through the hyco-ws listener', async () => {
    const reply = await ask({ cmd: 'send', bytes: 300_000 });
    assert.equal(reply.ok, true, reply.error);
  });

  it('a hyco-ws sender with a Listen token is refused with 403', async () => {
    const reply = await ask({ cmd: 'send', bytes: 10, tokenKind: 'listen' });
    assert.equal(reply.ok, false);
    assert.match(reply.error ?? '', /403/);
  });

  it('a hyco-ws sender round-trips through our listener', async () => {
    assert.deepEqual(await ask({ cmd: 'closeListener' }), { ok: true });
    ourListener = new HybridConnectionListener({
      endpoint: prepared.endpoint,
      hybridConnection: prepared.hybridConnection,
      token: createSasToken({ resourceUri: keys.audience, ...keys.listen, expiresAt: new Date(Date.now() + 600_000) }),
      ca: env.emulator.caCertPem,
    });
    ourListener.on('connection', (s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await ourListener.start();
    // The hyco-ws listener's close is asynchronous: wait until ours is the only one left.
    for (let i = 0; i < 50 && (await listenerCount()) > 1; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await listenerCount(), 1);
    const reply = await ask({ cmd: 'send', bytes: 200_000 });
    assert.equal(reply.ok, true, reply.error);
  });

  async function listenerCount(): Promise<number> {
    const api = createRelayApiFactory({ endpoint: env.emulator.armEndpoint, caPem: env.emulator.caCertPem })(
      SUBSCRIPTION,
    );
    const hc = await api.hybridConnections.get(RESOURCE_GROUP, prepared.name, prepared.hybridConnection);
    return hc.listenerCount ?? 0;
  }
});
