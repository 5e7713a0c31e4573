import { createHmac } from 'node:crypto';
import { setUpToken } from '../test/keystore/helpers.js';
import { Keystore } from '../src/keystore/index.js';
const t = await setUpToken('bench', 'hmac-');
const ks = await Keystore.open(t.options);
console.log(await ks.ensureAuditKey(true), await ks.ensureAuditKey(true));
const data = Buffer.alloc(400, 0x61);
const one = await ks.withAuditMac((mac) => mac(data));
console.log(one.toString('hex'));
for (const n of [1, 100, 10000]) {
  const t0 = process.hrtime.bigint();
  await ks.withAuditMac((mac) => { for (let i = 0; i < n; i++) mac(data); });
  const t1 = process.hrtime.bigint();
  console.log(`${n} records in one lease: ${Number(t1 - t0) / 1000 / n} us/record`);
}
const t0 = process.hrtime.bigint();
for (let i = 0; i < 1000; i++) await ks.withAuditMac((mac) => mac(data));
console.log(`1 record per lease: ${Number(process.hrtime.bigint() - t0) / 1000 / 1000} us/record`);
const t2 = process.hrtime.bigint();
const k = Buffer.alloc(32, 1);
for (let i = 0; i < 10000; i++) createHmac('sha256', k).update(data).digest();
console.log(`node:crypto hmac (reference): ${Number(process.hrtime.bigint() - t2) / 1000 / 10000} us/record`);
await ks.close();
