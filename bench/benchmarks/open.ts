// Open latency: POST /sessions → 201 with credentials on the whole local stack, devices (the
// product's DeviceAgent) polling their queues every second, pool pre-filled. p50/p95/p99 at 1, 50 and 500 concurrent opens,
// with a breakdown of where the time goes.
import diagnostics from 'node:diagnostics_channel';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import { TableClient } from '@azure/data-tables';
import { LocalRuntime } from '../../local/runtime';
import { AgentHarness, type Enrollment } from '../../test/support/agentHarness';
import { percentile, type Benchmark, type Figure } from '../figures';

const COMMAND = 'npm run bench -- open';
/** Devices in the fleet; each polls its own queue every second and takes its share of the opens. */
const DEVICES = 100;
/** The app's default SESSION_READY_TIMEOUT_MS: the message's notAfter is its send time plus this. */
const READY_TIMEOUT_MS = 7000;
const POLL_MS = 1000;
const LEVELS = [
  { name: 'c1', concurrency: 1, rounds: 20 },
  { name: 'c50', concurrency: 50, rounds: 1 },
  { name: 'c500', concurrency: 500, rounds: 1 },
];
/** The open budget (SESSION_OPEN_BUDGET_MS's default): a burst is served when every open got 201 within it. */
const BUDGET_MS = 8000;
/** The burst search's resolution: bursts are tried in multiples of this. */
const BURST_STEP = 25;

interface Sample {
  sessionId?: string;
  totalMs: number;
  /** POST → the device got the message (queue poll wait included). */
  toDeviceMs: number;
  /** Message received → 201 (listener online, ready call, orchestration episode, status poll). */
  afterDeviceMs: number;
  /** POST → the openSession activity sent the message (from the message's notAfter). */
  toNotifyMs: number;
  /** Message received → listener online and ready posted. */
  listenMs: number;
  /** Ready posted → 201. */
  readyToCreatedMs: number;
  status: number;
}

/** Namespaces per subscription in the prefill: inside one namespace-write window (50) of each, and its quota (100). */
const PREFILL_PER_SUBSCRIPTION = 48;

export const benchmark: Benchmark = {
  name: 'open',
  description: 'POST /sessions → 201 with credentials; devices poll every 1 s; pool pre-filled',
  async run(log, args = []) {
    // `--levels c1,c50` runs only those levels (development); `--burst-search` then looks for the
    // largest burst answered 201 within the budget, `--burst-max N` its upper end (default 500).
    const flag = (name: string) => {
      const i = args.indexOf(name);
      return i >= 0 ? (args[i + 1] ?? '') : undefined;
    };
    const levelNames = flag('--levels')?.split(',');
    const levels = levelNames ? LEVELS.filter((l) => levelNames.includes(l.name)) : LEVELS;
    const burstSearch = args.includes('--burst-search');
    const burstMax = Number(flag('--burst-max') ?? 500);
    const openConcurrency = flag('--open-concurrency');
    // The search tries at most ~5 bursts below burstMax; each leaves its sessions live.
    const searchNamespaces = burstSearch ? burstMax * 3 : 0;
    const namespaces = levels.reduce((n, l) => n + l.concurrency * l.rounds, 0) + searchNamespaces;
    const rt = new LocalRuntime({
      disableTimers: true,
      // Warnings and errors are tallied (first words, ids and numbers blanked) to name what fails under load.
      logSink: (r) => {
        if (r.level === 'warning' || r.level === 'error' || r.level === 'critical')
          tally(hostProblems, `${r.level}: ${shape(r.message)}`);
      },
      relayOptions: {
        // Azure's limits throughout (quota 100 per subscription, ~50 namespace writes per subscription
        // per window, the write buckets); only creation is instant, as this figure is not about it
        // (pool_ramp_500_s is). The prefill is paced like maintenance over enough subscriptions
        // that one namespace-write window of each holds every namespace (PREFILL_PER_SUBSCRIPTION).
        createDelayMs: 0,
      },
      settings: {
        // One benchmark principal opens every session: lift the per-principal rate limit.
        SESSION_RATE_LIMIT_PER_MINUTE: '100000',
        // `--open-concurrency N`: the gate's width (SESSION_OPEN_CONCURRENCY), default the app's.
        ...(openConcurrency ? { SESSION_OPEN_CONCURRENCY: openConcurrency } : {}),
        POOL_SUBSCRIPTIONS: JSON.stringify(
          Array.from({ length: Math.ceil(namespaces / PREFILL_PER_SUBSCRIPTION) }, (_, i) => ({
            subscriptionId: `00000000-0000-0000-0000-${String(i + 1).padStart(12, '0')}`,
            resourceGroup: 'relay-broker-pool',
            location: 'local',
            quota: 100,
          })),
        ),
      },
      // The open budget (8 s) and ready timeout stay at their defaults, as in production.
    });
    const devices: AgentHarness[] = [];
    const hostProblems = new Map<string, number>();
    const readyFailures = new Map<string, number>();
    const report = (what: string, m: Map<string, number>) => {
      for (const [k, n] of [...m].sort((a, b) => b[1] - a[1]).slice(0, 8)) log(`   ${what} ×${n}: ${k}`);
      m.clear();
    };
    const figures: Figure[] = [];
    try {
      await rt.start();
      log(`prefilling ${namespaces} namespaces…`);
      let t = performance.now();
      await rt.prefill(namespaces);
      log(`prefilled in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      const admin = await rt.token('admin', 'bench-admin', 3600);
      t = performance.now();
      for (let i = 0; i < DEVICES; i++) {
        const r = await fetch(`${rt.apiUrl}/devices`, {
          method: 'POST',
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
          body: JSON.stringify({ deviceId: `bench-dev-${i}` }),
        });
        if (r.status !== 201) throw new Error(`device registration failed: ${r.status} ${await r.text()}`);
        devices.push(
          new AgentHarness((await r.json()) as Enrollment, {
            allowPorts: [22],
            pollMs: POLL_MS,
            ca: rt.relay!.caCertPem,
            log: (event, fields) => {
              if (event === 'ready.failed') tally(readyFailures, shape(String(fields.detail)));
            },
          }),
        );
      }
      log(`registered ${DEVICES} devices in ${((performance.now() - t) / 1000).toFixed(1)} s; starting their pollers`);
      // Spread the pollers over the interval, as real devices are.
      devices.forEach((d, i) => setTimeout(() => d.start(), (i * POLL_MS) / DEVICES));
      await new Promise((r) => setTimeout(r, POLL_MS + 200));

      const measureArmWrites = async () => {
        const openWrites = rt.relay!.stats().writes;
        log(`ARM writes during ${c1Sessions.length} opens: ${openWrites}`);
        figures.push({
          name: 'arm_writes_per_open',
          value: openWrites / c1Sessions.length,
          unit: 'writes',
          goal: '0 (no ARM on the hot path)',
          command: COMMAND,
        });
        // A session's whole life in ARM: its end (recycle). End the c1 sessions and count.
        rt.relay!.resetStats();
        await Promise.all(
          c1Sessions.map((id) =>
            fetch(`${rt.apiUrl}/sessions/${id}`, {
              method: 'DELETE',
              headers: { authorization: `Bearer ${admin}` },
            }).then((r) => r.arrayBuffer()),
          ),
        );
        const deadline = Date.now() + 60_000;
        let ended = 0;
        while (Date.now() < deadline) {
          ended = 0;
          for (const id of c1Sessions) {
            const r = await fetch(`${rt.apiUrl}/sessions/${id}`, { headers: { authorization: `Bearer ${admin}` } });
            if (((await r.json()) as { status?: string }).status === 'ended') ended++;
          }
          if (ended === c1Sessions.length) break;
          await new Promise((r) => setTimeout(r, 250));
        }
        const endWrites = rt.relay!.stats().writes;
        log(`ARM writes to end ${ended} sessions: ${endWrites}`);
        figures.push({
          name: 'arm_writes_per_session',
          value: round1(openWrites / c1Sessions.length + endWrites / Math.max(1, ended)),
          unit: 'writes',
          goal: '≤ 8',
          command: COMMAND,
          note: 'open + end (recycle: delete the HC; then a fresh HC and its Listen and Send rules one after another, foreign rules deleted, root keys rotated, 2 listKeys); namespace creation excluded (pool, amortised)',
        });
        rt.relay!.resetStats();
      };
      // Storage requests this process makes (host, engine; the devices' own queue polls are left
      // out): how many one open costs, by table (or queue) and operation.
      // A request made while serving a device's heartbeat is the heartbeat's, not an open's: each
      // inbound request's URL is carried along its async context, so every storage request knows
      // which inbound request (if any) it serves.
      const servingUrl = new AsyncLocalStorage<string>();
      const onServerRequest = (msg: unknown) => {
        servingUrl.enterWith((msg as { request: IncomingMessage }).request.url ?? '');
      };
      diagnostics.subscribe('http.server.request.start', onServerRequest);
      let heartbeatRequests = 0;
      const byKind = new Map<string, number>();
      const tableHost = `127.0.0.1:${rt.azurite!.tablePort}`;
      const queueHost = `127.0.0.1:${rt.azurite!.queuePort}`;
      const onRequest = (msg: unknown) => {
        const req = (msg as { request: ClientRequest }).request;
        const host = req.getHeader('host');
        const kind =
          host === tableHost ? tableRequestKind(req) : host === queueHost ? queueRequestKind(req) : undefined;
        if (!kind) return;
        if (/\/devices\/[^/]+\/heartbeat/.test(servingUrl.getStore() ?? '')) {
          heartbeatRequests++;
          return;
        }
        byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
      };
      diagnostics.subscribe('http.client.request.start', onRequest);
      let deviceIndex = 0;
      rt.relay!.resetStats();
      const c1Sessions: string[] = [];
      for (const level of levels) {
        const samples: Sample[] = [];
        const kindsBefore = new Map(byKind);
        const heartbeatsBefore = heartbeatRequests;
        for (let round = 0; round < level.rounds; round++) {
          const batch = Array.from({ length: level.concurrency }, () => devices[deviceIndex++ % DEVICES]);
          const results = await Promise.all(batch.map((d) => openOnce(rt.apiUrl, admin, d)));
          samples.push(...results);
        }
        if (level.name === 'c50') {
          // Let the ready sessions settle (their audit write), then count.
          await new Promise((r) => setTimeout(r, 1500));
          const net = new Map<string, number>();
          for (const [kind, n] of byKind) net.set(kind, (n - (kindsBefore.get(kind) ?? 0)) / samples.length);
          const beats = (heartbeatRequests - heartbeatsBefore) / samples.length;
          const perOpen = [...net.values()].reduce((a, b) => a + b, 0);
          const tablePerOpen = perOpen - (net.get('POST queue message') ?? 0);
          log(
            `storage requests per open (host + engine, through ready): ${perOpen.toFixed(1)} (the devices' heartbeats in the window made ${beats.toFixed(1)} more per open, not counted), of which table ${tablePerOpen.toFixed(1)}:`,
          );
          for (const [kind, n] of [...net].sort((a, b) => b[1] - a[1]))
            if (n >= 0.01) log(`   ${kind}: ${n.toFixed(2)}`);
          figures.push({
            name: 'open_storage_requests_per_session',
            value: round1(perOpen),
            unit: 'requests',
            goal: '≤ 6',
            command: COMMAND,
            note: "Azure Storage requests (tables + queue puts) made by the control plane (HTTP function, durable engine, activities) per session opened, through ready (50 concurrent); the devices' own queue polls and the requests made serving their heartbeats excluded",
          });
          figures.push({
            name: 'open_table_requests_per_session',
            value: round1(tablePerOpen),
            unit: 'requests',
            command: COMMAND,
            note: 'the Table requests among them',
          });
        }
        if (level.name === 'c500') {
          const within = samples.filter((s) => s.status === 201 && s.totalMs <= BUDGET_MS).length;
          figures.push({
            name: 'open_c500_within_budget_ratio',
            value: within / samples.length,
            unit: 'ratio',
            goal: '≥ 0.95',
            command: COMMAND,
            note: `${within}/${samples.length} simultaneous opens answered 201 within ${BUDGET_MS} ms`,
          });
        }
        const ok = samples.filter((s) => s.status === 201);
        const byStatus = new Map<number, number>();
        for (const s of samples) byStatus.set(s.status, (byStatus.get(s.status) ?? 0) + 1);
        if (ok.length < samples.length) {
          log(`${level.name}: answers by status: ${[...byStatus].map(([k, v]) => `${k}×${v}`).join(', ')}`);
          if (nonJsonAnswers.length > 0)
            log(
              `${level.name}: ${nonJsonAnswers.length} answers not JSON: ${nonJsonAnswers.splice(0).slice(0, 5).join('; ')}`,
            );
          const ready = new Map<number, number>();
          for (const d of devices) for (const st of d.readyStatus.values()) ready.set(st, (ready.get(st) ?? 0) + 1);
          log(`${level.name}: ready calls by status so far: ${[...ready].map(([k, v]) => `${k}×${v}`).join(', ')}`);
        }
        report('host warning/error', hostProblems);
        report('device ready call failed', readyFailures);
        if (level.name === 'c1') c1Sessions.push(...ok.map((s) => s.sessionId!));
        const totals = ok.map((s) => s.totalMs);
        const p = (q: number) => percentile(totals, q);
        log(
          `${level.name}: ${ok.length}/${samples.length} answered 201; p50 ${p(50).toFixed(0)} ms, p95 ${p(95).toFixed(0)} ms, p99 ${p(99).toFixed(0)} ms, max ${Math.max(...totals).toFixed(0)} ms`,
        );
        const all = samples.filter((s) => !Number.isNaN(s.toNotifyMs));
        const med = (f: (s: Sample) => number, from = all) =>
          percentile(
            from.map(f).filter((v) => !Number.isNaN(v)),
            50,
          ).toFixed(0);
        log(
          `   where the time goes (p50 over ${all.length} notified): POST → message sent ${med((s) => s.toNotifyMs)} ms (HTTP, start, episode, openSession), sent → device has it ${med((s) => s.toDeviceMs - s.toNotifyMs)} ms (queue poll), → listener online ${med((s) => s.listenMs)} ms, ready posted → 201 ${med((s) => s.readyToCreatedMs, ok)} ms (ready call, episode, status poll)`,
        );
        const note = `${ok.length}/${samples.length} got 201; ${DEVICES} device agents polling every ${POLL_MS} ms share the opens; 2-core machine: host, engine, emulator and devices in one process, Azurite in another`;
        if (level.name === 'c1')
          figures.push({
            name: 'open_p50_ms_c1',
            value: round1(p(50)),
            unit: 'ms',
            goal: '< 8000 budget',
            command: COMMAND,
            note,
          });
        figures.push({ name: `open_p95_ms_${level.name}`, value: round1(p(95)), unit: 'ms', command: COMMAND, note });
        figures.push({
          name: `open_p99_ms_${level.name}`,
          value: round1(p(99)),
          unit: 'ms',
          goal: level.name === 'c500' ? '< 3000 (budget 8000)' : '< 8000',
          command: COMMAND,
          note,
        });
        figures.push({
          name: `open_ok_ratio_${level.name}`,
          value: ok.length / samples.length,
          unit: 'ratio',
          goal: '1',
          command: COMMAND,
        });
        figures.push({
          name: `open_queue_wait_p50_ms_${level.name}`,
          value: round1(
            percentile(
              ok.map((s) => s.toDeviceMs),
              50,
            ),
          ),
          unit: 'ms',
          command: COMMAND,
          note: 'POST → the device received the session.open message',
        });
        if (level.name === 'c1') await measureArmWrites();
      }
      if (burstSearch) {
        // The largest burst every open of which gets 201 within the budget: bisection over
        // multiples of BURST_STEP, starting from the top. Each burst's sessions stay live (as in a
        // real peak), and the next burst waits until the last one's late opens have settled.
        const served = async (size: number): Promise<boolean> => {
          const batch = Array.from({ length: size }, () => devices[deviceIndex++ % DEVICES]);
          const results = await Promise.all(batch.map((d) => openOnce(rt.apiUrl, admin, d)));
          const within = results.filter((s) => s.status === 201 && s.totalMs <= BUDGET_MS).length;
          const p99 = percentile(
            results.map((s) => s.totalMs),
            99,
          );
          log(`burst ${size}: ${within}/${size} answered 201 within ${BUDGET_MS} ms (p99 ${p99.toFixed(0)} ms)`);
          report('host warning/error', hostProblems);
          report('device ready call failed', readyFailures);
          if (nonJsonAnswers.length > 0)
            log(
              `burst ${size}: ${nonJsonAnswers.length} answers not JSON: ${nonJsonAnswers.splice(0).slice(0, 5).join('; ')}`,
            );
          await new Promise((r) => setTimeout(r, READY_TIMEOUT_MS + 3000));
          return within === size;
        };
        let lo = 0;
        let hi = Math.floor(burstMax / BURST_STEP);
        if (await served(hi * BURST_STEP)) lo = hi;
        else
          while (hi - lo > 1) {
            const mid = Math.ceil((lo + hi) / 2);
            if (await served(mid * BURST_STEP)) lo = mid;
            else hi = mid;
          }
        figures.push({
          name: 'open_burst_max_within_budget',
          value: lo * BURST_STEP,
          unit: 'opens',
          goal: '≥ 500',
          command: `${COMMAND} --burst-search`,
          note: `the largest burst (multiples of ${BURST_STEP}, up to ${burstMax}) whose every open got 201 within ${BUDGET_MS} ms; bisection, earlier bursts' sessions still live`,
        });
      }
      diagnostics.unsubscribe('http.client.request.start', onRequest);
      diagnostics.unsubscribe('http.server.request.start', onServerRequest);
      // The storage emulator's own ceiling, measured now on this machine: what bounds the local stack.
      const scratch = TableClient.fromConnectionString(rt.azurite!.connectionString, 'benchscratch', {
        allowInsecureConnection: true,
      });
      await scratch.createTable();
      const t1 = performance.now();
      await Promise.all(
        Array.from({ length: 1000 }, (_, i) =>
          scratch.createEntity({ partitionKey: `p${i}`, rowKey: 'r', v: 'x'.repeat(300) }),
        ),
      );
      const writesPerS = 1000 / ((performance.now() - t1) / 1000);
      log(`Azurite table service: ${writesPerS.toFixed(0)} writes/s (1,000 concurrent inserts)`);
      figures.push({
        name: 'azurite_table_writes_per_s',
        value: Math.round(writesPerS),
        unit: 'writes/s',
        command: COMMAND,
        note: 'the local storage emulator’s ceiling on this machine (Azure Table storage: ~2,000/s per partition, 20,000/s per account)',
      });
    } finally {
      await Promise.all(devices.map((d) => d.stop()));
      await rt.close();
    }
    return figures;

    async function openOnce(apiUrl: string, token: string, device: AgentHarness): Promise<Sample> {
      const start = performance.now();
      const startWall = Date.now();
      const r = await postFresh(
        `${apiUrl}/sessions`,
        { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        JSON.stringify({ deviceId: device.enrollment.deviceId, port: 22 }),
      );
      // Every answer of the API is JSON (problem+json for errors); one that is not is a finding, not a crash.
      const text = r.text;
      let body: { sessionId?: string } = {};
      try {
        body = JSON.parse(text) as { sessionId?: string };
      } catch {
        nonJsonAnswers.push(`${r.status} ${JSON.stringify(text.slice(0, 80))} ${r.headers.get('content-type') ?? ''}`);
      }
      const totalMs = performance.now() - start;
      const id = body.sessionId ?? '';
      const receivedAt = device.receivedAt.get(id) ?? Number.NaN;
      const toDeviceMs = receivedAt - startWall;
      const msg = device.opened.find((m) => m.sessionId === id);
      const notifiedAt = msg ? Date.parse(msg.notAfter) - READY_TIMEOUT_MS : Number.NaN;
      const posted = device.readyPostedAt.get(id) ?? Number.NaN;
      return {
        sessionId: body.sessionId,
        totalMs,
        toDeviceMs,
        afterDeviceMs: totalMs - toDeviceMs,
        toNotifyMs: notifiedAt - startWall,
        listenMs: posted - receivedAt,
        readyToCreatedMs: startWall + totalMs - posted,
        status: r.status,
      };
    }
  },
};

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

/**
 * `GET sessions (point)`, `POST TestHubNameHistory`, `POST $batch`…: a Tables request named by its
 * method and table (the path is `/<account>/<table>(…)`), so the breakdown says where an open's
 * requests go. A batch names its table only in its body: counted as `$batch`.
 */
function tableRequestKind(req: ClientRequest): string {
  const segment = decodeURIComponent(req.path.split('?')[0].split('/')[2] ?? '');
  const table = segment.replace(/\(.*$/, '');
  const op = req.method === 'GET' ? (segment.includes("PartitionKey='") ? ' (point)' : ' (query)') : '';
  return `${req.method} ${table}${op}`;
}

/** The control plane's queue puts (the devices' own receives and deletes are not the open's cost). */
function queueRequestKind(req: ClientRequest): string | undefined {
  return req.method === 'POST' && req.path.split('?')[0].endsWith('/messages') ? 'POST queue message' : undefined;
}

/** POST /sessions answers whose body was not JSON (status, start of the body, content type). */
const nonJsonAnswers: string[] = [];

function tally(m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}

/** A log line's shape: ids, numbers and quoted text blanked, so lines that differ only there group. */
function shape(message: string): string {
  return message
    .replace(/[0-9a-f]{8}-[0-9a-f-]{27}/gi, '<id>')
    .replace(/\d+(\.\d+)?/g, 'N')
    .slice(0, 160);
}

/**
 * POST on a connection of its own, as 500 different clients would open theirs (fetch's shared
 * keep-alive pool would reuse the sockets of the level before).
 */
function postFresh(
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; text: string; headers: { get(name: string): string | null } }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: 'POST', agent: false, headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString(),
            headers: {
              get: (name) => {
                const v = res.headers[name.toLowerCase()];
                return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
              },
            },
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
