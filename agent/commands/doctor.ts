// `relay-broker agent doctor`: one line per check of the device's setup, pass/warn/fail with the fix.
// Exit 0 when nothing failed (warnings allowed), 1 otherwise.
import type { Command } from 'commander';
import { resolveRelayCa } from '../config';
import { EXIT_FAILURE, EXIT_OK } from '../errors';
import { parseAllowList } from '../options';
import { readEnrollment } from './agent';
import { action, proxyFor } from './context';

export function registerDoctor(agent: Command): void {
  agent
    .command('doctor')
    .description("check this device's setup: enrollment, proxy, clock, API, queue, relay TLS, allowed ports")
    .requiredOption('--enrollment <file>', 'the enrollment file the agent uses')
    .requiredOption('--allow <ports>', 'the ports the agent allows, e.g. 3389,22', parseAllowList)
    .option('--relay-ca <file>', 'PEM of a CA to trust for the relay (the local emulator)')
    .option('--relay-host <host[:port]>', 'a relay namespace to try TLS with, e.g. <namespace>.servicebus.windows.net')
    .option('--target-host <host>', 'where the allowed ports are served', '127.0.0.1')
    .action(
      action(async (cmd, out) => {
        const o = cmd.opts<{
          enrollment: string;
          allow: Set<number>;
          relayCa?: string;
          relayHost?: string;
          targetHost: string;
        }>();
        const enrollment = await readEnrollment(o.enrollment, out);
        const relayCa = await resolveRelayCa(o.relayCa, enrollment.apiUrl);
        const { runDoctor } = await import('../doctor');
        const checks = await runDoctor({
          enrollment,
          allowPorts: [...o.allow],
          targetHost: o.targetHost,
          proxy: proxyFor(cmd),
          relayCa,
          relayHost: o.relayHost,
        });
        const ok = checks.every((c) => c.status !== 'fail');
        const width = Math.max(...checks.map((c) => c.name.length));
        out.result({ ok, checks }, () => [
          ...checks.flatMap((c) => [
            `${c.status.toUpperCase().padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}`,
            ...(c.fix && c.status !== 'pass' ? [`${' '.repeat(6 + width)}  fix: ${c.fix}`] : []),
          ]),
          ok ? 'no check failed' : `${checks.filter((c) => c.status === 'fail').length} check(s) failed`,
        ]);
        return ok ? EXIT_OK : EXIT_FAILURE;
      }),
    );
}
