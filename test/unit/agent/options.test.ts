// The CLI's option parsers: good values parse, bad ones are usage errors (InvalidArgumentError).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from 'commander';
import {
  collectTag,
  parseAllowList,
  parseDeviceId,
  parseListen,
  parsePort,
  parsePositiveInt,
  parseSessionId,
} from '../../../agent/options';

const usage = (fn: () => unknown): void => assert.throws(fn, InvalidArgumentError);

describe('CLI option parsing', () => {
  it('--allow takes comma or space separated ports into a set', () => {
    assert.deepEqual([...parseAllowList('3389,22')], [3389, 22]);
    assert.deepEqual([...parseAllowList(' 22, 22 ,8080 ')], [22, 8080]);
    assert.deepEqual([...parseAllowList('3389 22')], [3389, 22]);
  });
  it('--allow refuses empty lists, non-numbers and out-of-range ports', () => {
    usage(() => parseAllowList(''));
    usage(() => parseAllowList(',,'));
    usage(() => parseAllowList('22,ssh'));
    usage(() => parseAllowList('0'));
    usage(() => parseAllowList('65536'));
    usage(() => parseAllowList('22.5'));
    usage(() => parseAllowList('-1'));
  });
  it('a port is 1-65535', () => {
    assert.equal(parsePort('1'), 1);
    assert.equal(parsePort('65535'), 65535);
    usage(() => parsePort('0'));
    usage(() => parsePort('abc'));
    usage(() => parsePort('123456'));
  });
  it('--listen takes host:port, :port or port, host defaulting to 127.0.0.1', () => {
    assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
    assert.deepEqual(parseListen('0.0.0.0:13389'), { host: '0.0.0.0', port: 13389 });
    assert.deepEqual(parseListen('2222'), { host: '127.0.0.1', port: 2222 });
    assert.deepEqual(parseListen(':2222'), { host: '127.0.0.1', port: 2222 });
    assert.deepEqual(parseListen('[::1]:2222'), { host: '::1', port: 2222 });
    usage(() => parseListen('localhost'));
    usage(() => parseListen('127.0.0.1:99999'));
  });
  it('--tag accumulates name=value pairs and refuses bad names', () => {
    assert.deepEqual(collectTag('site=lyon', collectTag('line=3')), { line: '3', site: 'lyon' });
    assert.deepEqual(collectTag('note=a=b'), { note: 'a=b' });
    usage(() => collectTag('novalue'));
    usage(() => collectTag('=x'));
    usage(() => collectTag('bad name=x'));
  });
  it('device ids follow the API rule; session ids are UUIDs; counts are bounded', () => {
    assert.equal(parseDeviceId('plc-7'), 'plc-7');
    usage(() => parseDeviceId('PLC-7'));
    usage(() => parseDeviceId('a--b'));
    usage(() => parseDeviceId('-ab'));
    usage(() => parseDeviceId('ab'));
    assert.equal(parseSessionId('6f1c2a9e-1b2c-4d3e-8f90-123456789abc'), '6f1c2a9e-1b2c-4d3e-8f90-123456789abc');
    usage(() => parseSessionId('not-a-uuid'));
    assert.equal(parsePositiveInt('--lifetime', 720)('60'), 60);
    usage(() => parsePositiveInt('--lifetime', 720)('721'));
    usage(() => parsePositiveInt('--lifetime', 720)('0'));
  });
});
