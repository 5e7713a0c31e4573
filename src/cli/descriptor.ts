// `musig2-signer descriptor address`: the address a tr()/rawtr() descriptor with musig() keys
// (BIP390) derives at an index, on the receive branch or (--change) the change branch.
import { parseArgs } from 'node:util';
import { addressOf, deriveAt, DescriptorError, parseDescriptor } from '../descriptor/index.js';
import type { Network } from '../descriptor/index.js';
import { CliError, wantsHelp } from './errors.js';

export const DESCRIPTOR_USAGE = `usage: musig2-signer descriptor address --descriptor D [--index I] [--change] [options]

  --descriptor D     tr(...) or rawtr(...) with musig() keys (BIP390), checksum optional
  --index I          the index for '*' (default 0)
  --change           the change branch (the second path of <0;1>) instead of receive
  --network NET      mainnet (default), testnet or regtest
  --json             also print the scriptPubKey and the output key`;

const NETWORKS: readonly Network[] = ['mainnet', 'testnet', 'regtest'];

export async function runDescriptor(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || wantsHelp(rest)) {
    console.log(DESCRIPTOR_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'address') throw new CliError(`unknown descriptor command '${sub}'\n\n${DESCRIPTOR_USAGE}`, 2);
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      strict: true,
      allowPositionals: false,
      options: {
        descriptor: { type: 'string' },
        index: { type: 'string' },
        change: { type: 'boolean' },
        network: { type: 'string' },
        json: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${DESCRIPTOR_USAGE}`, 2);
  }
  if (values.descriptor === undefined) throw new CliError(`--descriptor is required\n\n${DESCRIPTOR_USAGE}`, 2);
  const index = values.index ?? '0';
  if (!/^\d{1,10}$/.test(index) || Number(index) >= 0x80000000) throw new CliError('--index must be a whole number below 2^31', 2);
  const network = (values.network ?? 'mainnet') as Network;
  if (!NETWORKS.includes(network)) throw new CliError(`--network must be one of ${NETWORKS.join(', ')}`, 2);
  try {
    const desc = parseDescriptor(values.descriptor);
    const out = deriveAt(desc, { branch: values.change ? 1 : 0, index: Number(index) });
    const address = addressOf(out, network);
    if (values.json) {
      const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
      console.log(JSON.stringify({ address, script_pubkey: hex(out.script), output_key: hex(out.outputKey), branch: out.branch, index: out.index }));
    } else {
      console.log(address);
    }
    return 0;
  } catch (err) {
    if (err instanceof DescriptorError) throw new CliError(err.message, 2);
    throw err;
  }
}
