// Exports: the cloud's export route (ClientIntents, NetworkPolicy, IAM, JSON — the CLI's own
// exporters) for the whole graph or the selection, downloaded exactly as the route answers (all
// pages joined); and the shown graph itself as JSON, SVG and PNG (its full extent).

import { download } from './dom.js';
import { targetId } from './state.js';
import { viewDocument } from './view.js';

export const ROUTE_EXPORTS = {
  clientintents: { file: 'clientintents.yaml', type: 'application/yaml' },
  networkpolicy: { file: 'networkpolicies.yaml', type: 'application/yaml' },
  iam: { file: 'iam-policies.json', type: 'application/json' },
  json: { file: 'edges.json', type: 'application/json' },
};

/** The selection as the export route's `workloads=` and `namespaces=`: the clients behind what
 * is selected (a workload itself; a namespace's clients; an Internet or AWS node's clients; a
 * connection's client side). */
export function selectionScope(ids, view, edges) {
  const workloads = new Set();
  const namespaces = new Set();
  const client = (id) => {
    if (id.startsWith('w:')) workloads.add(id.slice(2));
    else if (id.startsWith('ns:')) namespaces.add(id.slice(3));
    else if (id.startsWith('nsbox:')) namespaces.add(id.slice(6));
  };
  for (const id of ids) {
    if (id.startsWith('e:')) {
      const e = view.edges.get(id);
      if (e) client(e.source);
    } else if (id.startsWith('inet:') || id.startsWith('aws:')) {
      for (const edge of edges) {
        if (edge.target.type !== 'workload' && targetId(edge.target) === id) {
          workloads.add(`${edge.client.namespace}/${edge.client.name}`);
        }
      }
    } else if (id === 'internet' || id === 'aws') {
      for (const e of view.edges.values()) if (e.target === id) client(e.source);
    } else {
      client(id);
    }
  }
  return { workloads: [...workloads].sort(), namespaces: [...namespaces].sort() };
}

/** Download one of the route's formats; returns the text downloaded. */
export async function downloadRoute(api, tenant, format, { cluster, scope }) {
  const { file, type } = ROUTE_EXPORTS[format];
  const { text } = await api.exportText(tenant, format, { cluster, ...scope });
  download(file, text, type);
  return text;
}

export function downloadGraphJson(view, positions, meta) {
  const text = `${JSON.stringify(viewDocument(view, positions, meta), null, 2)}\n`;
  download('graph.json', text, 'application/json');
}

export function downloadSvg(graph) {
  download('graph.svg', graph.svg(), 'image/svg+xml');
}

export async function downloadPng(graph) {
  download('graph.png', await graph.png(), 'image/png');
}
