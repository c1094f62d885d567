/** Filtering, sorting and paging of a tensor table; shared by the inspector host and tests. */
import type { TensorRow } from './summary';

export interface TensorTableQuery {
  readonly filter: string;
  readonly dtype?: string;
  readonly offset: number;
  readonly limit: number;
  readonly sort?: { readonly key: 'name' | 'dtype' | 'bytes' | 'elements' | 'offset'; readonly descending: boolean };
}

/** Largest page a caller can ask for: the webview renders only what is visible. */
export const MAX_PAGE_ROWS = 2000;

export function queryTensorTable(
  rows: readonly TensorRow[],
  query: TensorTableQuery,
): { total: number; offset: number; rows: TensorRow[]; filterError?: string } {
  let matcher: (name: string) => boolean = () => true;
  let filterError: string | undefined;
  const filter = query.filter.trim();
  if (filter.startsWith('re:')) {
    try {
      const re = new RegExp(filter.slice(3));
      matcher = (name) => re.test(name);
    } catch (error) {
      filterError = `invalid regular expression: ${(error as Error).message}`;
    }
  } else if (filter) {
    const needle = filter.toLowerCase();
    matcher = (name) => name.toLowerCase().includes(needle);
  }
  let selected = rows.filter((r) => matcher(r.name) && (!query.dtype || r.dtype === query.dtype));
  if (query.sort) {
    const { key, descending } = query.sort;
    const sign = descending ? -1 : 1;
    selected = [...selected].sort((a, b) => {
      const x = a[key];
      const y = b[key];
      return sign * (x < y ? -1 : x > y ? 1 : 0);
    });
  }
  const offset = Math.max(0, Math.min(Math.floor(query.offset), selected.length));
  const limit = Math.max(0, Math.min(Math.floor(query.limit), MAX_PAGE_ROWS));
  return { total: selected.length, offset, rows: selected.slice(offset, offset + limit), filterError };
}
