// The session store packs each session's bytes into one buffer (issue 5: memory per session).
// These check that the packing keeps the secnonce rules: moved in (the source zeroed), handed
// out as a view and never copied, and zeroed on take (by the taker), on expiry and on close.
// Structure only: no memory-size assertions.

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  BINDING_BYTES,
  PUBNONCE_BYTES,
  SECNONCE_BYTES,
  SESSION_BUFFER_BYTES,
  SESSION_ID_BYTES,
  Session,
  SessionStore,
} from '../../src/signer/sessions.js';

const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const TTL = 60_000;
const zero = (b: Uint8Array): boolean => b.every((x) => x === 0);

function setup(maxOpen = 10) {
  const clock = { t: 1_000_000 };
  const store = new SessionStore({ maxOpen, maxRetired: maxOpen, retentionMs: TTL, now: () => clock.t });
  const open = () => {
    const fields = {
      sessionId: rand(SESSION_ID_BYTES),
      pubnonce: rand(PUBNONCE_BYTES),
      binding: rand(BINDING_BYTES),
      secnonce: rand(SECNONCE_BYTES),
    };
    const secnonce = fields.secnonce.slice();
    const original = { ...fields, secnonce };
    if (!store.tryReserve()) throw new Error('full');
    const session = new Session({ ...fields, keyId: 'k', messageBound: false, expiresAt: clock.t + TTL });
    store.addReserved(session);
    return { session, source: fields.secnonce, original };
  };
  return { clock, store, open };
}

/** The secnonce part of the session's buffer, read without going through the getter. */
const secnoncePart = (s: Session): Uint8Array => s.buffer.subarray(0, SECNONCE_BYTES);

describe('session memory layout', () => {
  it('holds every fixed-size field in one ArrayBuffer, and the getters are views of it', () => {
    const { open } = setup();
    const { session, original } = open();
    expect(session.buffer.byteLength).toBe(SESSION_BUFFER_BYTES);
    expect(session.buffer.buffer.byteLength).toBe(SESSION_BUFFER_BYTES);
    for (const view of [session.sessionId, session.pubnonce, session.binding, session.secnonce!]) {
      expect(view.buffer).toBe(session.buffer.buffer);
    }
    expect(session.sessionId).toEqual(original.sessionId);
    expect(session.pubnonce).toEqual(original.pubnonce);
    expect(session.binding).toEqual(original.binding);
    expect(session.secnonce).toEqual(original.secnonce);
    expect(session.idHex).toBe(Buffer.from(original.sessionId).toString('hex'));
    // No other typed array hangs off an open session.
    const arrays = Object.values(session).filter((v) => ArrayBuffer.isView(v));
    expect(arrays).toEqual([session.buffer]);
  });

  it('moves the secnonce in: the caller\'s buffer is zeroed', () => {
    const { open } = setup();
    const { source, original } = open();
    expect(zero(source)).toBe(true);
    expect(zero(original.secnonce)).toBe(false);
  });

  it('refuses wrong sizes and still zeroes the given secnonce', () => {
    const secnonce = rand(SECNONCE_BYTES);
    expect(
      () =>
        new Session({
          sessionId: rand(31),
          pubnonce: rand(PUBNONCE_BYTES),
          binding: rand(BINDING_BYTES),
          secnonce,
          keyId: 'k',
          messageBound: false,
          expiresAt: 0,
        }),
    ).toThrow(RangeError);
    expect(zero(secnonce)).toBe(true);
  });
});

describe('secnonce wiping with the packed layout', () => {
  it('take hands out a view (no copy) that the taker wipes in place; it cannot be taken twice', () => {
    const { store, open } = setup();
    const { session, original } = open();
    const digest = rand(32);
    const taken = store.take(session, digest);
    expect(taken).toEqual(original.secnonce);
    expect(taken.buffer).toBe(session.buffer.buffer);
    expect(session.state).toBe('signing');
    expect(session.secnonce).toBeNull();
    expect(store.openCount()).toBe(0);
    expect(() => store.take(session, digest)).toThrow();
    taken.fill(0); // what the service does in `finally`
    expect(zero(secnoncePart(session))).toBe(true);
    // The public parts are untouched.
    expect(session.pubnonce).toEqual(original.pubnonce);
    expect(session.sessionId).toEqual(original.sessionId);
  });

  it('expiry zeroes the secnonce and keeps the public parts for retries', () => {
    const { clock, store, open } = setup();
    const { session, original } = open();
    const other = open();
    clock.t += TTL - 1;
    expect(store.sweep()).toBe(0);
    expect(zero(secnoncePart(session))).toBe(false);
    clock.t += 1;
    expect(store.sweep()).toBe(2);
    for (const s of [session, other.session]) {
      expect(s.state).toBe('expired');
      expect(s.secnonce).toBeNull();
      expect(zero(secnoncePart(s))).toBe(true);
    }
    expect(store.openCount()).toBe(0);
    expect(store.get(session.idHex)).toBe(session);
    expect(session.pubnonce).toEqual(original.pubnonce);
    clock.t += TTL;
    store.sweep();
    expect(store.get(session.idHex)).toBeUndefined();
  });

  it('expire() zeroes a single session', () => {
    const { store, open } = setup();
    const { session } = open();
    store.expire(session);
    expect(session.state).toBe('expired');
    expect(zero(secnoncePart(session))).toBe(true);
  });

  it('close (clear) zeroes every open secnonce', () => {
    const { store, open } = setup();
    const sessions = [open().session, open().session, open().session];
    store.clear();
    for (const s of sessions) {
      expect(s.state).toBe('expired');
      expect(s.secnonce).toBeNull();
      expect(zero(secnoncePart(s))).toBe(true);
    }
    expect(store.openCount()).toBe(0);
  });
});
