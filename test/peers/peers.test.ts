// The peer adapters themselves must be right before the property test can blame our core, so
// both peers are run here, through the same adapters, on the valid BIP327 vectors.
import { schnorr } from '@noble/curves/secp256k1.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { brandonblackPeer } from './brandonblack.js';
import { scurePeer } from './scure.js';
import type { MusigPeer, PeerTweak } from './types.js';
import { readVectorJson } from '../vectors/load.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON vectors, shapes checked by use
const load = (name: string): any => readVectorJson(`bip327/${name}`);
const h = (s: string): Uint8Array => hexToBytes(s);
const hx = (b: Uint8Array): string => bytesToHex(b).toUpperCase();
const pick = (list: string[], idx: number[]): Uint8Array[] => idx.map((i) => h(list[i]!));
const tweaksOf = (tweaks: string[], xonly: boolean[]): PeerTweak[] =>
  tweaks.map((t, i) => ({ tweak: h(t), xonly: xonly[i]! }));

describe.each<MusigPeer>([brandonblackPeer, scurePeer])('peer adapter $name on BIP327 vectors', (peer) => {
  it('KeySort', () => {
    const v = load('key_sort_vectors.json');
    expect(peer.keySort(v.pubkeys.map(h)).map(hx)).toEqual(v.sorted_pubkeys);
  });

  it('KeyAgg', () => {
    const v = load('key_agg_vectors.json');
    for (const c of v.valid_test_cases) {
      expect(hx(peer.keyAgg(pick(v.pubkeys, c.key_indices), []).xonly)).toBe(c.expected);
    }
  });

  it('NonceGen with injected rand', () => {
    const v = load('nonce_gen_vectors.json');
    for (const c of v.test_cases) {
      const opt = (s: string | null): Uint8Array | undefined => (s === null ? undefined : h(s));
      const n = peer.nonceGen({
        rand: h(c.rand_),
        sk: opt(c.sk),
        pk: h(c.pk),
        aggpk: opt(c.aggpk),
        msg: opt(c.msg),
        extraIn: opt(c.extra_in),
      });
      expect(hx(n.pubnonce)).toBe(c.expected_pubnonce);
      if (n.secnonce !== undefined) expect(hx(n.secnonce)).toBe(c.expected_secnonce);
    }
  });

  it('Sign and PartialSigVerify', () => {
    const v = load('sign_verify_vectors.json');
    const sk = h(v.sk);
    for (const c of v.valid_test_cases) {
      const pubkeys = pick(v.pubkeys, c.key_indices);
      const pubnonces = pick(v.pnonces, c.nonce_indices);
      const msg = h(v.msgs[c.msg_index]);
      const aggnonce = h(v.aggnonces[c.aggnonce_index]);
      expect(hx(peer.nonceAgg(pubnonces))).toBe(v.aggnonces[c.aggnonce_index]);
      const session = peer.session(aggnonce, pubkeys, [], msg);
      const psig = session.sign(h(v.secnonces[0]), pubnonces[c.signer_index]!, sk);
      expect(hx(psig)).toBe(c.expected);
      expect(peer.partialSigVerify(psig, pubnonces, pubkeys, [], msg, c.signer_index)).toBe(true);
    }
    for (const c of v.verify_fail_test_cases) {
      const pubkeys = pick(v.pubkeys, c.key_indices);
      const pubnonces = pick(v.pnonces, c.nonce_indices);
      const verify = (): boolean =>
        peer.partialSigVerify(h(c.sig), pubnonces, pubkeys, [], h(v.msgs[c.msg_index]), c.signer_index);
      // brandonblack throws instead of answering false for a psig >= n; both count as rejection.
      let accepted: boolean;
      try {
        accepted = verify();
      } catch {
        accepted = false;
      }
      expect(accepted, c.comment).toBe(false);
    }
  });

  it('Sign with tweaks', () => {
    const v = load('tweak_vectors.json');
    for (const c of v.valid_test_cases) {
      const pubkeys = pick(v.pubkeys, c.key_indices);
      const pubnonces = pick(v.pnonces, c.nonce_indices);
      const tweaks = tweaksOf(pick(v.tweaks, c.tweak_indices).map(hx), c.is_xonly);
      const msg = h(v.msg);
      const session = peer.session(h(v.aggnonce), pubkeys, tweaks, msg);
      const psig = session.sign(h(v.secnonce), pubnonces[c.signer_index]!, h(v.sk));
      expect(hx(psig)).toBe(c.expected);
      expect(session.partialSigVerify(psig, pubnonces, c.signer_index)).toBe(true);
      expect(peer.partialSigVerify(psig, pubnonces, pubkeys, tweaks, msg, c.signer_index)).toBe(true);
    }
  });

  it('DeterministicSign', () => {
    const v = load('det_sign_vectors.json');
    for (const c of v.valid_test_cases) {
      const pubkeys = pick(v.pubkeys, c.key_indices);
      const tweaks = tweaksOf(c.tweaks, c.is_xonly);
      const rand = c.rand === null ? undefined : h(c.rand);
      const r = peer.deterministicSign(h(v.sk), h(c.aggothernonce), pubkeys, tweaks, h(v.msgs[c.msg_index]), rand);
      expect([hx(r.pubnonce), hx(r.psig)]).toEqual(c.expected);
    }
  });

  it('PartialSigAgg, checked with BIP340 verify', () => {
    const v = load('sig_agg_vectors.json');
    for (const c of v.valid_test_cases) {
      const pubkeys = pick(v.pubkeys, c.key_indices);
      const tweaks = tweaksOf(pick(v.tweaks, c.tweak_indices).map(hx), c.is_xonly);
      const msg = h(v.msg);
      const sig = peer.session(h(c.aggnonce), pubkeys, tweaks, msg).partialSigAgg(pick(v.psigs, c.psig_indices));
      expect(hx(sig)).toBe(c.expected);
      expect(schnorr.verify(sig, msg, peer.keyAgg(pubkeys, tweaks).xonly)).toBe(true);
    }
  });
});
