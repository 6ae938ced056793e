// Wrong arguments and sockets without an answer get a clear, coded error
// from lookup() and undefined from the getters — never a crash, never an
// address that is not the peer's.
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import { closeSync, openSync, mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemError } from '../src/errors';
import { getNat64Peer, getToaInfo, lookup, lookupFd } from '../src/index';
import '../src/register';
import { closeAll, connect, listen, nextConnection, track } from './support/net';

afterEach(closeAll);

describe('lookup(socket)', () => {
  it.each([
    [undefined], [null], [42], ['127.0.0.1'], [{ _handle: { fd: 0 } }], [new (class Socket {})()],
  ])('rejects %o with ERR_INVALID_ARG_TYPE', (value) => {
    expect(() => lookup(value as never)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
  });

  it('rejects a UDP socket object', () => {
    const udp = dgram.createSocket('udp4');
    track(udp);
    expect(() => lookup(udp as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });

  it('a socket that was never connected: ENOTCONN, getters undefined', () => {
    const s = new net.Socket();
    expect(() => lookup(s)).toThrow(expect.objectContaining({ code: 'ENOTCONN', errno: -107, syscall: 'getpeername' }));
    expect(s.realRemoteAddress).toBeUndefined();
    expect(s.realRemotePort).toBeUndefined();
    expect(s.realRemoteFamily).toBeUndefined();
  });

  it('a client socket still connecting: ENOTCONN, nothing cached', async () => {
    const server = net.createServer();
    const port = await listen(server, '127.0.0.1');
    const c = net.connect(port, '127.0.0.1');
    track({ close: () => c.destroy() });
    expect(c.realRemoteAddress).toBeUndefined();
    expect(() => lookup(c)).toThrow(expect.objectContaining({ code: 'ENOTCONN' }));
    await once(c, 'connect');
    expect(c.realRemotePort).toBe(port);
  });

  it('a destroyed socket with nothing captured: ERR_SOCKET_CLOSED', async () => {
    const server = net.createServer();
    const port = await listen(server, '127.0.0.1');
    const c = await connect(port, '127.0.0.1');
    c.destroy();
    expect(() => lookup(c)).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_CLOSED' }));
    expect(c.realRemoteAddress).toBeUndefined();
  });

  it('a Unix domain socket (pipe): ERR_TOA_NOT_TCP', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'node-toa-pipe-'));
    try {
      const server = net.createServer();
      const path = join(dir, 's.sock');
      track(server);
      server.listen(path);
      await once(server, 'listening');
      const accepted = nextConnection(server);
      const c = net.connect(path);
      track({ close: () => c.destroy() });
      await once(c, 'connect');
      const s = await accepted;
      expect(() => lookup(s)).toThrow(expect.objectContaining({ code: 'ERR_TOA_NOT_TCP', message: expect.stringContaining('Unix domain socket') }));
      expect(s.realRemoteAddress).toBeUndefined();
      expect(s.remoteAddress).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('lookupFd(fd)', () => {
  it.each([[-1], [1.5], [2 ** 31]])('rejects %s', (fd) => {
    expect(() => lookupFd(fd)).toThrow(expect.objectContaining({ code: fd === 1.5 ? 'ERR_INVALID_ARG_TYPE' : 'ERR_OUT_OF_RANGE' }));
  });

  it('rejects non-numbers with ERR_INVALID_ARG_TYPE', () => {
    expect(() => lookupFd('3' as never)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
  });

  it('a file: ENOTSOCK from getsockopt', () => {
    const fd = openSync(__filename, 'r');
    try {
      expect(() => lookupFd(fd)).toThrow(expect.objectContaining({ code: 'ENOTSOCK', errno: -88, syscall: 'getsockopt', message: 'getsockopt ENOTSOCK' }));
    } finally {
      closeSync(fd);
    }
  });

  it('a closed fd: EBADF', () => {
    const fd = openSync(__filename, 'r');
    closeSync(fd);
    expect(() => lookupFd(fd)).toThrow(expect.objectContaining({ code: 'EBADF', errno: -9 }));
  });

  it('a connected UDP socket: ERR_TOA_NOT_TCP, not its peer', async () => {
    const udp = dgram.createSocket('udp4');
    track(udp);
    udp.bind(0, '127.0.0.1');
    await once(udp, 'listening');
    udp.connect(9, '127.0.0.1');
    await once(udp, 'connect');
    const fd = (udp as unknown as { _handle: { fd: number } })._handle.fd;
    expect(fd).toBeGreaterThan(2);
    expect(() => lookupFd(fd)).toThrow(expect.objectContaining({ code: 'ERR_TOA_NOT_TCP', message: expect.stringContaining('UDP') }));
  });

  it('a connected TCP socket answers like lookup()', async () => {
    const server = net.createServer();
    const port = await listen(server, '::');
    const accepted = nextConnection(server);
    await connect(port, '::1');
    const s = await accepted;
    const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
    expect(lookupFd(fd)).toEqual(lookup(s));
  });
});

describe('raw queries with no provider', () => {
  it('getToaInfo and getNat64Peer: ENOPROTOOPT on a connected socket', async () => {
    const server = net.createServer();
    const port = await listen(server, '127.0.0.1');
    const accepted = nextConnection(server);
    await connect(port, '127.0.0.1');
    const s = await accepted;
    expect(() => getToaInfo(s)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT', syscall: 'getsockopt' }));
    expect(() => getNat64Peer(s)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT' }));
  });

  it('a destroyed socket: ERR_SOCKET_CLOSED', async () => {
    const server = net.createServer();
    const port = await listen(server, '127.0.0.1');
    const c = await connect(port, '127.0.0.1');
    c.destroy();
    expect(() => getToaInfo(c)).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_CLOSED' }));
  });
});

describe('system errors', () => {
  it('an errno libuv has no name for gets code UNKNOWN, as Node says', () => {
    const err = systemError(9999, 'getsockopt');
    expect(err).toMatchObject({ code: 'UNKNOWN', errno: -9999, syscall: 'getsockopt', message: 'getsockopt UNKNOWN' });
  });
});
