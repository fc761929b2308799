// The layered layout (dagre) off the main thread: the page posts the shown nodes (sizes, the
// namespace box each sits in) and edges; this posts back a position per node. cytoscape then
// places them with its preset layout, so the page stays responsive while a big view is laid out.
/* global dagre, importScripts */

importScripts('vendor/dagre.min.js');

function layout(nodes, edges, compound) {
  const g = new dagre.graphlib.Graph({ compound, multigraph: false });
  // room around nodes for the namespace boxes cytoscape draws (padding and a title above each)
  g.setGraph({ rankdir: 'LR', nodesep: compound ? 30 : 20, ranksep: 70, edgesep: 8, marginx: 20, marginy: 20 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n.id, { width: n.width, height: n.height });
  if (compound) {
    for (const n of nodes) {
      if (n.parent) {
        if (!g.hasNode(n.parent)) g.setNode(n.parent, {});
        g.setParent(n.id, n.parent);
      }
    }
  }
  for (const e of edges) {
    if (e.source !== e.target && g.hasNode(e.source) && g.hasNode(e.target)) g.setEdge(e.source, e.target);
  }
  dagre.layout(g);
  const positions = {};
  for (const n of nodes) {
    const p = g.node(n.id);
    positions[n.id] = { x: p.x, y: p.y };
  }
  return positions;
}

self.onmessage = (event) => {
  const { id, nodes, edges } = event.data;
  const started = performance.now();
  let positions;
  let compound = nodes.some((n) => n.parent);
  try {
    positions = layout(nodes, edges, compound);
  } catch (error) {
    // dagre's compound ranking can fail on some shapes: the flat layout still places every node
    // (cytoscape draws the namespace boxes around their members either way).
    if (!compound) {
      self.postMessage({ id, error: String(error && error.message ? error.message : error) });
      return;
    }
    compound = false;
    positions = layout(nodes, edges, false);
  }
  self.postMessage({ id, positions, compound, ms: performance.now() - started });
};
