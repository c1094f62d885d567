// The virtual table keeps its selected row in view when its viewport shrinks (webview/common/rowInView.ts):
// the inspector's tensor detail grows with statistics below the table, and the browser keeps scrollTop, so
// without this the row just clicked slides under the detail.
import assert from 'node:assert/strict';
import { offsetKeepingRowInView } from '../../webview/common/rowInView';

const ROW = 22;

/** Whether row `row` lies fully inside a viewport of `height` px whose top is at content offset `offset`. */
const fullyVisible = (row: number, offset: number, height: number) => row * ROW >= offset && (row + 1) * ROW <= offset + height;

describe('virtual table: the selected row stays in view when the viewport shrinks', () => {
  it('scrolls the least that brings a row pushed below the new bottom back: its bottom on the bottom edge', () => {
    // 600 px viewport at the top shows rows 0–26 whole; shrunk to 300 px it shows rows 0–12.
    const offset = offsetKeepingRowInView({ row: 20, rowHeight: ROW, offset: 0, before: 600, after: 300 });
    assert.equal(offset, 21 * ROW - 300);
    assert.ok(fullyVisible(20, offset!, 300));
    assert.ok(!fullyVisible(20, offset! - 1, 300), 'one pixel less and the row is cut: no more scrolling than needed');
  });

  it('keeps the last row of a table scrolled to its end in view', () => {
    const total = 100_000;
    const before = 616;
    const end = total * ROW - before; // scrollTop at the end: spacer height minus the viewport
    const offset = offsetKeepingRowInView({ row: total - 1, rowHeight: ROW, offset: end, before, after: 280 });
    assert.equal(offset, total * ROW - 280);
    assert.ok(fullyVisible(total - 1, offset!, 280));
  });

  it('leaves the scroll alone when the row is still visible, when the viewport grows, and when the row was already out of view', () => {
    assert.equal(offsetKeepingRowInView({ row: 5, rowHeight: ROW, offset: 0, before: 600, after: 300 }), undefined);
    assert.equal(offsetKeepingRowInView({ row: 20, rowHeight: ROW, offset: 0, before: 300, after: 600 }), undefined);
    // The user scrolled far from the selection: a resize must not pull the view back to it.
    assert.equal(offsetKeepingRowInView({ row: 3, rowHeight: ROW, offset: 10_000, before: 600, after: 300 }), undefined);
    assert.equal(offsetKeepingRowInView({ row: 500, rowHeight: ROW, offset: 0, before: 600, after: 300 }), undefined);
    // A row only partly visible before was not "in view": left where it is.
    assert.equal(offsetKeepingRowInView({ row: 27, rowHeight: ROW, offset: 0, before: 600, after: 300 }), undefined);
  });

  it('puts the row at the top when the viewport becomes shorter than one row', () => {
    assert.equal(offsetKeepingRowInView({ row: 10, rowHeight: ROW, offset: 0, before: 600, after: 15 }), 10 * ROW);
  });
});
