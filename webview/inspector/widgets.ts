/** The small controls every inspector tab builds with: fields, buttons, dropdowns, filters, progress. */
import { RequestFailed, type RequestOptions } from '../../src/webviewMessages/endpoint';
import { h } from '../common/toolkit';

/** A number as the inspector prints it: five significant digits, exponent form when very small or large. */
export const num = (v: number) => (Number.isNaN(v) ? 'NaN' : !Number.isFinite(v) ? String(v) : v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5) ? v.toExponential(3) : v.toPrecision(5));

/** A `re:` filter matching exactly one tensor or module name. */
export const exactName = (name: string) => `re:^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;

export function field(label: string, value: string | Node): HTMLElement {
  return h('div', { class: 'field' }, h('span', { class: 'field-label' }, label), h('span', { class: 'field-value' }, value));
}

export function button(label: string, onClick: () => void, attributes: Record<string, string> = {}): HTMLElement {
  const element = h('vscode-button', { appearance: 'secondary', ...attributes }, label);
  element.addEventListener('click', onClick);
  return element;
}

export function filterField(id: string, placeholder: string, value: string, onInput: (v: string) => void): HTMLElement & { value: string } {
  const input = h('vscode-text-field', { id, placeholder, value, 'aria-label': placeholder }) as HTMLElement & { value: string };
  input.addEventListener('input', () => onInput(input.value));
  return input;
}

export function dropdown(id: string, label: string, options: [string, string][], value: string, onChange: (v: string) => void): HTMLElement {
  const select = h('vscode-dropdown', { id, 'aria-label': label }, ...options.map(([v, text]) => h('vscode-option', { value: v, selected: v === value }, text))) as HTMLElement & { value: string };
  // The toolkit's dropdown reports a change to '' when a key reaches it before its options are slotted in:
  // only a value it offers is a choice.
  select.addEventListener('change', () => (options.some(([v]) => v === select.value) ? onChange(select.value) : undefined));
  return select;
}

/**
 * A long-running request with a progress line and a Cancel button. Resolves to undefined when it was
 * cancelled, failed or timed out, after showing which in `container`.
 */
export async function withProgress<T>(container: HTMLElement, label: string, start: (options: Required<Pick<RequestOptions, 'onProgress' | 'signal'>>) => Promise<T>): Promise<T | undefined> {
  const text = h('span', { class: 'progress-text', role: 'status', 'aria-live': 'polite' }, `${label}…`);
  const controller = new AbortController();
  container.replaceChildren(h('div', { class: 'progress' }, h('vscode-progress-ring', {}), text, button('Cancel', () => controller.abort())));
  const onProgress = (fraction: number, what?: string) => {
    text.textContent = `${label}… ${(fraction * 100).toFixed(0)}%${what ? ` · ${what}` : ''}`;
  };
  try {
    return await start({ onProgress, signal: controller.signal });
  } catch (error) {
    const cancelled = error instanceof RequestFailed && error.cancelled;
    const message = error instanceof Error ? error.message : String(error);
    container.replaceChildren(h('p', { class: cancelled ? 'muted' : 'error-text', role: 'alert' }, cancelled ? `${label}: cancelled.` : `${label} failed: ${message}`));
    return undefined;
  }
}

/** A table's status line after a page of rows could not be read (the host failed or did not answer). */
export function showTableError(status: HTMLElement, what: string, error: unknown): void {
  status.textContent = `The ${what} could not be read: ${error instanceof Error ? error.message : String(error)}`;
  status.classList.add('error-text');
}

/** How long streamed work (statistics, scales, health) may go without a progress message before it fails. */
export const WORK_SILENCE_MS = 120_000;

/** A decoder block's linear projections: the columns of the per-layer heatmaps (scales, error). */
export const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
