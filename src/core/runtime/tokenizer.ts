/**
 * A model folder's tokenizer and chat template, as Hugging Face transformers loads them, for calibration
 * datasets, generation and the chat comparison.
 *
 *   tokenizer.json          the fast-tokenizer definition (required), run by @huggingface/tokenizers
 *   tokenizer_config.json   special tokens, add_bos_token / add_eos_token, chat_template (a string, or a list
 *                           of {name, template})
 *   chat_template.jinja     newer transformers save the template here; it wins over tokenizer_config.json
 *   chat_template.json      {"chat_template": ...} (processor-style folders)
 *   generation_config.json  eos_token_id (a number or a list): the stop tokens of generation
 *   config.json             eos_token_id, read only when generation_config.json is absent (as transformers
 *                           derives a generation config from the model config)
 *
 * Decoding never applies `clean_up_tokenization_spaces` (Llama-3.1's config asks for it): that clean-up
 * rewrites " ." to "." and " ?" to "?", which changes code and makes decode(encode(x)) differ from x; a tool
 * that compares two models' outputs needs the exact text.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Environment, Template } from '@huggingface/jinja';
import { TemplateBudgetError, budgetedRange, DEFAULT_TEMPLATE_BUDGET, renderWithBudget, strftime, type TemplateBudget } from './chatTemplate';

export { strftime };

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

export interface ChatTemplateOptions {
  /** Append the header that opens the assistant's turn (transformers' add_generation_prompt). Default false. */
  addGenerationPrompt?: boolean;
  /** Tool (function) JSON schemas, passed to the template as `tools`. */
  tools?: readonly unknown[];
  /** Retrieval documents, passed to the template as `documents`. */
  documents?: readonly unknown[];
  /** Which named template to use when tokenizer_config.json holds several. */
  templateName?: string;
  /**
   * What to do when the model has no chat template: by default an error says so; 'plain' renders
   * "System: …\n\nUser: …\n\nAssistant:" instead (for base models).
   */
  fallback?: 'plain';
  /** The clock strftime_now reads (default: now). */
  now?: Date;
  /** Extra template variables, as transformers passes extra apply_chat_template keyword arguments. */
  variables?: Readonly<Record<string, unknown>>;
  /** The render's limits (default DEFAULT_TEMPLATE_BUDGET). */
  budget?: TemplateBudget;
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

/** Where the chat template(s) came from, for messages and for the UI. */
export interface ChatTemplateSource {
  readonly file: string;
  /** Named templates (a single unnamed template is called 'default'). */
  readonly names: readonly string[];
}

interface TokenizerConfigFile {
  [key: string]: unknown;
}

const FALLBACK_ROLE_NAMES: Record<string, string> = { system: 'System', user: 'User', assistant: 'Assistant', tool: 'Tool' };

export class ModelTokenizer {
  private readonly templates = new Map<string, string>();
  private readonly compiled = new Map<string, Template>();
  private readonly specialIds: ReadonlySet<number>;

  private constructor(
    /** The model folder. */
    readonly folder: string,
    private readonly tokenizer: Tokenizer,
    readonly vocabSize: number,
    readonly bosToken: SpecialToken | null,
    readonly eosToken: SpecialToken | null,
    readonly padToken: SpecialToken | null,
    readonly unkToken: SpecialToken | null,
    /** Token ids that end generation: generation_config.json's eos_token_id(s) and the tokenizer's eos. */
    readonly stopTokenIds: readonly number[],
    /** Special ids that encode(text) puts before / after the text (null: leave it to the post-processor). */
    private readonly prefixIds: readonly number[] | null,
    private readonly suffixIds: readonly number[] | null,
    templates: ReadonlyMap<string, string>,
    /** The file the chat template was read from, or null when the model has none. */
    readonly chatTemplateFile: string | null,
    /** Special-token strings passed to the chat template (bos_token, eos_token, pad_token, unk_token). */
    private readonly templateTokens: Readonly<Record<string, string>>,
  ) {
    for (const [name, text] of templates) this.templates.set(name, text);
    const specials = new Set<number>();
    for (const [id, token] of tokenizer.get_added_tokens_decoder()) if (token.special) specials.add(id);
    this.specialIds = specials;
  }

  /**
   * Loads the tokenizer of a model folder (or of the folder holding the given tokenizer.json).
   * Throws TokenizerError naming the file when something is missing or malformed.
   */
  static async load(path: string): Promise<ModelTokenizer> {
    const folder = basename(path) === 'tokenizer.json' ? dirname(path) : path;
    const tokenizerPath = join(folder, 'tokenizer.json');
    const tokenizerJson = await readJsonFile(tokenizerPath, 'NoTokenizer');
    if (tokenizerJson === undefined) {
      throw new TokenizerError(
        'NoTokenizer',
        folder,
        'there is no tokenizer.json in this folder. QuantLens reads the fast-tokenizer file that Hugging Face checkpoints ship; ' +
          'a folder with only tokenizer.model (SentencePiece) can be converted with transformers: AutoTokenizer.from_pretrained(folder).save_pretrained(folder)',
      );
    }
    if (!isObject(tokenizerJson) || !isObject(tokenizerJson['model'])) {
      throw new TokenizerError('UnreadableTokenizer', tokenizerPath, 'is not a tokenizer definition: it has no "model" object');
    }
    const configPath = join(folder, 'tokenizer_config.json');
    const configJson = (await readJsonFile(configPath, 'UnreadableTokenizer')) ?? {};
    if (!isObject(configJson)) throw new TokenizerError('UnreadableTokenizer', configPath, 'must hold a JSON object');
    const config: TokenizerConfigFile = configJson;

    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(tokenizerJson, config);
    } catch (error) {
      throw new TokenizerError('UnreadableTokenizer', tokenizerPath, `cannot be loaded: ${messageOf(error)}`);
    }
    const vocabSize = tokenizer.model?.vocab.length ?? 0;
    if (vocabSize === 0) throw new TokenizerError('UnreadableTokenizer', tokenizerPath, 'has an empty vocabulary');

    const special = (key: string, required: boolean): SpecialToken | null => {
      const value = config[key];
      if (value === undefined || value === null) return null;
      const text = typeof value === 'string' ? value : isObject(value) && typeof value['content'] === 'string' ? value['content'] : undefined;
      if (text === undefined) throw new TokenizerError('BadTokenizerConfig', configPath, `"${key}" must be a string or an object with "content", found ${JSON.stringify(value)}`);
      const id = tokenizer.token_to_id(text);
      if (id === undefined) {
        if (required) throw new TokenizerError('BadTokenizerConfig', configPath, `"${key}" is ${JSON.stringify(text)}, which is not a token of tokenizer.json's vocabulary`);
        return null;
      }
      return { text, id };
    };
    const bosFromConfig = special('bos_token', true);
    const eosFromConfig = special('eos_token', true);
    const padToken = special('pad_token', false);
    const unkToken = special('unk_token', false);

    const generation = await readGenerationIds(folder, vocabSize);
    const tokenAt = (id: number): SpecialToken | null => {
      const text = tokenizer.id_to_token(id);
      return text === undefined ? null : { text, id };
    };
    const bosToken = bosFromConfig ?? (generation.bos !== undefined ? tokenAt(generation.bos) : null);
    const eosToken = eosFromConfig ?? (generation.eos[0] !== undefined ? tokenAt(generation.eos[0]) : null);
    const stopTokenIds = [...new Set([...generation.eos, ...(eosToken ? [eosToken.id] : [])])];

    const { prefix, suffix } = specialsAround(tokenizer, config, configPath, bosToken, eosToken);
    const { templates, file: templateFile } = await readChatTemplates(folder, config, configPath);

    const templateTokens: Record<string, string> = {};
    for (const [key, token] of [['bos_token', bosToken], ['eos_token', eosToken], ['pad_token', padToken], ['unk_token', unkToken]] as const) {
      if (token) templateTokens[key] = token.text;
    }
    return new ModelTokenizer(folder, tokenizer, vocabSize, bosToken, eosToken, padToken, unkToken, stopTokenIds, prefix, suffix, templates, templateFile, templateTokens);
  }

  /** Whether encode(text) with special tokens starts with the BOS token. */
  get addsBos(): boolean {
    if (this.bosToken === null) return false;
    return this.prefixIds ? this.prefixIds.includes(this.bosToken.id) : this.tokenizer.encode('a').ids[0] === this.bosToken.id;
  }

  /** Whether encode(text) with special tokens ends with the EOS token. */
  get addsEos(): boolean {
    if (this.eosToken === null) return false;
    return this.suffixIds ? this.suffixIds.includes(this.eosToken.id) : this.tokenizer.encode('a').ids.at(-1) === this.eosToken.id;
  }

  /** The id used to pad batches: pad_token, else eos (as llm-compressor sets it), else 0. */
  get padTokenId(): number {
    return this.padToken?.id ?? this.eosToken?.id ?? 0;
  }

  /**
   * Token ids of `text`. With `addSpecialTokens` (default true) the special tokens the model expects around
   * a sequence are added (BOS for Llama), honouring tokenizer_config.json's add_bos_token / add_eos_token.
   * Special-token strings inside the text (e.g. "<|eot_id|>") are encoded as those special tokens.
   */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const withSpecials = options.addSpecialTokens !== false;
    if (withSpecials && (!this.prefixIds || !this.suffixIds)) return this.tokenizer.encode(text, { add_special_tokens: true }).ids;
    const ids = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    if (!withSpecials) return ids;
    return [...this.prefixIds!, ...ids, ...this.suffixIds!];
  }

  /** Text of token ids. Ids outside the vocabulary are an error (they would decode to nothing). */
  decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    const list = Array.from(ids);
    for (let i = 0; i < list.length; i++) this.checkId(list[i]!, i);
    const kept = options.skipSpecialTokens ? list.filter((id) => !this.specialIds.has(id)) : list;
    if (kept.length === 0) return '';
    return this.tokenizer.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  /** Whether `id` is a special (control) token such as <|eot_id|>. */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** A decoder for generated tokens, one at a time (see StreamingDecoder). */
  streamingDecoder(options: { skipSpecialTokens?: boolean } = {}): StreamingDecoder {
    return new StreamingDecoder((ids) => this.decode(ids, options));
  }

  /** Names of the chat templates the model has ('default' for a single one); empty when it has none. */
  get chatTemplateNames(): readonly string[] {
    return [...this.templates.keys()];
  }

  get hasChatTemplate(): boolean {
    return this.templates.size > 0;
  }

  /**
   * Renders a conversation with the model's chat template, as transformers' apply_chat_template(tokenize=False)
   * does: the template sees `messages`, `tools`, `documents`, `add_generation_prompt`, the special-token
   * strings (bos_token, eos_token, pad_token, unk_token), `raise_exception` and `strftime_now`. `date_string`
   * is not passed (transformers does not either), so Llama-3.1's template falls back to its own default date;
   * pass it in `variables` to set it.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    checkMessages(messages, this.folder);
    if (this.templates.size === 0) {
      if (options.fallback === 'plain') return this.plainPrompt(messages, options.addGenerationPrompt ?? false);
      throw new TokenizerError(
        'NoChatTemplate',
        this.folder,
        'this model has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja or chat_template.json): ' +
          'it is probably a base model rather than an instruction-tuned one. Prompt it with plain text, or ask for the plain fallback.',
      );
    }
    const name = this.pickTemplate(options);
    const file = this.chatTemplateFile ?? this.folder;
    let template = this.compiled.get(name);
    if (!template) {
      try {
        template = new Template(this.templates.get(name)!);
      } catch (error) {
        throw new TokenizerError('BadChatTemplate', file, `the chat template${name === 'default' ? '' : ` "${name}"`} does not parse: ${messageOf(error)}`);
      }
      this.compiled.set(name, template);
    }
    const now = options.now ?? new Date();
    let refusal: string | undefined;
    const context: Record<string, unknown> = {
      ...this.templateTokens,
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: options.addGenerationPrompt ?? false,
      ...options.variables,
    };
    if (options.tools !== undefined) context['tools'] = options.tools;
    if (options.documents !== undefined) context['documents'] = options.documents;
    // Template.render installs the library's globals and refuses to redeclare them, and its strftime_now
    // uses the machine's locale (month names in German on a German desktop). So the program runs here in a
    // scope with transformers' globals: raise_exception (recognisable when it fires) and a C-locale
    // strftime_now.
    const budget = options.budget ?? DEFAULT_TEMPLATE_BUDGET;
    const globals = new Environment();
    for (const [name, value] of Object.entries({ true: true, false: false, none: null, True: true, False: false, None: null })) globals.set(name, value);
    globals.set('range', budgetedRange(budget));
    globals.set('raise_exception', (message: unknown) => {
      refusal = String(message);
      throw new Error(refusal);
    });
    globals.set('strftime_now', (format: unknown) => strftime(now, String(format)));
    const scope = new Environment(globals);
    try {
      for (const [name, value] of Object.entries(context)) scope.set(name, value);
      return renderWithBudget(template.parsed, scope, budget).text;
    } catch (error) {
      if (error instanceof TemplateBudgetError) throw new TokenizerError('ChatTemplateBudgetExceeded', file, `${error.message}. Real chat templates stay far below this; check the chat template in this file`);
      if (refusal !== undefined) throw new TokenizerError('ChatTemplateRefused', file, `the chat template refused these messages: ${refusal}`);
      throw new TokenizerError('BadChatTemplate', file, `the chat template failed while rendering: ${messageOf(error)}`);
    }
  }

  /**
   * Token ids of a rendered conversation. The template writes the special tokens itself (BOS included), so
   * the text is encoded without adding any, as apply_chat_template(tokenize=True) does.
   */
  encodeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }

  private pickTemplate(options: ChatTemplateOptions): string {
    const names = [...this.templates.keys()];
    if (options.templateName !== undefined) {
      if (!this.templates.has(options.templateName)) {
        throw new TokenizerError('InvalidInput', this.chatTemplateFile ?? this.folder, `has no chat template named "${options.templateName}"; it has ${names.map((n) => `"${n}"`).join(', ')}`);
      }
      return options.templateName;
    }
    // transformers: the tool_use template when tools are given and one exists, else "default".
    if (options.tools !== undefined && this.templates.has('tool_use')) return 'tool_use';
    if (this.templates.has('default')) return 'default';
    if (names.length === 1) return names[0]!;
    throw new TokenizerError(
      'InvalidInput',
      this.chatTemplateFile ?? this.folder,
      `has several chat templates and none is called "default": name the one to use (${names.map((n) => `"${n}"`).join(', ')})`,
    );
  }

  private plainPrompt(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    const parts = messages.map((m) => `${FALLBACK_ROLE_NAMES[m.role] ?? m.role}: ${contentText(m.content)}`);
    if (addGenerationPrompt) parts.push('Assistant:');
    return (this.addsBos ? this.bosToken!.text : '') + parts.join('\n\n');
  }

  private checkId(id: number, index: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.tokenizer.id_to_token(id) === undefined) {
      throw new TokenizerError('InvalidInput', join(this.folder, 'tokenizer.json'), `token id ${id} (position ${index}) is not in the vocabulary of ${this.vocabSize} tokens`);
    }
  }
}

/**
 * Turns a stream of generated token ids into text pieces that are always whole characters.
 *
 * Byte-level vocabularies (Llama 3) split one character over several tokens (an emoji is often three or
 * four byte tokens), and SentencePiece decoders drop the leading space of a sequence's first token; so
 * decoding token by token gives wrong text. Instead each step decodes the last few tokens with the previous
 * token as context and emits what was added beyond the context's text, holding the piece back while it ends
 * in an incomplete UTF-8 sequence (decoded as U+FFFD). The concatenated pieces (plus flush()) equal
 * decode(all ids).
 */
export class StreamingDecoder {
  private readonly ids: number[] = [];
  /** Tokens before this index are context only; their text was emitted before. */
  private contextStart = 0;
  /** Tokens before this index have been emitted. */
  private emittedEnd = 0;
  private emittedText = '';

  constructor(private readonly decodeIds: (ids: readonly number[]) => string) {}

  /** Adds one token and returns the new text it completes ('' while a character is still incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const context = this.decodeIds(this.ids.slice(this.contextStart, this.emittedEnd));
    const text = this.decodeIds(this.ids.slice(this.contextStart));
    const complete = text.length > context.length && !text.endsWith('\uFFFD') && text.startsWith(context);
    // A UTF-8 character is at most 4 bytes, so more than 4 pending tokens are not one character being
    // completed: invalid bytes, or tokens that decode to nothing (skipped specials). Move on rather than
    // re-decode an ever longer window.
    const pending = this.ids.length - this.emittedEnd;
    if (complete || pending > 4) {
      const piece = text.slice(context.length);
      this.contextStart = this.emittedEnd;
      this.emittedEnd = this.ids.length;
      this.emittedText += piece;
      return piece;
    }
    return '';
  }

  /** Emits whatever is held back (an incomplete character at the end of the stream decodes as U+FFFD). */
  flush(): string {
    if (this.emittedEnd === this.ids.length) return '';
    const context = this.decodeIds(this.ids.slice(this.contextStart, this.emittedEnd));
    const text = this.decodeIds(this.ids.slice(this.contextStart));
    const piece = text.startsWith(context) ? text.slice(context.length) : text;
    this.contextStart = this.emittedEnd;
    this.emittedEnd = this.ids.length;
    this.emittedText += piece;
    return piece;
  }

  /** All text emitted so far. */
  get text(): string {
    return this.emittedText;
  }

  /** Token ids pushed so far. */
  get tokenIds(): readonly number[] {
    return this.ids;
  }
}

// ---------------------------------------------------------------------------------------------------------

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A tokenizer file's text; undefined when it does not exist. Its size is checked before reading
 * (MAX_TOKENIZER_FILE_BYTES), so a huge file is refused rather than read into memory.
 */
async function readTextFile(path: string, code: TokenizerErrorCode): Promise<string | undefined> {
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
async function readJsonFile(path: string, code: TokenizerErrorCode): Promise<unknown> {
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
async function readGenerationIds(folder: string, vocabSize: number): Promise<{ bos?: number; eos: number[] }> {
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
function specialsAround(
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
async function readChatTemplates(folder: string, config: TokenizerConfigFile, configPath: string): Promise<{ templates: Map<string, string>; file: string | null }> {
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

function addTemplates(into: Map<string, string>, value: unknown, file: string): void {
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

function checkMessages(messages: readonly ChatMessage[], folder: string): void {
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

function contentText(content: ChatMessage['content']): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((part) => (typeof part['text'] === 'string' ? part['text'] : '')).join('');
}
