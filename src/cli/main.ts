// musig2-signer command-line entry point: dispatches to one module per command.
import { CliError } from './errors.js';

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  audit: {
    summary: 'verify FILE [--ledger URL]: check the keyed chain of an audit log (in the token) and its ledger anchor; name the first bad line',
    load: async () => (await import('./audit.js')).runAudit,
  },
  descriptor: {
    summary: 'address --descriptor D --index I [--change]: the address a musig() descriptor derives',
    load: async () => (await import('./descriptor.js')).runDescriptor,
  },
  demo: {
    summary: 'run a local 3-signer MuSig2 session in process and verify it',
    load: async () => (await import('./demo.js')).runDemo,
  },
  health: {
    summary: 'ask a running daemon (default MUSIG2_LISTEN) over grpc.health.v1; exit 0 if SERVING',
    load: async () => (await import('./health.js')).runHealth,
  },
  keys: {
    summary: 'create, import (hex secret on stdin) or list the keys sealed in the PKCS#11 token',
    load: async () => (await import('./keys.js')).runKeys,
  },
  policy: {
    summary: 'hash FILE | check --policy FILE --psbt FILE [--key K]: a policy file\'s hash; how it judges a transaction',
    load: async () => (await import('./policy.js')).runPolicy,
  },
  psbt: {
    summary: 'update (BIP373 fields from a descriptor) or sign (a whole session over a PSBT) a transaction',
    load: async () => (await import('./psbt.js')).runPsbt,
  },
  serve: {
    summary: 'run the signer daemon (gRPC Signer and Aggregator, health, reflection)',
    load: async () => (await import('./serve.js')).runServe,
  },
  start: {
    summary: 'npm start: a local demo daemon on a project-local SoftHSM2 token with three demo keys',
    load: async () => (await import('./start.js')).runStart,
  },
  sign: {
    summary: 'coordinate a full signing session across signer daemons and print the signature',
    load: async () => (await import('./sign.js')).runSign,
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return ['usage: musig2-signer <command> [options]', '', 'commands:', ...lines].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`musig2-signer: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  try {
    return await (await command.load())(rest);
  } catch (err) {
    if (err instanceof CliError) {
      console.error(`musig2-signer ${name}: ${err.message}`);
      return err.exitCode;
    }
    // Unexpected: print the message only; stacks may carry arguments.
    console.error(`musig2-signer ${name}: ${(err as Error)?.message ?? String(err)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
