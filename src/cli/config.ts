// Settings shared by the commands: each comes from a flag, else an environment variable, else
// a default. A command lists the settings it takes; parseArgs options, help text and the
// resolved values all derive from the same table, so adding a setting (MUSIG2_LISTEN,
// MUSIG2_LEDGER, ...) is one entry here.
import type { ParseArgsConfig } from 'node:util';
import { findSoftHsmModule, SOFTHSM_MODULE_CANDIDATES } from '../keystore/softhsm.js';
import type { KeystoreOptions } from '../keystore/index.js';
import { CliError } from './errors.js';

export interface Setting {
  /** Long flag name without the dashes; omitted for settings that must not be flags. */
  readonly flag?: string;
  readonly env: string;
  readonly description: string;
  readonly default?: () => string | undefined;
}

export const PKCS11_SETTINGS = {
  module: {
    flag: 'pkcs11-module',
    env: 'MUSIG2_PKCS11_MODULE',
    description: 'path of the PKCS#11 module (default: SoftHSM2)',
    default: () => findSoftHsmModule() ?? SOFTHSM_MODULE_CANDIDATES[0],
  },
  token: {
    flag: 'pkcs11-token',
    env: 'MUSIG2_PKCS11_TOKEN',
    description: 'label of the token holding the keys',
  },
  // No --pin flag: a command line is visible to every user of the machine (ps, /proc).
  pin: {
    env: 'MUSIG2_PKCS11_PIN',
    description: 'the user PIN',
  },
  pinFile: {
    flag: 'pkcs11-pin-file',
    env: 'MUSIG2_PKCS11_PIN_FILE',
    description: 'a file holding the user PIN',
  },
} as const satisfies Record<string, Setting>;

export type SettingTable = Record<string, Setting>;
export type ResolvedSettings<T extends SettingTable> = { [K in keyof T]: string | undefined };
type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs options for every setting in `table` that has a flag. */
export function settingOptions(table: SettingTable): Options {
  const options: Options = {};
  for (const s of Object.values(table)) if (s.flag) options[s.flag] = { type: 'string' };
  return options;
}

/** Flag, else environment, else default; empty strings count as unset. */
export function resolveSettings<T extends SettingTable>(
  table: T,
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedSettings<T> {
  const out = {} as ResolvedSettings<T>;
  for (const key of Object.keys(table) as Array<keyof T>) {
    const s = table[key]!;
    const fromFlag = s.flag ? flags[s.flag] : undefined;
    const value = [typeof fromFlag === 'string' ? fromFlag : undefined, env[s.env], s.default?.()].find(
      (v) => v !== undefined && v !== '',
    );
    out[key] = value;
  }
  return out;
}

/** Help lines for a table: flag, variable and meaning. */
export function settingsHelp(table: SettingTable): string {
  return Object.values(table)
    .map((s) => `  ${(s.flag ? `--${s.flag} / ` : '').concat(s.env).padEnd(46)} ${s.description}`)
    .join('\n');
}

/** Keystore options from the PKCS#11 settings; CliError (exit 2) when the token or PIN is missing. */
export function keystoreOptions(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): KeystoreOptions {
  const s = resolveSettings(PKCS11_SETTINGS, flags, env);
  if (!s.token) throw new CliError(`no token label: set ${PKCS11_SETTINGS.token.env} or --${PKCS11_SETTINGS.token.flag}`, 2);
  if (!s.pin && !s.pinFile) {
    throw new CliError(`no PIN: set ${PKCS11_SETTINGS.pin.env}, ${PKCS11_SETTINGS.pinFile.env} or --${PKCS11_SETTINGS.pinFile.flag}`, 2);
  }
  // A PIN file named on the command line wins over the environment; two variables conflict.
  const pinFileFlag = typeof flags[PKCS11_SETTINGS.pinFile.flag] === 'string';
  const pin = pinFileFlag ? undefined : s.pin;
  if (pin && s.pinFile) throw new CliError(`set only one of ${PKCS11_SETTINGS.pin.env} and ${PKCS11_SETTINGS.pinFile.env}`, 2);
  // Read once: no copy stays in this process's environment (child processes, worker threads,
  // diagnostics that dump the environment).
  delete process.env[PKCS11_SETTINGS.pin.env];
  return { modulePath: s.module!, tokenLabel: s.token, pin, pinFile: s.pinFile };
}
