// What the graph shows, computed from what is loaded: the server's summary (namespace groups and
// the links between them) and the edges of the namespaces fetched so far. Pure: the same inputs
// give the same view; graph.js draws it, list.js mirrors it, details.js explains it.
//
// A namespace is either collapsed (one node `ns:<ns>` whose edges aggregate its members') or
// expanded (its workloads `w:<ns>/<name>`, inside a box `nsbox:<ns>`). Edges touching a namespace
// whose edges are loaded come from those edges; links between namespaces none of whose edges are
// loaded come from the summary (so the browser never needs more than it shows).

import {
  KINDS, edgeId, edgeKind, edgePasses, findMatchesLink, internetName, namespaceId, narrowing,
  needsEdges, targetId, workloadId,
} from './state.js';

const KIND_RANK = { aws: 5, internet: 4, kafka: 3, http: 2, tcp: 1 };
export const INTERNET_GROUP = 'internet';
export const AWS_GROUP = 'aws';

/** The server's summary computed here from edges (used with `#aggregate=off`, where every edge
 * is fetched): the same shape as `GET /v1/tenants/{id}/graph/summary`. */
export function summarize(edges) {
  const workloads = new Map(); // group id -> Set of member ids
  const links = new Map();
  const member = (group, id) => {
    if (!workloads.has(group)) workloads.set(group, new Set());
    workloads.get(group).add(id);
  };
  for (const edge of edges) {
    const c = edge.client;
    const t = edge.target;
    const source = namespaceId(c.namespace);
    member(source, workloadId(c.namespace, c.name));
    let target;
    if (t.type === 'workload') {
      target = namespaceId(t.namespace);
    } else {
      target = t.type === 'aws' ? AWS_GROUP : INTERNET_GROUP;
    }
    member(target, targetId(t));
    const kind = edgeKind(edge);
    const key = `${source}\n${target}\n${kind}`;
    const link = links.get(key) || { source, target, kind, edges: 0 };
    link.edges += 1;
    links.set(key, link);
  }
  const groups = [...workloads].map(([id, members]) => {
    if (id === INTERNET_GROUP) return { id, kind: 'internet', label: 'Internet', workloads: members.size };
    if (id === AWS_GROUP) return { id, kind: 'aws', label: 'AWS', workloads: members.size };
    return { id, kind: 'namespace', label: id.slice(3), workloads: members.size };
  });
  groups.sort((a, b) => a.id.localeCompare(b.id));
  return { groups, links: [...links.values()], edges: edges.length };
}

/** Namespace names of the summary's groups, sorted. */
export function namespacesOf(groups) {
  return groups.filter((g) => g.kind === 'namespace').map((g) => g.label).sort();
}

export function totalWorkloads(groups) {
  return groups.filter((g) => g.kind === 'namespace').reduce((n, g) => n + g.workloads, 0);
}

/** A short label for an AWS ARN: `s3 orders-archive`, `dynamodb table/orders`. */
export function awsLabel(arn) {
  const parts = String(arn).split(':');
  if (parts.length < 6 || parts[0] !== 'arn') return String(arn);
  return `${parts[2]} ${parts.slice(5).join(':')}`;
}

/**
 * @param input.groups, input.links  the summary
 * @param input.edges                loaded edge documents
 * @param input.loadedAll            every edge is loaded
 * @param input.loadedNs             namespaces whose edges are loaded
 * @param input.expanded             namespaces shown as their workloads
 * @param input.filters              state.makeFilters(...)
 * @returns {nodes: Map, containers: Map, edges: Map, notes: string[]}
 */
export function buildView({ groups, links, edges, loadedAll, loadedNs, expanded, filters }) {
  const isLoaded = (ns) => loadedAll || loadedNs.has(ns);
  const isExpanded = (ns) => expanded.has(ns) && isLoaded(ns);
  const byId = new Map(groups.map((g) => [g.id, g]));
  const nodes = new Map();
  const containers = new Map();
  const shown = new Map();
  const chosen = filters.namespaces;
  const narrow = narrowing(filters);

  const addNamespace = (ns) => {
    const id = namespaceId(ns);
    if (!nodes.has(id)) {
      const group = byId.get(id);
      nodes.set(id, { id, kind: 'namespace', label: ns, namespace: ns, workloads: group ? group.workloads : 0 });
    }
    return id;
  };
  const addWorkload = (ns, name, kind) => {
    const id = workloadId(ns, name);
    const parent = `nsbox:${ns}`;
    if (!containers.has(parent)) containers.set(parent, { id: parent, kind: 'container', label: ns, namespace: ns });
    const node = nodes.get(id);
    if (!node) nodes.set(id, { id, kind: 'workload', label: name, namespace: ns, parent, kinds: kind ? [kind] : [] });
    else if (kind && !node.kinds.includes(kind)) node.kinds.push(kind);
    return id;
  };
  const endpoint = (ns, name, kind) => (isExpanded(ns) ? addWorkload(ns, name, kind) : addNamespace(ns));
  const connect = (source, target, kind, weight, edge, link) => {
    const id = edgeId(source, target);
    let e = shown.get(id);
    if (!e) {
      e = { id, source, target, kind, kinds: [], edges: 0, raw: [], links: [] };
      shown.set(id, e);
    }
    if (!e.kinds.includes(kind)) e.kinds.push(kind);
    if (KIND_RANK[kind] > KIND_RANK[e.kind]) e.kind = kind;
    e.edges += weight;
    if (edge) e.raw.push(edge);
    if (link) e.links.push(link);
  };

  for (const edge of edges) {
    if (!edgePasses(filters, edge)) continue;
    const c = edge.client;
    const t = edge.target;
    const source = endpoint(c.namespace, c.name, c.kind);
    let target;
    if (t.type === 'workload') {
      target = endpoint(t.namespace, t.name, t.kind);
    } else if (!isExpanded(c.namespace)) {
      // a collapsed namespace's Internet and AWS calls aggregate too, as the summary's do
      target = t.type === 'aws' ? AWS_GROUP : INTERNET_GROUP;
      if (!nodes.has(target)) {
        const group = byId.get(target);
        nodes.set(target, { id: target, kind: `${t.type}-group`, label: t.type === 'aws' ? 'AWS' : 'Internet', workloads: group ? group.workloads : 0 });
      }
    } else {
      target = targetId(t);
      if (!nodes.has(target)) {
        nodes.set(target, t.type === 'internet'
          ? { id: target, kind: 'internet', label: internetName(t) }
          : { id: target, kind: 'aws', label: awsLabel(t.arn), arn: t.arn });
      }
    }
    connect(source, target, edgeKind(edge), 1, edge, null);
  }

  const label = (groupId) => (byId.get(groupId) || { label: groupId }).label;
  let hiddenLinks = 0;
  for (const link of links) {
    const sourceGroup = byId.get(link.source);
    const targetGroup = byId.get(link.target);
    if (!sourceGroup || !targetGroup || sourceGroup.kind !== 'namespace') continue;
    const sourceNs = sourceGroup.label;
    const targetNs = targetGroup.kind === 'namespace' ? targetGroup.label : null;
    if (isLoaded(sourceNs) || (targetNs !== null && isLoaded(targetNs))) continue; // edges say it
    if (!filters.kinds.has(link.kind)) continue;
    if (chosen.size && !chosen.has(sourceNs) && !(targetNs !== null && chosen.has(targetNs))) continue;
    const searched = !filters.search || [sourceNs, targetNs || ''].some((n) => n.toLowerCase().includes(filters.search));
    if (!searched || !findMatchesLink(filters.find, link, label)) {
      hiddenLinks += 1;
      continue;
    }
    const source = addNamespace(sourceNs);
    let target;
    if (targetNs !== null) {
      target = addNamespace(targetNs);
    } else {
      target = link.target;
      if (!nodes.has(target)) {
        nodes.set(target, { id: target, kind: `${targetGroup.kind}-group`, label: targetGroup.label, workloads: targetGroup.workloads });
      }
    }
    connect(source, target, link.kind, link.edges, null, link);
  }

  if (!narrow) { // every (chosen) namespace shows, with or without edges
    const members = workloadsByNamespace(edges);
    for (const group of groups) {
      if (group.kind !== 'namespace' || (chosen.size && !chosen.has(group.label))) continue;
      const ns = group.label;
      if (!isExpanded(ns)) addNamespace(ns);
      else for (const [name, kind] of members.get(ns) || []) addWorkload(ns, name, kind);
    }
  }

  const notes = [];
  const unloaded = namespacesOfGroups(groups).filter((ns) => !isLoaded(ns));
  if (unloaded.length && (filters.search || needsEdges(filters.find)) && hiddenLinks) {
    notes.push(`${unloaded.length} collapsed namespace${unloaded.length > 1 ? 's are' : ' is'} not loaded yet: `
      + 'the search and find look at workload names and edge details in expanded namespaces only; '
      + 'expand a namespace (or check it under Namespaces) to search in it.');
  }
  for (const e of shown.values()) e.kinds.sort((a, b) => KINDS.indexOf(a) - KINDS.indexOf(b));
  return { nodes, containers, edges: shown, notes };
}

function namespacesOfGroups(groups) {
  return groups.filter((g) => g.kind === 'namespace').map((g) => g.label);
}

/** namespace → [[workload name, kind]] of every client and workload target in the edges. */
export function workloadsByNamespace(edges) {
  const found = new Map();
  const add = (ns, name, kind) => {
    if (!found.has(ns)) found.set(ns, new Map());
    const names = found.get(ns);
    if (!names.has(name) || (!names.get(name) && kind)) names.set(name, kind || '');
  };
  for (const edge of edges) {
    add(edge.client.namespace, edge.client.name, edge.client.kind);
    if (edge.target.type === 'workload') add(edge.target.namespace, edge.target.name, edge.target.kind);
  }
  const result = new Map();
  for (const [ns, names] of found) result.set(ns, [...names]);
  return result;
}

/** The shown graph as data (the "graph JSON" export): nodes with their positions, edges with
 * their kinds and counts. */
export function viewDocument(view, positions, meta) {
  const nodes = [...view.containers.values(), ...view.nodes.values()].map((n) => {
    const out = { id: n.id, kind: n.kind, label: n.label };
    if (n.namespace) out.namespace = n.namespace;
    if (n.parent) out.parent = n.parent;
    if (n.workloads !== undefined) out.workloads = n.workloads;
    if (n.arn) out.arn = n.arn;
    const p = positions && positions.get(n.id);
    if (p) out.position = { x: Math.round(p.x), y: Math.round(p.y) };
    return out;
  });
  const edges = [...view.edges.values()].map((e) => ({
    id: e.id, source: e.source, target: e.target, kind: e.kind, kinds: e.kinds, edges: e.edges,
    methods: [...new Set(e.raw.flatMap((r) => r.methods || []))].sort(),
  }));
  return { ...meta, nodes, edges };
}
