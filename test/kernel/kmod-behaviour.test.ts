// toa.ko held to the shared behaviour table, plus its lifecycle contract:
// dmesg lines, /proc files in every network namespace (counters per
// namespace), parameter parsing.
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { describe, it, expect, beforeAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { behaviourSuite, CLIENT_PORT, CLIENT_V4, runCase } from '../spec/behaviour';
import { getParam, insmod, kernelLog, kernelTrouble, kmodBackend, loaded, rmmod, setParam, stats } from '../spec/kmod';

describe('toa.ko lifecycle', () => {
  beforeAll(() => {
    if (loaded()) rmmod();
  });

  it('logs "toa: loaded" and "toa: unloaded"', () => {
    const count = (re: RegExp) => (kernelLog().match(re) ?? []).length;
    const loads = count(/toa: loaded/g);
    const unloads = count(/toa: unloaded/g);
    insmod();
    expect(count(/toa: loaded/g)).toBe(loads + 1);
    rmmod();
    expect(count(/toa: unloaded/g)).toBe(unloads + 1);
    expect(fs.existsSync('/proc/net/toa_stats')).toBe(false);
  });

  it('has /proc/net/toa_stats and toa_table in a fresh network namespace', () => {
    insmod();
    const out = execFileSync('unshare', ['-n', 'sh', '-c', 'cat /proc/self/net/toa_stats; cat /proc/self/net/toa_table'], { encoding: 'utf8' });
    for (const name of ['syn_recv_sock_toa', 'syn_recv_sock_no_toa', 'getname_toa_ok', 'getname_toa_mismatch',
      'getname_toa_empty', 'untrusted', 'malformed', 'not_linear', 'port_skipped',
      'bogus_unspecified', 'bogus_loopback', 'bogus_multicast', 'bogus_broadcast']) {
      expect(out).toMatch(new RegExp(`^${name}\\s`, 'm'));
    }
    expect(out).toMatch(/^cookie local_port remote client kind flags$/m);
  });

  it('counts events per network namespace; memory rows and gauges only in the initial one', async () => {
    if (loaded()) rmmod();
    insmod();
    const lb = await createLoadBalancer();
    try {
      const { seen } = await runCase(lb, { listen: '0.0.0.0', lbFamily: 4, toa: { kind: 200, address: CLIENT_V4, port: CLIENT_PORT } });
      expect(seen.remoteAddress).toBe(CLIENT_V4);
    } finally {
      await lb.close();
    }
    const host = stats();
    expect(host.syn_recv_sock_toa).toBe(1);
    expect(host.entry_alloc).toBe(1);
    const other = stats(execFileSync('unshare', ['-n', 'cat', '/proc/self/net/toa_stats'], { encoding: 'utf8' }));
    expect(other.syn_recv_sock_toa, 'another namespace sees no connection of this one').toBe(0);
    expect(other.getname_toa_ok).toBe(0);
    for (const name of ['entry_alloc', 'ip6_address_alloc', 'table_entries', 'probe_missed']) expect(other).not.toHaveProperty(name);
    rmmod();
  });

  it('parses parameters and rejects bad ones', () => {
    if (!loaded()) insmod();
    setParam('trusted', '203.0.113.0/24, 2001:db8::/32,192.0.2.1');
    expect(getParam('trusted')).toBe('203.0.113.0/24,2001:db8::/32,192.0.2.1/32');
    for (const bad of ['203.0.113.0/33', '2001:db8::/129', 'not-an-address', '1.2.3.4/x']) {
      expect(() => setParam('trusted', bad)).toThrow(/EINVAL|Invalid argument/);
    }
    expect(getParam('trusted')).toBe('203.0.113.0/24,2001:db8::/32,192.0.2.1/32');
    setParam('trusted', '');
    expect(getParam('trusted')).toBe('');
    setParam('ipv4_kinds', '254,200');
    expect(getParam('ipv4_kinds')).toBe('200,254');
    for (const bad of ['0', '1', '256', 'x', '0x10']) expect(() => setParam('ipv4_kinds', bad)).toThrow(/EINVAL|Invalid argument/);
    // decimal only: "010" is kind 10, not octal 8
    setParam('ipv4_kinds', '010');
    expect(getParam('ipv4_kinds')).toBe('10');
    expect(() => setParam('ipv4_kinds', '200,2x0')).toThrow(/EINVAL|Invalid argument/);
    expect(kernelLog()).toMatch(/ipv4_kinds: bad kind "2x0"/);
    expect(() => setParam('trusted', '203.0.113.0/24,nope')).toThrow(/EINVAL|Invalid argument/);
    expect(kernelLog()).toMatch(/trusted: bad range "nope"/);
    setParam('ipv4_kinds', '200');
    expect(getParam('ipv6_kinds')).toBe('253');
    rmmod();
  });
});

behaviourSuite(kmodBackend);

describe('kernel log after the behaviour table', () => {
  it('shows no oops, BUG or WARNING', () => {
    expect(kernelTrouble()).toEqual([]);
  });
});
