// The accessible mirror of the canvas: #graph-list lists every node and edge the graph shows
// (li[data-node-id], li[data-edge-id]), each with a focusable button (Enter opens its details)
// and, for a namespace, the button that collapses or expands it. Screen readers and text tools
// read the graph here; keyboard users navigate it here.

import { esc } from './dom.js';

export function nodeText(node) {
  switch (node.kind) {
    case 'namespace': return `namespace ${node.label}`;
    case 'internet': return node.label;
    case 'aws': return node.arn || node.label;
    case 'internet-group': return 'Internet';
    case 'aws-group': return 'AWS';
    default: return node.label;
  }
}

function nodeTitle(node) {
  switch (node.kind) {
    case 'namespace': return `${node.label} — namespace, ${node.workloads} workload${node.workloads === 1 ? '' : 's'}, collapsed: activate to expand`;
    case 'internet': return `${node.label} (Internet)`;
    case 'aws': return `${node.arn} (AWS)`;
    case 'internet-group': return `Internet — ${node.workloads} target${node.workloads === 1 ? '' : 's'} of collapsed namespaces`;
    case 'aws-group': return `AWS — ${node.workloads} resource${node.workloads === 1 ? '' : 's'} of collapsed namespaces`;
    default: return node.kinds && node.kinds.length ? `${node.label} (${node.kinds.join(', ')})` : node.label;
  }
}

export function edgeText(edge, nodes) {
  const name = (id) => (nodes.get(id) ? nodeText(nodes.get(id)) : id);
  const grouped = edge.links.length > 0 || edge.source.startsWith('ns:') || edge.target.startsWith('ns:');
  const count = grouped ? `, ${edge.edges} edge${edge.edges === 1 ? '' : 's'}` : '';
  return `${name(edge.source)} → ${name(edge.target)} (${edge.kinds.join(', ')}${count})`;
}

const collator = new Intl.Collator(undefined, { numeric: true });
const natural = (a, b) => collator.compare(a, b);

const KIND_ORDER = { namespace: 0, workload: 0, internet: 1, aws: 2, 'internet-group': 3, 'aws-group': 4 };

function nodeItem(node, selected) {
  const current = selected.has(node.id) ? ' aria-current="true"' : '';
  const toggle = node.kind === 'namespace'
    ? ` <button type="button" class="toggle" data-toggle-namespace="${esc(node.namespace)}" aria-expanded="false" aria-label="Expand namespace ${esc(node.namespace)}">Expand</button>`
    : '';
  return `<li data-node-id="${esc(node.id)}" data-kind="${esc(node.kind)}"><button type="button" class="node kind-${esc(node.kind)}"${current} title="${esc(nodeTitle(node))}">${esc(nodeText(node))}</button>${toggle}</li>`;
}

/** Draw the list for `view`, keeping the keyboard focus on the same entry. */
export function renderList(root, view, selected) {
  const focused = document.activeElement && root.contains(document.activeElement) ? focusKey(document.activeElement) : null;
  const byNamespace = new Map();
  const others = [];
  for (const node of view.nodes.values()) {
    if (node.kind === 'workload') {
      if (!byNamespace.has(node.namespace)) byNamespace.set(node.namespace, { workloads: [] });
      byNamespace.get(node.namespace).workloads.push(node);
    } else if (node.kind === 'namespace') {
      if (!byNamespace.has(node.namespace)) byNamespace.set(node.namespace, { workloads: [] });
      byNamespace.get(node.namespace).collapsed = node;
    } else {
      others.push(node);
    }
  }
  const parts = [];
  for (const ns of [...byNamespace.keys()].sort(natural)) {
    const entry = byNamespace.get(ns);
    if (entry.collapsed) parts.push(nodeItem(entry.collapsed, selected));
    if (entry.workloads.length) {
      entry.workloads.sort((a, b) => natural(a.label, b.label));
      const boxSelected = selected.has(`nsbox:${ns}`) ? ' aria-current="true"' : '';
      parts.push(`<li class="namespace" data-namespace="${esc(ns)}"><div class="ns-head">`
        + `<button type="button" class="node kind-container" data-box-id="nsbox:${esc(ns)}"${boxSelected} title="namespace ${esc(ns)}, expanded">namespace ${esc(ns)}</button>`
        + ` <button type="button" class="toggle" data-toggle-namespace="${esc(ns)}" aria-expanded="true" aria-label="Collapse namespace ${esc(ns)}">Collapse</button></div>`
        + `<ul>${entry.workloads.map((n) => nodeItem(n, selected)).join('')}</ul></li>`);
    }
  }
  others.sort((a, b) => (KIND_ORDER[a.kind] - KIND_ORDER[b.kind]) || natural(nodeText(a), nodeText(b)));
  for (const node of others) parts.push(nodeItem(node, selected));

  const edges = [...view.edges.values()].map((e) => [edgeText(e, view.nodes), e]);
  edges.sort((a, b) => natural(a[0], b[0]));
  const edgeItems = edges.map(([text, e]) => {
    const current = selected.has(e.id) ? ' aria-current="true"' : '';
    return `<li data-edge-id="${esc(e.id)}" data-kind="${esc(e.kind)}"><button type="button" class="edge kind-${esc(e.kind)}"${current}>${esc(text)}</button></li>`;
  });

  const workloads = [...view.nodes.values()].filter((n) => n.kind === 'workload').length;
  const collapsed = [...view.nodes.values()].filter((n) => n.kind === 'namespace').length;
  const summary = `${workloads} workload${workloads === 1 ? '' : 's'}, ${collapsed} collapsed namespace${collapsed === 1 ? '' : 's'}, `
    + `${view.nodes.size - workloads - collapsed} other node${view.nodes.size - workloads - collapsed === 1 ? '' : 's'}, `
    + `${view.edges.size} connection${view.edges.size === 1 ? '' : 's'}`;
  const notes = view.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('');
  root.innerHTML = `<div class="list-head"><p class="list-summary">${esc(summary)}</p>${notes}</div>`
    + `<div class="list-col"><h3 id="list-nodes">Nodes</h3><ul class="nodes" aria-labelledby="list-nodes">${parts.join('') || '<li class="none">Nothing to show with these filters.</li>'}</ul></div>`
    + `<div class="list-col"><h3 id="list-edges">Connections</h3><ul class="edges" aria-labelledby="list-edges">${edgeItems.join('') || '<li class="none">No connections with these filters.</li>'}</ul></div>`;
  if (focused) refocus(root, focused);
}

function focusKey(element) {
  const li = element.closest('li[data-node-id], li[data-edge-id], li[data-namespace]');
  if (!li) return null;
  return {
    toggle: element.hasAttribute('data-toggle-namespace') ? element.getAttribute('data-toggle-namespace') : null,
    node: li.getAttribute('data-node-id'),
    edge: li.getAttribute('data-edge-id'),
    box: element.getAttribute('data-box-id'),
  };
}

function refocus(root, key) {
  let target = null;
  if (key.toggle !== null) target = root.querySelector(`button[data-toggle-namespace="${CSS.escape(key.toggle)}"]`);
  if (!target && key.box) target = root.querySelector(`button[data-box-id="${CSS.escape(key.box)}"]`);
  if (!target && key.node) target = root.querySelector(`li[data-node-id="${CSS.escape(key.node)}"] > button.node`);
  if (!target && key.node && key.node.startsWith('ns:')) { // a namespace just expanded: its box
    target = root.querySelector(`button[data-box-id="nsbox:${CSS.escape(key.node.slice(3))}"]`);
  }
  if (!target && key.edge) target = root.querySelector(`li[data-edge-id="${CSS.escape(key.edge)}"] > button`);
  if (target) target.focus({ preventScroll: true });
}
