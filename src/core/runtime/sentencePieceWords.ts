/**
 * Two rewrites of a tokenizer.json definition for SentencePiece vocabularies saved as BPE (Llama 2, Mistral,
 * TinyLlama, …), whose spaces are the marker "▁" and which have no pre-tokenizer.
 *
 * **Words** (speed). Without a pre-tokenizer, every encode call runs BPE over the whole text as one "word": a
 * priority queue over every character, and the per-word BPE cache never hits. The calibration text of a job
 * (WikiText-2's test split, 1.3 MB) took 16.6 s to tokenize, longer than quantizing a block of a 110M model.
 * `wordSplitDefinition` adds a pre-tokenizer that cuts the normalized text before every "▁" that follows
 * another character (pieces `▁*[^▁]+`, and a final run of markers): the same words SentencePiece itself
 * never merges across. The result is the same token ids, provably, when no merge of the vocabulary joins a
 * symbol ending in a non-marker character to one starting with the marker (`crossesWordStart`): BPE only
 * ever merges adjacent symbols by a listed merge, so no merge can span such a cut, and the merges inside
 * each piece happen in the same rank order as in the whole text. Vocabularies with such a merge are left
 * as they are.
 *
 * **Continuation** (exactness across blocks). These tokenizers prepend "▁" to the text of every encode call
 * (normalizer `Prepend`, or `Metaspace` with `prepend_scheme`), as SentencePiece's dummy prefix. A text
 * tokenized in blocks (runtime/dataset.ts) would get a "▁" at every block start that the whole text does
 * not have there. `continuationDefinition` is the same tokenizer without that prefix: blocks after the
 * first are encoded with it, so the blocks' ids concatenate to the whole text's.
 */

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The space marker these vocabularies use. */
const MARKER = '\u2581';

/** The normalizer steps of a definition (a Sequence's list, or the one normalizer), never null. */
function normalizerSteps(definition: Json): Json[] {
  const normalizer = definition['normalizer'];
  if (!isObject(normalizer)) return [];
  if (normalizer['type'] === 'Sequence' && Array.isArray(normalizer['normalizers'])) return normalizer['normalizers'].filter(isObject);
  return [normalizer];
}

/** Whether the definition writes spaces as the marker: a Replace(" " → "▁") normalizer, or a Metaspace pre-tokenizer with that replacement. */
function usesMarkerForSpaces(definition: Json): boolean {
  const replaces = normalizerSteps(definition).some((n) => n['type'] === 'Replace' && isObject(n['pattern']) && n['pattern']['String'] === ' ' && n['content'] === MARKER);
  const pre = definition['pre_tokenizer'];
  const metaspace = isObject(pre) && pre['type'] === 'Metaspace' && (pre['replacement'] ?? MARKER) === MARKER;
  return replaces || metaspace;
}

/** The merges of a BPE model as pairs (tokenizer.json writes them as "a b" strings or as [a, b] arrays). */
function mergePairs(model: Json): [string, string][] | undefined {
  const merges = model['merges'];
  if (!Array.isArray(merges)) return undefined;
  const pairs: [string, string][] = [];
  for (const merge of merges) {
    if (Array.isArray(merge) && merge.length === 2 && typeof merge[0] === 'string' && typeof merge[1] === 'string') pairs.push([merge[0], merge[1]]);
    else if (typeof merge === 'string') {
      const space = merge.indexOf(' ');
      if (space < 0) return undefined;
      pairs.push([merge.slice(0, space), merge.slice(space + 1)]);
    } else return undefined;
  }
  return pairs;
}

/** The first merge that joins a symbol ending in a non-marker character to one starting with the marker, if any. */
export function crossesWordStart(pairs: readonly (readonly [string, string])[]): readonly [string, string] | undefined {
  return pairs.find(([left, right]) => left.length > 0 && !left.endsWith(MARKER) && right.startsWith(MARKER));
}

/**
 * The definition with a word-splitting pre-tokenizer, or undefined when it does not apply: not a BPE model,
 * spaces not written as "▁", a pre-tokenizer other than a non-splitting Metaspace, or a merge across a word
 * start (then splitting could change the ids).
 */
export function wordSplitDefinition(definition: Json): Json | undefined {
  const model = definition['model'];
  if (!isObject(model) || model['type'] !== 'BPE' || !usesMarkerForSpaces(definition)) return undefined;
  const pre = definition['pre_tokenizer'];
  const splitWords: Json = { type: 'Split', pattern: { Regex: `${MARKER}*[^${MARKER}]+|${MARKER}+` }, behavior: 'Isolated', invert: true };
  let preTokenizer: Json;
  if (pre === undefined || pre === null) preTokenizer = splitWords;
  else if (isObject(pre) && pre['type'] === 'Metaspace' && pre['split'] === false) preTokenizer = { type: 'Sequence', pretokenizers: [pre, splitWords] };
  else return undefined;
  const pairs = mergePairs(model);
  if (!pairs || crossesWordStart(pairs)) return undefined;
  return { ...definition, pre_tokenizer: preTokenizer };
}

/**
 * The definition without the dummy "▁" prefix of every encode call, for text that continues earlier text;
 * undefined when the definition adds none (then continuing text encodes the same way).
 */
export function continuationDefinition(definition: Json): Json | undefined {
  const normalizer = definition['normalizer'];
  const steps = normalizerSteps(definition);
  const isPrepend = (n: Json) => n['type'] === 'Prepend' && n['prepend'] === MARKER;
  let changed = false;
  let result: Json = definition;
  if (steps.some(isPrepend)) {
    const kept = steps.filter((n) => !isPrepend(n));
    const next = isObject(normalizer) && normalizer['type'] === 'Sequence' ? { ...normalizer, normalizers: kept } : kept.length === 1 ? kept[0] : null;
    result = { ...result, normalizer: next };
    changed = true;
  }
  const withoutMetaspacePrefix = (pre: unknown): unknown => {
    if (!isObject(pre)) return pre;
    if (pre['type'] === 'Sequence' && Array.isArray(pre['pretokenizers'])) return { ...pre, pretokenizers: pre['pretokenizers'].map(withoutMetaspacePrefix) };
    if (pre['type'] !== 'Metaspace') return pre;
    // Without prepend_scheme the JavaScript tokenizer prepends always, whatever add_prefix_space says.
    if (pre['prepend_scheme'] === 'never') return pre;
    changed = true;
    return { ...pre, prepend_scheme: 'never', add_prefix_space: false };
  };
  result = { ...result, pre_tokenizer: withoutMetaspacePrefix(result['pre_tokenizer']) };
  return changed ? result : undefined;
}
