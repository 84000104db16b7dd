// Helpers shared by the local-mode tests: a range of free ports (the relay emulator's namespace
// ports are a fixed range in local mode), an echo server, and bytes through a local port.
import { once } from 'node:events';
import net from 'node:net';

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** `count` consecutive ports free on `host` (bounded tries over the range 20000-59999). */
export async function freePortRange(count: number, host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await portFree(p, host);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found on ${host}`);
}

/** An echo server on `host`; `close()` also ends the connections it holds. */
export async function echoServer(host = '127.0.0.1'): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}

export { echoThrough } from '../support/streams';
