// `agent service install --dry-run` through the built CLI, and the systemd unit it writes checked by
// systemd itself (`systemd-analyze verify`, and `security` for its exposure score) where available.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from './cliProcess';

const analyze = spawnSync('systemd-analyze', ['--version']).status === 0;
if (!analyze) process.stdout.write('# systemd unit checks skipped: systemd-analyze is not installed\n');

async function dryRun(args: string[]): Promise<{ steps: Array<Record<string, unknown>>; text: string }> {
  const json = await runCli(['--json', 'agent', 'service', ...args, '--dry-run']);
  assert.equal(json.code, 0, json.stderr);
  const text = await runCli(['agent', 'service', ...args, '--dry-run']);
  assert.equal(text.code, 0, text.stderr);
  return { steps: (JSON.parse(json.stdout) as { steps: Array<Record<string, unknown>> }).steps, text: text.stdout };
}

describe('agent service install --dry-run', () => {
  const install = ['install', '--enrollment', '/tmp/plc-7.json', '--allow', '22,3389'];

  it('prints the Linux steps without the proxy password', async () => {
    const proxied = ['--proxy', 'http://dev:pa55word@proxy.corp:3128'];
    const r = await runCli([...proxied, 'agent', 'service', ...install, '--platform', 'linux', '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /write \/etc\/relay-broker\/agent\.env \(mode 0600\) \(holds a credential/);
    assert.match(r.stdout, /run systemctl enable --now relay-broker\.service/);
    assert.ok(!(r.stdout + r.stderr).includes('pa55word'));
  });

  it('prints the Windows steps: WinSW, sc.exe, icacls', async () => {
    const { text } = await dryRun([...install, '--platform', 'windows']);
    assert.match(text, /run sc\.exe create relay-broker binPath= .*obj= "NT SERVICE\\relay-broker"/);
    assert.match(text, /run icacls\.exe .*\/inheritance:r \/grant:r "\*S-1-5-18:\(OI\)\(CI\)F"/);
  });

  it('refuses to install for another system than this one', async () => {
    const other = process.platform === 'win32' ? 'linux' : 'windows';
    const r = await runCli(['agent', 'service', ...install, '--platform', other]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--dry-run/);
  });

  it('the unit passes `systemd-analyze verify` and scores as well hardened', { skip: !analyze }, async () => {
    const { steps } = await dryRun([...install, '--platform', 'linux']);
    const unit = steps.find((s) => s.kind === 'write' && String(s.path).endsWith('.service'));
    assert.ok(unit);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rb-unit-'));
    try {
      const file = path.join(dir, 'relay-broker.service');
      await fs.writeFile(file, String(unit.content));
      const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
      assert.equal(verify.status, 0, verify.stderr);
      // verify only warns about unknown keys and bad values: any warning is a failure here.
      assert.equal(verify.stderr.trim(), '', verify.stderr);
      const security = spawnSync('systemd-analyze', ['security', '--offline=true', file], { encoding: 'utf8' });
      const m = /Overall exposure level for relay-broker\.service: (\d+\.\d+)/.exec(security.stdout);
      if (m) assert.ok(Number(m[1]) <= 2, `exposure ${m[1]} (systemd: 0 best, 10 worst)`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
