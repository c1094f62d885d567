/**
 * Calibration datasets: token sequences, read from a file, that the calibration job runs through the model
 * to collect activation ranges (FP8 static scales) and GPTQ Hessians.
 *
 * Formats (by extension, or `format`):
 *   .txt (any other text)  one document; tokenized as a whole and cut into N windows of exactly L tokens
 *   .jsonl / .ndjson       one JSON object per line with a "text" string, or with chat "messages"
 *   .json                  a JSON array of such objects (or of plain strings)
 *
 * Plain text is what llm-compressor users do with WikiText: they tokenize the split and group it into
 * fixed-length blocks (TextGenerationDataset with concatenate_data=True: tokenize, concatenate, cut into
 * max_seq_length chunks, drop the remainder) — the GPTQ paper's setup (2048-token WikiText-2 / C4 windows).
 * Here the whole file is one token stream, cut into consecutive non-overlapping windows, the incomplete
 * tail dropped; then N windows are chosen (a seeded shuffle by default, like `ds.shuffle(seed=42)
 * .select(range(N))` in their examples). One deliberate difference: when the model's tokenizer adds BOS,
 * every window starts with BOS followed by L − 1 text tokens. llm-compressor's grouping leaves a BOS wherever
 * a row began and GPTQ's only at the start of the file, but every real prompt starts with BOS, and the BOS
 * position carries the largest activations of a Llama — leaving it out would understate FP8 input scales.
 * Line endings are normalized to \n first (the shipped WikiText copy has \r\n; the Hugging Face rows have \n).
 *
 * Records (JSONL / JSON): a "text" record is tokenized with the model's special tokens (BOS), as
 * llm-compressor's tokenizer(text) call does. A "messages" record is rendered with the model's chat template
 * (no generation prompt: the conversation as written, assistant turns included) and encoded without adding
 * special tokens — the template writes BOS itself — as `apply_chat_template(messages, tokenize=False)`
 * followed by `tokenizer(..., add_special_tokens=False)` in their chat examples. Either is truncated to its
 * first L tokens; shorter records keep their length (attention mask all ones) unless `pad` asks for right
 * padding to L with the pad token (pad_token, else eos) under mask 0. Records with empty text are skipped
 * (and counted in the warnings). Every record is checked before any is used, so an error names the first
 * bad line even if that record would not have been chosen.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { SeededRandom } from './sampling';
import { TokenizerError, type ChatMessage, type ModelTokenizer } from './tokenizer';

export type CalibrationFileFormat = 'text' | 'jsonl' | 'json';

export interface CalibrationOptions {
  /** How many samples (N). */
  samples: number;
  /** Tokens per sample (L): exact for plain text, the truncation length for records. */
  seqLen: number;
  /** Seed of the shuffle that picks samples (default 42, as llm-compressor's examples). */
  seed?: number;
  /** Pick samples at random (default true); false takes them in file order. */
  shuffle?: boolean;
  /** Right-pad records shorter than L to L (attention mask 0 on padding). Default false. */
  pad?: boolean;
  /** Override the format the extension implies. */
  format?: CalibrationFileFormat;
  /** The chat-template fallback for chat records when the model has none (see ModelTokenizer). */
  chatFallback?: 'plain';
  /** The largest file read (default 256 MiB): calibration needs thousands of samples, not gigabytes. */
  maxFileBytes?: number;
  /** Characters of plain text tokenized per step (progress and cancellation granularity). */
  textBlockChars?: number;
  signal?: AbortSignal;
  onProgress?: (fraction: number, message: string) => void;
}

export const DEFAULT_CALIBRATION_OPTIONS = { samples: 128, seqLen: 512, seed: 42, shuffle: true } as const;

/** The tokenizer operations a dataset needs (ModelTokenizer has them). */
export type DatasetTokenizer = Pick<ModelTokenizer, 'encode' | 'encodeContinuation' | 'applyChatTemplate' | 'addsBos' | 'bosToken' | 'padTokenId'>;

export interface CalibrationSample {
  /** Token ids, L long when padded or cut from plain text, at most L otherwise. */
  inputIds: Int32Array;
  /** 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  /** Real (unpadded) tokens in this sample. */
  tokens: number;
  /** Where it came from: "tokens 1024–1535" of the text stream, or "line 17". */
  origin: string;
}

/** What the calibration statistics file's metadata records about the data. */
export interface CalibrationDatasetInfo {
  /** The file's name. */
  dataset: string;
  path: string;
  format: 'text' | 'jsonl-text' | 'jsonl-chat' | 'json-text' | 'json-chat';
  samples: number;
  seq_len: number;
  /** Real tokens over all samples (padding excluded). */
  tokens: number;
  seed: number;
  shuffle: boolean;
  /** sha256 of the file's bytes, so a calibration can be traced to its exact data. */
  sha256: string;
}

export interface CalibrationDataset {
  samples: CalibrationSample[];
  info: CalibrationDatasetInfo;
  /** Things a user should know that are not errors (fewer samples than asked, skipped empty records). */
  warnings: string[];
}

/** A dataset file that cannot be used; names the file and, when it is about one record, its line. */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';
  constructor(
    readonly file: string,
    readonly detail: string,
    /** 1-based line of the record concerned. */
    readonly line?: number,
  ) {
    super(`${file}${line !== undefined ? `:${line}` : ''}: ${detail}`);
  }
}

/** The metadata entries the calibration statistics file stores (see jobs/calibrationFile.ts). */
export function calibrationMetadata(info: CalibrationDatasetInfo): Record<string, string | number> {
  return { dataset: info.dataset, samples: info.samples, seq_len: info.seq_len, tokens: info.tokens };
}

/** Token ids as the int64 tensor data onnxruntime's input_ids expects. */
export function toInt64(values: ArrayLike<number>): BigInt64Array {
  const out = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = BigInt(values[i]!);
  return out;
}

/**
 * Samples stacked into one [n, width] int64 batch, right-padded with `padId` (mask 0) to the longest sample
 * (or `width`).
 */
export function packBatch(samples: readonly CalibrationSample[], padId: number, width?: number): { inputIds: BigInt64Array; attentionMask: BigInt64Array; dims: [number, number] } {
  const columns = width ?? Math.max(0, ...samples.map((s) => s.inputIds.length));
  const inputIds = new BigInt64Array(samples.length * columns).fill(BigInt(padId));
  const attentionMask = new BigInt64Array(samples.length * columns);
  samples.forEach((sample, row) => {
    if (sample.inputIds.length > columns) throw new RangeError(`sample ${row} has ${sample.inputIds.length} tokens, more than the batch width ${columns}`);
    for (let j = 0; j < sample.inputIds.length; j++) {
      inputIds[row * columns + j] = BigInt(sample.inputIds[j]!);
      attentionMask[row * columns + j] = BigInt(sample.attentionMask[j]!);
    }
  });
  return { inputIds, attentionMask, dims: [samples.length, columns] };
}

export const DEFAULT_CALIBRATION_FILE = 'wikitext-2-raw-test.txt';

/**
 * The shipped default dataset (the WikiText-2 raw test split, media/calibration/). The code runs bundled
 * from dist/ (extension, CLI) or out/ (tests), so the file is found by walking up to the folder holding
 * package.json and media/calibration.
 */
export function defaultCalibrationDataset(from: string = __dirname): string {
  let dir = from;
  for (;;) {
    const candidate = join(dir, 'media', 'calibration', DEFAULT_CALIBRATION_FILE);
    if (existsSync(join(dir, 'package.json')) && existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`the default calibration dataset (media/calibration/${DEFAULT_CALIBRATION_FILE}) was not found in any folder above ${from}: the installation is incomplete`);
    dir = parent;
  }
}

/** Reads a calibration dataset and tokenizes the chosen samples. */
export async function loadCalibrationDataset(path: string, tokenizer: DatasetTokenizer, options: CalibrationOptions): Promise<CalibrationDataset> {
  const { samples, seqLen } = options;
  if (!Number.isInteger(samples) || samples < 1) throw new RangeError(`the number of calibration samples must be a positive integer, got ${samples}`);
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new RangeError(`the calibration sequence length must be an integer ≥ 2, got ${seqLen}`);
  const format = options.format ?? formatFromExtension(path);
  const bytes = await readBounded(path, options.maxFileBytes ?? 256 * 1024 * 1024);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new DatasetError(path, `is not UTF-8 text (${firstInvalidUtf8(bytes)}): save it as UTF-8`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') throw new DatasetError(path, bytes.length === 0 ? 'is empty' : 'holds only whitespace');
  const seed = options.seed ?? DEFAULT_CALIBRATION_OPTIONS.seed;
  const shuffle = options.shuffle ?? DEFAULT_CALIBRATION_OPTIONS.shuffle;
  const context: Context = { path, tokenizer, options, seed, shuffle, warnings: [] };

  const built = format === 'text' ? await fromPlainText(text, context) : await fromRecords(format === 'jsonl' ? jsonlRecords(text, path) : jsonArrayRecords(text, path), format, context);
  const tokens = built.samples.reduce((sum, s) => sum + s.tokens, 0);
  return {
    samples: built.samples,
    info: { dataset: basename(path), path, format: built.format, samples: built.samples.length, seq_len: seqLen, tokens, seed, shuffle, sha256 },
    warnings: context.warnings,
  };
}

interface Context {
  path: string;
  tokenizer: DatasetTokenizer;
  options: CalibrationOptions;
  seed: number;
  shuffle: boolean;
  warnings: string[];
}

function formatFromExtension(path: string): CalibrationFileFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.json') return 'json';
  return 'text';
}

async function readBounded(path: string, maxBytes: number): Promise<Buffer> {
  let size: number;
  try {
    const stat = await fs.stat(path);
    if (!stat.isFile()) throw new DatasetError(path, 'is not a file');
    size = stat.size;
  } catch (error) {
    if (error instanceof DatasetError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new DatasetError(path, code === 'ENOENT' ? 'does not exist' : `cannot be read: ${(error as Error).message}`);
  }
  if (size > maxBytes) {
    throw new DatasetError(path, `is ${(size / 1048576).toFixed(0)} MiB; calibration reads files up to ${(maxBytes / 1048576).toFixed(0)} MiB — a few thousand samples are plenty, so take a part of it (e.g. head -n 20000)`);
  }
  return fs.readFile(path);
}

/** Where the first invalid UTF-8 sequence is: "line 3, byte 1042". */
function firstInvalidUtf8(bytes: Uint8Array): string {
  // Lenient decoding replaces each invalid sequence with U+FFFD and decodes everything before it exactly,
  // so the byte offset is the UTF-8 length of the text before the first U+FFFD that the file does not
  // literally contain (EF BF BD).
  const text = new TextDecoder('utf-8').decode(bytes);
  let from = 0;
  for (;;) {
    const at = text.indexOf('\uFFFD', from);
    if (at < 0) return 'an unknown position';
    const offset = Buffer.byteLength(text.slice(0, at), 'utf8');
    if (!(bytes[offset] === 0xef && bytes[offset + 1] === 0xbf && bytes[offset + 2] === 0xbd)) {
      return `line ${text.slice(0, at).split('\n').length}, byte ${offset}`;
    }
    from = at + 1;
  }
}

function checkCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('cancelled');
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

// ---------------------------------------------------------------------------------------------------------
// Plain text

/** Characters of a block cut inside a run with no line or word boundary (see fromPlainText). */
const RUN_CUT_CHARS = 16_384;

/** Where the plain-text block that starts at `start` ends (fromPlainText says why there). */
function blockEnd(text: string, start: number, blockChars: number): number {
  if (start + blockChars >= text.length) return text.length;
  const lineBoundary = /\n(?=\S)/g;
  lineBoundary.lastIndex = start + blockChars;
  const line = lineBoundary.exec(text);
  if (line && line.index + 1 <= start + 2 * blockChars) return line.index + 1;
  const wordBoundary = /(?<=\S)[ \t](?=\S)/g;
  wordBoundary.lastIndex = start + blockChars;
  const word = wordBoundary.exec(text);
  if (word && word.index <= start + 2 * blockChars) return word.index;
  // Never between the two halves of a surrogate pair.
  const cut = start + RUN_CUT_CHARS;
  const code = text.charCodeAt(cut - 1);
  return code >= 0xd800 && code <= 0xdbff ? cut + 1 : cut;
}

async function fromPlainText(raw: string, ctx: Context): Promise<{ samples: CalibrationSample[]; format: 'text' }> {
  const { tokenizer, options, path } = ctx;
  const text = raw.replace(/\r\n?/g, '\n');
  const bos = tokenizer.addsBos && tokenizer.bosToken ? tokenizer.bosToken.id : undefined;
  const body = options.seqLen - (bos !== undefined ? 1 : 0);

  // Tokenized in blocks that end right after a newline followed by a non-space character. Pre-tokenizers
  // never join a newline with the next line's first character (Llama-3's pattern keeps \r\n out of a word's
  // optional leading symbol), so the blocks' tokens concatenate to the whole text's tokens; the blocks give
  // progress and cancellation points. A line longer than two blocks ends its block before a single space
  // between two words instead (the space starts the next word's token in every pre-tokenizer and
  // SentencePiece vocabulary); a run of over two blocks with neither is no text, and is cut every
  // RUN_CUT_CHARS: tokenizing a 600,000-character "word" whole took seconds and hundreds of MiB. Blocks after
  // the first are encoded as continuations: a SentencePiece-style tokenizer would otherwise put its dummy
  // "▁" before each block, where the whole text has none.
  const blockChars = options.textBlockChars ?? 262_144;
  const stream: number[] = [];
  let start = 0;
  while (start < text.length) {
    checkCancelled(options.signal);
    const end = blockEnd(text, start, blockChars);
    const piece = text.slice(start, end);
    const ids = start === 0 ? tokenizer.encode(piece, { addSpecialTokens: false }) : tokenizer.encodeContinuation(piece);
    for (const id of ids) stream.push(id);
    start = end;
    options.onProgress?.(0.95 * (start / text.length), `tokenizing ${basename(path)}: ${stream.length} tokens`);
    await yieldToEventLoop();
  }

  const windows = Math.floor(stream.length / body);
  if (windows === 0) {
    throw new DatasetError(path, `has ${stream.length} tokens; one sample of ${options.seqLen} tokens needs ${body}${bos !== undefined ? ' (plus BOS)' : ''}. Use a shorter sequence length or a longer file`);
  }
  if (windows < options.samples) {
    ctx.warnings.push(`${basename(path)} has ${stream.length} tokens: ${windows} samples of ${options.seqLen} tokens, not the ${options.samples} asked for`);
  }
  const order = pick(windows, options.samples, ctx);
  const samples = order.map((w) => {
    const inputIds = new Int32Array(options.seqLen);
    let at = 0;
    if (bos !== undefined) inputIds[at++] = bos;
    inputIds.set(stream.slice(w * body, (w + 1) * body), at);
    return { inputIds, attentionMask: new Int32Array(options.seqLen).fill(1), tokens: options.seqLen, origin: `tokens ${w * body}–${(w + 1) * body - 1}` };
  });
  options.onProgress?.(1, `${samples.length} samples of ${options.seqLen} tokens`);
  return { samples, format: 'text' };
}

/** The first `count` of 0..n-1, shuffled with the seed unless shuffling is off. */
function pick(n: number, count: number, ctx: Context): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  if (ctx.shuffle) new SeededRandom(ctx.seed).shuffle(order);
  return order.slice(0, Math.min(count, n));
}

// ---------------------------------------------------------------------------------------------------------
// Records

/** One record: its line, and its value (JSONL lines are parsed on demand, so memory holds no parsed copy). */
interface RecordRef {
  line: number;
  /** "line 17" or "element 3 (line 17)". */
  where: string;
  value: () => unknown;
}

function jsonlRecords(text: string, path: string): RecordRef[] {
  const records: RecordRef[] = [];
  let lineNo = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    lineNo++;
    const lineText = text.slice(start, end).replace(/\r$/, '');
    if (lineText.trim() !== '') {
      const line = lineNo;
      records.push({
        line,
        where: `line ${line}`,
        value: () => {
          try {
            return JSON.parse(lineText) as unknown;
          } catch (error) {
            throw new DatasetError(path, `bad JSON on line ${line}: ${jsonErrorAt(error, lineText)}`, line);
          }
        },
      });
    }
    if (end === text.length) break;
    start = end + 1;
  }
  return records;
}

function jsonArrayRecords(text: string, path: string): RecordRef[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const { line, column, message } = jsonErrorPosition(error, text);
    throw new DatasetError(path, `bad JSON on line ${line}${column !== undefined ? `, column ${column}` : ''}: ${message}`, line);
  }
  if (!Array.isArray(parsed)) {
    throw new DatasetError(path, `must hold a JSON array of records ({"text": …} or {"messages": […]}), found ${parsed === null ? 'null' : typeof parsed}; one record per line goes in a .jsonl file`);
  }
  const lines = topLevelElementLines(text);
  return parsed.map((value, i) => {
    const line = lines[i] ?? 1;
    return { line, where: `element ${i + 1} (line ${line})`, value: () => value };
  });
}

/** The 1-based line where each element of the top-level JSON array starts (text is valid JSON). */
function topLevelElementLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') line++;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') continue;
    if (depth === 1 && expectElement && c !== ']') {
      lines.push(line);
      expectElement = false;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expectElement = true;
  }
  return lines;
}

function jsonErrorPosition(error: unknown, text: string): { line: number; column?: number; message: string } {
  const message = error instanceof Error ? error.message : String(error);
  const match = /at position (\d+)/.exec(message);
  const clean = message.replace(/ in JSON at position \d+.*$/, '').replace(/ at position \d+.*$/, '');
  if (!match) return { line: 1, message: clean };
  const before = text.slice(0, Number(match[1]));
  const line = before.split('\n').length;
  return { line, column: before.length - before.lastIndexOf('\n'), message: clean };
}

function jsonErrorAt(error: unknown, lineText: string): string {
  const { column, message } = jsonErrorPosition(error, lineText);
  return column !== undefined ? `${message} (column ${column})` : message;
}

type RecordKind = 'text' | 'chat';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The record's text or messages, checked; null for an empty text (skipped). */
function readRecord(value: unknown, kind: RecordKind, ref: RecordRef, first: RecordRef, path: string): string | ChatMessage[] | null {
  const plainString = typeof value === 'string' && kind === 'text';
  if (!plainString && !isObject(value)) {
    throw new DatasetError(path, `${ref.where}: a record must be an object with "${kind === 'text' ? 'text' : 'messages'}", found ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`, ref.line);
  }
  const firstSays = ref === first ? '' : ` (records hold ${kind === 'text' ? 'plain "text"' : 'chat "messages"'}, as ${first.where} does)`;
  if (kind === 'text') {
    const content = plainString ? value : (value as Record<string, unknown>)['text'];
    if (content === undefined) throw new DatasetError(path, `${ref.where}: missing "text"${firstSays}`, ref.line);
    if (typeof content !== 'string') throw new DatasetError(path, `${ref.where}: "text" must be a string, found ${content === null ? 'null' : typeof content}`, ref.line);
    return content.trim() === '' ? null : content;
  }
  const messages = (value as Record<string, unknown>)['messages'];
  if (messages === undefined) throw new DatasetError(path, `${ref.where}: missing "messages"${firstSays}`, ref.line);
  if (!Array.isArray(messages) || messages.length === 0) throw new DatasetError(path, `${ref.where}: "messages" must be a non-empty list of {"role", "content"}`, ref.line);
  messages.forEach((message: unknown, i) => {
    if (!isObject(message) || typeof message['role'] !== 'string') throw new DatasetError(path, `${ref.where}: message ${i + 1} needs a "role" string`, ref.line);
    const content = message['content'];
    if (content !== null && typeof content !== 'string' && !Array.isArray(content)) {
      throw new DatasetError(path, `${ref.where}: message ${i + 1} ("${message['role']}") has "content" of type ${typeof content}; it must be a string, a list of parts or null`, ref.line);
    }
  });
  return messages as ChatMessage[];
}

async function fromRecords(refs: RecordRef[], file: 'jsonl' | 'json', ctx: Context): Promise<{ samples: CalibrationSample[]; format: CalibrationDatasetInfo['format'] }> {
  const { path, options, tokenizer } = ctx;
  if (refs.length === 0) throw new DatasetError(path, file === 'json' ? 'is an empty array' : 'has no records (only blank lines)');
  const first = refs[0]!;
  const firstValue = first.value();
  let kind: RecordKind;
  if (isObject(firstValue) && firstValue['messages'] !== undefined) kind = 'chat';
  else if ((isObject(firstValue) && firstValue['text'] !== undefined) || typeof firstValue === 'string') kind = 'text';
  else {
    const fields = isObject(firstValue) ? `; it has ${Object.keys(firstValue).map((k) => `"${k}"`).join(', ') || 'no fields'}` : '';
    throw new DatasetError(path, `${first.where}: a record needs a "text" string or a "messages" list${fields}`, first.line);
  }

  // Check every record first, so a bad line is reported whichever samples would be chosen.
  const usable: RecordRef[] = [];
  let empty = 0;
  for (const ref of refs) {
    if (readRecord(ref.value(), kind, ref, first, path) === null) empty++;
    else usable.push(ref);
  }
  if (empty > 0) ctx.warnings.push(`${empty} record${empty === 1 ? '' : 's'} with empty text skipped`);
  if (usable.length === 0) throw new DatasetError(path, 'has no record with text in it');
  if (usable.length < options.samples) ctx.warnings.push(`${basename(path)} has ${usable.length} usable records, not the ${options.samples} samples asked for`);

  const chosen = pick(usable.length, options.samples, ctx).map((i) => usable[i]!);
  const samples: CalibrationSample[] = [];
  for (const ref of chosen) {
    checkCancelled(options.signal);
    const content = readRecord(ref.value(), kind, ref, first, path)!;
    let ids: number[];
    if (typeof content === 'string') {
      ids = tokenizer.encode(content, { addSpecialTokens: true });
    } else {
      let rendered: string;
      try {
        rendered = tokenizer.applyChatTemplate(content, { addGenerationPrompt: false, ...(options.chatFallback ? { fallback: options.chatFallback } : {}) });
      } catch (error) {
        if (error instanceof TokenizerError) throw new DatasetError(path, `${ref.where}: ${error.code === 'NoChatTemplate' ? 'the records are chat "messages", but ' : ''}${error.detail}`, ref.line);
        throw error;
      }
      ids = tokenizer.encode(rendered, { addSpecialTokens: false });
    }
    const length = Math.min(ids.length, options.seqLen);
    const width = options.pad ? options.seqLen : length;
    const inputIds = new Int32Array(width).fill(tokenizer.padTokenId);
    inputIds.set(ids.slice(0, length));
    const attentionMask = new Int32Array(width);
    attentionMask.fill(1, 0, length);
    samples.push({ inputIds, attentionMask, tokens: length, origin: ref.where });
    options.onProgress?.(samples.length / chosen.length, `tokenized ${samples.length} of ${chosen.length} records`);
    if (samples.length % 16 === 0) await yieldToEventLoop();
  }
  return { samples, format: `${file}-${kind}` };
}
