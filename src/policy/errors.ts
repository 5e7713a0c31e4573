/**
 * A policy file that does not load. `path` names the offending field the way an operator finds
 * it in the file (`keys["treasury"].rules[2].max_amont`), or is '' for the document as a whole.
 */
export class PolicyError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(path === '' ? problem : `${path}: ${problem}`);
    this.name = 'PolicyError';
  }

  /** The same error, prefixed with the file it came from. */
  withSource(source: string): PolicyError {
    const e = new PolicyError(this.path, this.problem);
    e.message = `${source}: ${this.message}`;
    return e;
  }
}

/** A request handed to `evaluate` that breaks its contract: a bug in the caller, not a refusal. */
export class PolicyRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyRequestError';
  }
}
