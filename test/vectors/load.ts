/** The test vectors the project carries (test/vectors/, see its README): one reader for all tests. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Absolute path of a file under test/vectors/, e.g. vectorPath('bip327/key_agg_vectors.json'). */
export function vectorPath(relative: string): string {
  return fileURLToPath(new URL(relative, import.meta.url));
}

/** Parse a JSON vector file under test/vectors/. */
export function readVectorJson<T = unknown>(relative: string): T {
  return JSON.parse(readFileSync(vectorPath(relative), 'utf8')) as T;
}
