// `musig2-signer start` (behind `npm start`): a local demo daemon. Creates a project-local
// SoftHSM2 token with three demo keys unless they exist, starts the daemon on 127.0.0.1:50051
// with a SQLite ledger under .local/data/, and prints the exact `sign` command to try. Extra
// flags go to `serve` (e.g. --listen 127.0.0.1:50052).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initSoftHsmToken, Keystore } from '../keystore/index.js';
import { describeLedger } from '../ledger/index.js';
import { daemonLogger, nextSignal, startDaemon } from './serve.js';
import { demoPsbt } from './demo-psbt.js';
import { PROJECT_DATA_DIR } from './serve-config.js';
import { parseServeArgs, serveUsage } from './serve-config.js';
import { wantsHelp } from './errors.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TOKEN_DIR = join(ROOT, '.local', 'softhsm');
const TOKEN_LABEL = 'musig2-demo';
const DEMO_KEYS = ['demo-1', 'demo-2', 'demo-3'];

/** A random PIN kept in a private file, made on first use and read back afterwards. */
function pinFile(name: string): { path: string; pin: string } {
  const path = join(TOKEN_DIR, name);
  if (!existsSync(path)) writeFileSync(path, `${randomBytes(12).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  return { path, pin: readFileSync(path, 'utf8').trim() };
}

/** The demo token with its three keys; returns the environment that points at it and the keys' public keys. */
async function ensureDemoToken(): Promise<{ env: NodeJS.ProcessEnv; pubkeys: Uint8Array[] }> {
  mkdirSync(TOKEN_DIR, { recursive: true, mode: 0o700 });
  const so = pinFile('so-pin');
  const user = pinFile('user-pin');
  const { conf, modulePath } = await initSoftHsmToken({ dir: TOKEN_DIR, label: TOKEN_LABEL, soPin: so.pin, userPin: user.pin });
  // SoftHSM reads its configuration when the module is first loaded in this process.
  process.env.SOFTHSM2_CONF = conf;
  const keystore = await Keystore.open({ modulePath, tokenLabel: TOKEN_LABEL, pinFile: user.path });
  let pubkeys: Uint8Array[];
  try {
    const have = new Set((await keystore.listKeys()).map((k) => k.label));
    for (const label of DEMO_KEYS) {
      if (have.has(label)) continue;
      await keystore.createKey(label);
      console.error(`created demo key ${label}`);
    }
    pubkeys = await Promise.all(DEMO_KEYS.map(async (label) => Uint8Array.from((await keystore.getKey(label)).publicKey)));
  } finally {
    await keystore.close();
  }
  const env = {
    ...process.env,
    SOFTHSM2_CONF: conf,
    MUSIG2_PKCS11_MODULE: modulePath,
    MUSIG2_PKCS11_TOKEN: TOKEN_LABEL,
    MUSIG2_PKCS11_PIN: '',
    MUSIG2_PKCS11_PIN_FILE: user.path,
  };
  return { env, pubkeys };
}

export async function runStart(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log('usage: musig2-signer start [serve options]\n\nA demo daemon on a project-local SoftHSM2 token with keys demo-1..3.\n\n' + serveUsage());
    return 0;
  }
  const { env, pubkeys } = await ensureDemoToken();
  const config = parseServeArgs(argv, env);
  const logger = daemonLogger(config.logLevel);
  const signal = nextSignal();
  // A transaction for the demo keys, spending a made-up output of their musig() descriptor;
  // written before the daemon starts, so a failure here leaves nothing running.
  const demo = demoPsbt(pubkeys);
  const psbtPath = join(PROJECT_DATA_DIR, 'demo.psbt');
  mkdirSync(PROJECT_DATA_DIR, { recursive: true });
  writeFileSync(psbtPath, `${Buffer.from(demo.psbt).toString('base64')}\n`);
  const daemon = await startDaemon(config, logger);

  const message = Buffer.from('musig2-signer demo message').toString('hex');
  const signers = DEMO_KEYS.map((k) => `--signer ${daemon.address}/${k}`).join(' ');
  const rel = (p: string) => relative(process.cwd(), p) || '.';
  const bin = rel(join(ROOT, 'bin', 'musig2-signer.js'));
  console.log(
    [
      '',
      `musig2-signer is listening on ${daemon.address} with keys ${DEMO_KEYS.join(', ')}`,
      `(token in ${rel(TOKEN_DIR)}, ledger ${describeLedger(config.ledger)})`,
      '',
      'Sign a message with all three keys (the last one signs deterministically):',
      '',
      `  node ${bin} sign ${signers} --message ${message}`,
      '',
      `Sign a transaction: ${rel(psbtPath)} is a PSBT spending a made-up output of the demo keys' wallet`,
      `${demo.descriptor}`,
      '(prints the txid and the raw transaction, every signature verified):',
      '',
      `  node ${bin} psbt sign ${signers} --psbt ${rel(psbtPath)}`,
      '',
      "The wallet's receive address:",
      '',
      `  node ${bin} descriptor address --descriptor '${demo.descriptor}'`,
      '',
      'List the demo keys:',
      '',
      `  SOFTHSM2_CONF=${rel(env.SOFTHSM2_CONF!)} MUSIG2_PKCS11_TOKEN=${TOKEN_LABEL} MUSIG2_PKCS11_PIN_FILE=${rel(env.MUSIG2_PKCS11_PIN_FILE!)} node ${rel(join(ROOT, 'bin', 'musig2-signer.js'))} keys list`,
      '',
      'Stop with Ctrl-C.',
      '',
    ].join('\n'),
  );

  const got = await signal;
  logger.info({ signal: got }, 'shutting down: draining in-flight calls');
  await daemon.stop();
  return 0;
}
