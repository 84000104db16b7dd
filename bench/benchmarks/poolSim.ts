// `npm run bench -- poolsim`: the pure sizing policy against a simulated peak day (normal load
// 30–50 concurrent sessions, a ramp to 500), creation taking 20 s or 45 s, 6 subscriptions of
// 100 namespaces; compared with a static pool of 30 (the seed's example). Under ARM's limits
// (AZURE_ARM_LIMITS: write bucket 200 / 10 per s, Relay's 50 namespace writes per subscription per
// 1 h window, create 44 s, delete 38 s, the orchestration's pacing): the ramp 0 → 500 over 6
// subscriptions (`pool_ramp_500_s`) and the same peak day.
import { policyFromConfig, type PoolPolicy } from '../../lib/pool/poolPolicy';
import type { Benchmark, Figure } from '../figures';
import {
  AZURE_ARM_LIMITS,
  generateSessions,
  hourProfileOf,
  peakDayConcurrency,
  simSubscriptions,
  simulatePool,
  type PoolMode,
  type SimResult,
} from '../poolSimulator';

const COMMAND = 'npm run bench -- poolsim';
const DAY = 86_400;
const WARMUP = 3_600;
const SEED = 20_260_302;

function ourPolicy(createSeconds: number, hourProfile: number[] | undefined): PoolPolicy {
  return policyFromConfig(
    {
      name: 'sim',
      subscriptions: simSubscriptions(6, 100),
      namespacePrefix: 'rbk',
      floor: 5,
      cap: 600,
      hourProfile,
      headroom: 1.25,
      createSeconds,
      stuckMinutes: 30,
      maxRecycleFailures: 3,
      shrinkIdleMinutes: 30,
      nameReuseHours: 24,
    },
    { maintenanceSeconds: 60 },
  );
}

export const benchmark: Benchmark = {
  name: 'poolsim',
  description: 'simulated peak day (30–50 sessions, ramp to 500): our policy vs a static pool of 30',
  async run(log) {
    const sessions = generateSessions((t) => peakDayConcurrency(t), -WARMUP, DAY, SEED);
    const profile = hourProfileOf((t) => peakDayConcurrency(t));
    log(`${sessions.filter((s) => s.at >= 0).length} sessions over the day; hour profile ${JSON.stringify(profile)}`);
    const run = (label: string, mode: PoolMode, createSeconds: number): SimResult => {
      const r = simulatePool({
        mode,
        sessions,
        durationSeconds: DAY,
        warmupSeconds: WARMUP,
        dayStart: new Date('2026-03-02T00:00:00.000Z'),
        createSeconds,
        recycleSeconds: 5,
        deleteSeconds: 30,
        maintenanceSeconds: 60,
        leaseWindowMinutes: 5,
        seed: SEED,
      });
      log(
        `${label.padEnd(32)} refused ${String(r.refused).padStart(5)} of ${r.sessions}, peak concurrency ${r.peakConcurrency}, ` +
          `idle ${r.idleNamespaceHours.toFixed(0)} ns-h (total ${r.namespaceHours.toFixed(0)} ns-h), created ${r.created}, deleted ${r.deleted}, ` +
          `max rows ${r.maxRows}, max per subscription ${Math.max(...Object.values(r.maxRowsBySubscription))}`,
      );
      return r;
    };
    const ours45 = run('policy + hour profile, create 45 s', { kind: 'policy', policy: ourPolicy(45, profile) }, 45);
    const ours20 = run('policy + hour profile, create 20 s', { kind: 'policy', policy: ourPolicy(20, profile) }, 20);
    const reactive45 = run('policy, no profile, create 45 s', { kind: 'policy', policy: ourPolicy(45, undefined) }, 45);
    const reactive20 = run('policy, no profile, create 20 s', { kind: 'policy', policy: ourPolicy(20, undefined) }, 20);
    const static30 = run('static pool of 30', { kind: 'static', size: 30 }, 45);
    // A steep ramp (500 within 10 minutes): the lease rate alone reacts too late; the profile does not.
    const steep = (t: number) => peakDayConcurrency(t, 500, 10);
    const steepSessions = generateSessions(steep, -WARMUP, DAY, SEED + 1);
    const steepProfile = hourProfileOf(steep);
    const runSteep = (label: string, policy: PoolPolicy, armLimits?: typeof AZURE_ARM_LIMITS) => {
      const r = simulatePool({
        mode: { kind: 'policy', policy },
        sessions: steepSessions,
        durationSeconds: DAY,
        warmupSeconds: WARMUP,
        dayStart: new Date('2026-03-02T00:00:00.000Z'),
        createSeconds: 45,
        recycleSeconds: 5,
        deleteSeconds: 30,
        maintenanceSeconds: 60,
        leaseWindowMinutes: 5,
        seed: SEED,
        ...(armLimits ? { arm: armLimits } : {}),
      });
      log(
        `${label.padEnd(32)} refused ${String(r.refused).padStart(5)} of ${r.sessions}, peak concurrency ${r.peakConcurrency}, idle ${r.idleNamespaceHours.toFixed(0)} ns-h, created ${r.created}, deleted ${r.deleted}`,
      );
      return r;
    };
    const steepOurs = runSteep('steep ramp, profile, 45 s', ourPolicy(45, steepProfile));
    const steepReactive = runSteep('steep ramp, no profile, 45 s', ourPolicy(45, undefined));
    const steepArm = runSteep('steep ramp, profile, ARM limits', ourPolicy(44, steepProfile), AZURE_ARM_LIMITS);
    const quotaOk = [ours45, ours20, reactive45, reactive20, steepOurs, steepReactive].every(
      (r) => Object.values(r.maxRowsBySubscription).every((n) => n <= 100) && r.maxRows <= 600,
    );
    log(`quotas (100 per subscription) and cap (600) respected in every policy run: ${quotaOk}`);

    // Under ARM's limits: an empty pool asked for 500 (floor 500), no sessions, until 500 are available.
    const ramp = (label: string, windowSeconds: number, namespaceWriteLimit = AZURE_ARM_LIMITS.namespaceWriteLimit) => {
      const r = simulatePool({
        mode: { kind: 'policy', policy: { ...ourPolicy(44, undefined), floor: 500 } },
        sessions: [],
        durationSeconds: 6 * 3600,
        warmupSeconds: 0,
        dayStart: new Date('2026-03-02T00:00:00.000Z'),
        createSeconds: 44,
        recycleSeconds: 5,
        deleteSeconds: 38,
        maintenanceSeconds: 60,
        leaseWindowMinutes: 5,
        seed: SEED,
        arm: { ...AZURE_ARM_LIMITS, namespaceWriteWindowSeconds: windowSeconds, namespaceWriteLimit },
        stopWhenAvailable: 500,
      });
      log(
        `${label.padEnd(44)} 500 available after ${r.reachedAt ?? 'never'} s: ${r.arm!.runs} runs, ${r.arm!.waves} waves, ` +
          `${r.arm!.deferred} creations deferred by the pacer, ${r.arm!.refused} refused (429, handled), ` +
          `bucket waits ${r.arm!.bucketWaitSeconds.toFixed(0)} s in all`,
      );
      return r;
    };
    const ramp1h = ramp('ramp 0 → 500, 6 subs, ARM limits, window 1 h', 3600);
    const ramp10m = ramp('ramp 0 → 500, 6 subs, ARM limits, window 10 min', 600);
    const rampNoLimit = ramp('ramp 0 → 500, 6 subs, write bucket only', 3600, Number.POSITIVE_INFINITY);
    const armDay = simulatePool({
      mode: { kind: 'policy', policy: ourPolicy(44, profile) },
      sessions,
      durationSeconds: DAY,
      warmupSeconds: WARMUP,
      dayStart: new Date('2026-03-02T00:00:00.000Z'),
      createSeconds: 44,
      recycleSeconds: 5,
      deleteSeconds: 38,
      maintenanceSeconds: 60,
      leaseWindowMinutes: 5,
      seed: SEED,
      arm: AZURE_ARM_LIMITS,
    });
    log(
      `${'policy + profile, create 44 s, ARM limits'.padEnd(32)} refused ${String(armDay.refused).padStart(5)} of ${armDay.sessions}, ` +
        `created ${armDay.created}, deleted ${armDay.deleted}, deferred ${armDay.arm!.deferred}, refused writes ${armDay.arm!.refused}`,
    );

    const note45 =
      '6 subscriptions × 100, cap 600, floor 5, headroom 1.25, maintenance 60 s, recycle 5 s, create 45 s, hour profile known';
    const fig = (name: string, value: number, unit: string, note: string, goal?: string): Figure => ({
      name,
      value,
      unit,
      command: COMMAND,
      note,
      ...(goal ? { goal } : {}),
    });
    const noteRamp =
      'simulated: 6 subscriptions × 100, floor 500, create 44 s, ARM write bucket 200 / 10 per s, Relay 50 namespace writes per subscription per window';
    return [
      fig(
        'pool_ramp_500_s',
        ramp1h.reachedAt ?? Number.NaN,
        's',
        `${noteRamp} of 1 h (not published; the emulator's default), pacing 20 per subscription per wave: ` +
          `300 in the first window, the rest after it; window 10 min: ${ramp10m.reachedAt ?? 'never'} s; ` +
          `no namespace-write limit: ${rampNoLimit.reachedAt ?? 'never'} s. npm test measures the same ramp against the emulator (test/integration/pool/provisionRamp.test.ts)`,
        'reported',
      ),
      fig(
        'pool_sim_refused_peak_day_arm',
        armDay.refused,
        'sessions',
        'as pool_sim_refused_peak_day under ARM limits (window 1 h), create 44 s, delete 38 s, pacing 20 per subscription per wave',
      ),
      fig(
        'pool_sim_refused_steep_ramp_arm',
        steepArm.refused,
        'sessions',
        'ramp to 500 within 10 min, hour profile known, under ARM limits (namespace-write window 1 h), create 44 s',
      ),
      fig('pool_sim_refused_peak_day', ours45.refused, 'sessions', note45, '0'),
      fig('pool_sim_refused_peak_day_static30', static30.refused, 'sessions', 'static pool of 30 namespaces, same day'),
      fig('pool_sim_idle_namespace_hours', Math.round(ours45.idleNamespaceHours), 'namespace-hours', note45),
      fig('pool_sim_created', ours45.created, 'namespaces', note45),
      fig('pool_sim_deleted', ours45.deleted, 'namespaces', note45),
      fig(
        'pool_sim_refused_peak_day_create20',
        ours20.refused,
        'sessions',
        'as pool_sim_refused_peak_day, create 20 s',
        '0',
      ),
      fig(
        'pool_sim_idle_namespace_hours_create20',
        Math.round(ours20.idleNamespaceHours),
        'namespace-hours',
        'create 20 s',
      ),
      fig('pool_sim_created_create20', ours20.created, 'namespaces', 'create 20 s'),
      fig('pool_sim_deleted_create20', ours20.deleted, 'namespaces', 'create 20 s'),
      fig(
        'pool_sim_refused_peak_day_noprofile',
        reactive45.refused,
        'sessions',
        'no hour profile (lease rate only), create 45 s',
      ),
      fig(
        'pool_sim_idle_namespace_hours_noprofile',
        Math.round(reactive45.idleNamespaceHours),
        'namespace-hours',
        'no hour profile, create 45 s',
      ),
      fig(
        'pool_sim_refused_peak_day_noprofile_create20',
        reactive20.refused,
        'sessions',
        'no hour profile, create 20 s',
      ),
      fig(
        'pool_sim_idle_namespace_hours_static30',
        Math.round(static30.idleNamespaceHours),
        'namespace-hours',
        'static pool of 30',
      ),
      fig(
        'pool_sim_sessions',
        ours45.sessions,
        'sessions',
        `seed ${SEED}; peak concurrency reached ${ours45.peakConcurrency}`,
      ),
      fig(
        'pool_sim_refused_steep_ramp',
        steepOurs.refused,
        'sessions',
        'ramp to 500 within 10 min, hour profile known, create 45 s',
        '0',
      ),
      fig(
        'pool_sim_refused_steep_ramp_noprofile',
        steepReactive.refused,
        'sessions',
        'ramp to 500 within 10 min, no hour profile, create 45 s',
      ),
      fig(
        'pool_sim_quota_violations',
        quotaOk ? 0 : 1,
        'count',
        'any policy run above 100 per subscription or 600 in total',
        '0',
      ),
    ];
  },
};
