// How the graph looks on the canvas: cytoscape's stylesheet, node sizes and the data each
// element carries. Edges are styled by kind (colour and dash: TCP/DNS, HTTP, Kafka, AWS,
// Internet); workloads, collapsed namespaces, their boxes, Internet and AWS nodes by shape.

export const EDGE_STYLES = {
  tcp: { color: '#4b5563', style: 'solid' },
  http: { color: '#1d4ed8', style: 'solid' },
  kafka: { color: '#b45309', style: 'dashed' },
  aws: { color: '#7e22ce', style: 'dotted' },
  internet: { color: '#047857', style: 'dashed' },
};
const CHAR_PX = 7.8;


export function nodeSize(node) {
  if (node.kind === 'namespace' || node.kind.endsWith('-group')) {
    const text = Math.max(node.label.length, countText(node).length);
    return { width: Math.min(260, Math.max(90, text * CHAR_PX + 28)), height: 46 };
  }
  return { width: Math.min(240, Math.max(56, node.label.length * CHAR_PX + 22)), height: 30 };
}

function countText(node) {
  if (node.kind === 'namespace') return `${node.workloads} workload${node.workloads === 1 ? '' : 's'}`;
  return `${node.workloads} target${node.workloads === 1 ? '' : 's'}`;
}

export function nodeData(node) {
  const size = nodeSize(node);
  const grouped = node.kind === 'namespace' || node.kind.endsWith('-group');
  return {
    id: node.id,
    kind: node.kind,
    label: grouped ? `${node.label}\n${countText(node)}` : node.label,
    parent: node.parent,
    namespace: node.namespace,
    w: size.width,
    h: size.height,
  };
}

export function edgeData(edge) {
  const grouped = edge.links.length > 0 || edge.source.startsWith('ns:') || edge.target.startsWith('ns:');
  return {
    id: edge.id,
    source: edge.source,
    target: edge.target,
    kind: edge.kind,
    width: Math.min(7, 1.4 + Math.log2(edge.edges || 1) * 0.7),
    count: grouped && edge.edges > 1 ? String(edge.edges) : '',
  };
}

export function style() {
  const sheet = [
    {
      selector: 'node',
      style: {
        label: 'data(label)', 'font-size': 13, 'min-zoomed-font-size': 5,
        'font-family': 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif', color: '#111827',
        'text-valign': 'center', 'text-halign': 'center', 'text-wrap': 'wrap', 'text-max-width': 240,
        shape: 'round-rectangle', 'background-color': '#eef4ff', 'border-width': 1.5, 'border-color': '#1d4ed8',
      },
    },
    { selector: 'node[w]', style: { width: 'data(w)', height: 'data(h)' } },
    {
      selector: 'node[kind = "namespace"]',
      style: { shape: 'barrel', 'background-color': '#fef3c7', 'border-color': '#92400e', 'border-width': 2, 'font-weight': 'bold' },
    },
    {
      selector: 'node[kind = "container"]',
      style: {
        shape: 'round-rectangle', 'background-color': '#f8fafc', 'border-color': '#64748b', 'border-style': 'dashed',
        'border-width': 1.5, 'text-valign': 'top', 'text-halign': 'center', 'font-size': 14, 'font-weight': 'bold',
        color: '#334155', padding: 10, 'text-margin-y': -2,
      },
    },
    { selector: 'node[kind = "internet"], node[kind = "internet-group"]', style: { shape: 'ellipse', 'background-color': '#ecfdf5', 'border-color': '#047857' } },
    { selector: 'node[kind = "aws"], node[kind = "aws-group"]', style: { shape: 'octagon', 'background-color': '#faf5ff', 'border-color': '#7e22ce' } },
    { selector: 'node[kind = "internet-group"], node[kind = "aws-group"]', style: { 'border-style': 'double', 'border-width': 4, 'font-weight': 'bold' } },
    {
      selector: 'edge',
      style: {
        width: 'data(width)', 'curve-style': 'bezier', 'target-arrow-shape': 'triangle', 'arrow-scale': 0.9,
        label: 'data(count)', 'font-size': 10, 'min-zoomed-font-size': 6, color: '#374151', 'text-background-color': '#ffffff',
        'text-background-opacity': 0.85, 'text-background-padding': 1,
      },
    },
    { selector: 'edge:loop', style: { 'loop-direction': '-30deg', 'loop-sweep': '-70deg', 'control-point-step-size': 60 } },
    { selector: ':selected', style: { 'border-width': 4, 'border-color': '#dc2626', 'line-color': '#dc2626', 'target-arrow-color': '#dc2626' } },
    { selector: 'node.focus', style: { 'overlay-color': '#2563eb', 'overlay-opacity': 0.18, 'overlay-padding': 6 } },
  ];
  for (const [kind, s] of Object.entries(EDGE_STYLES)) {
    sheet.splice(sheet.length - 2, 0, {
      selector: `edge[kind = "${kind}"]`,
      style: { 'line-color': s.color, 'target-arrow-color': s.color, 'line-style': s.style, ...(kind === 'internet' ? { 'line-dash-pattern': [9, 3, 2, 3] } : {}) },
    });
  }
  return sheet;
}
