// Access rules: which client identity may call which RPC on which key. Loaded from a JSON file
// (MUSIG2_ACL / --acl); see docs/operating-audit-acl.md. No rule means no access.
//
//   {
//     "aggregator": "authenticated",          // or "rules" (default): who may use the Aggregator
//     "rules": [
//       { "clients": ["CN=coordinator-1", "URI:spiffe://corp/coord"],
//         "keys": ["treasury-*", "demo-1"],
//         "rpcs": ["ListKeys", "NonceGen", "Sign", "DeterministicSign"] }
//     ]
//   }
//
// A client is named by its certificate subject CN (`CN=name`) or one of its SANs (`DNS:name`,
// `URI:uri`, `IP:addr`, `email:addr`), or `local` for plaintext on a loopback address. Key
// patterns may use `*` for any run of characters. RPC names are the Signer's and the
// Aggregator's method names, or `*` for all of them.
import { readFile } from 'node:fs/promises';
import type { PeerCertificate } from 'node:tls';
import type { ServerUnaryCall } from '@grpc/grpc-js';

export const SIGNER_RPCS = ['ListKeys', 'NonceGen', 'Sign', 'DeterministicSign', 'PsbtNonceGen', 'PsbtSign', 'PsbtDeterministicSign'] as const;
export const AGGREGATOR_RPCS = ['KeySort', 'KeyAgg', 'NonceAgg', 'PartialSigVerify', 'PartialSigAgg', 'PsbtCombine', 'PsbtFinalize'] as const;
const ALL_RPCS: ReadonlySet<string> = new Set<string>([...SIGNER_RPCS, ...AGGREGATOR_RPCS]);
const KEYED_RPCS: ReadonlySet<string> = new Set(['NonceGen', 'Sign', 'DeterministicSign', 'ListKeys', 'PsbtNonceGen', 'PsbtSign', 'PsbtDeterministicSign']);

export class AclError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AclError';
  }
}

/** Who is calling, as far as the transport can tell. */
export interface ClientIdentity {
  /** For logs and audit records: `CN=…`, the first SAN, `local` or `anonymous`. */
  name: string;
  /** A verified client certificate, or plaintext on loopback (`local`). */
  authenticated: boolean;
  /** Every name rules may match: `CN=…` and each SAN as `DNS:…`, `URI:…`, `IP:…`, `email:…`; or `local`. */
  names: string[];
}

const SAN_PREFIXES: Record<string, string> = { DNS: 'DNS', URI: 'URI', 'IP Address': 'IP', email: 'email' };

/** Splits Node's `subjectaltname` ("DNS:a, URI:b, IP Address:1.2.3.4") into rule names. */
export function parseSubjectAltName(text: string | undefined): string[] {
  if (!text) return [];
  const out: string[] = [];
  // Node quotes entries that contain commas or quotes as JSON strings.
  const re = /(DNS|URI|IP Address|email|[A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:,\s*|$)/g;
  for (const m of text.matchAll(re)) {
    const prefix = SAN_PREFIXES[m[1]!];
    if (prefix === undefined) continue;
    let value = m[2]!;
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        continue;
      }
    }
    out.push(`${prefix}:${prefix === 'DNS' ? value.toLowerCase() : value}`);
  }
  return out;
}

/** Longest client name put in a log line, an audit record or a refusal; rules still match the whole name. */
export const MAX_CLIENT_NAME_CHARS = 256;

/** `text` cut to `max` characters, marked when cut (for logs, audit records and messages). */
export function capText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 13)}… (truncated)`;
}

export function identityFromCertificate(cert: PeerCertificate): ClientIdentity {
  const cnField = cert.subject?.CN as string | string[] | undefined;
  const cns = cnField === undefined ? [] : Array.isArray(cnField) ? cnField : [cnField];
  const names = [...cns.map((cn) => `CN=${cn}`), ...parseSubjectAltName(cert.subjectaltname)];
  return { name: capText(names[0] ?? 'certificate', MAX_CLIENT_NAME_CHARS), authenticated: true, names };
}

export const LOCAL: ClientIdentity = { name: 'local', authenticated: true, names: ['local'] };
export const ANONYMOUS: ClientIdentity = { name: 'anonymous', authenticated: false, names: [] };

/**
 * The caller of a gRPC call: its verified certificate (grpc-js reports one only when the TLS
 * socket is authorized), `local` for plaintext when the server listens on loopback only, and
 * `anonymous` otherwise (TLS without a client certificate, or plaintext allowed by --insecure).
 */
export function identifyCaller(call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext'>, plaintextIsLocal: boolean): ClientIdentity {
  const auth = call.getAuthContext?.();
  if (auth?.sslPeerCertificate) return identityFromCertificate(auth.sslPeerCertificate);
  if (auth?.transportSecurityType === 'ssl') return ANONYMOUS;
  // getAuthContext() is {} for plaintext and for a TLS socket that did not authorize.
  return plaintextIsLocal ? LOCAL : ANONYMOUS;
}

interface Rule {
  clients: Set<string>;
  keys: KeyPattern[];
  rpcs: Set<string>;
}

export type Decision = { allowed: true } | { allowed: false; reason: string };

const DENY = (reason: string): Decision => ({ allowed: false, reason });
const ALLOW: Decision = { allowed: true };

/**
 * A key pattern where `*` stands for any run of characters, matched in time linear in the key
 * id and the pattern (a backtracking regular expression takes quadratic or cubic time on
 * several `*`). The parts between stars must occur in order: the first as a prefix, the last as
 * a suffix, each middle part at its leftmost place after the previous one (taking the leftmost
 * place never loses a match), found with Knuth-Morris-Pratt so no character is read twice.
 */
export class KeyPattern {
  private readonly parts: string[];
  private readonly tables: Int32Array[];

  constructor(readonly glob: string) {
    this.parts = glob.split('*');
    this.tables = this.parts.map(failureTable);
  }

  test(text: string): boolean {
    const parts = this.parts;
    const first = parts[0]!;
    if (parts.length === 1) return text === first;
    const last = parts[parts.length - 1]!;
    if (text.length < first.length + last.length) return false;
    if (!text.startsWith(first) || !text.endsWith(last)) return false;
    let from = first.length;
    const end = text.length - last.length;
    for (let i = 1; i < parts.length - 1; i++) {
      const at = kmpIndexOf(text, parts[i]!, this.tables[i]!, from, end);
      if (at < 0) return false;
      from = at + parts[i]!.length;
    }
    return true;
  }
}

function failureTable(p: string): Int32Array {
  const t = new Int32Array(p.length);
  let k = 0;
  for (let i = 1; i < p.length; i++) {
    while (k > 0 && p.charCodeAt(i) !== p.charCodeAt(k)) k = t[k - 1]!;
    if (p.charCodeAt(i) === p.charCodeAt(k)) k++;
    t[i] = k;
  }
  return t;
}

/** First index >= from where `p` occurs wholly inside text[from, end), or -1. */
function kmpIndexOf(text: string, p: string, t: Int32Array, from: number, end: number): number {
  if (p.length === 0) return from;
  let k = 0;
  for (let i = from; i < end; i++) {
    const c = text.charCodeAt(i);
    while (k > 0 && c !== p.charCodeAt(k)) k = t[k - 1]!;
    if (c === p.charCodeAt(k)) k++;
    if (k === p.length) return i - p.length + 1;
  }
  return -1;
}

const CLIENT_NAME = /^(CN=.+|DNS:.+|URI:.+|IP:.+|email:.+|local)$/;

export class AccessRules {
  private constructor(
    private readonly rules: Rule[],
    /** Whether every authenticated client may use the Aggregator. */
    readonly aggregatorOpen: boolean,
  ) {}

  /** Parses and checks a rule document; AclError names what is wrong. */
  static parse(text: string, source = 'access rules'): AccessRules {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new AclError(`${source}: not valid JSON: ${(err as Error).message}`);
    }
    const fail = (what: string) => new AclError(`${source}: ${what}`);
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw fail('the top level must be an object');
    const top = doc as Record<string, unknown>;
    for (const k of Object.keys(top)) if (!['rules', 'aggregator', 'comment'].includes(k)) throw fail(`unknown field '${k}'`);
    const aggregator = top.aggregator ?? 'rules';
    if (aggregator !== 'rules' && aggregator !== 'authenticated') throw fail(`'aggregator' must be "rules" or "authenticated"`);
    if (!Array.isArray(top.rules)) throw fail(`'rules' must be an array`);
    const strings = (v: unknown, where: string): string[] => {
      const list = typeof v === 'string' ? [v] : v;
      if (!Array.isArray(list) || list.some((s) => typeof s !== 'string' || s === '')) {
        throw fail(`${where} must be a non-empty string or an array of them`);
      }
      return list as string[];
    };
    const rules = top.rules.map((raw: unknown, i): Rule => {
      const where = `rules[${i}]`;
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw fail(`${where} must be an object`);
      const r = raw as Record<string, unknown>;
      for (const k of Object.keys(r)) if (!['client', 'clients', 'keys', 'rpcs', 'comment'].includes(k)) throw fail(`${where}: unknown field '${k}'`);
      if ((r.client === undefined) === (r.clients === undefined)) throw fail(`${where} needs exactly one of 'client' or 'clients'`);
      const clients = strings(r.client ?? r.clients, `${where}.clients`);
      for (const c of clients) {
        if (!CLIENT_NAME.test(c)) throw fail(`${where}: client '${c}' must be CN=…, DNS:…, URI:…, IP:…, email:… or local`);
      }
      const rpcs = strings(r.rpcs, `${where}.rpcs`);
      for (const rpc of rpcs) if (rpc !== '*' && !ALL_RPCS.has(rpc)) throw fail(`${where}: unknown RPC '${rpc}'`);
      const expanded = rpcs.includes('*') ? [...ALL_RPCS] : rpcs;
      const keyed = expanded.some((rpc) => KEYED_RPCS.has(rpc));
      if (keyed && r.keys === undefined) throw fail(`${where}: 'keys' is required when Signer RPCs are granted`);
      const keys = r.keys === undefined ? [] : strings(r.keys, `${where}.keys`);
      return {
        clients: new Set(clients.map((c) => (c.startsWith('DNS:') ? `DNS:${c.slice(4).toLowerCase()}` : c))),
        keys: keys.map((k) => new KeyPattern(k)),
        rpcs: new Set(expanded),
      };
    });
    return new AccessRules(rules, aggregator === 'authenticated');
  }

  static async load(path: string): Promise<AccessRules> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new AclError(`cannot read access rules ${path}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`);
    }
    return AccessRules.parse(text, path);
  }

  private rulesFor(who: ClientIdentity, rpc: string): Rule[] {
    return this.rules.filter((r) => r.rpcs.has(rpc) && who.names.some((n) => r.clients.has(n)));
  }

  /** May `who` call `rpc` at all (on some key, for keyed RPCs)? */
  allowsRpc(who: ClientIdentity, rpc: string): Decision {
    if ((AGGREGATOR_RPCS as readonly string[]).includes(rpc) && this.aggregatorOpen) {
      return who.authenticated ? ALLOW : DENY(`client '${who.name}' is not authenticated`);
    }
    return this.rulesFor(who, rpc).length > 0 ? ALLOW : DENY(`no rule grants ${rpc} to client '${who.name}'`);
  }

  /** May `who` call `rpc` on key `keyId`? */
  allowsKey(who: ClientIdentity, rpc: string, keyId: string): Decision {
    const ok = this.rulesFor(who, rpc).some((r) => r.keys.some((k) => k.test(keyId)));
    return ok ? ALLOW : DENY(`no rule grants ${rpc} on key '${capText(keyId, 64)}' to client '${who.name}'`);
  }
}
