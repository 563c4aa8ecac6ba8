// A virtualized list of fixed-height rows: only the rows in view (plus a few)
// exist in the DOM, so 200 or 20 000 rows cost the same to sort, filter and
// update.  Row elements are reused: an update rewrites their text in place.

import { el } from "./dom.js";

const OVERSCAN = 6;

export class VirtualList {
  // scroller: the element that scrolls (fixed max-height, overflow auto).
  // renderRow(node, item, index): fill a reused row element for an item.
  constructor(scroller, { rowHeight = 24, renderRow, className = "vrow" }) {
    this.scroller = scroller;
    this.rowHeight = rowHeight;
    this.renderRow = renderRow;
    this.className = className;
    this.items = [];
    this.spacer = el("div", { class: "vspacer" });
    scroller.appendChild(this.spacer);
    this.pool = [];
    this.frame = null;
    scroller.addEventListener("scroll", () => {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => { this.frame = null; this.render(); });
    });
  }

  setItems(items) {
    this.items = items;
    this.spacer.style.height = items.length * this.rowHeight + "px";
    this.render();
  }

  // Rows of the visible window, at absolute offsets inside the spacer.
  render() {
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / this.rowHeight) - OVERSCAN);
    const last = Math.min(this.items.length, Math.ceil((this.scroller.scrollTop + height) / this.rowHeight) + OVERSCAN);
    const needed = Math.max(0, last - first);
    while (this.pool.length < needed) {
      const node = el("div", { class: this.className });
      this.spacer.appendChild(node);
      this.pool.push(node);
    }
    for (let i = 0; i < this.pool.length; i++) {
      const node = this.pool[i];
      if (i >= needed) { node.hidden = true; continue; }
      const index = first + i;
      node.hidden = false;
      node.style.transform = "translateY(" + index * this.rowHeight + "px)";
      this.renderRow(node, this.items[index], index);
    }
  }

  // Scroll so that the item at index is in view.
  reveal(index) {
    const top = index * this.rowHeight;
    const h = this.scroller.clientHeight;
    if (top < this.scroller.scrollTop || top + this.rowHeight > this.scroller.scrollTop + h) {
      this.scroller.scrollTop = Math.max(0, top - h / 3);
    }
    this.render();
  }
}

// Replace a node's children only when its text changed (cheap in-place updates).
export function setCell(node, text, title) {
  if (node.textContent !== text) node.textContent = text;
  if (title !== undefined && node.title !== title) node.title = title;
  return node;
}
