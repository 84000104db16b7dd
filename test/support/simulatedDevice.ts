// A simulated device for tests and benchmarks: polls its queue with the real storage client and
// its enrollment SAS, opens a real Hybrid Connections listener with the session's Listen token,
// posts ready once the listener is online, and echoes every byte it receives.
import { QueueClient } from '@azure/storage-queue';
import { decodeDeviceMessage, type SessionOpenMessage } from '../../lib/devices/deviceNotifier';
import type { Enrollment } from '../../lib/devices/deviceRegistry';
import { HybridConnectionListener } from '../../lib/relay/hybridConnection';

export type { Enrollment } from '../../lib/devices/deviceRegistry';

export interface SimulatedDeviceOptions {
  pollMs?: number;
  /** Trust for the relay emulator's certificate. */
  ca?: string;
  /** Do not answer session.open (a device that is off). */
  silent?: boolean;
  /** Called for each accepted stream instead of echoing. */
  onConnection?: (stream: NodeJS.ReadWriteStream) => void;
}

export class SimulatedDevice {
  private readonly queue: QueueClient;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private polling?: Promise<void>;
  private readonly pending = new Set<Promise<void>>();
  readonly listeners = new Map<string, HybridConnectionListener>();
  readonly opened: SessionOpenMessage[] = [];
  readonly closed: string[] = [];
  /** When each session.open arrived (ms since epoch), for latency breakdowns. */
  readonly receivedAt = new Map<string, number>();
  /** When the listener was online and ready was posted, and when that call returned. */
  readonly readyPostedAt = new Map<string, number>();
  readonly readyAnsweredAt = new Map<string, number>();
  /** The HTTP status of each ready call (or 0 when it failed on the network). */
  readonly readyStatus = new Map<string, number>();

  constructor(
    readonly enrollment: Enrollment,
    private readonly options: SimulatedDeviceOptions = {},
  ) {
    this.queue = new QueueClient(`${enrollment.queueUrl}?${enrollment.queueSas}`);
  }

  start(): this {
    const loop = async () => {
      if (this.stopped) return;
      this.polling = this.pollOnce().catch(() => undefined);
      await this.polling;
      if (!this.stopped) this.timer = setTimeout(() => void loop(), this.options.pollMs ?? 1000);
    };
    void loop();
    return this;
  }

  private async pollOnce(): Promise<void> {
    const res = await this.queue.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 30 });
    await Promise.all(
      res.receivedMessageItems.map(async (m) => {
        await this.queue.deleteMessage(m.messageId, m.popReceipt).catch(() => undefined);
        const msg = decodeDeviceMessage(m.messageText);
        if (msg.type === 'session.close') {
          this.closed.push(msg.sessionId);
          await this.listeners.get(msg.sessionId)?.close();
          this.listeners.delete(msg.sessionId);
          return;
        }
        if (this.listeners.has(msg.sessionId)) return;
        this.receivedAt.set(msg.sessionId, Date.now());
        this.opened.push(msg);
        if (this.options.silent || Date.parse(msg.notAfter) < Date.now()) return;
        // Sessions open in the background: the next poll does not wait for them.
        this.pending.add(this.openSession(msg).catch(() => undefined));
      }),
    );
  }

  private async openSession(msg: SessionOpenMessage): Promise<void> {
    const listener = new HybridConnectionListener({
      endpoint: msg.relay.endpoint,
      hybridConnection: msg.relay.hybridConnection,
      token: msg.relay.listenToken,
      ca: this.options.ca,
    });
    listener.on('connection', (stream) => {
      if (this.options.onConnection) this.options.onConnection(stream);
      else stream.pipe(stream);
      stream.on('error', () => undefined);
    });
    listener.on('error', () => undefined);
    this.listeners.set(msg.sessionId, listener);
    await listener.start();
    this.readyPostedAt.set(msg.sessionId, Date.now());
    const res = await fetch(msg.readyUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ readyToken: msg.readyToken }),
    }).catch(() => undefined);
    await res?.arrayBuffer();
    this.readyStatus.set(msg.sessionId, res?.status ?? 0);
    this.readyAnsweredAt.set(msg.sessionId, Date.now());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.polling;
    await Promise.allSettled([...this.pending]);
    await Promise.all([...this.listeners.values()].map((l) => l.close()));
    this.listeners.clear();
  }
}
