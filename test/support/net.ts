// Loopback servers and clients for the addon tests: every server listens on
// an ephemeral port and is closed by the caller (use `using`-style cleanup
// via `afterEach(closeAll)`).
import { once } from 'node:events';
import * as net from 'node:net';

const open = new Set<{ close(): unknown }>();

export function track<T extends { close(): unknown }>(thing: T): T {
  open.add(thing);
  return thing;
}

export async function closeAll(): Promise<void> {
  for (const thing of open) {
    const server = thing as unknown as net.Server & { closeAllConnections?: () => void };
    server.closeAllConnections?.();
    thing.close();
  }
  open.clear();
}

export async function listen<T extends net.Server>(server: T, host: string): Promise<number> {
  track(server);
  server.listen(0, host);
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** Resolves with the server side of the next accepted connection. */
export function nextConnection(server: net.Server, event = 'connection'): Promise<net.Socket> {
  return new Promise((resolve) => server.once(event, resolve));
}

export async function connect(port: number, host: string): Promise<net.Socket> {
  const socket = net.connect(port, host);
  track({ close: () => socket.destroy() });
  await once(socket, 'connect');
  return socket;
}
