// The page's fixed parts: its state and message bar, the filter form, the cluster choice. Plain
// DOM, no knowledge of the graph's data.

import { $, $$, esc } from './dom.js';
import * as state from './state.js';

const root = document.documentElement;

/** `data-state`: signed-out | loading | ready | empty | error (the DOM contract). */
export function setState(value) {
  root.dataset.state = value;
  $('#app').hidden = value === 'signed-out';
  $('#signin-panel').hidden = value !== 'signed-out';
  $('#loading').hidden = value !== 'loading';
}

/** #message: kind error | empty | info (null: hidden), a text, and an element after it. */
export function setMessage(kind, text, extra) {
  const box = $('#message');
  if (!kind) {
    box.hidden = true;
    box.textContent = '';
    delete box.dataset.kind;
    return;
  }
  box.dataset.kind = kind;
  box.textContent = text;
  if (extra) box.append(extra);
  box.hidden = false;
}

/** The command that connects a cluster, with the token left for the user to fill in. */
export function helmCommand(base) {
  return 'helm install network-mapper ./helm/network-mapper -n otterize-system --create-namespace '
    + `--set cloud.token=<YOUR_CLUSTER_TOKEN> --set cloud.url=${base}`;
}

/** The empty state: no cluster, or no edges yet — and the helm command either way. */
export function showEmpty(clusters, base) {
  const lead = clusters.length
    ? `${clusters.length === 1 ? 'The cluster' : 'No cluster of the'} ${clusters.length === 1 ? `“${clusters[0].name}” has` : `${clusters.length} clusters has`} uploaded no edges yet. If the network mapper runs there, its first upload shows here within a minute (the page refreshes every 15 s); otherwise install it with the cluster's token:`
    : 'No cluster is connected to this tenant yet. Install the network mapper in your cluster with the cluster token (an owner gets one with POST /v1/tenants/<tenant id>/clusters):';
  const block = document.createElement('pre');
  const code = document.createElement('code');
  code.textContent = helmCommand(base);
  block.append(code);
  setMessage('empty', lead, block);
  setState('empty');
}

/** The filter form's values as the view's predicates. */
export function readFilters() {
  return state.makeFilters({
    namespaces: $$('#filter-namespace input[name=namespace]:checked').map((i) => i.value),
    search: $('#filter-search').value,
    kinds: $$('input[name=kind]:checked').map((i) => i.value),
    since: $('#filter-since').value,
    find: $('#find').value,
  });
}

/** One checkbox per namespace of the summary, keeping what is checked. */
export function renderNamespaceBoxes(groups) {
  const box = $('#namespace-boxes');
  const checked = new Set($$('input[name=namespace]:checked', box).map((i) => i.value));
  const namespaces = groups.filter((g) => g.kind === 'namespace');
  box.innerHTML = namespaces.map((g) => `<label><input type="checkbox" name="namespace" value="${esc(g.label)}"${checked.has(g.label) ? ' checked' : ''}> ${esc(g.label)} <span class="muted">(${g.workloads})</span></label>`).join('')
    || '<p class="muted">No namespace yet.</p>';
}

/** The namespaces checked under Namespaces. */
export function checkedNamespaces() {
  return new Set($$('#filter-namespace input[name=namespace]:checked').map((i) => i.value));
}

/** Fill the cluster choice; returns the cluster to show: `current` while it exists, else all. */
export function renderClusters(clusters, current) {
  const select = $('#cluster');
  const ids = new Set(clusters.map((c) => c.clusterId));
  const cluster = current && ids.has(current) ? current : '';
  const options = [`<option value="">All clusters (${clusters.length})</option>`]
    .concat(clusters.map((c) => `<option value="${esc(c.clusterId)}">${esc(c.name)}${c.lastHeartbeat ? '' : ' (no heartbeat yet)'}</option>`));
  const html = options.join('');
  if (select.dataset.html !== html) {
    select.innerHTML = html;
    select.dataset.html = html;
  }
  select.value = cluster;
  return cluster;
}
