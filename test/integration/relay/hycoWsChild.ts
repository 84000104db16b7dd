// Child process of hycoWs.test.ts: drives Microsoft's hyco-ws (ws 1.1.5, no `ca` option, so it runs
// here with NODE_EXTRA_CA_CERTS) on commands read from stdin, answering one JSON line per command.
// Loaded without HYCO_WS_CHILD_PARAMS (e.g. by a test runner scanning folders), it does nothing.
import { createHash, randomBytes } from 'node:crypto';
import readline from 'node:readline';

interface Params {
  /** wss://127.0.0.1:<port>/$hc/<hc> */
  baseUrl: string;
  listen: { keyName: string; key: string };
  send: { keyName: string; key: string };
}

interface HycoSocket {
  on(event: string, fn: (...args: unknown[]) => void): void;
  send(data: Buffer, options?: { binary: boolean }): void;
  close(): void;
}
interface HycoServer {
  on(event: string, fn: (...args: unknown[]) => void): void;
  close(): void;
}
interface HycoWs {
  createRelayedServer(options: { server: string; token: string }, onConnection: (ws: HycoSocket) => void): HycoServer;
  relayedConnect(address: string, token: string): HycoSocket;
  createRelayToken(uri: string, keyName: string, key: string, ttlSeconds?: number): string;
}

function main(raw: string): void {
  const params = JSON.parse(raw) as Params;
  // hyco-ws ships no types and is CommonJS: required as-is, typed by the interface above.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const WS = require('hyco-ws') as HycoWs;
  const reply = (value: unknown): void => {
    process.stdout.write(JSON.stringify(value) + '\n');
  };
  const tokenFor = (which: 'listen' | 'send'): string =>
    // hyco-ws's own token format: the audience keeps the port, no trailing slash.
    WS.createRelayToken(params.baseUrl, params[which].keyName, params[which].key, 600);
  let server: HycoServer | undefined;

  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const cmd = JSON.parse(line) as { cmd: string; bytes?: number; tokenKind?: 'listen' | 'send' };
    if (cmd.cmd === 'listen') {
      server = WS.createRelayedServer(
        { server: `${params.baseUrl}?sb-hc-action=listen`, token: tokenFor('listen') },
        (ws) => {
          ws.on('message', (data) => ws.send(data as Buffer, { binary: true }));
          ws.on('error', () => undefined);
        },
      );
      let answered = false;
      server.on('listening', () => {
        if (!answered) reply({ ok: true });
        answered = true;
      });
      server.on('error', () => undefined);
    } else if (cmd.cmd === 'send') {
      const payload = randomBytes(cmd.bytes ?? 1024);
      const ws = WS.relayedConnect(`${params.baseUrl}?sb-hc-action=connect`, tokenFor(cmd.tokenKind ?? 'send'));
      const chunks: Buffer[] = [];
      let got = 0;
      let done = false;
      const finish = (value: unknown): void => {
        if (done) return;
        done = true;
        reply(value);
        ws.close();
      };
      ws.on('open', () => ws.send(payload, { binary: true }));
      ws.on('message', (data) => {
        const buf = Buffer.from(data as Buffer);
        chunks.push(buf);
        got += buf.length;
        if (got >= payload.length) {
          const echoed = Buffer.concat(chunks).subarray(0, payload.length);
          finish({ ok: echoed.equals(payload), sha: createHash('sha256').update(echoed).digest('hex') });
        }
      });
      ws.on('error', (err) => finish({ ok: false, error: err instanceof Error ? err.message : String(err) }));
    } else if (cmd.cmd === 'closeListener') {
      server?.close();
      server = undefined;
      reply({ ok: true });
    } else if (cmd.cmd === 'exit') {
      server?.close();
      rl.close();
      process.exit(0);
    }
  });
}

const raw = process.env.HYCO_WS_CHILD_PARAMS;
if (raw) main(raw);
