/**
 * Mutations of text inputs for the fuzz tests: byte flips, truncations, duplicated/deleted lines, type
 * swaps, huge numbers, NaN/Infinity, deep nesting, long strings, invalid UTF-8, BOMs, random unicode. Each
 * takes the seeded PRNG of test/helpers/random.ts, so a case is replayed from its seed.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export type Random = () => number;

export const pick = <T>(items: readonly T[], random: Random): T => items[Math.floor(random() * items.length)]!;
const int = (random: Random, below: number) => Math.floor(random() * below);

/** Values of every type, for swapping into a JSON/YAML value position. */
const SWAPS = ['0', '-1', '1e400', '-1e400', '18446744073709551616', '1.5', 'NaN', 'Infinity', '-Infinity', 'null', 'true', '""', '"x"', '[]', '[1,"a",null]', '{}', '{"a":{"b":[]}}', '"\\ud800"', '9007199254740993'];
const UNICODE = ['\u0000', '\u202e', '\ufeff', '\ud83d\ude42', 'ß', '\u0301', '\uffff', '𝔘', '\u2028', '"', '\\', '{', '[', ':', '-', '#', '&a', '*a', '!!binary', '%'];

export type TextMutation = (text: string, random: Random) => string | Uint8Array;

export const TEXT_MUTATIONS: Record<string, TextMutation> = {
  none: (t) => t,
  flipByte: (t, r) => {
    const bytes = Buffer.from(t, 'utf8');
    for (let n = 1 + int(r, 4); n > 0 && bytes.length > 0; n--) bytes[int(r, bytes.length)] = int(r, 256);
    return new Uint8Array(bytes);
  },
  truncate: (t, r) => Buffer.from(t, 'utf8').subarray(0, int(r, Buffer.byteLength(t) + 1)),
  duplicateLine: (t, r) => {
    const lines = t.split('\n');
    const at = int(r, lines.length);
    lines.splice(at, 0, ...Array.from({ length: 1 + int(r, 3) }, () => lines[at]!));
    return lines.join('\n');
  },
  deleteLine: (t, r) => {
    const lines = t.split('\n');
    lines.splice(int(r, lines.length), 1 + int(r, 3));
    return lines.join('\n');
  },
  swapValue: (t, r) => {
    // Replace one scalar after a ':' (JSON or YAML) with a value of another type.
    const positions = [...t.matchAll(/:\s*("[^"\n]*"|[-\w.+]+|\[[^\]\n]*\]|\{[^}\n]*\})/g)];
    if (positions.length === 0) return t;
    const m = pick(positions, r);
    const start = m.index! + m[0].length - m[1]!.length;
    return t.slice(0, start) + pick(SWAPS, r) + t.slice(start + m[1]!.length);
  },
  hugeNumber: (t, r) => t.replace(/\b\d+(\.\d+)?\b/, pick(['1' + '0'.repeat(400), '1e999999', '-0', '0.' + '0'.repeat(5000) + '1', '340282366920938463463374607431768211457'], r)),
  nanLiteral: (t, r) => t.replace(/\b\d+(\.\d+)?\b/, pick(['NaN', 'Infinity', '-Infinity', '.nan', '.inf', '-.inf'], r)),
  deepNesting: (t, r) => {
    const depth = 100 + int(r, 20_000);
    const [open, close] = pick([['[', ']'], ['{"a":', '}'], ['- ', '']], r);
    const at = int(r, t.length + 1);
    return t.slice(0, at) + open!.repeat(depth) + '1' + (r() < 0.7 ? close!.repeat(depth) : '') + t.slice(at);
  },
  longString: (t, r) => {
    const long = pick(['a', 'ё', '🙂', ' ', '\\n'], r).repeat(100_000 + int(r, 400_000));
    const at = t.indexOf('"', int(r, t.length));
    return at < 0 ? t + long : t.slice(0, at + 1) + long + t.slice(at + 1);
  },
  invalidUtf8: (t, r) => {
    const bytes = Buffer.from(t, 'utf8');
    const at = int(r, bytes.length + 1);
    return new Uint8Array(Buffer.concat([bytes.subarray(0, at), Buffer.from(pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82]], r)), bytes.subarray(at)]));
  },
  bom: (t, r) => (r() < 0.5 ? '\ufeff' + t : new Uint8Array([0xfe, 0xff, ...Buffer.from(t, 'utf16le')])),
  randomUnicode: (t, r) => {
    let out = t;
    for (let n = 1 + int(r, 6); n > 0; n--) {
      const at = int(r, out.length + 1);
      out = out.slice(0, at) + pick(UNICODE, r) + out.slice(at);
    }
    return out;
  },
};

/** Applies 1–2 random mutations (the first is chosen by `index` so every family is exercised). */
export function mutateText(text: string, random: Random, index: number): { bytes: Uint8Array; names: string[] } {
  const names = Object.keys(TEXT_MUTATIONS);
  const chosen = [names[index % names.length]!];
  if (random() < 0.3) chosen.push(pick(names, random));
  let current: string | Uint8Array = text;
  for (const name of chosen) {
    const asText = typeof current === 'string' ? current : Buffer.from(current).toString('utf8');
    current = TEXT_MUTATIONS[name]!(asText, random);
  }
  return { bytes: typeof current === 'string' ? new Uint8Array(Buffer.from(current, 'utf8')) : current, names: chosen };
}

/** A JSON value mutated structurally: a key deleted or duplicated, a value's type swapped. */
export function mutateJsonValue(value: unknown, random: Random): unknown {
  if (Array.isArray(value)) {
    if (value.length === 0 || random() < 0.2) return pick(JSON_VALUES, random);
    const copy = [...value];
    const at = int(random, copy.length);
    copy[at] = mutateJsonValue(copy[at], random);
    return copy;
  }
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    if (entries.length === 0 || random() < 0.15) return pick(JSON_VALUES, random);
    const at = int(random, entries.length);
    const roll = random();
    if (roll < 0.2) entries.splice(at, 1);
    else entries[at] = [entries[at]![0], mutateJsonValue(entries[at]![1], random)];
    return Object.fromEntries(entries);
  }
  return pick(JSON_VALUES, random);
}

const JSON_VALUES: unknown[] = [0, -1, 1.5, 2 ** 53 + 2, 1e308, '', 'x', 'ё🙂', null, true, false, [], [1, 'a'], {}, { a: [] }, 'a'.repeat(100_000)];

/** V8's collector, reached without a command-line flag, so memory can be measured after garbage is gone. */
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** What the process holds in JS heap and buffers (after collectGarbage: what it retains). */
function heldBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/**
 * Runs `cases` fuzz cases, each with its own seed (`seedBase + i`), one after another. A failure is rethrown
 * with the seed and mutation names, so `rng(seed)` replays it. Each case must finish within `caseMs` (checked
 * after it returns: a synchronous hang is caught by mocha's timeout of the whole file). Memory: no case may
 * take the process RSS more than `maxRssGrowth` above where the run started (an input that makes a parser
 * allocate without bound), and after the run what the process retains once garbage is collected may grow by
 * at most 64 MiB (a leak). RSS alone at the end is no measure: V8 collects lazily and the allocator keeps
 * freed pages, so a run that only makes garbage could end hundreds of MiB higher (it did, in CI).
 */
export async function runFuzz(options: {
  cases: number;
  seedBase: number;
  caseMs: number;
  maxRssGrowth: number;
  run: (index: number, seed: number) => Promise<string>;
}): Promise<Record<string, number>> {
  const outcomes: Record<string, number> = {};
  collectGarbage();
  const heldBefore = heldBytes();
  const rssBefore = process.memoryUsage().rss;
  for (let i = 0; i < options.cases; i++) {
    const seed = options.seedBase + i;
    const started = Date.now();
    let outcome: string;
    try {
      outcome = await options.run(i, seed);
    } catch (error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new Error(`fuzz case ${i} (seed ${seed}) failed: ${message.slice(0, 2000)}`);
    }
    const ms = Date.now() - started;
    if (ms > options.caseMs) throw new Error(`fuzz case ${i} (seed ${seed}, ${outcome}) took ${ms} ms (limit ${options.caseMs} ms)`);
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    if (rssGrowth > options.maxRssGrowth) {
      // Garbage of earlier cases may be what fills it: collect, and fail only if the RSS stays up.
      collectGarbage();
      const settled = process.memoryUsage().rss - rssBefore;
      if (settled > options.maxRssGrowth) throw new Error(`fuzz case ${i} (seed ${seed}, ${outcome}) left the process RSS ${(settled / 1048576).toFixed(0)} MiB above the run's start (limit ${(options.maxRssGrowth / 1048576).toFixed(0)} MiB)`);
    }
  }
  collectGarbage();
  const retained = heldBytes() - heldBefore;
  if (retained > 64 * 1048576) throw new Error(`the run retains ${(retained / 1048576).toFixed(0)} MiB more heap and buffers after ${options.cases} cases (seeds ${options.seedBase}…): a leak`);
  return outcomes;
}
