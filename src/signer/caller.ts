// Who a call is for, carried through its awaits: the server layer runs each call inside
// runAsCaller(identity), and the signer reads it where per-client quotas apply (open sessions,
// queued compute work). Outside a call (tests, tools) there is no caller and no per-client quota.
import { AsyncLocalStorage } from 'node:async_hooks';

const storage = new AsyncLocalStorage<string>();

export function runAsCaller<T>(identity: string, fn: () => T): T {
  return storage.run(identity, fn);
}

/** The identity of the call being served, if any. */
export function currentCaller(): string | undefined {
  return storage.getStore();
}
