/** Filtering, sorting and paging of a tensor table; shared by the inspector host and tests. */
import type { TensorRow } from './summary';
import type { LinearModule } from './scheme';

export interface TensorTableQuery {
  readonly filter: string;
  readonly dtype?: string;
  readonly offset: number;
  readonly limit: number;
  readonly sort?: { readonly key: 'name' | 'dtype' | 'bytes' | 'elements' | 'offset'; readonly descending: boolean };
}

/** Largest page a caller can ask for: the webview renders only what is visible. */
export const MAX_PAGE_ROWS = 2000;

/** A name filter as the inspector's search boxes take it: case-insensitive text, or `re:REGEX`. */
export function nameMatcher(filter: string): { matcher: (name: string) => boolean; filterError?: string } {
  const text = filter.trim();
  if (text.startsWith('re:')) {
    try {
      const re = new RegExp(text.slice(3));
      return { matcher: (name) => re.test(name) };
    } catch (error) {
      return { matcher: () => true, filterError: `invalid regular expression: ${(error as Error).message}` };
    }
  }
  const needle = text.toLowerCase();
  return { matcher: needle ? (name) => name.toLowerCase().includes(needle) : () => true };
}

/**
 * The last selection per row list: a scrolling table asks for page after page with the same filter and
 * sort, and re-filtering and re-sorting 100,000 rows for each page made scrolling stutter.
 */
const lastSelection = new WeakMap<readonly unknown[], { key: string; selected: readonly unknown[]; filterError?: string }>();

/** Rows matching `key`'s filter, computed by `select` once and reused while the key stays the same. */
export function memoizedSelection<Row>(rows: readonly Row[], key: string, select: () => { selected: readonly Row[]; filterError?: string }): { selected: readonly Row[]; filterError?: string } {
  const cached = lastSelection.get(rows);
  if (cached && cached.key === key) return cached as { selected: readonly Row[]; filterError?: string };
  const fresh = select();
  lastSelection.set(rows, { key, ...fresh });
  return fresh;
}

export function queryTensorTable(
  rows: readonly TensorRow[],
  query: TensorTableQuery,
): { total: number; offset: number; rows: TensorRow[]; filterError?: string } {
  const key = JSON.stringify([query.filter, query.dtype ?? '', query.sort ?? null]);
  const { selected, filterError } = memoizedSelection(rows, key, () => {
    const { matcher, filterError } = nameMatcher(query.filter);
    let selected = rows.filter((r) => matcher(r.name) && (!query.dtype || r.dtype === query.dtype));
    if (query.sort) {
      const { key, descending } = query.sort;
      const sign = descending ? -1 : 1;
      selected = selected.sort((a, b) => {
        const x = a[key];
        const y = b[key];
        return sign * (x < y ? -1 : x > y ? 1 : 0);
      });
    }
    return { selected, filterError };
  });
  const offset = Math.max(0, Math.min(Math.floor(query.offset), selected.length));
  const limit = Math.max(0, Math.min(Math.floor(query.limit), MAX_PAGE_ROWS));
  return { total: selected.length, offset, rows: selected.slice(offset, offset + limit), filterError };
}

/** Filtering and paging of the layer map: text or re:regex on the module name, and a state filter. */
export function queryLayers(
  modules: readonly LinearModule[],
  query: { readonly filter: string; readonly state: '' | LinearModule['state'] | 'issues'; readonly offset: number; readonly limit: number },
): { total: number; offset: number; rows: LinearModule[]; filterError?: string } {
  const { selected: rows, filterError } = memoizedSelection(modules, JSON.stringify([query.filter, query.state]), () => {
    const { matcher, filterError } = nameMatcher(query.filter);
    return { selected: modules.filter((m) => matcher(m.name) && (query.state === '' || (query.state === 'issues' ? m.issues.length > 0 : m.state === query.state))), filterError };
  });
  const offset = Math.max(0, Math.min(query.offset, rows.length));
  return { total: rows.length, offset, rows: rows.slice(offset, offset + Math.min(query.limit, MAX_PAGE_ROWS)), filterError };
}
