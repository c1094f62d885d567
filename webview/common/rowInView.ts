/**
 * Where a virtual table's viewport must scroll so that a selected row it showed stays in view when the
 * viewport changes height (a detail panel below the table growing with a tensor's statistics shrinks it).
 * Pure arithmetic, apart from the DOM so that unit tests can check it.
 */

export interface ViewportChange {
  /** The selected row's index. */
  readonly row: number;
  readonly rowHeight: number;
  /** Content offset of the viewport's top, in unscaled row pixels (row i starts at i × rowHeight). */
  readonly offset: number;
  /** Viewport heights before and after the change, in pixels. */
  readonly before: number;
  readonly after: number;
}

/**
 * The new content offset that keeps `row` fully visible, or undefined when nothing needs to move: the row
 * is still fully visible, or it was not fully visible before (the user had scrolled away from it, and a
 * resize must not pull them back). The row moves the least: its bottom edge lands on the viewport's bottom
 * (its top on the viewport's top when the viewport is shorter than a row).
 */
export function offsetKeepingRowInView(change: ViewportChange): number | undefined {
  const { row, rowHeight, offset, before, after } = change;
  const top = row * rowHeight;
  const bottom = top + rowHeight;
  const fullyVisible = (height: number) => top >= offset && bottom <= offset + height;
  if (!fullyVisible(before) || fullyVisible(after)) return undefined;
  return Math.max(0, Math.min(top, bottom - after));
}
