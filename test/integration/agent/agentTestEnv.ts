// Shared setup of the agent tests: Azurite (the device queue), the relay emulator with prepared
// namespaces, a fake readyUrl server that records what devices post, and local echo targets.
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import {
  QueueServiceClient,
  StorageSharedKeyCredential,
  generateQueueSASQueryParameters,
  QueueSASPermissions,
} from '@azure/storage-queue';
import { type Azurite, DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, startAzurite } from '../../../local/azurite';
import { RelayEmulator } from '../../../local/relay-emulator';
import { encodeDeviceMessage, type SessionOpenMessage } from '../../../lib/devices/deviceNotifier';
import type { Enrollment } from '../../../lib/devices/deviceRegistry';
import { createRelayApiFactory, RelayManager, type SessionTokens } from '../../../lib/relay/relayManager';

export interface ReadyPost {
  sessionId: string;
  body: { readyToken?: string; status?: string; detail?: string };
  at: number;
}

export interface AgentTestEnv {
  azurite: Azurite;
  emulator: RelayEmulator;
  manager: RelayManager;
  queues: QueueServiceClient;
  readyUrlBase: string;
  posts: ReadyPost[];
  /** Runs before the fake ready endpoint answers (e.g. to connect as a sender right then). */
  onReady: (post: ReadyPost) => Promise<void> | void;
  /** The status the fake ready endpoint answers (default 204). */
  readyStatus: number;
  echoPort: number;
  close(): Promise<void>;
}

let counter = 0;
export const uniqueName = (prefix: string): string =>
  `${prefix}-${process.pid}-${++counter}-${randomBytes(3).toString('hex')}`;

export async function startAgentTestEnv(): Promise<AgentTestEnv> {
  const azurite = await startAzurite();
  const emulator = await new RelayEmulator({
    createDelayMs: 0,
    deleteDelayMs: 10,
    timeScale: 0.01,
  }).start();
  const manager = new RelayManager({
    apiFactory: createRelayApiFactory({
      endpoint: emulator.armEndpoint,
      caPem: emulator.caCertPem,
      lroPollIntervalMs: 20,
    }),
  });
  const queues = QueueServiceClient.fromConnectionString(azurite.connectionString);
  const sockets = new Set<net.Socket>();
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  const env: AgentTestEnv = {
    azurite,
    emulator,
    manager,
    queues,
    readyUrlBase: '',
    posts: [],
    onReady: () => undefined,
    readyStatus: 204,
    echoPort: (echo.address() as net.AddressInfo).port,
    close: async () => undefined,
  };
  const readyServer = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const m = /\/sessions\/([^/]+)\/ready$/.exec(req.url ?? '');
      const post: ReadyPost = {
        sessionId: m?.[1] ?? '',
        body: JSON.parse(Buffer.concat(chunks).toString() || '{}') as ReadyPost['body'],
        at: Date.now(),
      };
      env.posts.push(post);
      void Promise.resolve(env.onReady(post))
        .catch(() => undefined)
        .then(() => res.writeHead(env.readyStatus).end());
    });
  });
  await new Promise<void>((resolve) => readyServer.listen(0, '127.0.0.1', resolve));
  env.readyUrlBase = `http://127.0.0.1:${(readyServer.address() as net.AddressInfo).port}/api/sessions`;
  env.close = async () => {
    for (const s of sockets) s.destroy();
    readyServer.closeAllConnections();
    await new Promise<void>((resolve) => readyServer.close(() => resolve()));
    await new Promise<void>((resolve) => echo.close(() => resolve()));
    await emulator.close();
    await azurite.close();
  };
  return env;
}

/** A device queue and an enrollment for it (read + process SAS, as the registry issues). */
export async function createDevice(env: AgentTestEnv, deviceId = uniqueName('dev')): Promise<Enrollment> {
  const queueName = `dev-${deviceId}`;
  const queue = env.queues.getQueueClient(queueName);
  await queue.createIfNotExists();
  const sas = generateQueueSASQueryParameters(
    { queueName, permissions: QueueSASPermissions.parse('rp'), expiresOn: new Date(Date.now() + 3600_000) },
    new StorageSharedKeyCredential(DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY),
  ).toString();
  return {
    deviceId,
    apiUrl: 'http://127.0.0.1:1/api',
    queueUrl: queue.url,
    queueSas: sas,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(),
  };
}

export interface PreparedSession {
  message: SessionOpenMessage;
  tokens: SessionTokens;
  namespace: string;
  ref: { subscriptionId: string; resourceGroup: string; name: string; endpoint: string };
}

/** A prepared namespace and the session.open message the orchestration would send for it. */
export async function prepareSession(
  env: AgentTestEnv,
  deviceId: string,
  options: { port: number; notAfterMs?: number; lifetimeMs?: number },
): Promise<PreparedSession> {
  const name = uniqueName('ag');
  const prepared = await env.manager.prepareNamespace({
    subscriptionId: 'sub-agent',
    resourceGroup: 'rg',
    location: 'local',
    name,
  });
  const ref = { subscriptionId: 'sub-agent', resourceGroup: 'rg', name, endpoint: prepared.endpoint };
  const tokens = await env.manager.issueSessionTokens(ref, {
    expiresAt: new Date(Date.now() + (options.lifetimeMs ?? 3600_000)),
  });
  const sessionId = randomUUID();
  const message: SessionOpenMessage = {
    type: 'session.open',
    version: 1,
    sessionId,
    deviceId,
    port: options.port,
    relay: {
      namespace: name,
      endpoint: tokens.endpoint,
      hybridConnection: tokens.hybridConnection,
      listenToken: tokens.listenToken,
      expiresAt: tokens.expiresAt.toISOString(),
    },
    readyUrl: `${env.readyUrlBase}/${sessionId}/ready`,
    readyToken: randomBytes(32).toString('base64url'),
    notAfter: new Date(Date.now() + (options.notAfterMs ?? 30_000)).toISOString(),
  };
  return { message, tokens, namespace: name, ref };
}

export async function sendToDevice(env: AgentTestEnv, deviceId: string, text: string): Promise<void> {
  await env.queues.getQueueClient(`dev-${deviceId}`).sendMessage(text);
}

export function encode(m: Parameters<typeof encodeDeviceMessage>[0]): string {
  return encodeDeviceMessage(m);
}

/** Polls `check` every 20 ms until it returns a value, at most `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
