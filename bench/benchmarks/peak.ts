// Benchmark `peak`: ramp to N concurrent live sessions on the local stack (default 500), each carried
// by the product's DeviceAgent on the device side and its ClientBridge on the client side with
// RDP-like traffic (≈60 KB/s, bursty, mostly device -> client), every byte verified; hold the peak
// while new opens keep arriving (≈1/s) and sessions end at random. Reports open p50/p99 under the
// peak, connections lost, bytes verified, RSS and CPU of each process, storage requests/s.
//   npm run bench -- peak [--quick] [--peak N] [--hold-s S] [--devices D] [--kbps K]
// The control plane (functions host, durable engine, relay emulator) runs in this process, the
// device side and the client side each in a child process (bench/peakWorker.ts), Azurite in its own.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Enrollment } from '../../lib/devices/deviceRegistry';
import { LocalRuntime, type HostStats } from '../../local/runtime';
import { percentile, type Benchmark, type Figure } from '../figures';
import type { WorkerAnswer, WorkerCommand, WorkerStats } from '../peakWorker';
import { processFigures } from '../peakTraffic';

const COMMAND = 'npm run bench -- peak';

export interface PeakOptions {
  peak: number;
  holdS: number;
  /** Devices in the fleet (one DeviceAgent each); the sessions are spread over them. */
  devices: number;
  /** Device -> client bytes per second per session (client -> device is a twentieth). */
  downBytesPerS: number;
  /** Opens in flight at once during the ramp. */
  rampConcurrency: number;
  /** Mean arrivals per second of new opens, and of random ends, during the hold. */
  opensPerS: number;
}

export function peakOptions(args: string[]): PeakOptions {
  const flag = (name: string): number | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : undefined;
  };
  const peak = flag('peak') ?? 500;
  return {
    peak,
    holdS: flag('hold-s') ?? (args.includes('--quick') ? 60 : 600),
    devices: flag('devices') ?? Math.min(peak, 100),
    downBytesPerS: (flag('kbps') ?? 60) * 1000,
    rampConcurrency: flag('ramp-concurrency') ?? 20,
    opensPerS: flag('opens-per-s') ?? 1,
  };
}

/** A worker child and a way to ask it something and wait for the matching answer. */
class Worker {
  readonly proc: ChildProcess;
  private readonly waiters: Array<{ test: (a: WorkerAnswer) => boolean; resolve: (a: WorkerAnswer) => void }> = [];

  constructor(role: 'devices' | 'clients') {
    this.proc = fork(path.join(__dirname, '..', 'peakWorker.js'), [role], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.proc.on('message', (a: WorkerAnswer) => {
      const i = this.waiters.findIndex((w) => w.test(a));
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(a);
    });
  }

  ask<T extends WorkerAnswer>(cmd: WorkerCommand, test: (a: WorkerAnswer) => boolean, timeoutMs = 60_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`worker: no answer to ${cmd.type} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push({
        test,
        resolve: (a) => {
          clearTimeout(timer);
          resolve(a as T);
        },
      });
      this.proc.send(cmd);
    });
  }

  stats(): Promise<WorkerStats> {
    return this.ask<WorkerStats & { type: 'stats' }>({ type: 'stats' }, (a) => a.type === 'stats');
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || !this.proc.connected) return;
    const exited = once(this.proc, 'exit');
    await this.ask({ type: 'stop' }, (a) => a.type === 'stopped', 30_000).catch(() => this.proc.kill('SIGKILL'));
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

interface Open {
  ms: number;
  status: number;
  /** The tunnel carried its first verified byte. */
  carried: boolean;
}

/** RSS of a process by pid, from /proc (Linux), in MiB. */
async function rssMbOf(pid: number | undefined): Promise<number> {
  if (!pid) return Number.NaN;
  try {
    const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024;
  } catch {
    return Number.NaN;
  }
}

/**
 * fetch, retried when the connection fails before an answer (a kept-alive socket the host closed
 * as it was reused: ECONNRESET); nothing reached the handler then, so a retry is not a second call.
 */
async function call(url: string, init?: RequestInit): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url, init);
    } catch (err) {
      if (attempt >= 3) throw err;
      connectionRetries++;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}
let connectionRetries = 0;

interface Rss {
  rss: number;
  emuRss: number;
  devRss: number;
  cliRss: number;
}

/** The host child's next report (it reports every second), so a reading is never older than the moment asked. */
async function freshHostStats(rt: LocalRuntime): Promise<HostStats> {
  const old = rt.hostStats;
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = rt.hostStats;
    if (now && now !== old) return now;
  }
  throw new Error('the host process reported no stats for 5 s');
}

export async function runPeak(o: PeakOptions, log: (line: string) => void): Promise<Figure[]> {
  const holdOpens = Math.ceil(o.holdS * o.opensPerS * 1.3) + 10;
  const namespaces = o.peak + holdOpens + o.rampConcurrency;
  const rt = new LocalRuntime({
    disableTimers: true,
    logSink: () => {},
    // The control plane (functions host + durable engine) in a process of its own, so its CPU, RSS
    // and storage requests are measured apart from the relay emulator's (Microsoft's in Azure) and
    // the benchmark's driver, which stay in this one.
    hostProcess: true,
    hostStatsEveryMs: 1000,
    // e.g. BENCH_PEAK_HOST_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the control plane.
    hostNodeArgs: process.env.BENCH_PEAK_HOST_NODE_ARGS?.split(/\s+/).filter(Boolean),
    relayOptions: {
      // Strict Azure behaviour on a fast clock: a namespace activates in 44 ms instead of 44 s, and
      // the namespace-write windows and ARM buckets turn over 1,000 times faster, so the prefill is
      // quick without turning any strict behaviour off.
      timeScale: 0.001,
      quotaPerSubscription: namespaces + 100,
    },
    // One benchmark principal opens every session: lift the per-principal rate limit.
    settings: { SESSION_RATE_LIMIT_PER_MINUTE: '100000' },
  });
  const devicesWorker = new Worker('devices');
  const clientsWorker = new Worker('clients');
  const figures: Figure[] = [];
  try {
    await rt.start();
    log(`prefilling ${namespaces} namespaces (emulator timeScale 0.001)…`);
    let t = performance.now();
    await rt.prefill(namespaces);
    log(`prefilled in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const admin = await rt.token('admin', 'bench-admin', 7200);
    const enrollments: Enrollment[] = [];
    for (let i = 0; i < o.devices; i++) {
      const r = await fetch(`${rt.apiUrl}/devices`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ deviceId: `peak-dev-${i}` }),
      });
      if (r.status !== 201) throw new Error(`device registration failed: ${r.status} ${await r.text()}`);
      enrollments.push((await r.json()) as Enrollment);
    }
    const ca = rt.relay!.caCertPem;
    const traffic = { downBytesPerS: o.downBytesPerS, upBytesPerS: Math.round(o.downBytesPerS / 20) };
    const started = await devicesWorker.ask<{ type: 'started'; port: number }>(
      { type: 'start', ca, enrollments, ...traffic },
      (a) => a.type === 'started',
    );
    await clientsWorker.ask({ type: 'start', ca, ...traffic }, (a) => a.type === 'started');
    const port = started.port;
    log(`${o.devices} device agents polling every 1 s; target on port ${port}`);
    await new Promise((r) => setTimeout(r, 1200));

    const live: string[] = [];
    let deviceIndex = 0;
    let failedOpens = 0;
    /** Failed opens by the POST's status (→ the status polled after a 202) and the session's last status. */
    const failures = new Map<string, number>();
    const failureSummary = (): string => [...failures].map(([k, v]) => `${k} ×${v}`).join(', ') || 'none';
    const openOne = (): Promise<Open> =>
      tryOpen().catch((err: unknown) => {
        failedOpens++;
        log(`an open failed: ${err instanceof Error ? err.message : String(err)}`);
        return { ms: Number.NaN, status: 0, carried: false };
      });
    const tryOpen = async (): Promise<Open> => {
      const deviceId = enrollments[deviceIndex++ % enrollments.length].deviceId;
      const begin = performance.now();
      const r = await call(`${rt.apiUrl}/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ deviceId, port }),
      });
      const body = (await r.json()) as {
        sessionId?: string;
        relay?: { endpoint: string; hybridConnection: string; sendToken: string };
      };
      let ms = performance.now() - begin;
      let status = r.status;
      let relay = body.relay;
      let lastStatus = '';
      if (status === 202 && body.sessionId) {
        // Past the budget: poll as a client would, so the session still joins the peak.
        for (let i = 0; i < 60 && !relay; i++) {
          await new Promise((res) => setTimeout(res, 500));
          const g = await call(`${rt.apiUrl}/sessions/${body.sessionId}`, {
            headers: { authorization: `Bearer ${admin}` },
          });
          const v = (await g.json()) as { status?: string; reason?: string; relay?: typeof relay };
          lastStatus = `${v.status ?? ''}${v.reason ? ` (${v.reason})` : ''}`;
          if (v.status === 'ready' && v.relay) relay = v.relay;
          if (v.status === 'failed' || v.status === 'ended') break;
        }
        ms = performance.now() - begin;
        if (relay) status = 200;
      }
      if (!relay || !body.sessionId) {
        failedOpens++;
        const why = `${r.status}${status !== r.status ? `→${status}` : ''} ${lastStatus}`.trim();
        failures.set(why, (failures.get(why) ?? 0) + 1);
        return { ms, status, carried: false };
      }
      const sessionId = body.sessionId;
      const opened = await clientsWorker.ask<{ type: 'opened'; sessionId: string; ok: boolean; detail?: string }>(
        { type: 'open', sessionId, relay },
        (a) => a.type === 'opened' && a.sessionId === sessionId,
      );
      if (opened.ok) live.push(sessionId);
      else {
        failedOpens++;
        log(`session ${sessionId.slice(0, 8)}: the tunnel carried nothing: ${opened.detail ?? ''}`);
      }
      return { ms, status, carried: opened.ok };
    };
    let ends = 0;
    /** Ends that arrived while the live count was at the peak: skipped, so the hold never dips below it. */
    let endsSkipped = 0;
    /** The fewest live sessions seen during the hold (after each end and every progress line). */
    let minLiveInHold = Number.POSITIVE_INFINITY;
    const endOne = async (): Promise<void> => {
      if (live.length <= o.peak) {
        endsSkipped++;
        return;
      }
      ends++;
      const sessionId = live.splice(Math.floor(Math.random() * live.length), 1)[0];
      minLiveInHold = Math.min(minLiveInHold, live.length);
      await clientsWorker.ask({ type: 'end', sessionId }, (a) => a.type === 'ended' && a.sessionId === sessionId);
      const r = await call(`${rt.apiUrl}/sessions/${sessionId}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${admin}` },
      });
      await r.arrayBuffer();
    };

    // Ramp.
    t = performance.now();
    const ramp: Open[] = [];
    let attempts = 0;
    let opening = 0;
    const rampProgress = setInterval(
      () =>
        log(
          `  ramp t+${((performance.now() - t) / 1000).toFixed(0)} s: ${live.length} live, ${failedOpens} failed (${failureSummary()})`,
        ),
      30_000,
    );
    await Promise.all(
      Array.from({ length: Math.min(o.rampConcurrency, o.peak) }, async () => {
        while (live.length + opening < o.peak && attempts < o.peak * 1.2) {
          attempts++;
          opening++;
          ramp.push(await openOne().finally(() => opening--));
        }
      }),
    );
    clearInterval(rampProgress);
    const rampS = (performance.now() - t) / 1000;
    const rampOk = ramp.filter((x) => x.carried).map((x) => x.ms);
    log(
      `ramp: ${live.length} live in ${rampS.toFixed(0)} s (${o.rampConcurrency} opens in flight); open p50 ${percentile(rampOk, 50).toFixed(0)} ms, p99 ${percentile(rampOk, 99).toFixed(0)} ms; ${failedOpens} failed`,
    );

    // Hold: opens and ends arrive at random (Poisson, mean opensPerS each); an end that would take
    // the live count below the peak is skipped, so the peak is held (a random walk would drift).
    const hold: Open[] = [];
    const before = {
      dev: await devicesWorker.stats(),
      cli: await clientsWorker.stats(),
      main: processFigures(),
      host: await freshHostStats(rt),
    };
    const holdStart = performance.now();
    minLiveInHold = live.length;
    const holdEnd = holdStart + o.holdS * 1000;
    const inFlight = new Set<Promise<unknown>>();
    const track = (p: Promise<unknown>): void => {
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    };
    const arrivals = async (what: () => Promise<unknown>): Promise<void> => {
      while (performance.now() < holdEnd) {
        await new Promise((r) => setTimeout(r, -Math.log(1 - Math.random()) * (1000 / o.opensPerS)));
        if (performance.now() >= holdEnd) break;
        track(what());
      }
    };
    const samples: Rss[] = [];
    const sample = async (): Promise<Rss> => {
      const [rss, emuRss, devRss, cliRss] = await Promise.all([
        rssMbOf(rt.hostPid),
        rssMbOf(process.pid),
        rssMbOf(devicesWorker.proc.pid),
        rssMbOf(clientsWorker.proc.pid),
      ]);
      return { rss, emuRss, devRss, cliRss };
    };
    const sampler = setInterval(() => void sample().then((s) => samples.push(s)), 5000);
    const progress = setInterval(() => {
      minLiveInHold = Math.min(minLiveInHold, live.length);
      void clientsWorker
        .stats()
        .then((s) =>
          log(
            `  t+${((performance.now() - holdStart) / 1000).toFixed(0)} s: ${s.live} live, ${hold.length} opens in the hold, ${s.lost} lost, ${(s.verified / 2 ** 20).toFixed(0)} MiB verified at the clients`,
          ),
        );
    }, 30_000);
    await Promise.all([arrivals(async () => hold.push(await openOne())), arrivals(endOne)]);
    await Promise.allSettled([...inFlight]);
    clearInterval(sampler);
    clearInterval(progress);
    const holdS = (performance.now() - holdStart) / 1000;
    // One last sample: a hold shorter than the sampling interval still reports memory.
    samples.push(await sample());
    const after = {
      dev: await devicesWorker.stats(),
      cli: await clientsWorker.stats(),
      main: processFigures(),
      host: await freshHostStats(rt),
    };
    const devStorage = after.dev.storageRequests - before.dev.storageRequests;
    const hostStorage = after.host.storageRequests - before.host.storageRequests;
    const storagePerS = (hostStorage + devStorage) / holdS;
    const holdOk = hold.filter((x) => x.carried).map((x) => x.ms);
    const p50 = percentile(holdOk, 50);
    const p99 = percentile(holdOk, 99);
    const lost = after.cli.lost;
    const verified = after.cli.verified + after.dev.verified;
    const mismatches = after.cli.mismatches + after.dev.mismatches;
    const cpuPct = (a: number, b: number): number => ((a - b) / (holdS * 1000)) * 100;
    const maxOf = (f: (s: (typeof samples)[number]) => number): number => Math.max(...samples.map(f));
    const hostRss = maxOf((s) => s.rss);
    log(
      `hold ${holdS.toFixed(0)} s, ${after.cli.live} live at the end, never fewer than ${minLiveInHold} (${ends} ended at random, ${endsSkipped} ends skipped at the peak): ${holdOk.length}/${hold.length} opens carried traffic, p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms; ${lost} connections lost; ${mismatches} mismatches; ${(verified / 2 ** 20).toFixed(0)} MiB verified`,
    );
    log(
      `CPU (% of one core) control plane ${cpuPct(after.host.cpuMs, before.host.cpuMs).toFixed(0)}, relay emulator + driver ${cpuPct(after.main.cpuMs, before.main.cpuMs).toFixed(0)}, devices ${cpuPct(after.dev.cpuMs, before.dev.cpuMs).toFixed(0)}, clients ${cpuPct(after.cli.cpuMs, before.cli.cpuMs).toFixed(0)}; RSS max MiB control plane ${hostRss.toFixed(0)}, relay emulator + driver ${maxOf((s) => s.emuRss).toFixed(0)}, devices ${maxOf((s) => s.devRss).toFixed(0)}, clients ${maxOf((s) => s.cliRss).toFixed(0)}; storage ${storagePerS.toFixed(0)} requests/s (control plane ${(hostStorage / holdS).toFixed(0)}, devices ${(devStorage / holdS).toFixed(0)}); ${after.dev.skippedBursts + after.cli.skippedBursts} bursts skipped (socket full)`,
    );
    const name = (f: string): string => `peak${o.peak}_${f}`;
    const note = `${o.peak} live (${after.cli.live} at the end), hold ${holdS.toFixed(0)} s, ${o.opensPerS}/s opens and ends, ${o.devices} DeviceAgents, ${o.downBytesPerS / 1000} KB/s per session down; control plane (host + durable engine) in one process, the relay emulator and the driver in another, devices and clients in one each, Azurite in its own`;
    const command = `${COMMAND}${o.peak !== 500 ? ` --peak ${o.peak}` : ''}${o.holdS !== 600 ? ` --hold-s ${o.holdS}` : ''}`;
    const fig = (n: string, value: number, unit: string, goal?: string): void =>
      void figures.push({ name: name(n), value: Math.round(value * 10) / 10, unit, goal, command, note });
    fig('open_p50_ms', p50, 'ms');
    fig('open_p99_ms', p99, 'ms', '< 3000');
    fig('connections_lost', lost, 'connections', '0');
    fig('bytes_verified', verified, 'bytes');
    fig('byte_mismatches', mismatches, 'connections', '0');
    fig('host_rss_mb', hostRss, 'MiB');
    fig(
      'emulator_rss_mb',
      maxOf((s) => s.emuRss),
      'MiB',
    );
    fig('host_cpu_pct', cpuPct(after.host.cpuMs, before.host.cpuMs), '% of a core');
    fig('emulator_cpu_pct', cpuPct(after.main.cpuMs, before.main.cpuMs), '% of a core');
    fig('devices_cpu_pct', cpuPct(after.dev.cpuMs, before.dev.cpuMs), '% of a core');
    fig('clients_cpu_pct', cpuPct(after.cli.cpuMs, before.cli.cpuMs), '% of a core');
    fig('storage_requests_per_s', storagePerS, 'requests/s');
    fig('live_at_end', after.cli.live, 'sessions', String(o.peak));
    fig('live_min_in_hold', minLiveInHold, 'sessions', `≥ ${o.peak}`);
    fig('failed_opens', failedOpens, 'opens', '0');
    log(`failed opens: ${failureSummary()}`);
    log(`${connectionRetries} requests retried after a connection reset before any answer`);
    return figures;
  } finally {
    await Promise.allSettled([devicesWorker.stop(), clientsWorker.stop()]);
    await rt.close();
  }
}

export const benchmark: Benchmark = {
  name: 'peak',
  description:
    'ramp to N live sessions (DeviceAgent + ClientBridge, RDP-like traffic verified), hold while opens and ends continue',
  run: (log, args = []) => runPeak(peakOptions(args), log),
};
