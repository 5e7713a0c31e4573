// Access rules (src/server/acl.ts): parsing with clear errors, identities from certificates and
// transports, and the RPC / key decisions, including globs and the Aggregator modes.
import type { PeerCertificate } from 'node:tls';
import { describe, expect, it } from 'vitest';
import {
  AccessRules,
  AclError,
  ANONYMOUS,
  identifyCaller,
  identityFromCertificate,
  LOCAL,
  parseSubjectAltName,
} from '../../src/server/acl.js';

const cert = (cn: string | undefined, san?: string) =>
  ({ subject: cn === undefined ? {} : { CN: cn }, subjectaltname: san, raw: Buffer.alloc(1) }) as unknown as PeerCertificate;

const rules = AccessRules.parse(
  JSON.stringify({
    rules: [
      { client: 'CN=coord-1', keys: ['treasury-*', 'demo-1'], rpcs: ['NonceGen', 'Sign', 'ListKeys'] },
      { clients: ['DNS:coord.example.com', 'local'], keys: ['*'], rpcs: ['DeterministicSign', 'KeyAgg'] },
    ],
  }),
);

describe('parsing', () => {
  it.each([
    ['not json', /not valid JSON/],
    ['[]', /top level must be an object/],
    ['{}', /'rules' must be an array/],
    ['{"rules":[],"extra":1}', /unknown field 'extra'/],
    ['{"rules":[],"aggregator":"everyone"}', /"rules" or "authenticated"/],
    ['{"rules":[{"client":"CN=a","keys":["k"],"rcps":["Sign"]}]}', /rules\[0\]: unknown field 'rcps'/],
    ['{"rules":[{"keys":["k"],"rpcs":["Sign"]}]}', /exactly one of 'client' or 'clients'/],
    ['{"rules":[{"client":"coord","keys":["k"],"rpcs":["Sign"]}]}', /client 'coord' must be CN=/],
    ['{"rules":[{"client":"CN=a","keys":["k"],"rpcs":["Sing"]}]}', /unknown RPC 'Sing'/],
    ['{"rules":[{"client":"CN=a","rpcs":["Sign"]}]}', /'keys' is required/],
    ['{"rules":[{"client":"CN=a","keys":[""],"rpcs":["Sign"]}]}', /keys must be a non-empty string/],
  ])('refuses %s', (text, why) => {
    expect(() => AccessRules.parse(text, 'acl.json')).toThrow(AclError);
    expect(() => AccessRules.parse(text, 'acl.json')).toThrow(why);
  });

  it('accepts Aggregator-only rules without keys, and comments', () => {
    expect(() => AccessRules.parse('{"comment":"x","rules":[{"comment":"y","client":"CN=a","rpcs":["KeyAgg","NonceAgg"]}]}')).not.toThrow();
  });
});

describe('identities', () => {
  it('reads the CN and the SANs of a certificate', () => {
    expect(identityFromCertificate(cert('coord-1', 'DNS:Coord.Example.com, URI:spiffe://x/y, IP Address:10.0.0.1, email:a@b'))).toEqual({
      name: 'CN=coord-1',
      authenticated: true,
      names: ['CN=coord-1', 'DNS:coord.example.com', 'URI:spiffe://x/y', 'IP:10.0.0.1', 'email:a@b'],
    });
    expect(identityFromCertificate(cert(undefined, 'URI:spiffe://x/y')).name).toBe('URI:spiffe://x/y');
    expect(parseSubjectAltName('DNS:"a,b", othername:<unsupported>, DNS:c')).toEqual(['DNS:a,b', 'DNS:c']);
  });

  it('names plaintext callers local on loopback only, and TLS callers without a certificate anonymous', () => {
    expect(identifyCaller({ getAuthContext: () => ({}) }, true)).toBe(LOCAL);
    expect(identifyCaller({ getAuthContext: () => ({}) }, false)).toBe(ANONYMOUS);
    expect(identifyCaller({ getAuthContext: () => ({ transportSecurityType: 'ssl' }) }, true)).toBe(ANONYMOUS);
    expect(identifyCaller({ getAuthContext: () => ({ transportSecurityType: 'ssl', sslPeerCertificate: cert('x') }) }, false).name).toBe('CN=x');
  });
});

describe('decisions', () => {
  const coord = identityFromCertificate(cert('coord-1'));
  const byDns = identityFromCertificate(cert('someone', 'DNS:COORD.example.com'));
  const stranger = identityFromCertificate(cert('coord-10'));

  it('grants RPCs on matching keys only', () => {
    expect(rules.allowsRpc(coord, 'Sign').allowed).toBe(true);
    expect(rules.allowsKey(coord, 'Sign', 'treasury-hot').allowed).toBe(true);
    expect(rules.allowsKey(coord, 'Sign', 'demo-1').allowed).toBe(true);
    expect(rules.allowsKey(coord, 'Sign', 'demo-10').allowed).toBe(false);
    expect(rules.allowsKey(coord, 'Sign', 'xtreasury-a').allowed).toBe(false);
    expect(rules.allowsRpc(coord, 'DeterministicSign')).toEqual({
      allowed: false,
      reason: "no rule grants DeterministicSign to client 'CN=coord-1'",
    });
  });

  it('matches SANs (DNS case-insensitively) and local, and nothing else', () => {
    expect(rules.allowsKey(byDns, 'DeterministicSign', 'anything').allowed).toBe(true);
    expect(rules.allowsKey(LOCAL, 'DeterministicSign', 'k').allowed).toBe(true);
    expect(rules.allowsRpc(stranger, 'ListKeys').allowed).toBe(false);
    expect(rules.allowsRpc(ANONYMOUS, 'ListKeys').allowed).toBe(false);
  });

  it('keeps the Aggregator to the rules by default, or opens it to every authenticated client', () => {
    expect(rules.allowsRpc(byDns, 'KeyAgg').allowed).toBe(true);
    expect(rules.allowsRpc(coord, 'KeyAgg').allowed).toBe(false);
    const open = AccessRules.parse('{"aggregator":"authenticated","rules":[]}');
    expect(open.allowsRpc(stranger, 'PartialSigAgg').allowed).toBe(true);
    expect(open.allowsRpc(LOCAL, 'NonceAgg').allowed).toBe(true);
    expect(open.allowsRpc(ANONYMOUS, 'NonceAgg').allowed).toBe(false);
    expect(open.allowsRpc(stranger, 'ListKeys').allowed).toBe(false);
  });
});
