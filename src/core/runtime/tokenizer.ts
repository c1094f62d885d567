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
import { basename, dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Environment, Template } from '@huggingface/jinja';
import { TemplateBudgetError, budgetedRange, DEFAULT_TEMPLATE_BUDGET, renderWithBudget, strftime, type TemplateBudget } from './chatTemplate';
import { continuationDefinition, wordSplitDefinition } from './sentencePieceWords';

export { strftime };
import {
  TokenizerError,
  type ChatMessage,
  type SpecialToken,
  type TokenizerConfigFile,
  checkMessages,
  contentText,
  isObject,
  messageOf,
  readChatTemplates,
  readGenerationIds,
  readJsonFile,
  specialsAround,
} from './tokenizerFiles';
export { TokenizerError, MAX_TOKENIZER_FILE_BYTES, describeJsonError } from './tokenizerFiles';
export type { TokenizerErrorCode, ChatMessage, SpecialToken } from './tokenizerFiles';

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

/** Where the chat template(s) came from, for messages and for the UI. */
export interface ChatTemplateSource {
  readonly file: string;
  /** Named templates (a single unnamed template is called 'default'). */
  readonly names: readonly string[];
}

const FALLBACK_ROLE_NAMES: Record<string, string> = { system: 'System', user: 'User', assistant: 'Assistant', tool: 'Tool' };

export class ModelTokenizer {
  private readonly templates = new Map<string, string>();
  private readonly compiled = new Map<string, Template>();
  private readonly specialIds: ReadonlySet<number>;
  private continuationTokenizer: Tokenizer | undefined;

  private constructor(
    /** The model folder. */
    readonly folder: string,
    private readonly tokenizer: Tokenizer,
    /** Makes the tokenizer for text that continues earlier text (no dummy "▁" prefix): sentencePieceWords.ts. */
    private readonly makeContinuationTokenizer: () => Tokenizer,
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
      // SentencePiece-style BPE gets a word-splitting pre-tokenizer when that provably keeps the ids (speed).
      tokenizer = new Tokenizer(wordSplitDefinition(tokenizerJson) ?? tokenizerJson, config);
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
    const continuation = continuationDefinition(tokenizerJson);
    // Built on first use from the prefix-free definition (only tokenizers that prepend "▁" keep one).
    const continuationTokenizer = continuation ? () => new Tokenizer(wordSplitDefinition(continuation) ?? continuation, config) : () => tokenizer;
    return new ModelTokenizer(folder, tokenizer, continuationTokenizer, vocabSize, bosToken, eosToken, padToken, unkToken, stopTokenIds, prefix, suffix, templates, templateFile, templateTokens);
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
  /**
   * Token ids of `text` as it reads after earlier text: no special tokens, and no dummy "▁" prefix where the
   * tokenizer puts one before every text (SentencePiece style). Text cut into pieces at a line start or
   * before a space between words gives the whole text's ids, piece after piece, when the pieces after the
   * first are encoded with this (runtime/dataset.ts tokenizes long files so).
   */
  encodeContinuation(text: string): number[] {
    this.continuationTokenizer ??= this.makeContinuationTokenizer();
    return this.continuationTokenizer.encode(text, { add_special_tokens: false }).ids;
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
