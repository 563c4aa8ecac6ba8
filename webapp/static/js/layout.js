// Deterministic, sticky positions for the graph.
//
// The picture is a grid: one column per namespace type (plus processes and
// joins), one horizontal band per group (the host, each container, "other").
// A node keeps the slot it got when it first appeared; a freed slot is reused
// by the next newcomer of that cell; a band only grows (in chunks) and a vanished
// group leaves its band vacant for the next new group.  So nodes never jump
// when others come and go - the cost is some empty space, which compact()
// (the "re-layout" button) gives back.

import { NS_TYPES } from "./vocab.js";

const CHUNK = 2;          // rows a band grows by
const GROUP_GAP = 1.4;    // empty rows between bands

export const COLUMNS = (() => {
  const cols = {};
  NS_TYPES.forEach((t, i) => { cols[t] = { x: i, width: 4, step: 0.2 }; });
  cols.proc = { x: NS_TYPES.length + 0.2, width: 5, step: 0.45 };
  cols.join = { x: NS_TYPES.length + 2.6, width: 3, step: 0.45 };
  return cols;
})();

export function columnOf(type) {
  return COLUMNS[type] ? type : "proc";
}

export class LayoutMemory {
  constructor() {
    this.compact();
  }

  compact() {
    this.cells = new Map();     // "group\tcolumn" -> {slots: Map id->slot, free: number[]}
    this.bands = [];            // [{group|null, capacity}] in vertical order
  }

  _cell(group, column) {
    const key = group + "\t" + column;
    let cell = this.cells.get(key);
    if (!cell) this.cells.set(key, (cell = { group, column, slots: new Map(), free: [], next: 0 }));
    return cell;
  }

  // items: [{id, group, column}] (stable sort order decides first slots).
  // groupOrder(a, b): order of brand-new groups when several appear at once.
  // Returns {pos: Map id -> {x, y}, bands: [{group, y0, y1}]}.
  place(items, groupCompare = defaultGroupCompare) {
    const present = new Set(items.map((it) => it.id + "\u0000" + it.group + "\u0000" + it.column));
    // Free the slots of nodes that went away (or moved to another cell).
    for (const cell of this.cells.values()) {
      for (const [id, slot] of cell.slots) {
        if (!present.has(id + "\u0000" + cell.group + "\u0000" + cell.column)) {
          cell.slots.delete(id);
          insertSorted(cell.free, slot);
        }
      }
    }
    for (const it of items) {
      const cell = this._cell(it.group, it.column);
      if (cell.slots.has(it.id)) continue;
      const slot = cell.free.length ? cell.free.shift() : cell.next++;
      cell.slots.set(it.id, slot);
    }
    // Rows each group needs now.
    const need = new Map();
    for (const cell of this.cells.values()) {
      if (cell.slots.size === 0) {
        if (!need.has(cell.group)) need.set(cell.group, 0);
        continue;
      }
      let maxSlot = 0;
      for (const s of cell.slots.values()) if (s > maxSlot) maxSlot = s;
      const rows = Math.floor(maxSlot / COLUMNS[cell.column].width) + 1;
      need.set(cell.group, Math.max(need.get(cell.group) || 0, rows));
    }
    const liveGroups = new Set(items.map((it) => it.group));
    // Vacate bands of groups that are gone; drop their empty cells.
    for (const band of this.bands) {
      if (band.group !== null && !liveGroups.has(band.group)) {
        for (const [key, cell] of this.cells) if (cell.group === band.group) this.cells.delete(key);
        band.group = null;
      }
    }
    const placed = new Set(this.bands.filter((b) => b.group !== null).map((b) => b.group));
    const newcomers = Array.from(liveGroups).filter((g) => !placed.has(g)).sort(groupCompare);
    for (const group of newcomers) {
      const rows = roundUp(need.get(group) || 1);
      const vacant = this.bands.find((b) => b.group === null && b.capacity >= rows);
      if (vacant) vacant.group = group;
      else this.bands.push({ group, capacity: rows });
    }
    for (const band of this.bands) {
      if (band.group !== null) band.capacity = Math.max(band.capacity, roundUp(need.get(band.group) || 1));
    }
    // Bands from the top down: y decreases so the first band is on top.
    const bandPos = new Map();
    const bands = [];
    let y = 0;
    for (const band of this.bands) {
      if (band.group !== null) {
        bandPos.set(band.group, y);
        bands.push({ group: band.group, y0: y + 0.8, y1: y - band.capacity + 0.45 });
      }
      y -= band.capacity + GROUP_GAP;
    }
    const pos = new Map();
    for (const it of items) {
      const cell = this._cell(it.group, it.column);
      const slot = cell.slots.get(it.id);
      const col = COLUMNS[it.column];
      const row = Math.floor(slot / col.width);
      const sub = slot % col.width;
      pos.set(it.id, { x: col.x + sub * col.step, y: bandPos.get(it.group) - row });
    }
    return { pos, bands, height: -y };
  }
}

function roundUp(rows) {
  return Math.max(CHUNK, Math.ceil(rows / CHUNK) * CHUNK);
}

function insertSorted(arr, v) {
  let i = 0;
  while (i < arr.length && arr[i] < v) i++;
  arr.splice(i, 0, v);
}

// host first, then "other", then containers by name.
export function defaultGroupCompare(a, b) {
  const rank = (g) => (g === "host" ? 0 : g === "other" ? 1 : 2);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}
