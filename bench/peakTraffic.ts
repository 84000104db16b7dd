// RDP-like traffic for the peak benchmark, with every byte verified: each direction of a tunnelled
// connection is a window onto one deterministic pattern (the same in every process), starting at an
// offset the client picks and announces in an 8-byte header. Bursty and mostly device -> client.

/** The shared pattern: 1 MiB from a fixed xorshift seed, identical in every process. */
export const PATTERN: Buffer = (() => {
  const buf = Buffer.alloc(1024 * 1024);
  let x = 0x9e3779b9;
  for (let i = 0; i < buf.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeUInt32LE(x >>> 0, i);
  }
  return buf;
})();

/** The header a client sends first: the offsets of its down (device -> client) and up streams. */
export const HEADER_BYTES = 8;

/** The period of the traffic ticks; each tick a connection sends one burst (or none). */
export const TICK_MS = 100;

/**
 * The size of one burst with mean `perSecond * TICK_MS / 1000`: mostly small screen updates (80 %:
 * 0–1× the mean), sometimes a larger redraw (20 %: 1–5× the mean), as an RDP session is bursty.
 */
export function burstBytes(perSecond: number): number {
  const mean = (perSecond * TICK_MS) / 1000;
  const r = Math.random();
  return Math.round(r < 0.8 ? mean * Math.random() : mean * (1 + 4 * Math.random()));
}

/** The pattern's bytes [pos, pos + n) from `offset`, as at most two slices (no copy). */
export function slices(offset: number, pos: number, n: number): Buffer[] {
  const out: Buffer[] = [];
  let at = (offset + pos) % PATTERN.length;
  while (n > 0) {
    const take = Math.min(n, PATTERN.length - at);
    out.push(PATTERN.subarray(at, at + take));
    n -= take;
    at = 0;
  }
  return out;
}

/** Checks received bytes against the pattern; counts what matched, remembers a mismatch. */
export class Verifier {
  verified = 0;
  mismatched = false;
  constructor(private readonly offset: number) {}

  check(chunk: Buffer): boolean {
    let done = 0;
    for (const expected of slices(this.offset, this.verified, chunk.length)) {
      if (!expected.equals(chunk.subarray(done, done + expected.length))) {
        this.mismatched = true;
        return false;
      }
      done += expected.length;
    }
    this.verified += chunk.length;
    return true;
  }
}

/** CPU time (user + system) and RSS of this process. */
export function processFigures(): { cpuMs: number; rssMb: number } {
  const c = process.cpuUsage();
  return { cpuMs: (c.user + c.system) / 1000, rssMb: process.memoryUsage().rss / 2 ** 20 };
}
