// Argument checks shared by lookup(), lookupFd() and the raw queries.
import * as net from 'node:net';
import { invalidArgType, toaError } from './errors';

export function validateSocket(socket: unknown): asserts socket is net.Socket {
  let isSocket: boolean;
  try {
    isSocket = socket instanceof net.Socket;
  } catch (err) {
    // http2's session.socket is a Proxy whose every read, the prototype
    // included, throws ERR_HTTP2_SOCKET_UNBOUND once the session is destroyed.
    if ((err as { code?: string }).code === 'ERR_HTTP2_SOCKET_UNBOUND') {
      throw toaError('ERR_SOCKET_CLOSED', 'Socket is closed: its http2 session was destroyed');
    }
    throw err;
  }
  if (!isSocket) throw invalidArgType('socket', 'an instance of net.Socket', socket);
}

export function validateFd(fd: unknown): asserts fd is number {
  if (typeof fd !== 'number' || !Number.isInteger(fd)) throw invalidArgType('fd', 'an integer', fd);
  if (fd < 0 || fd > 0x7fffffff) {
    throw toaError('ERR_OUT_OF_RANGE',
      `The value of "fd" is out of range. It must be >= 0 && <= 2147483647. Received ${fd}`, RangeError);
  }
}
