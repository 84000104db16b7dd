// The native-client launch plans of `relay-broker rdp|ssh`, per platform: the program, its
// arguments, and the .rdp file (no password in it, ever).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planRdp, planSsh, rdpFileText } from '../../../agent/commands/launch';

const address = { host: '127.0.0.1', port: 50123 };

describe('rdp launch plans', () => {
  it('Windows opens mstsc with a generated .rdp file that points at the local port', () => {
    const plan = planRdp('win32', address, 'plc-7', { tmpDir: 'C:\\Temp', user: 'ops' });
    assert.equal(plan.program, 'mstsc');
    assert.equal(plan.args.length, 1);
    assert.ok(plan.rdpFile);
    assert.equal(plan.args[0], plan.rdpFile.path);
    assert.match(plan.rdpFile.text, /^full address:s:127\.0\.0\.1:50123\r\n/);
    assert.match(plan.rdpFile.text, /\r\nusername:s:ops\r\n/);
    assert.match(plan.rdpFile.text, /prompt for credentials:i:1/);
    assert.doesNotMatch(plan.rdpFile.text, /password/i);
  });

  it('macOS hands the .rdp file to the Windows App and waits for it', () => {
    const plan = planRdp('darwin', address, 'plc-7', { tmpDir: '/tmp' });
    assert.equal(plan.program, 'open');
    assert.deepEqual(plan.args, ['-W', '/tmp/relay-broker-plc-7.rdp']);
    assert.doesNotMatch(plan.rdpFile!.text, /username/);
  });

  it('Linux starts xfreerdp on the local port, or remmina when asked', () => {
    const plan = planRdp('linux', address, 'plc-7', { tmpDir: '/tmp', user: 'ops', extraArgs: ['/f'] });
    assert.equal(plan.program, 'xfreerdp');
    assert.deepEqual(plan.args, ['/v:127.0.0.1:50123', '/cert:tofu', '/title:plc-7 (relay-broker)', '/u:ops', '/f']);
    assert.equal(plan.rdpFile, undefined);
    const remmina = planRdp('linux', address, 'plc-7', { tmpDir: '/tmp', client: '/usr/bin/remmina' });
    assert.deepEqual(remmina.args, ['-c', 'rdp://127.0.0.1:50123']);
  });

  it('the .rdp text uses CRLF line ends, as mstsc writes them', () => {
    const text = rdpFileText(address, 'plc-7');
    assert.ok(text.split('\r\n').length > 4);
    assert.doesNotMatch(text.replace(/\r\n/g, ''), /\n/);
  });
});

describe('ssh launch plan', () => {
  it('connects to the local port with host keys remembered per device, extra args last', () => {
    const plan = planSsh(address, 'plc-7', { user: 'admin', extraArgs: ['-i', 'k.pem', 'uptime'] });
    assert.equal(plan.program, 'ssh');
    assert.deepEqual(plan.args, [
      '-p',
      '50123',
      '-o',
      'HostKeyAlias=relay-broker-plc-7',
      'admin@127.0.0.1',
      '-i',
      'k.pem',
      'uptime',
    ]);
  });
});
