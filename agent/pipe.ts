// Joins a local TCP socket and a relayed connection both ways with backpressure (pipe), passes an
// end from either side on (FIN <-> WebSocket close once the data before it is delivered), and
// tears both down on an error. Resolves with the byte counts once both are closed.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface PipeResult {
  /** Bytes read from the local socket and sent to the relay. */
  bytesToRelay: number;
  /** Bytes received from the relay and written to the local socket. */
  bytesFromRelay: number;
  /** The first error either side raised, if any (the connection was torn down). */
  error?: Error;
  /** Who ended first: the local socket, the relay, or an error. */
  endedBy: 'local' | 'relay' | 'error';
}

export function pipeBothWays(socket: Socket, relay: Duplex): Promise<PipeResult> {
  return new Promise((resolve) => {
    const result: PipeResult = { bytesToRelay: 0, bytesFromRelay: 0, endedBy: 'error' };
    let endedBy: PipeResult['endedBy'] | undefined;
    let socketClosed = socket.destroyed;
    let relayClosed = relay.destroyed;
    const finish = (): void => {
      if (!socketClosed || !relayClosed) return;
      result.endedBy = endedBy ?? 'error';
      resolve(result);
    };
    const fail = (err: Error): void => {
      result.error ??= err;
      endedBy ??= 'error';
      socket.destroy();
      relay.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      result.bytesToRelay += chunk.length;
    });
    relay.on('data', (chunk: Buffer) => {
      result.bytesFromRelay += chunk.length;
    });
    socket.on('end', () => {
      endedBy ??= 'local';
    });
    relay.on('end', () => {
      endedBy ??= 'relay';
    });
    socket.on('error', fail);
    relay.on('error', fail);
    // pipe() ends the destination when the source ends: FIN becomes a WebSocket close after the
    // data before it, and a WebSocket close becomes a FIN after the data before it.
    socket.pipe(relay);
    relay.pipe(socket);
    relay.once('close', () => {
      relayClosed = true;
      socket.unpipe(relay);
      if (!relay.readableEnded) {
        // Dropped without a close frame (1006) or destroyed: nothing more will come, cut the socket.
        endedBy ??= 'relay';
        socket.destroy();
      } else if (socket.writableFinished) {
        socket.destroy();
      } else {
        // Let the socket flush what the relay delivered, then close it: it cannot send anything more.
        socket.end();
        socket.once('finish', () => socket.destroy());
      }
      finish();
    });
    socket.once('close', (hadError: boolean) => {
      socketClosed = true;
      if (hadError || !socket.readableEnded) relay.destroy();
      else if (!relay.writableEnded) relay.end();
      finish();
    });
  });
}
