// Listen addresses: HOST:PORT with an IPv4 address, a bracketed IPv6 address or a host name.
// Plaintext gRPC is only for loopback, so we need to know which hosts are loopback: literal
// loopback addresses, never a name.
import { isIP } from 'node:net';

export interface ListenAddress {
  host: string;
  port: number;
}

export class ListenAddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenAddressError';
  }
}

export function parseListenAddress(text: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new ListenAddressError(`listen address '${text}' is not HOST:PORT (use [ADDR]:PORT for IPv6)`);
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && isIP(host) !== 6) throw new ListenAddressError(`'${host}' is not an IPv6 address`);
  const port = Number(m[3]);
  if (port > 65535) throw new ListenAddressError(`port ${port} is out of range 0-65535`);
  return { host, port };
}

export function formatListenAddress({ host, port }: ListenAddress): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

/**
 * Whether the host only accepts connections from this machine. Literal loopback addresses
 * only: a name such as `localhost` resolves through /etc/hosts and DNS, which may say anything,
 * so it is never trusted as loopback (use 127.0.0.1 or [::1]).
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h);
  return false;
}
