// Velocity: fixed windows aligned to the Unix epoch (a window of P seconds starts at every
// multiple of P), chosen over a sliding window because the spent total of a window is one
// exact counter the ledger can check and charge in one transaction. A daily period is the UTC
// day; a 7-day period starts on Thursdays (1970-01-01 was one).

/** Start (Unix seconds) of the window of `periodSeconds` that holds `nowSeconds`. */
export function periodStart(nowSeconds: number, periodSeconds: number): number {
  if (!Number.isSafeInteger(nowSeconds) || nowSeconds < 0) throw new RangeError('now must be a whole, non-negative number of seconds');
  if (!Number.isSafeInteger(periodSeconds) || periodSeconds < 1) throw new RangeError('the period must be a whole, positive number of seconds');
  return nowSeconds - (nowSeconds % periodSeconds);
}

/**
 * Whether a window that has spent `spent` may spend `amount` more under `limit`: the check the
 * ledger repeats atomically when it charges. The limit is inclusive.
 */
export function velocityAllows(limit: bigint, spent: bigint, amount: bigint): boolean {
  return spent >= 0n && amount >= 0n && spent + amount <= limit;
}
