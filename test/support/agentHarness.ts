// A thin harness around the product's DeviceAgent for end-to-end tests and benchmarks: the agent
// runs unchanged; the harness only watches its queue (the messages it received, and when) and its
// ready calls (when, and the answer), and offers an in-process TCP echo target to pipe to.
import net from 'node:net';
import { AnonymousCredential, QueueClient, type QueueReceiveMessageOptions } from '@azure/storage-queue';
import { DeviceAgent, postReadyWithFetch, type AgentLog, type ReadyPoster } from '../../agent/deviceAgent';
import { decodeDeviceMessage, type SessionOpenMessage } from '../../lib/devices/deviceNotifier';
import type { Enrollment } from '../../lib/devices/deviceRegistry';

export type { Enrollment } from '../../lib/devices/deviceRegistry';

export interface AgentHarnessOptions {
  /** Ports the agent serves (its --allow). */
  allowPorts: number[];
  pollMs?: number;
  /** Trust for the relay emulator's certificate. */
  ca?: string;
  /** The agent's log events (default: dropped). */
  log?: AgentLog;
}

/** The enrollment's queue client, as the agent makes it, reporting each message it hands over. */
class WatchedQueueClient extends QueueClient {
  constructor(
    enrollment: Enrollment,
    private readonly onMessage: (text: string) => void,
  ) {
    super(`${enrollment.queueUrl}?${enrollment.queueSas.replace(/^\?/, '')}`, new AnonymousCredential(), {
      retryOptions: { maxTries: 2, tryTimeoutInMs: 15_000 },
    });
  }

  override async receiveMessages(options?: QueueReceiveMessageOptions) {
    const res = await super.receiveMessages(options);
    for (const m of res.receivedMessageItems) this.onMessage(m.messageText);
    return res;
  }
}

export class AgentHarness {
  readonly agent: DeviceAgent;
  /** Every session.open the agent received, in order. */
  readonly opened: SessionOpenMessage[] = [];
  /** The ids of every session.close the agent received. */
  readonly closed: string[] = [];
  /** When each session.open reached the agent (ms since epoch), for latency breakdowns. */
  readonly receivedAt = new Map<string, number>();
  /** When the agent first posted ready (its listener online), and when its last ready call returned. */
  readonly readyPostedAt = new Map<string, number>();
  readonly readyAnsweredAt = new Map<string, number>();
  /** The HTTP status of each session's last ready call (0 when it failed on the network). */
  readonly readyStatus = new Map<string, number>();

  constructor(
    readonly enrollment: Enrollment,
    options: AgentHarnessOptions,
  ) {
    const postReady: ReadyPoster = async (url, body) => {
      const sessionId = this.opened.find((m) => m.readyUrl === url)?.sessionId ?? url;
      if (!this.readyPostedAt.has(sessionId)) this.readyPostedAt.set(sessionId, Date.now());
      const status = await postReadyWithFetch(url, body).catch((err: unknown) => {
        this.readyStatus.set(sessionId, 0);
        throw err;
      });
      this.readyStatus.set(sessionId, status);
      this.readyAnsweredAt.set(sessionId, Date.now());
      return status;
    };
    this.agent = new DeviceAgent({
      enrollment,
      allowPorts: new Set(options.allowPorts),
      pollIntervalMs: options.pollMs ?? 1000,
      relayCa: options.ca,
      log: options.log ?? (() => undefined),
      queueClient: new WatchedQueueClient(enrollment, (text) => this.onMessage(text)),
      postReady,
    });
  }

  private onMessage(text: string): void {
    let msg;
    try {
      msg = decodeDeviceMessage(text);
    } catch {
      return; // the agent drops it too
    }
    if (msg.type === 'session.close') {
      this.closed.push(msg.sessionId);
      return;
    }
    if (!this.receivedAt.has(msg.sessionId)) this.receivedAt.set(msg.sessionId, Date.now());
    this.opened.push(msg);
  }

  start(): this {
    this.agent.start();
    return this;
  }

  stop(): Promise<void> {
    return this.agent.close('test over');
  }
}

/** A TCP echo server on a free loopback port: the service behind the device. */
export async function startEchoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
