// Run by softhsm/init-token.sh: initialises a SoftHSM2 token and creates its KEK and audit MAC
// key, reading the PINs from the environment so they never reach a command line. Idempotent.
//
//   SOFTHSM2_CONF=... SOFTHSM_SO_PIN=... SOFTHSM_USER_PIN=... tsx softhsm-provision.ts MODULE LABEL
import { provisionSoftHsmToken } from './softhsm.js';

const [modulePath, label] = process.argv.slice(2);
const soPin = process.env.SOFTHSM_SO_PIN;
const userPin = process.env.SOFTHSM_USER_PIN;
if (!modulePath || !label || !soPin || !userPin) {
  console.error('usage: SOFTHSM2_CONF=... SOFTHSM_SO_PIN=... SOFTHSM_USER_PIN=... softhsm-provision.ts MODULE LABEL');
  process.exitCode = 2;
} else {
  try {
    const done = await provisionSoftHsmToken(modulePath, label, soPin, userPin);
    console.error(`token "${label}": ${done.length > 0 ? done.join(', ') : 'already provisioned'}`);
  } catch (err) {
    console.error(`init-token: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
