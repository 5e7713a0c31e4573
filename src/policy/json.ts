// A strict JSON reader for the policy file. JSON.parse silently keeps the last of two equal
// member names and rounds large numbers; in a policy either would let the value an operator
// reviewed differ from the value enforced. This reader refuses duplicate names and keeps each
// number's text, so integers are checked exactly.
import { PolicyError } from './errors.js';

/** A JSON number as written, so that integer fields are checked from their digits. */
export class JsonNumber {
  constructor(readonly text: string) {}
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
/** Members in file order; names are unique (a duplicate refuses to load). */
export type JsonObject = Map<string, JsonValue>;

const WS = /[ \t\n\r]*/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
// A string token: no raw control characters, only JSON's escapes.
// eslint-disable-next-line no-control-regex -- refusing raw control characters is the point
const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const LITERAL = /true|false|null/y;
const MAX_DEPTH = 32;

/** Appends a member name or an index to a path: `keys["treasury"].rules[2].max_amount`. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  if (path === 'keys') return `keys[${JSON.stringify(key)}]`;
  return path === '' ? key : `${path}.${key}`;
}

export function parseStrictJson(text: string): JsonValue {
  let pos = 0;
  const where = (at: number): string => {
    const before = text.slice(0, at);
    const line = before.split('\n').length;
    const column = at - before.lastIndexOf('\n');
    return `line ${line} column ${column}`;
  };
  const syntax = (what: string, at = pos): PolicyError => new PolicyError('', `not valid JSON at ${where(at)}: ${what}`);
  const skip = (): void => {
    WS.lastIndex = pos;
    WS.exec(text);
    pos = WS.lastIndex;
  };
  const match = (re: RegExp): string | undefined => {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) return undefined;
    pos = re.lastIndex;
    return m[0];
  };

  const value = (path: string, depth: number): JsonValue => {
    if (depth > MAX_DEPTH) throw syntax(`nested deeper than ${MAX_DEPTH} levels`);
    skip();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const obj: JsonObject = new Map();
      skip();
      if (text[pos] === '}') {
        pos++;
        return obj;
      }
      for (;;) {
        skip();
        const at = pos;
        const raw = match(STRING);
        if (raw === undefined) throw syntax(text[pos] === '}' ? 'a trailing comma' : 'expected a member name in double quotes');
        const name = JSON.parse(raw) as string;
        if (obj.has(name)) throw new PolicyError(childPath(path, name), `duplicate field (at ${where(at)})`);
        skip();
        if (text[pos] !== ':') throw syntax("expected ':'");
        pos++;
        obj.set(name, value(childPath(path, name), depth + 1));
        skip();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return obj;
        }
        throw syntax("expected ',' or '}'");
      }
    }
    if (c === '[') {
      pos++;
      const arr: JsonValue[] = [];
      skip();
      if (text[pos] === ']') {
        pos++;
        return arr;
      }
      for (;;) {
        skip();
        if (arr.length > 0 && text[pos] === ']') throw syntax('a trailing comma');
        arr.push(value(childPath(path, arr.length), depth + 1));
        skip();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return arr;
        }
        throw syntax("expected ',' or ']'");
      }
    }
    if (c === '"') {
      const raw = match(STRING);
      if (raw === undefined) throw syntax('bad string (a raw control character or a bad escape)');
      return JSON.parse(raw) as string;
    }
    const num = match(NUMBER);
    if (num !== undefined) return new JsonNumber(num);
    const lit = match(LITERAL);
    if (lit !== undefined) return lit === 'null' ? null : lit === 'true';
    throw syntax(pos >= text.length ? 'unexpected end of input' : `unexpected character ${JSON.stringify(c)}`);
  };

  // A UTF-8 byte order mark is tolerated, as editors write one.
  if (text.charCodeAt(0) === 0xfeff) pos = 1;
  const result = value('', 0);
  skip();
  if (pos !== text.length) throw syntax('unexpected text after the end of the document');
  return result;
}
