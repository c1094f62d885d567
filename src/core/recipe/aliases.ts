/**
 * Alias accounting for the recipe tree. Aliases are expanded into copies (the checks walk a plain tree), so
 * anchors that alias other anchors multiply: nine aliases of nine aliases, eight levels deep, is 43 million
 * values from a 12-line file (an "alias bomb"). Like the `yaml` package's `maxAliasCount`, the tree builder
 * stops expanding once a document's aliases would create more than MAX_ALIAS_VALUES values or resolve more
 * than MAX_ALIAS_USES aliases (nested ones included); a recipe with a handful of anchors needs a few dozen
 * resolutions and a few hundred values. (The `yaml` package stops far sooner: ~100 weighted resolutions.)
 *
 * One pass over the parsed document, in document order, resolves every alias the way PyYAML does (the last
 * `&name` before it) and computes what expanding it costs, without expanding anything: each anchored node's
 * cost is known when its alias is met, since an anchor always comes before its aliases. The `yaml` package's
 * own `Alias.resolve` walks the whole document on every call, which alone is quadratic in the alias count.
 * The same pass finds duplicate mapping keys, which the `yaml` package's `uniqueKeys` finds by comparing each
 * key with every earlier one (20,000 keys: 8 s; a 1.5 MB mapping: minutes).
 */
import { isAlias, isCollection, isMap, isPair, isScalar } from 'yaml';

/** Values (scalars, lists, mappings) that a document's aliases may create in all. */
export const MAX_ALIAS_VALUES = 100_000;
/** Alias resolutions a document may need in all, counting aliases inside expanded anchors once per expansion. */
export const MAX_ALIAS_USES = 1_000;

export interface AliasInfo {
  readonly name: string;
  /** The anchored node the alias stands for; undefined when no `&name` comes before it. */
  readonly target?: object;
  /** The alias sits inside the very node it refers to (`&a [*a]`). */
  readonly recursive: boolean;
  /** Values one expansion of the alias creates, nested aliases expanded. */
  readonly values: number;
  /** Aliases one expansion resolves, itself included. */
  readonly uses: number;
}

interface Cost {
  values: number;
  uses: number;
}

interface Frame extends Cost {
  readonly node: object;
  readonly children: readonly unknown[];
  next: number;
  readonly anchored: boolean;
}

export interface DocumentScan {
  /** Every alias node of the document, resolved and costed. */
  readonly aliases: Map<object, AliasInfo>;
  /**
   * Key nodes equal to an earlier key of the same mapping, as the `yaml` package's `uniqueKeys` compares them
   * (scalars by value, anything else by identity).
   */
  readonly duplicateKeys: object[];
}

/** One pass over the document under `root`. Iterative: nesting depth is not bounded here. */
export function scanDocument(root: unknown): DocumentScan {
  const aliases = new Map<object, AliasInfo>();
  const duplicateKeys: object[] = [];
  const anchors = new Map<string, object>();
  const anchoredCost = new Map<object, Cost>();
  /** Anchored collections still being walked (an alias to one of them is recursive). */
  const open = new Set<object>();
  const stack: Frame[] = [];

  const add = (cost: Cost, values: number, uses: number) => {
    cost.values += values;
    cost.uses += uses;
  };
  const enter = (node: unknown, parent: Cost) => {
    if (node === null || typeof node !== 'object') {
      add(parent, 1, 0); // an empty value still becomes a node
      return;
    }
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      const recursive = target !== undefined && open.has(target);
      const cost = target && !recursive ? anchoredCost.get(target) : undefined;
      const info: AliasInfo = { name: node.source, target, recursive, values: cost?.values ?? 1, uses: 1 + (cost?.uses ?? 0) };
      aliases.set(node, info);
      add(parent, info.values, info.uses);
      return;
    }
    const anchor = (node as { anchor?: string }).anchor;
    if (anchor) anchors.set(anchor, node);
    if (isCollection(node) || isPair(node)) {
      if (anchor) open.add(node);
      if (isMap(node)) findDuplicateKeys(node.items, duplicateKeys);
      const children = isPair(node) ? [node.key, node.value] : node.items;
      // A pair is not a value of its own: its key and value are.
      stack.push({ node, children, next: 0, values: isPair(node) ? 0 : 1, uses: 0, anchored: anchor !== undefined && anchor !== '' });
      return;
    }
    if (anchor) anchoredCost.set(node, { values: 1, uses: 0 });
    add(parent, 1, 0);
  };

  const top: Cost = { values: 0, uses: 0 };
  enter(root, top);
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.next < frame.children.length) {
      enter(frame.children[frame.next++], frame);
      continue;
    }
    stack.pop();
    if (frame.anchored) {
      open.delete(frame.node);
      anchoredCost.set(frame.node, { values: frame.values, uses: frame.uses });
    }
    add(stack[stack.length - 1] ?? top, frame.values, frame.uses);
  }
  return { aliases, duplicateKeys };
}

function findDuplicateKeys(pairs: readonly unknown[], out: object[]): void {
  const seen = new Set<unknown>();
  for (const pair of pairs) {
    if (!isPair(pair) || pair.key === null || typeof pair.key !== 'object') continue;
    const key = pair.key;
    // Scalars compare by value (=== : 1 and "1" differ, NaN never repeats); other keys are all distinct.
    const value = isScalar(key) ? key.value : key;
    const identity = typeof value === 'number' && Number.isNaN(value) ? {} : value; // a Set compares the rest like ===, 0 and -0 alike
    if (seen.has(identity)) out.push(key);
    else seen.add(identity);
  }
}

/** What a document's alias expansions have used so far; refuses the expansion that would pass a limit. */
export class AliasBudget {
  private values = 0;
  private uses = 0;
  private refused = false;

  constructor(
    private readonly maxValues = MAX_ALIAS_VALUES,
    private readonly maxUses = MAX_ALIAS_USES,
  ) {}

  /** True once an expansion was refused: the tree is then incomplete. */
  get exceeded(): boolean {
    return this.refused;
  }

  /**
   * Charges one outermost expansion of `alias` (its nested aliases are in its cost). Refused expansions carry
   * the message to report for the first refusal only; after it every alias is refused, so the document's
   * tree stays bounded whatever follows.
   */
  charge(alias: AliasInfo, anchorLine: number): { readonly expand: true } | { readonly expand: false; readonly message?: string } {
    if (this.refused) return { expand: false };
    const values = this.values + alias.values;
    const uses = this.uses + alias.uses;
    if (values <= this.maxValues && uses <= this.maxUses) {
      this.values = values;
      this.uses = uses;
      return { expand: true };
    }
    this.refused = true;
    const count = (n: number) => (n < 1e15 ? Math.round(n).toLocaleString('en-US') : n.toExponential(2));
    const plural = (n: number, word: string) => `${count(n)} ${word}${n === 1 ? '' : word.endsWith('s') ? 'es' : 's'}`;
    const what =
      values > this.maxValues
        ? `it stands for ${plural(alias.values, 'value')}, which would bring this file's aliases to ${count(values)} values (QuantLens expands at most ${count(this.maxValues)})`
        : `it resolves ${plural(alias.uses, 'alias')}, which would bring this file to ${count(uses)} alias resolutions (QuantLens expands at most ${count(this.maxUses)})`;
    const why =
      alias.uses > 1
        ? `&${alias.name} (line ${anchorLine}) is built from aliases of other anchors, and each level of such nesting multiplies the size (an "alias bomb")`
        : `the file repeats aliases of its anchors (here &${alias.name}, line ${anchorLine}) too many times`;
    return { expand: false, message: `alias *${alias.name} is not expanded: ${what}. ${why}; this alias and the ones after it are left unexpanded, and the recipe is not checked further` };
  }
}
