/**
 * Reading a model folder's tokenizer files for tokenizer.ts: each file's size is checked before it is read,
 * JSON errors name the line and column, and every problem is a TokenizerError naming the file. Also the
 * special-token and chat-template discovery rules transformers follows (which ids encode() adds, which file's
 * chat template wins) and the checks on chat messages.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Tokenizer } from '@huggingface/tokenizers';

export type TokenizerErrorCode =
  /** tokenizer.json is missing. */
  | 'NoTokenizer'
  /** A tokenizer file exists but cannot be read, parsed or understood. */
  | 'UnreadableTokenizer'
  /** tokenizer_config.json / generation_config.json contradict tokenizer.json or have wrong types. */
  | 'BadTokenizerConfig'
  /** The model has no chat template and the caller did not ask for the plain fallback. */
  | 'NoChatTemplate'
  /** The chat template does not parse, or fails while rendering. */
  | 'BadChatTemplate'
  /** The chat template itself rejected the conversation (its raise_exception call). */
  | 'ChatTemplateRefused'
  /** The chat template ran past its step, depth or size budget (a loop without end, a huge string). */
  | 'ChatTemplateBudgetExceeded'
  /** A tokenizer file is larger than QuantLens reads (MAX_TOKENIZER_FILE_BYTES). */
  | 'TokenizerFileTooLarge'
  /** The caller passed something unusable (token ids out of range, malformed messages). */
  | 'InvalidInput';

export class TokenizerError extends Error {
  override readonly name = 'TokenizerError';
  constructor(
    readonly code: TokenizerErrorCode,
    /** The file (or model folder) the problem is in. */
    readonly file: string,
    /** What is wrong, in words. */
    readonly detail: string,
  ) {
    super(`${file}: ${detail}`);
  }
}


/** One chat message as chat templates read it (OpenAI / transformers shape). */
export interface ChatMessage {
  role: string;
  /** Text, a list of content parts ({type: 'text', text}), or null for an assistant turn with tool calls. */
  content: string | ReadonlyArray<Record<string, unknown>> | null;
  [key: string]: unknown;
}

/**
 * The largest tokenizer file read (tokenizer.json, tokenizer_config.json, chat templates, generation
 * config). Llama-3's tokenizer.json is 9 MB and the largest vocabularies (Gemma's 256k tokens) about 35 MB;
 * a file beyond 256 MiB is not a tokenizer, and parsing it would take several times its size in memory.
 */
export const MAX_TOKENIZER_FILE_BYTES = 256 * 1024 * 1024;

export interface SpecialToken {
  readonly text: string;
  readonly id: number;
}

export interface TokenizerConfigFile {
  [key: string]: unknown;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A tokenizer file's text; undefined when it does not exist. Its size is checked before reading
 * (MAX_TOKENIZER_FILE_BYTES), so a huge file is refused rather than read into memory.
 */
export async function readTextFile(path: string, code: TokenizerErrorCode): Promise<string | undefined> {
  try {
    const stat = await fs.stat(path);
    if (!stat.isFile()) throw new TokenizerError(code, path, 'is not a file');
    if (stat.size > MAX_TOKENIZER_FILE_BYTES) {
      throw new TokenizerError('TokenizerFileTooLarge', path, `is ${(stat.size / 1048576).toFixed(0)} MiB; tokenizer files are read up to ${MAX_TOKENIZER_FILE_BYTES / 1048576} MiB (real ones are under 40 MiB), so this is not a tokenizer file`);
    }
    return await fs.readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof TokenizerError) throw error;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TokenizerError(code, path, `cannot be read: ${messageOf(error)}`);
  }
}

/** Reads and parses a JSON file; undefined when it does not exist. Parse errors name the line and column. */
export async function readJsonFile(path: string, code: TokenizerErrorCode): Promise<unknown> {
  const text = await readTextFile(path, code === 'NoTokenizer' ? 'UnreadableTokenizer' : code);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new TokenizerError('UnreadableTokenizer', path, `is not valid JSON: ${describeJsonError(error, text)}`);
  }
}

/** JSON.parse's message with the position turned into a line and column a user can jump to. */
export function describeJsonError(error: unknown, text: string): string {
  const message = messageOf(error);
  const match = /at position (\d+)/.exec(message);
  if (!match) return message;
  const position = Number(match[1]);
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  const column = position - before.lastIndexOf('\n');
  return `${message.replace(/ in JSON at position \d+.*$/, '').replace(/ at position \d+.*$/, '')} at line ${line}, column ${column}`;
}

/** bos / eos ids from generation_config.json, or from config.json when there is no generation config. */
export async function readGenerationIds(folder: string, vocabSize: number): Promise<{ bos?: number; eos: number[] }> {
  for (const name of ['generation_config.json', 'config.json']) {
    const path = join(folder, name);
    const json = await readJsonFile(path, 'BadTokenizerConfig');
    if (json === undefined) continue;
    if (!isObject(json)) throw new TokenizerError('BadTokenizerConfig', path, 'must hold a JSON object');
    const ids = (key: string): number[] => {
      const value = json[key];
      if (value === undefined || value === null) return [];
      const list = Array.isArray(value) ? value : [value];
      for (const id of list) {
        if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocabSize) {
          throw new TokenizerError('BadTokenizerConfig', path, `"${key}" must be a token id (an integer below the vocabulary size ${vocabSize}) or a list of them, found ${JSON.stringify(value)}`);
        }
      }
      return list as number[];
    };
    return { bos: ids('bos_token_id')[0], eos: ids('eos_token_id') };
  }
  return { eos: [] };
}

/**
 * Which special ids encode(text) adds before and after the text. The tokenizer.json post-processor decides
 * (found by encoding one character both ways); tokenizer_config.json's add_bos_token / add_eos_token, when
 * present, override it, as transformers' Llama tokenizers rebuild their post-processor from those flags.
 */
export function specialsAround(
  tokenizer: Tokenizer,
  config: TokenizerConfigFile,
  configPath: string,
  bos: SpecialToken | null,
  eos: SpecialToken | null,
): { prefix: number[] | null; suffix: number[] | null } {
  const bare = tokenizer.encode('a', { add_special_tokens: false }).ids;
  const full = tokenizer.encode('a', { add_special_tokens: true }).ids;
  let at = -1;
  for (let i = 0; i + bare.length <= full.length && at < 0; i++) {
    if (bare.every((id, j) => full[i + j] === id)) at = i;
  }
  const flag = (key: string): boolean | undefined => {
    const value = config[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') throw new TokenizerError('BadTokenizerConfig', configPath, `"${key}" must be true or false, found ${JSON.stringify(value)}`);
    return value;
  };
  const addBos = flag('add_bos_token');
  const addEos = flag('add_eos_token');
  // A post-processor that rewrites the text's own tokens cannot be split into prefix + text + suffix:
  // leave encoding to it unless the config's flags say what to add.
  if (at < 0 && addBos === undefined && addEos === undefined) return { prefix: null, suffix: null };
  let prefix = at >= 0 ? full.slice(0, at) : [];
  let suffix = at >= 0 ? full.slice(at + bare.length) : [];
  if (addBos !== undefined && bos) {
    prefix = prefix.filter((id) => id !== bos.id);
    if (addBos) prefix = [bos.id, ...prefix];
  }
  if (addEos !== undefined && eos) {
    suffix = suffix.filter((id) => id !== eos.id);
    if (addEos) suffix = [...suffix, eos.id];
  }
  return { prefix, suffix };
}

/** The chat template(s): chat_template.jinja, else chat_template.json, else tokenizer_config.json. */
export async function readChatTemplates(folder: string, config: TokenizerConfigFile, configPath: string): Promise<{ templates: Map<string, string>; file: string | null }> {
  const templates = new Map<string, string>();
  const jinjaPath = join(folder, 'chat_template.jinja');
  const jinja = await readTextFile(jinjaPath, 'UnreadableTokenizer');
  if (jinja !== undefined) {
    templates.set('default', jinja);
    return { templates, file: jinjaPath };
  }
  const jsonPath = join(folder, 'chat_template.json');
  const json = await readJsonFile(jsonPath, 'UnreadableTokenizer');
  if (json !== undefined) {
    if (!isObject(json) || json['chat_template'] === undefined) throw new TokenizerError('UnreadableTokenizer', jsonPath, 'must hold an object with "chat_template"');
    addTemplates(templates, json['chat_template'], jsonPath);
    return { templates, file: jsonPath };
  }
  if (config['chat_template'] === undefined || config['chat_template'] === null) return { templates, file: null };
  addTemplates(templates, config['chat_template'], configPath);
  return { templates, file: configPath };
}

export function addTemplates(into: Map<string, string>, value: unknown, file: string): void {
  if (typeof value === 'string') {
    into.set('default', value);
    return;
  }
  if (!Array.isArray(value)) throw new TokenizerError('BadTokenizerConfig', file, `"chat_template" must be a string or a list of {"name", "template"}, found ${typeof value}`);
  value.forEach((entry, i) => {
    if (!isObject(entry) || typeof entry['name'] !== 'string' || typeof entry['template'] !== 'string') {
      throw new TokenizerError('BadTokenizerConfig', file, `"chat_template" entry ${i} must be {"name": string, "template": string}`);
    }
    into.set(entry['name'], entry['template']);
  });
}

export function checkMessages(messages: readonly ChatMessage[], folder: string): void {
  if (!Array.isArray(messages)) throw new TokenizerError('InvalidInput', folder, 'chat messages must be a list');
  messages.forEach((message, i) => {
    if (!isObject(message)) throw new TokenizerError('InvalidInput', folder, `chat message ${i + 1} is not an object`);
    if (typeof message.role !== 'string') throw new TokenizerError('InvalidInput', folder, `chat message ${i + 1} has no "role" string`);
    const content = message.content as unknown;
    if (content !== null && content !== undefined && typeof content !== 'string' && !Array.isArray(content)) {
      throw new TokenizerError('InvalidInput', folder, `chat message ${i + 1} ("${message.role}") has "content" of type ${typeof content}; it must be a string, a list of parts or null`);
    }
  });
}

export function contentText(content: ChatMessage['content']): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((part) => (typeof part['text'] === 'string' ? part['text'] : '')).join('');
}
