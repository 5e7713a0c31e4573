// A throwaway PKI for mTLS tests, made with openssl: a CA, a server certificate for 127.0.0.1
// and localhost, and client certificates with a chosen CN and optional subjectAltName.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clients: Record<string, { cert: string; key: string }>;
}

/** `clients` maps a client's CN to its subjectAltName extension value, or '' for none. */
export function makePki(dir: string, clients: Record<string, string>): Pki {
  const f = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ecKey, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-subj', '/CN=musig2-test-ca', '-days', '2');
  const issue = (name: string, cn: string, ext: string) => {
    writeFileSync(f(`${name}.ext`), ext);
    openssl('req', ...ecKey, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`);
    openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.crt`), '-days', '2', '-extfile', f(`${name}.ext`));
    return { cert: f(`${name}.crt`), key: f(`${name}.key`) };
  };
  const server = issue('server', 'musig2-test-server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  const out: Pki['clients'] = {};
  for (const [cn, san] of Object.entries(clients)) {
    out[cn] = issue(`client-${cn}`, cn, `extendedKeyUsage=clientAuth\n${san ? `subjectAltName=${san}\n` : ''}`);
  }
  return { ca: f('ca.crt'), serverCert: server.cert, serverKey: server.key, clients: out };
}
