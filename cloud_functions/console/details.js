// The details panel (#details) for what is selected: a workload's servers (.servers li) and
// clients (.clients li), and per edge the methods that saw it, first/last seen, ports, Kafka
// topics and operations, HTTP paths and methods, AWS actions and resources; a namespace's links;
// an edge's underlying edges. Filters do not apply here: the panel tells the whole truth about
// the selected item, as far as its edges are loaded.

import { esc, when } from './dom.js';
import { edgeKind, internetName, targetId, workloadId } from './state.js';
import { awsLabel } from './view.js';

function targetName(target) {
  if (target.type === 'workload') return target.name;
  if (target.type === 'internet') return internetName(target);
  return target.arn;
}

function targetNote(target) {
  if (target.type === 'workload') return `namespace ${target.namespace}${target.kind ? `, ${target.kind}` : ''}`;
  if (target.type === 'internet') return 'Internet';
  return 'AWS';
}

function row(term, value) {
  return value ? `<dt>${esc(term)}</dt><dd>${value}</dd>` : '';
}

/** One edge's facts, as a definition list (no list items: `.servers li` counts servers). */
export function edgeFacts(edge) {
  const t = edge.target;
  const topics = (edge.kafkaTopics || []).map((k) => {
    const extra = [k.principal ? `as ${k.principal}` : '', k.denied && k.denied.length ? `denied: ${k.denied.join(', ')}` : ''].filter(Boolean).join('; ');
    return `<span class="fact"><code>${esc(k.name)}</code>: ${esc((k.operations || []).join(', ') || '—')}${extra ? ` <small>(${esc(extra)})</small>` : ''}</span>`;
  }).join('');
  const http = (edge.http || []).map((h) => {
    const statuses = h.statuses && h.statuses.length ? ` <small>(${esc(h.statuses.join(', '))})</small>` : '';
    return `<span class="fact"><code>${esc((h.methods || []).join(', ') || 'ANY')} ${esc(h.path)}</code>${statuses}</span>`;
  }).join('');
  const aws = edge.awsActions && edge.awsActions.length
    ? edge.awsActions.map((a) => `<span class="fact"><code>${esc(a)}</code></span>`).join('') : '';
  const ports = t.type === 'internet' && t.port ? esc(String(t.port)) : '';
  // The TCP server ports seen (SYN, socket scan); none: unknown (seen only by DNS, Kafka, Istio, AWS).
  const serverPorts = edge.ports && edge.ports.length ? esc(edge.ports.join(', ')) : '';
  const ips = t.type === 'internet' && t.ips && t.ips.length ? esc(t.ips.join(', ')) : '';
  const clusters = edge.clusterIds ? edge.clusterIds.join(', ') : edge.clusterId || '';
  return `<dl class="facts">${row('Kind', esc(edgeKind(edge)))}${row('Seen by', esc((edge.methods || []).join(', ') || '—'))}`
    + `${row('First seen', `<time datetime="${esc(edge.firstSeen)}">${esc(when(edge.firstSeen))}</time>`)}`
    + `${row('Last seen', `<time datetime="${esc(edge.lastSeen)}">${esc(when(edge.lastSeen))}</time>`)}`
    + `${row('Count', esc(String(edge.count ?? '')))}${row('Port', ports)}${row('Server ports', serverPorts)}`
    + `${row('Addresses', ips)}`
    + `${row('Through Service', edge.targetService ? esc(edge.targetService) : '')}`
    + `${row('Kafka topics', topics)}${row('HTTP', http)}`
    + `${row('AWS resource', t.type === 'aws' ? `<code>${esc(t.arn)}</code>` : '')}${row('AWS actions', aws)}`
    + `${row('Clusters', esc(clusters))}${edge.truncated ? row('Note', 'some details were cut to their bounds') : ''}</dl>`;
}

function grouped(edges, keyOf) {
  const groups = new Map();
  for (const edge of edges) {
    const key = keyOf(edge);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(edge);
  }
  return [...groups].sort((a, b) => a[0].localeCompare(b[0]));
}

function peerItem(id, name, note, edges, shown) {
  const kinds = [...new Set(edges.map(edgeKind))].join(', ');
  const go = shown.has(id) ? `<button type="button" class="link" data-goto="${esc(id)}">${esc(name)}</button>` : `<strong>${esc(name)}</strong>`;
  return `<li data-peer-id="${esc(id)}">${go} <span class="muted">${esc(note)} · ${esc(kinds)}</span>${edges.map(edgeFacts).join('')}</li>`;
}

function workloadDetails(id, ctx) {
  const [ns, name] = id.slice(2).split(/\/(.*)/s);
  const mine = (w) => w.namespace === ns && w.name === name;
  const out = ctx.edges.filter((e) => mine(e.client));
  const into = ctx.edges.filter((e) => e.target.type === 'workload' && mine(e.target));
  const kinds = [...new Set([...out.map((e) => e.client.kind), ...into.map((e) => e.target.kind)].filter(Boolean))];
  const servers = grouped(out, (e) => targetId(e.target)).map(([tid, edges]) => peerItem(tid, targetName(edges[0].target), targetNote(edges[0].target), edges, ctx.shown));
  const clients = grouped(into, (e) => workloadId(e.client.namespace, e.client.name)).map(([cid, edges]) => peerItem(cid, edges[0].client.name, `namespace ${edges[0].client.namespace}`, edges, ctx.shown));
  return `<h2>${esc(name)}</h2><p class="muted">workload in namespace <strong>${esc(ns)}</strong>${kinds.length ? ` · ${esc(kinds.join(', '))}` : ''}</p>`
    + `<h3>Servers (${servers.length})</h3>${servers.length ? `<ul class="servers">${servers.join('')}</ul>` : '<p class="muted servers-none">Calls no one (as far as seen).</p>'}`
    + `<h3>Clients (${clients.length})</h3>${clients.length ? `<ul class="clients">${clients.join('')}</ul>` : '<p class="muted clients-none">No client seen.</p>'}`;
}

function targetDetails(id, ctx) {
  const into = ctx.edges.filter((e) => e.target.type !== 'workload' && targetId(e.target) === id);
  const first = into[0];
  const title = first ? targetName(first.target) : id.replace(/^(inet|aws):/, '');
  const kind = id.startsWith('aws:') ? 'AWS resource' : 'Internet destination';
  const clients = grouped(into, (e) => workloadId(e.client.namespace, e.client.name)).map(([cid, edges]) => peerItem(cid, edges[0].client.name, `namespace ${edges[0].client.namespace}`, edges, ctx.shown));
  const sub = id.startsWith('aws:') ? ` (${esc(awsLabel(title))})` : '';
  return `<h2 class="break">${esc(title)}</h2><p class="muted">${kind}${sub}</p>`
    + `<h3>Clients (${clients.length})</h3>${clients.length ? `<ul class="clients">${clients.join('')}</ul>` : '<p class="muted">No client seen.</p>'}`;
}

function linksOf(id, ctx) {
  const lines = [];
  for (const e of ctx.view.edges.values()) {
    if (e.source !== id && e.target !== id) continue;
    const other = e.source === id ? e.target : e.source;
    const node = ctx.view.nodes.get(other);
    const name = node ? (node.kind === 'namespace' ? `namespace ${node.label}` : node.label) : other;
    const arrow = e.source === id && e.target === id ? 'within' : e.source === id ? '→' : '←';
    lines.push(`<li>${esc(arrow)} <button type="button" class="link" data-goto="${esc(e.id)}">${esc(name)}</button> <span class="muted">${esc(e.kinds.join(', '))}, ${e.edges} edge${e.edges === 1 ? '' : 's'}</span></li>`);
  }
  return lines;
}

function namespaceDetails(id, ctx) {
  const ns = id.slice(id.indexOf(':') + 1);
  const node = ctx.view.nodes.get(id);
  const group = ctx.groups.find((g) => g.id === `ns:${ns}`);
  const count = group ? group.workloads : node ? node.workloads : 0;
  const expanded = id.startsWith('nsbox:');
  const links = expanded ? [] : linksOf(id, ctx);
  const action = expanded
    ? `<button type="button" data-collapse-namespace="${esc(ns)}">Collapse ${esc(ns)}</button>`
    : `<button type="button" data-expand-namespace="${esc(ns)}">Expand ${esc(ns)}</button>`;
  return `<h2>${esc(ns)}</h2><p class="muted">namespace · ${count} workload${count === 1 ? '' : 's'} · ${expanded ? 'expanded' : 'collapsed'}</p><p>${action}</p>`
    + (links.length ? `<h3>Connections (${links.length})</h3><ul class="links">${links.join('')}</ul>` : '');
}

function groupDetails(id, ctx) {
  const group = ctx.groups.find((g) => g.id === id);
  const links = linksOf(id, ctx);
  return `<h2>${esc(group ? group.label : id)}</h2><p class="muted">${group ? group.workloads : 0} destinations of collapsed namespaces; expand a namespace to see which.</p>`
    + `<h3>Clients (${links.length})</h3><ul class="links">${links.join('')}</ul>`;
}

function edgeDetails(id, ctx) {
  const e = ctx.view.edges.get(id);
  if (!e) return '<p class="muted">This connection is no longer shown.</p>';
  const name = (nid) => {
    const node = ctx.view.nodes.get(nid);
    return node ? (node.kind === 'namespace' ? `namespace ${node.label}` : node.kind === 'aws' ? node.arn : node.label) : nid;
  };
  const head = `<h2 class="break">${esc(name(e.source))} → ${esc(name(e.target))}</h2><p class="muted">${esc(e.kinds.join(', '))} · ${e.edges} edge${e.edges === 1 ? '' : 's'}</p>`;
  const raw = e.raw.map((r) => `<section class="edge-facts"><h3>${esc(r.client.name)} → ${esc(targetName(r.target))}</h3>${edgeFacts(r)}</section>`).join('');
  const links = e.links.length
    ? `<p>Between collapsed namespaces whose edges are not loaded: ${e.links.map((l) => `${l.edges} ${esc(l.kind)}`).join(', ')} edge(s). Expand a namespace to see them.</p>`
    : '';
  return head + links + raw;
}

/** The panel's HTML for the selected ids. */
export function detailsHtml(ids, ctx) {
  if (!ids.length) {
    return '<h2>Details</h2><p class="muted">Select a workload, namespace or connection (click it on the graph, or press Enter on it in the list) to see its clients, servers and what was seen on each edge.</p>';
  }
  if (ids.length > 1) {
    const names = ids.map((id) => `<li>${esc(id.replace(/^[a-z]+:/, ''))}</li>`).join('');
    return `<h2>${ids.length} selected</h2><p class="muted">Exports with scope “Selection” cover these.</p><ul class="selection">${names}</ul>`;
  }
  const [id] = ids;
  if (id.startsWith('w:')) return workloadDetails(id, ctx);
  if (id.startsWith('ns:') || id.startsWith('nsbox:')) return namespaceDetails(id, ctx);
  if (id.startsWith('inet:') || id.startsWith('aws:')) return targetDetails(id, ctx);
  if (id.startsWith('e:')) return edgeDetails(id, ctx);
  return groupDetails(id, ctx);
}
