// `musig2-signer psbt update` (BIP373 Updater from a musig() descriptor) and `musig2-signer psbt
// sign` (a whole signing session over a PSBT across signer daemons: prints the txid and the raw
// transaction once every input is final, or writes the PSBT).
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { ClientError, CulpritError, runPsbtSession, SessionError } from '../client/index.js';
import type { SessionSigner } from '../client/index.js';
import { DescriptorError, parseDescriptor, updatePsbtFromDescriptor } from '../descriptor/index.js';
import { decodePsbt, encodePsbt, PsbtError } from '../psbt/index.js';
import { CliError, wantsHelp } from './errors.js';
import { readPsbtFile, writePsbtFile } from './psbt-file.js';
import { channelCredentials, parseSignerSpec } from './sign.js';

export const PSBT_USAGE = `usage: musig2-signer psbt <update|sign> [options]

musig2-signer psbt update --descriptor D --psbt FILE [--out FILE] [--binary] [--max-index N]
  Fills, for every input whose spent output and every output whose script the descriptor
  derives (index 0..N, default 1000), the BIP373 fields: MuSig2 participants (0x1a / 0x08), the
  BIP32 derivations, the internal key, the merkle root and the leaf scripts. Writes FILE back
  (or --out), base64 unless --binary.

musig2-signer psbt sign --signer HOST:PORT/KEY [--signer ...] --psbt FILE [options]
  Runs the whole session: PsbtNonceGen on every signer but the last, PsbtDeterministicSign on the
  last, PsbtSign, then combines and finalizes here (every partial signature and the final
  signatures verified). Prints the txid and the raw transaction when every input is final;
  otherwise writes the PSBT (to --out, or base64 on stdout).

  --signer HOST:PORT/KEY   a signer daemon and its key id, in signing order; the last one signs
                           deterministically
  --psbt FILE              the PSBT, binary or base64
  --out FILE               also write the resulting PSBT here (base64 unless --binary)
  --binary                 write binary PSBTs
  --tls-ca FILE, --tls-cert FILE, --tls-key FILE   TLS / mTLS, as for \`sign\`
  --deadline-ms N          per-call deadline (default 30000)
  --json                   print one JSON object`;

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>) {
  try {
    return parseArgs({ args: argv, strict: true, allowPositionals: false, options }).values as Record<string, string | string[] | boolean | undefined>;
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${PSBT_USAGE}`, 2);
  }
}

function runUpdate(argv: string[]): number {
  const v = parse(argv, {
    descriptor: { type: 'string' },
    psbt: { type: 'string' },
    out: { type: 'string' },
    binary: { type: 'boolean' },
    'max-index': { type: 'string' },
  });
  if (typeof v.descriptor !== 'string' || typeof v.psbt !== 'string') throw new CliError(`--descriptor and --psbt are required\n\n${PSBT_USAGE}`, 2);
  const maxIndex = v['max-index'];
  if (maxIndex !== undefined && !/^\d{1,7}$/.test(maxIndex as string)) throw new CliError('--max-index must be a whole number', 2);
  let desc;
  try {
    desc = parseDescriptor(v.descriptor);
  } catch (err) {
    if (err instanceof DescriptorError) throw new CliError(`--descriptor: ${err.message}`, 2);
    throw err;
  }
  const bytes = readPsbtFile(v.psbt);
  try {
    const tx = decodePsbt(bytes);
    const r = updatePsbtFromDescriptor(tx, desc, maxIndex === undefined ? {} : { maxIndex: Number(maxIndex) });
    writePsbtFile((v.out as string | undefined) ?? v.psbt, encodePsbt(tx), v.binary === true);
    const what = [...r.inputs.map((i) => `input ${i.input} (${i.branch}/${i.index})`), ...r.outputs.map((o) => `output ${o.output} (${o.branch}/${o.index})`)];
    console.log(what.length === 0 ? 'nothing in the PSBT is derived by this descriptor' : `updated ${what.join(', ')}`);
    return what.length === 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof PsbtError || err instanceof DescriptorError) throw new CliError(err.message);
    throw err;
  }
}

async function runPsbtSign(argv: string[]): Promise<number> {
  const v = parse(argv, {
    signer: { type: 'string', multiple: true },
    psbt: { type: 'string' },
    out: { type: 'string' },
    binary: { type: 'boolean' },
    'tls-ca': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'deadline-ms': { type: 'string' },
    json: { type: 'boolean' },
  });
  const specs = (v.signer as string[] | undefined) ?? [];
  if (specs.length === 0) throw new CliError(`at least one --signer is required\n\n${PSBT_USAGE}`, 2);
  if (typeof v.psbt !== 'string') throw new CliError(`--psbt is required\n\n${PSBT_USAGE}`, 2);
  const deadline = v['deadline-ms'] as string | undefined;
  if (deadline !== undefined && !/^\d{1,9}$/.test(deadline)) throw new CliError('--deadline-ms must be a whole number', 2);
  const credentials = channelCredentials(v as { 'tls-ca'?: string; 'tls-cert'?: string; 'tls-key'?: string });
  const signers: SessionSigner[] = specs.map((s) => ({ ...parseSignerSpec(s), credentials }));
  const psbt = readPsbtFile(v.psbt);

  let result;
  try {
    result = await runPsbtSession({ psbt, signers, deadlineMs: deadline === undefined ? undefined : Number(deadline) });
  } catch (err) {
    if (err instanceof CulpritError || err instanceof SessionError || err instanceof ClientError) throw new CliError(err.message);
    throw err;
  }
  if (typeof v.out === 'string') writePsbtFile(v.out, result.psbt, v.binary === true);
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  const psbtText = Buffer.from(result.psbt).toString('base64');
  if (v.json) {
    console.log(
      JSON.stringify({
        txid: result.txid ?? null,
        raw_tx: result.rawTx ? hex(result.rawTx) : null,
        finalized: result.finalized,
        psbt: psbtText,
        restarts: result.restarts,
      }),
    );
  } else if (result.rawTx) {
    console.log(`finalized inputs ${result.finalized.join(', ')}`);
    console.log(`txid   ${result.txid}`);
    console.log(`raw_tx ${hex(result.rawTx)}`);
  } else {
    console.log(`finalized inputs ${result.finalized.length === 0 ? 'none' : result.finalized.join(', ')}; some inputs still need signatures`);
    if (typeof v.out === 'string') console.log(`psbt written to ${v.out}`);
    else console.log(`psbt ${psbtText}`);
  }
  return 0;
}

export async function runPsbt(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || ((sub === '--help' || sub === '-h' || sub === 'help') && rest.length === 0) || wantsHelp(rest)) {
    console.log(PSBT_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'update') return runUpdate(rest);
  if (sub === 'sign') return runPsbtSign(rest);
  throw new CliError(`unknown psbt command '${sub}'\n\n${PSBT_USAGE}`, 2);
}
