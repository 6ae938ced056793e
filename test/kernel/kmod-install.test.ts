// `make install` puts the module where modprobe finds it, for the running
// kernel, and `modprobe toa` / `modprobe -r toa` load and unload it.
// Uses the module built on the host for this kernel (no compiler in the guest):
// make install only builds when there is no toa.ko. Installs under DESTDIR
// (modprobe -d): depmod over the full module tree takes minutes under TCG.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it, expect, afterAll } from 'vitest';
import { kernelLog, kernelTrouble, koPath, loaded, rmmod } from '../spec/kmod';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe('make install + modprobe', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-install-'));
  const dest = path.join(work, 'root');
  const installed = `${dest}/lib/modules/${os.release()}/updates/toa.ko`;

  afterAll(() => {
    if (loaded()) rmmod();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('installs under updates/, runs depmod, and modprobe loads it', () => {
    if (loaded()) rmmod();
    const src = path.join(work, 'kmod');
    fs.cpSync(path.join(root, 'kmod'), src, { recursive: true, filter: (s) => !/\.(o|ko|mod|cmd)$/.test(s) });
    fs.copyFileSync(koPath(), path.join(src, 'toa.ko'));
    const out = execFileSync('make', ['-C', src, 'install', `DESTDIR=${dest}`], { encoding: 'utf8' });
    expect(out).toContain(`installed ${installed}`);
    expect(fs.existsSync(installed)).toBe(true);
    const modprobe = (...args: string[]) => execFileSync('modprobe', ['-d', dest, ...args], { encoding: 'utf8' });
    expect(modprobe('--show-depends', 'toa').trim()).toBe(`insmod ${installed}`);

    const before = (kernelLog().match(/toa: loaded/g) ?? []).length;
    modprobe('toa', 'ipv4_kinds=200,254');
    expect(loaded()).toBe(true);
    expect(fs.readFileSync('/sys/module/toa/parameters/ipv4_kinds', 'utf8').trim()).toBe('200,254');
    expect((kernelLog().match(/toa: loaded/g) ?? []).length).toBe(before + 1);
    modprobe('-r', 'toa');
    expect(loaded()).toBe(false);
    expect(kernelTrouble()).toEqual([]);
  }, 120_000);
});
