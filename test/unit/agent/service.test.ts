// What `agent service install|uninstall` does on each system, as data: the systemd unit and its
// files, the WinSW configuration and the sc.exe/icacls commands.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeStep, type Step } from '../../../agent/service/plan';
import type { ServiceSpec } from '../../../agent/service/spec';
import { linuxInstallPlan, linuxLayout, linuxUninstallPlan, systemdUnit } from '../../../agent/service/systemd';
import {
  windowsArg,
  windowsInstallPlan,
  windowsLayout,
  windowsUninstallPlan,
  winswXml,
} from '../../../agent/service/windows';

const spec = (over: Partial<ServiceSpec> = {}): ServiceSpec => ({
  name: 'relay-broker',
  cli: { kind: 'single-file', executable: '/home/op/relay-broker-linux-x64' },
  enrollmentFile: '/home/op/plc-7.json',
  allow: [3389, 22],
  proxy: 'http://dev:s3cret@proxy.corp:3128',
  noProxy: '.corp',
  ...over,
});
const runs = (steps: Step[]): string[][] => steps.flatMap((s) => (s.kind === 'run' ? [s.command] : []));

describe('systemd service', () => {
  it('runs the installed copy as a dynamic user, hardened, restarting on failure', () => {
    const unit = systemdUnit(spec(), linuxLayout('relay-broker'));
    assert.match(
      unit,
      /^ExecStart=\/usr\/local\/lib\/relay-broker\/relay-broker --json agent --enrollment %d\/enrollment --allow 22,3389$/m,
    );
    for (const line of [
      'DynamicUser=yes',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'Restart=on-failure',
      'CapabilityBoundingSet=',
      'LoadCredential=enrollment:/etc/relay-broker/enrollment.json',
      'EnvironmentFile=/etc/relay-broker/agent.env',
      'WantedBy=multi-user.target',
    ])
      assert.ok(unit.split('\n').includes(line), line);
    assert.ok(!unit.includes('s3cret'), 'the unit (world-readable) never holds the proxy password');
  });
  it('keeps the enrollment and the proxy settings root-only (0600 in a 0700 directory)', () => {
    const steps = linuxInstallPlan(spec());
    assert.deepEqual(steps[0], { kind: 'mkdir', path: '/etc/relay-broker', mode: 0o700 });
    assert.deepEqual(steps[1], {
      kind: 'copy',
      from: '/home/op/plc-7.json',
      to: '/etc/relay-broker/enrollment.json',
      mode: 0o600,
    });
    const env = steps.find((s) => s.kind === 'write' && s.path.endsWith('agent.env'));
    assert.ok(env && env.kind === 'write');
    assert.equal(env.mode, 0o600);
    assert.equal(env.content, 'HTTPS_PROXY=http://dev:s3cret@proxy.corp:3128\nNO_PROXY=.corp\n');
    assert.ok(!steps.map(describeStep).join('\n').includes('s3cret'), 'a dry run never prints the password');
    assert.deepEqual(runs(steps).at(-2), ['systemctl', 'enable', '--now', 'relay-broker.service']);
  });
  it('an npm install runs node with the script where it is; no proxy means no environment file', () => {
    const s = spec({
      cli: { kind: 'node', node: '/usr/bin/node', script: '/usr/lib/node_modules/relay-broker/relay-broker.cjs' },
      proxy: undefined,
      noProxy: undefined,
    });
    const unit = systemdUnit(s, linuxLayout('relay-broker'));
    assert.match(
      unit,
      /^ExecStart=\/usr\/bin\/node \/usr\/lib\/node_modules\/relay-broker\/relay-broker\.cjs --json agent /m,
    );
    assert.ok(!unit.includes('EnvironmentFile'));
    assert.ok(!linuxInstallPlan(s).some((st) => st.kind === 'copy' && st.to.startsWith('/usr/local/lib')));
  });
  it('uninstall stops and removes the unit, and the enrollment only with --purge', () => {
    const keep = linuxUninstallPlan('relay-broker', false);
    assert.deepEqual(runs(keep)[0], ['systemctl', 'disable', '--now', 'relay-broker.service']);
    assert.ok(!keep.some((s) => s.kind === 'remove' && s.path === '/etc/relay-broker'));
    assert.ok(
      linuxUninstallPlan('relay-broker', true).some((s) => s.kind === 'remove' && s.path === '/etc/relay-broker'),
    );
  });
});

describe('Windows service', () => {
  const layout = windowsLayout('relay-broker', 'C:\\ProgramData');
  const steps = windowsInstallPlan(
    spec({ cli: { kind: 'single-file', executable: 'C:\\Users\\op\\relay-broker-win-x64.exe' } }),
    'C:\\Users\\op\\WinSW-x64.exe',
    layout,
  );
  const commands = runs(steps);

  it('registers WinSW under the virtual account NT SERVICE\\relay-broker, delayed auto start', () => {
    assert.deepEqual(
      commands.find((c) => c[1] === 'create'),
      [
        'sc.exe',
        'create',
        'relay-broker',
        'binPath=',
        'C:\\ProgramData\\relay-broker\\bin\\relay-broker-service.exe',
        'start=',
        'delayed-auto',
        'obj=',
        'NT SERVICE\\relay-broker',
        'DisplayName=',
        'relay-broker device agent',
      ],
    );
    assert.ok(commands.some((c) => c.join(' ') === 'sc.exe sidtype relay-broker unrestricted'));
  });
  it('restarts on failure, a non-zero exit included', () => {
    assert.ok(
      commands.some(
        (c) =>
          c.join(' ') === 'sc.exe failure relay-broker reset= 86400 actions= restart/10000/restart/30000/restart/60000',
      ),
    );
    assert.ok(commands.some((c) => c.join(' ') === 'sc.exe failureflag relay-broker 1'));
  });
  it('lets only SYSTEM, Administrators and the service read %ProgramData%\\relay-broker', () => {
    const acl = commands.find((c) => c[0] === 'icacls.exe' && c[1] === 'C:\\ProgramData\\relay-broker');
    assert.deepEqual(acl, [
      'icacls.exe',
      'C:\\ProgramData\\relay-broker',
      '/inheritance:r',
      '/grant:r',
      '*S-1-5-18:(OI)(CI)F',
      '*S-1-5-32-544:(OI)(CI)F',
      'NT SERVICE\\relay-broker:(OI)(CI)RX',
    ]);
    // The ACL is set before the service starts, after the files are in place.
    const names = steps.map((s) => (s.kind === 'run' ? s.command.slice(0, 2).join(' ') : s.kind));
    assert.ok(names.indexOf('icacls.exe C:\\ProgramData\\relay-broker') < names.indexOf('sc.exe start'));
    assert.ok(names.lastIndexOf('copy') < names.indexOf('icacls.exe C:\\ProgramData\\relay-broker'));
  });
  it('WinSW runs the copied CLI with the installed enrollment, rolls its logs, and holds the proxy', () => {
    const xml = winswXml(spec(), layout);
    assert.match(xml, /<executable>C:\\ProgramData\\relay-broker\\bin\\relay-broker\.exe<\/executable>/);
    assert.match(
      xml,
      /<arguments>--json agent --enrollment C:\\ProgramData\\relay-broker\\enrollment\.json --allow 22,3389<\/arguments>/,
    );
    assert.match(xml, /<log mode="roll-by-size">/);
    assert.match(xml, /<env name="HTTPS_PROXY" value="http:\/\/dev:s3cret@proxy.corp:3128"\/>/);
    const write = steps.find((s) => s.kind === 'write');
    assert.ok(write && write.kind === 'write' && write.secret, 'a dry run does not print the XML holding the password');
  });
  it('quotes and escapes what needs it', () => {
    assert.equal(windowsArg('C:\\Program Files\\x.exe'), '"C:\\Program Files\\x.exe"');
    assert.equal(windowsArg('plain'), 'plain');
    assert.equal(windowsArg('a"b'), '"a\\"b"');
    assert.equal(windowsArg('C:\\dir with space\\'), '"C:\\dir with space\\\\"');
    assert.match(winswXml(spec({ proxy: 'http://u:a&b<c@p:1' }), layout), /value="http:\/\/u:a&amp;b&lt;c@p:1"/);
  });
  it('uninstall stops and deletes the service; --purge also removes the enrollment', () => {
    const plain = windowsUninstallPlan('relay-broker', false, layout);
    assert.deepEqual(runs(plain), [
      ['sc.exe', 'stop', 'relay-broker'],
      ['sc.exe', 'delete', 'relay-broker'],
    ]);
    assert.ok(
      windowsUninstallPlan('relay-broker', true, layout).some(
        (s) => s.kind === 'remove' && s.path === 'C:\\ProgramData\\relay-broker',
      ),
    );
  });
});
