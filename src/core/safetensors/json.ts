/**
 * A strict JSON parser for safetensors headers.
 *
 * Why not JSON.parse: it silently keeps the last of duplicate keys (the format forbids duplicates), it
 * rounds integers above 2^53 (the reference reports those as ValidationOverflow, docs/formats.md §1.6), and
 * it cannot tell `1.0` from `1` (a shape of `[1.0]` is not a list of integers). This parser keeps objects
 * as Maps (no prototype keys), integers exact (bigint when unsafe), marks non-integer literals, rejects
 * duplicate keys, and bounds nesting depth so hostile headers cannot exhaust the stack.
 */

export type JsonValue = null | boolean | string | number | bigint | JsonFloat | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** A number literal with a fraction or exponent: never valid where safetensors wants an integer. */
export class JsonFloat {
  constructor(readonly value: number, readonly raw: string) {}
}

export class JsonSyntaxError extends Error {
  constructor(message: string, readonly position: number) {
    super(`${message} at character ${position}`);
  }
}

const MAX_DEPTH = 64;

export function parseStrictJson(text: string): JsonValue {
  let pos = 0;

  const fail = (message: string): never => {
    throw new JsonSyntaxError(message, pos);
  };

  const skipWhitespace = (): void => {
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else return;
    }
  };

  const parseString = (): string => {
    // pos is at the opening quote.
    pos++;
    let start = pos;
    let out = '';
    for (;;) {
      if (pos >= text.length) fail('unterminated string');
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(start, pos);
        pos++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c !== 0x5c) {
        pos++;
        continue;
      }
      out += text.slice(start, pos);
      const e = text[pos + 1];
      pos += 2;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const hex = text.slice(pos, pos + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
          out += String.fromCharCode(parseInt(hex, 16));
          pos += 4;
          break;
        }
        default:
          pos -= 1;
          fail('bad escape');
      }
      start = pos;
    }
  };

  const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
  const parseNumber = (): number | bigint | JsonFloat => {
    // Fast path for what headers are made of: a non-negative integer of at most 15 digits (always a safe
    // integer), accumulated without a regex match or a substring.
    const start = pos;
    const first = text.charCodeAt(pos);
    if (first >= 0x30 && first <= 0x39) {
      let value = 0;
      let end = pos;
      while (end - start < 16) {
        const c = text.charCodeAt(end);
        if (c < 0x30 || c > 0x39) break;
        value = value * 10 + (c - 0x30);
        end++;
      }
      const next = text.charCodeAt(end);
      const plainInteger = end - start <= 15 && next !== 0x2e && next !== 0x65 && next !== 0x45 && !(next >= 0x30 && next <= 0x39);
      // A leading zero is only valid alone ("0"), as in the general path below.
      if (plainInteger && (first !== 0x30 || end - start === 1)) {
        pos = end;
        return value;
      }
    }
    NUMBER.lastIndex = pos;
    const match = NUMBER.exec(text);
    if (!match) return fail('bad number');
    const raw = match[0];
    pos += raw.length;
    if (match[1] !== undefined || match[2] !== undefined) return new JsonFloat(Number(raw), raw);
    const value = Number(raw);
    return Number.isSafeInteger(value) ? value : BigInt(raw);
  };

  const parseLiteral = <T>(word: string, value: T): T => {
    if (!text.startsWith(word, pos)) fail('unexpected token');
    pos += word.length;
    return value;
  };

  const parseValue = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    skipWhitespace();
    const c = text[pos];
    switch (c) {
      case '{': {
        pos++;
        const object: JsonObject = new Map();
        skipWhitespace();
        if (text[pos] === '}') {
          pos++;
          return object;
        }
        for (;;) {
          skipWhitespace();
          if (text[pos] !== '"') fail('expected a string key');
          const keyPos = pos;
          const key = parseString();
          if (object.has(key)) {
            pos = keyPos;
            fail(`duplicate key ${JSON.stringify(key)}`);
          }
          skipWhitespace();
          if (text[pos] !== ':') fail("expected ':'");
          pos++;
          object.set(key, parseValue(depth + 1));
          skipWhitespace();
          if (text[pos] === ',') {
            pos++;
            continue;
          }
          if (text[pos] === '}') {
            pos++;
            return object;
          }
          fail("expected ',' or '}'");
        }
      }
      // falls through (unreachable: the loop returns or throws)
      case '[': {
        pos++;
        const array: JsonValue[] = [];
        skipWhitespace();
        if (text[pos] === ']') {
          pos++;
          return array;
        }
        for (;;) {
          array.push(parseValue(depth + 1));
          skipWhitespace();
          if (text[pos] === ',') {
            pos++;
            continue;
          }
          if (text[pos] === ']') {
            pos++;
            return array;
          }
          fail("expected ',' or ']'");
        }
      }
      // falls through (unreachable)
      case '"':
        return parseString();
      case 't':
        return parseLiteral('true', true);
      case 'f':
        return parseLiteral('false', false);
      case 'n':
        return parseLiteral('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return parseNumber();
        return fail(c === undefined ? 'unexpected end of input' : 'unexpected character');
    }
  };

  const value = parseValue(0);
  skipWhitespace();
  if (pos !== text.length) fail('trailing characters after the JSON value');
  return value;
}

export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return value instanceof Map;
}

/** A short description of a JSON value's type, for error messages. */
export function jsonTypeName(value: JsonValue | undefined): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (value instanceof Map) return 'an object';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof JsonFloat) return `the non-integer number ${value.raw}`;
  if (typeof value === 'bigint') return `the integer ${value}`;
  return `${typeof value === 'number' ? 'the number' : `a ${typeof value}`} ${JSON.stringify(value)}`;
}
