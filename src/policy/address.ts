// Destinations: an address for the policy's network, decoded to its scriptPubKey with
// @scure/btc-signer, or a scriptPubKey written as hex.
import { Address, NETWORK, OutScript, TEST_NETWORK } from '@scure/btc-signer';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';

export const NETWORKS = ['bitcoin', 'testnet', 'signet', 'regtest'] as const;
export type PolicyNetwork = (typeof NETWORKS)[number];

type BtcNetwork = typeof NETWORK;
const REGTEST: BtcNetwork = { ...TEST_NETWORK, bech32: 'bcrt' };
const PARAMS: Record<PolicyNetwork, BtcNetwork> = { bitcoin: NETWORK, testnet: TEST_NETWORK, signet: TEST_NETWORK, regtest: REGTEST };

/** Longest scriptPubKey accepted as a destination (consensus caps scripts at 10,000 bytes). */
export const MAX_SCRIPT_BYTES = 10_000;
const HEX_SCRIPT = /^(?:[0-9a-fA-F]{2})+$/;

function decodeAddress(text: string, network: PolicyNetwork): Uint8Array | undefined {
  try {
    return OutScript.encode(Address(PARAMS[network]).decode(text));
  } catch {
    return undefined;
  }
}

/**
 * The scriptPubKey a destination entry stands for, or a sentence saying why it is neither.
 * An entry that decodes as an address of the policy's network is that address (addresses
 * carry a checksum, so a hex string is never mistaken for one in practice); otherwise it must
 * be a whole number of hex bytes.
 */
export function destinationScript(text: string, network: PolicyNetwork): { script: Uint8Array; address: boolean } | string {
  const script = decodeAddress(text, network);
  if (script) return { script, address: true };
  if (HEX_SCRIPT.test(text)) {
    if (text.length / 2 > MAX_SCRIPT_BYTES) return `a script longer than ${MAX_SCRIPT_BYTES} bytes`;
    return { script: hexToBytes(text.toLowerCase()), address: false };
  }
  const other = NETWORKS.find((n) => PARAMS[n] !== PARAMS[network] && decodeAddress(text, n));
  if (other) return `a ${other === 'testnet' || other === 'signet' ? 'testnet/signet' : other} address, but the policy's network is ${network}`;
  return `neither a ${network} address nor a hex scriptPubKey`;
}

/** An output script as an operator reads it: its address on the network, else its hex. */
export function describeScript(script: Uint8Array, network: PolicyNetwork): string {
  try {
    return Address(PARAMS[network]).encode(OutScript.decode(script));
  } catch {
    return bytesToHex(script);
  }
}
