// The graph on the canvas (cytoscape.js, canvas renderer). Positions come from dagre in a Web
// Worker (layout-worker.js) and are applied with cytoscape's preset layout. A view is drawn by
// diffing it into the existing elements, so zoom, pan, selection and positions survive a refresh;
// a layout is computed only when the view shows nodes no earlier layout placed (or on request),
// and layouts are remembered by the nodes they placed, so going back to an earlier view (a filter
// undone) reuses its positions instead of laying out again.
/* global cytoscape, cytoscapeSvg */

import { edgeData, nodeData, nodeSize, style } from './graphstyle.js';

const LAYOUTS_KEPT = 8;
const PARKED_MAX = 20000; // hidden elements kept for reuse

let svgRegistered = false;

export class Graph {
  /**
   * @param container  the element the canvas fills (#graph)
   * @param on.select(ids)            the selection changed (ids of selected nodes/edges)
   * @param on.toggle(namespace, open) a namespace node (open) or box (close) was double-clicked
   */
  constructor(container, on) {
    // cytoscape-svg registers itself when loaded after cytoscape; register it only if it did not
    if (!svgRegistered && typeof cytoscapeSvg !== 'undefined' && !cytoscape('core', 'svg')) cytoscape.use(cytoscapeSvg);
    svgRegistered = true;
    this.on = on;
    this.cy = cytoscape({
      container,
      style: style(),
      layout: { name: 'preset' },
      minZoom: 0.03,
      maxZoom: 3,
      boxSelectionEnabled: true,
      selectionType: 'single',
    });
    this.layouts = []; // [{ids: Set, pos: Map}] most recent first
    this.current = null;
    this.requests = 0;
    this.worker = null;
    this.pending = new Map();
    this.parked = new Map(); // id -> element taken out of the graph, kept for reuse
    this.drawn = false;
    this.bindEvents();
  }

  bindEvents() {
    const cy = this.cy;
    let scheduled = false;
    const selectionChanged = () => {
      if (scheduled) return;
      scheduled = true;
      queueMicrotask(() => {
        scheduled = false;
        this.on.select(cy.$(':selected').map((e) => e.id()));
      });
    };
    cy.on('select unselect', selectionChanged);
    cy.on('tap', 'node, edge', (event) => {
      // a plain tap selects just this element (shift/ctrl add to the selection)
      const original = event.originalEvent;
      if (original && (original.shiftKey || original.ctrlKey || original.metaKey)) return;
      cy.elements(':selected').difference(event.target).unselect();
      event.target.select();
    });
    cy.on('tap', (event) => {
      if (event.target === cy) cy.elements(':selected').unselect();
    });
    cy.on('dbltap', 'node[kind = "namespace"]', (event) => this.on.toggle(event.target.data('namespace'), true));
    cy.on('dbltap', 'node[kind = "container"]', (event) => this.on.toggle(event.target.data('namespace'), false));
    cy.on('dragfree', 'node', (event) => {
      if (!this.current) return;
      const moved = event.target.isParent() ? event.target.descendants() : event.target;
      moved.forEach((n) => { this.current.pos.set(n.id(), { ...n.position() }); });
    });
  }

  layoutWorker() {
    if (!this.worker) {
      this.worker = new Worker(new URL('./layout-worker.js', import.meta.url));
      this.worker.onmessage = (event) => {
        const waiting = this.pending.get(event.data.id);
        if (!waiting) return;
        this.pending.delete(event.data.id);
        if (event.data.error) waiting.reject(new Error(`layout failed: ${event.data.error}`));
        else waiting.resolve(event.data.positions);
      };
      this.worker.onerror = (event) => {
        event.preventDefault();
        for (const waiting of this.pending.values()) waiting.reject(new Error(`layout worker: ${event.message || 'failed to start'}`));
        this.pending.clear();
        this.worker = null;
      };
    }
    return this.worker;
  }

  /** Start the worker (and dagre's parsing in it) before the first layout is needed. */
  warmUp() {
    this.layoutWorker();
  }

  /** A layout still running for a view no longer wanted: stop its worker (dagre cannot be
   * interrupted otherwise) so the next layout does not queue behind it. */
  abandonLayouts() {
    if (!this.pending.size) return;
    this.worker.terminate();
    this.worker = null;
    for (const waiting of this.pending.values()) waiting.resolve(null);
    this.pending.clear();
  }

  layOut(view) {
    const id = ++this.requests;
    const nodes = [...view.nodes.values()].map((n) => ({ id: n.id, parent: n.parent, ...sizeOf(n) }));
    const edges = layoutEdges([...view.edges.values()], nodes.length).map((e) => ({ source: e.source, target: e.target }));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.layoutWorker().postMessage({ id, nodes, edges });
    });
  }

  /** Positions for the view's nodes: a remembered layout that placed them all, else (or when
   * `relayout`) a new one; on a refresh, new nodes go beside a neighbour instead. */
  async positionsFor(view, reason) {
    const ids = [...view.nodes.keys()];
    if (reason === 'refresh' && this.current) {
      placeNewcomers(view, this.current.pos);
      for (const id of ids) this.current.ids.add(id);
      return this.current;
    }
    if (reason !== 'relayout') {
      const known = this.layouts.find((l) => ids.every((id) => l.ids.has(id)));
      if (known) return known;
    }
    const positions = await this.layOut(view);
    if (positions === null) return null; // abandoned for a newer view
    const layout = { ids: new Set(ids), pos: new Map(Object.entries(positions)), fresh: true };
    this.layouts.unshift(layout);
    this.layouts.length = Math.min(this.layouts.length, LAYOUTS_KEPT);
    return layout;
  }

  /** Draw `view`; resolves once drawn. `reason`: 'refresh' (keep everything), 'relayout', or
   * anything else (a user's change). Returns false when a newer call superseded this one. */
  async show(view, { reason = 'change', fit = false } = {}) {
    const generation = (this.generation = (this.generation || 0) + 1);
    this.abandonLayouts();
    const started = performance.now();
    const layout = await this.positionsFor(view, reason);
    if (layout === null || generation !== this.generation) return false;
    const laidOut = performance.now();
    const layoutChanged = layout !== this.current;
    this.current = layout;
    const cy = this.cy;
    cy.batch(() => {
      const wanted = new Set([...view.containers.keys(), ...view.nodes.keys(), ...view.edges.keys()]);
      this.park(cy.elements().filter((el) => !wanted.has(el.id())));
      const restored = this.unpark([...view.containers.keys()], [...view.nodes.keys()], [...view.edges.keys()]);
      const containers = [];
      for (const c of view.containers.values()) {
        if (cy.getElementById(c.id).empty()) containers.push({ group: 'nodes', data: { id: c.id, kind: 'container', label: c.label, namespace: c.namespace } });
      }
      if (containers.length) cy.add(containers);
      const nodes = [];
      for (const n of view.nodes.values()) {
        const data = nodeData(n);
        const position = layout.pos.get(n.id) || { x: 0, y: 0 };
        const existing = cy.getElementById(n.id);
        if (existing.empty()) {
          nodes.push({ group: 'nodes', data, position: { ...position } });
        } else {
          if (existing.data('label') !== data.label || existing.data('w') !== data.w) existing.data(data);
          if (restored.has(n.id) || layoutChanged || reason === 'relayout') {
            // moving a node (even to where it is) recomputes its edges' curves: only when it moves
            const at = existing.position();
            if (at.x !== position.x || at.y !== position.y) existing.position({ ...position });
          }
        }
      }
      if (nodes.length) cy.add(nodes);
      const edges = [];
      for (const e of view.edges.values()) {
        const data = edgeData(e);
        const existing = cy.getElementById(e.id);
        if (existing.empty()) edges.push({ group: 'edges', data });
        else if (existing.data('kind') !== data.kind || existing.data('count') !== data.count || existing.data('width') !== data.width) existing.data(data);
      }
      if (edges.length) cy.add(edges);
    });
    // a new layout for a user's change (expand, collapse, drill down), or a filter that changed
    // what shows, is brought into view; a refresh keeps the user's zoom and pan
    const fresh = layout.fresh === true && reason !== 'refresh';
    layout.fresh = false;
    const ids = [...view.nodes.keys()].sort().join('\n');
    const changed = ids !== this.shownIds;
    this.shownIds = ids;
    if (!this.drawn || fit || fresh || (reason === 'filter' && changed)) {
      cy.fit(this.shown(), 30);
      if (cy.zoom() > 1.6) {
        cy.zoom(1.6);
        cy.center();
      }
    }
    this.drawn = true;
    const applied = performance.now();
    await this.nextDraw();
    this.phases = { layout: laidOut - started, apply: applied - laidOut, draw: performance.now() - applied };
    return generation === this.generation;
  }

  /** Take out what the view no longer shows, but keep it: a filter undone restores it without
   * creating it anew (restoring a thousand edges costs a tenth of adding them, or of showing them
   * again with a class: either recomputes every style). Past a bound the kept ones are dropped. */
  park(leaving) {
    if (leaving.empty()) return;
    leaving.unselect();
    const removed = leaving.remove(); // with the edges of removed nodes, and boxes' members
    if (this.parked.size + removed.length > PARKED_MAX) {
      this.parked.clear();
      return;
    }
    removed.forEach((el) => { this.parked.set(el.id(), el); });
  }

  /** Put back the parked elements among these ids (boxes, then nodes, then edges whose ends are
   * there), all at once; returns the ids put back. */
  unpark(containerIds, nodeIds, edgeIds) {
    const cy = this.cy;
    const back = new Set();
    const take = (ids, usable) => {
      const found = [];
      for (const id of ids) {
        const el = this.parked.get(id);
        if (!el) continue;
        this.parked.delete(id);
        if (usable(el)) {
          found.push(el);
          back.add(id);
        }
      }
      if (found.length) cy.collection(found).restore();
    };
    const present = (id) => cy.getElementById(id).nonempty();
    take(containerIds, () => true);
    take(nodeIds, (el) => !el.data('parent') || present(el.data('parent')));
    take(edgeIds, (el) => present(el.data('source')) && present(el.data('target')));
    return back;
  }

  /** What the graph shows. */
  shown() {
    return this.cy.elements();
  }

  nextDraw() {
    return new Promise((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        requestAnimationFrame(() => resolve());
      };
      this.cy.one('render', finish);
      requestAnimationFrame(() => requestAnimationFrame(finish)); // nothing changed: no render event
    });
  }

  /** Select exactly `ids` (existing ones), and bring the first into view when asked. */
  select(ids, { center = false } = {}) {
    const cy = this.cy;
    const chosen = cy.collection(ids.map((id) => cy.getElementById(id)).filter((el) => el.nonempty()));
    cy.elements(':selected').difference(chosen).unselect();
    chosen.select();
    if (center && chosen.nonempty()) {
      const box = chosen.boundingBox();
      const extent = cy.extent();
      if (box.x1 < extent.x1 || box.x2 > extent.x2 || box.y1 < extent.y1 || box.y2 > extent.y2) cy.center(chosen);
    }
  }

  /** Outline a node while its entry in the list has the keyboard focus. */
  highlight(id) {
    this.cy.$('.focus').removeClass('focus');
    if (id) this.cy.getElementById(id).addClass('focus');
  }

  /** Forget everything drawn (signing out). */
  clear() {
    this.abandonLayouts();
    this.cy.elements().remove();
    this.parked.clear();
    this.layouts = [];
    this.current = null;
    this.drawn = false;
    this.generation = (this.generation || 0) + 1;
  }

  fit() {
    this.cy.fit(this.shown(), 30);
  }

  resize() {
    this.cy.resize();
  }

  positions() {
    const out = new Map();
    this.cy.nodes().forEach((n) => { if (!n.isParent()) out.set(n.id(), n.position()); });
    return out;
  }

  svg() {
    return this.cy.svg({ full: true, bg: '#ffffff', scale: 1 });
  }

  png() {
    return this.cy.png({ full: true, output: 'blob-promise', bg: '#ffffff', scale: 1.5, maxWidth: 12000, maxHeight: 12000 });
  }
}

const LAYOUT_EDGES_PER_NODE = 3;

/** The edges dagre ranks by. Dagre's ranking and crossing reduction grow fast with edges: 928
 * links between 42 namespaces took it 7.5 s. A dense view is laid out by each node's heaviest
 * few edges (every node keeps its strongest ties, so neighbours still sit together); the other
 * edges are drawn all the same, between the positions these give. */
export function layoutEdges(edges, nodeCount) {
  if (edges.length <= LAYOUT_EDGES_PER_NODE * nodeCount) return edges;
  const out = new Map();
  const into = new Map();
  const kept = [];
  for (const e of [...edges].sort((a, b) => b.edges - a.edges || (a.id < b.id ? -1 : 1))) {
    const o = out.get(e.source) || 0;
    const i = into.get(e.target) || 0;
    if (o < LAYOUT_EDGES_PER_NODE || i < LAYOUT_EDGES_PER_NODE) {
      kept.push(e);
      out.set(e.source, o + 1);
      into.set(e.target, i + 1);
    }
  }
  return kept;
}

function sizeOf(node) {
  const { width, height } = nodeSize(node);
  return { width, height };
}

/** Nodes a refresh brings that no layout placed: beside a placed neighbour, else below the rest. */
function placeNewcomers(view, pos) {
  const missing = [...view.nodes.keys()].filter((id) => !pos.has(id));
  if (!missing.length) return;
  let bottom = 0;
  let left = Infinity;
  for (const p of pos.values()) {
    bottom = Math.max(bottom, p.y);
    left = Math.min(left, p.x);
  }
  if (!Number.isFinite(left)) left = 0;
  const beside = new Map();
  for (const e of view.edges.values()) {
    beside.set(e.target, beside.get(e.target) || e.source);
    beside.set(e.source, beside.get(e.source) || e.target);
  }
  let spare = 0;
  const stacked = new Map();
  for (const id of missing) {
    const neighbour = beside.get(id);
    const anchor = neighbour && pos.get(neighbour);
    if (anchor) {
      const k = (stacked.get(neighbour) || 0) + 1;
      stacked.set(neighbour, k);
      pos.set(id, { x: anchor.x + 180, y: anchor.y + 40 * k });
    } else {
      pos.set(id, { x: left + (spare % 6) * 180, y: bottom + 80 + Math.floor(spare / 6) * 50 });
      spare += 1;
    }
  }
}
