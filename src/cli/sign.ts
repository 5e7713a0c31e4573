// `musig2-signer sign`: the coordinator. Runs one full MuSig2 session across the given signer
// daemons (the last one signs deterministically) and prints the aggregate key and the 64-byte
// BIP340 signature, already verified.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { credentials as grpcCredentials } from '@grpc/grpc-js';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { ClientError, CulpritError, runSession, SessionError } from '../client/index.js';
import type { SessionSigner, Tweak } from '../client/index.js';
import { CliError, wantsHelp } from './errors.js';

export const SIGN_USAGE = `usage: musig2-signer sign --signer HOST:PORT/KEY [--signer ...] --message HEX [options]

  --signer HOST:PORT/KEY   a signer daemon and its key id, in signing order; repeat for each
                           signer; the last one signs deterministically
  --message HEX            the message to sign (any length, may be empty: --message '')
  --tweak HEX[:xonly]      a 32-byte tweak for the aggregate key, plain unless ':xonly';
                           repeat to apply several, in order
  --tls-ca FILE            verify the daemons' TLS certificates against this CA (enables TLS)
  --tls-cert FILE          client certificate for mTLS, PEM
  --tls-key FILE           client key for mTLS, PEM
  --deadline-ms N          per-call deadline (default 30000)
  --json                   print one JSON object instead of lines`;

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

export function parseSignerSpec(spec: string): { endpoint: string; keyId: string } {
  const slash = spec.indexOf('/');
  const endpoint = spec.slice(0, slash);
  const keyId = spec.slice(slash + 1);
  if (slash <= 0 || keyId === '' || !/^(?:\[[0-9a-fA-F:.]+\]|[^:/[\]\s]+):\d{1,5}$/.test(endpoint)) {
    throw new CliError(`--signer '${spec}' is not HOST:PORT/KEY`, 2);
  }
  return { endpoint, keyId };
}

export function parseTweak(spec: string): Tweak {
  const [hex, kind, ...rest] = spec.split(':');
  if (rest.length > 0 || (kind !== undefined && kind !== 'xonly' && kind !== 'plain')) {
    throw new CliError(`--tweak '${spec}' is not HEX, HEX:xonly or HEX:plain`, 2);
  }
  if (hex === undefined || hex.length !== 64 || !HEX.test(hex)) throw new CliError(`--tweak '${spec}': expected 32 bytes of hex`, 2);
  return { tweak: Uint8Array.from(Buffer.from(hex, 'hex')), xonly: kind === 'xonly' };
}

export function channelCredentials(values: { 'tls-ca'?: string; 'tls-cert'?: string; 'tls-key'?: string }): ChannelCredentials | undefined {
  const { 'tls-ca': ca, 'tls-cert': cert, 'tls-key': key } = values;
  if (!ca && !cert && !key) return undefined;
  if ((cert === undefined) !== (key === undefined)) throw new CliError('mTLS needs both --tls-cert and --tls-key', 2);
  const read = (file: string | undefined) => {
    if (file === undefined) return null;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`);
    }
  };
  return grpcCredentials.createSsl(read(ca), read(key), read(cert));
}

export async function runSign(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(SIGN_USAGE);
    return 0;
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        signer: { type: 'string', multiple: true },
        message: { type: 'string' },
        tweak: { type: 'string', multiple: true },
        'tls-ca': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'deadline-ms': { type: 'string' },
        json: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${SIGN_USAGE}`, 2);
  }
  const specs = values.signer ?? [];
  if (specs.length === 0) throw new CliError(`at least one --signer is required\n\n${SIGN_USAGE}`, 2);
  if (values.message === undefined) throw new CliError(`--message is required\n\n${SIGN_USAGE}`, 2);
  if (!HEX.test(values.message)) throw new CliError('--message must be hex (an even number of hex digits)', 2);
  const deadline = values['deadline-ms'];
  if (deadline !== undefined && !/^\d{1,9}$/.test(deadline)) throw new CliError('--deadline-ms must be a whole number', 2);

  const credentials = channelCredentials(values);
  const signers: SessionSigner[] = specs.map((s) => ({ ...parseSignerSpec(s), credentials }));
  const message = Uint8Array.from(Buffer.from(values.message, 'hex'));
  const tweaks = (values.tweak ?? []).map(parseTweak);

  let result;
  try {
    result = await runSession({ signers, message, tweaks, deadlineMs: deadline === undefined ? undefined : Number(deadline) });
  } catch (err) {
    if (err instanceof CulpritError || err instanceof SessionError || err instanceof ClientError) throw new CliError(err.message);
    throw err;
  }
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  if (values.json) {
    console.log(
      JSON.stringify({
        aggregate_pubkey_xonly: hex(result.aggregatePubkeyXonly),
        aggregate_pubkey: hex(result.aggregatePubkey),
        signature: hex(result.signature),
        restarts: result.restarts,
      }),
    );
  } else {
    console.log(`aggregate_pubkey_xonly ${hex(result.aggregatePubkeyXonly)}`);
    console.log(`aggregate_pubkey       ${hex(result.aggregatePubkey)}`);
    console.log(`signature              ${hex(result.signature)}`);
  }
  return 0;
}
