// The common shape the property test and the benchmark use for the two peer libraries, so both
// drive them the same way. Everything is bytes in BIP327 encodings (33-byte keys, 66-byte
// pubnonces, 97-byte secnonces, 32-byte partial signatures).

export interface PeerTweak {
  readonly tweak: Uint8Array;
  readonly xonly: boolean;
}

/** BIP327 NonceGen inputs. `rand` is rand', which both peers let us inject. */
export interface PeerNonceGenInput {
  readonly sk?: Uint8Array;
  readonly pk: Uint8Array;
  readonly aggpk?: Uint8Array;
  readonly msg?: Uint8Array;
  readonly extraIn?: Uint8Array;
  readonly rand: Uint8Array;
}

export interface PeerNonces {
  readonly pubnonce: Uint8Array;
  /** Absent when the peer keeps it private (brandonblack stores it in a module WeakMap). */
  readonly secnonce?: Uint8Array;
}

/**
 * Array arguments are passed to the peer as they are, not copied: brandonblack caches key
 * aggregation per array object, so handing it the same array again is what "warm" means in the
 * benchmark. A peer may wipe a secnonce it is given (scure does), so callers pass a copy.
 */
export interface MusigPeer {
  readonly name: string;
  individualPubkey(sk: Uint8Array): Uint8Array;
  keySort(pubkeys: Uint8Array[]): Uint8Array[];
  /** Aggregate key after tweaks: 32-byte x-only and 33-byte plain. */
  keyAgg(pubkeys: Uint8Array[], tweaks: readonly PeerTweak[]): { xonly: Uint8Array; plain: Uint8Array };
  nonceGen(input: PeerNonceGenInput): PeerNonces;
  nonceAgg(pubnonces: Uint8Array[]): Uint8Array;
  /**
   * Session values for one (aggnonce, keys, tweaks, message), reused for every signer of that
   * session: both peers redo key aggregation when a session is built, which is slow.
   */
  session(aggnonce: Uint8Array, pubkeys: Uint8Array[], tweaks: readonly PeerTweak[], msg: Uint8Array): PeerSession;
  deterministicSign(
    sk: Uint8Array,
    aggothernonce: Uint8Array,
    pubkeys: Uint8Array[],
    tweaks: readonly PeerTweak[],
    msg: Uint8Array,
    rand?: Uint8Array,
  ): { pubnonce: Uint8Array; psig: Uint8Array };
  /** One-shot BIP327 PartialSigVerify: computes the aggnonce and the session itself. */
  partialSigVerify(
    psig: Uint8Array,
    pubnonces: Uint8Array[],
    pubkeys: Uint8Array[],
    tweaks: readonly PeerTweak[],
    msg: Uint8Array,
    i: number,
  ): boolean;
}

export interface PeerSession {
  /** `pubnonce` is the one matching `secnonce`; brandonblack needs it to find the secnonce. */
  sign(secnonce: Uint8Array, pubnonce: Uint8Array, sk: Uint8Array): Uint8Array;
  /** The session's aggnonce must be NonceAgg(pubnonces); scure checks that, brandonblack trusts it. */
  partialSigVerify(psig: Uint8Array, pubnonces: Uint8Array[], i: number): boolean;
  partialSigAgg(psigs: Uint8Array[]): Uint8Array;
}
