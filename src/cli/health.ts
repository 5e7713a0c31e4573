// `musig2-signer health`: one grpc.health.v1 Check against a running daemon, for a container
// HEALTHCHECK or a probe. Exit 0 when the service reports SERVING, 1 otherwise (not serving,
// unreachable, timed out). The address defaults to MUSIG2_LISTEN, with a wildcard host
// (0.0.0.0, ::) replaced by loopback, so inside a container it needs no arguments.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { AggregatorClient } from '../client/index.js';
import { CliError, wantsHelp } from './errors.js';
import { DEFAULT_LISTEN } from './serve-config.js';

const USAGE = `usage: musig2-signer health [options]

Asks a daemon's grpc.health.v1 service whether it is SERVING; exit 0 if so, else 1.

  --address HOST:PORT    daemon address (default: MUSIG2_LISTEN, else ${DEFAULT_LISTEN};
                         a wildcard host 0.0.0.0 or [::] means loopback)
  --service NAME         service to ask about (default '' = the whole daemon)
  --timeout-ms N         deadline for the check (default 5000)
  --tls-ca FILE          use TLS, trusting this CA (MUSIG2_HEALTH_TLS_CA)
  --tls-cert FILE        client certificate for mTLS (MUSIG2_HEALTH_TLS_CERT)
  --tls-key FILE         client key for mTLS (MUSIG2_HEALTH_TLS_KEY)

With TLS the server certificate must name the host dialled (127.0.0.1 for a wildcard listen).`;

/** HOST:PORT to dial for a listen address: wildcard hosts become loopback. */
export function dialAddress(listen: string): string {
  const m = /^(.*):(\d+)$/.exec(listen.trim());
  if (!m) throw new CliError(`bad address '${listen}': expected HOST:PORT`, 2);
  let host = m[1]!;
  const port = m[2]!;
  if (port === '0') throw new CliError(`address '${listen}' has port 0: pass the daemon's real port with --address`, 2);
  if (host === '' || host === '0.0.0.0' || host === '*') host = '127.0.0.1';
  else if (host === '[::]' || host === '::') host = '[::1]';
  return `${host}:${port}`;
}

export async function runHealth(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(USAGE);
    return 0;
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        address: { type: 'string' },
        service: { type: 'string' },
        'timeout-ms': { type: 'string' },
        'tls-ca': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
      },
    }));
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${USAGE}`, 2);
  }
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  const env = process.env;
  const address = dialAddress(str(values.address) ?? str(env.MUSIG2_LISTEN) ?? DEFAULT_LISTEN);
  const timeoutText = str(values['timeout-ms']) ?? '5000';
  if (!/^\d{1,7}$/.test(timeoutText) || Number(timeoutText) < 1) throw new CliError(`--timeout-ms must be a positive whole number`, 2);
  const service = typeof values.service === 'string' ? values.service : '';

  const ca = str(values['tls-ca']) ?? str(env.MUSIG2_HEALTH_TLS_CA);
  const cert = str(values['tls-cert']) ?? str(env.MUSIG2_HEALTH_TLS_CERT);
  const key = str(values['tls-key']) ?? str(env.MUSIG2_HEALTH_TLS_KEY);
  if ((cert === undefined) !== (key === undefined)) throw new CliError('a client certificate needs both --tls-cert and --tls-key', 2);
  if (cert !== undefined && ca === undefined) throw new CliError('a client certificate needs --tls-ca', 2);
  let creds: ChannelCredentials | undefined;
  if (ca !== undefined) {
    const read = (f: string) => {
      try {
        return readFileSync(f);
      } catch (err) {
        throw new CliError(`cannot read ${f}: ${(err as Error).message}`, 2);
      }
    };
    creds = credentials.createSsl(read(ca), key ? read(key) : null, cert ? read(cert) : null);
  }
  const probe = new AggregatorClient(address, { credentials: creds, deadlineMs: Number(timeoutText) });
  try {
    const status = await probe.health(service);
    console.log(`${address}${service ? ` ${service}` : ''}: ${status}`);
    return status === 'SERVING' ? 0 : 1;
  } catch (err) {
    console.error(`musig2-signer health: ${address}: ${(err as Error).message}`);
    return 1;
  } finally {
    probe.close();
  }
}
