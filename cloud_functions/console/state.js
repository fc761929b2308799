// The console's pure state: the URL fragment, the filters and the find expression.
// No DOM and no network here, so every rule can be checked with plain values (the browser tests
// import this module in the page and call it).

export const KINDS = ['tcp', 'http', 'kafka', 'aws', 'internet'];
export const STORAGE = { token: 'nm.token', cluster: 'nm.cluster' };

/** `#token=…&aggregate=off` → {token, aggregate, rest}; `rest` is the fragment without the token,
 * which the page writes back (history.replaceState) so the token leaves the address bar. */
export function parseFragment(hash) {
  const params = new URLSearchParams((hash || '').replace(/^#/, ''));
  const token = (params.get('token') || '').trim();
  params.delete('token');
  return {
    token,
    aggregate: (params.get('aggregate') || 'on').toLowerCase() !== 'off',
    rest: params.toString(),
  };
}

// ------------------------------------------------------------------------- edges

/** An edge's kind, the summary's rule: AWS and Internet by target, else Kafka topics, else HTTP
 * resources, else TCP. */
export function edgeKind(edge) {
  const type = edge.target.type;
  if (type === 'aws') return 'aws';
  if (type === 'internet') return 'internet';
  if (edge.kafkaTopics && edge.kafkaTopics.length) return 'kafka';
  if (edge.http && edge.http.length) return 'http';
  return 'tcp';
}

export const workloadId = (namespace, name) => `w:${namespace}/${name}`;
export const namespaceId = (namespace) => `ns:${namespace}`;
export const edgeId = (source, target) => `e:${source}->${target}`;

/** The node id of an edge's target: a workload, an Internet name (or its first IP), an AWS ARN. */
export function targetId(target) {
  if (target.type === 'workload') return workloadId(target.namespace, target.name);
  if (target.type === 'internet') return `inet:${internetName(target)}`;
  return `aws:${target.arn}`;
}

export function internetName(target) {
  return target.dnsName || (target.ips && target.ips[0]) || '(unknown address)';
}

/** What identifies one edge document among pages and overlapping namespace queries. */
export function edgeKey(edge) {
  const t = edge.target;
  const target = t.type === 'workload' ? [t.namespace, t.name, t.kind || '']
    : t.type === 'internet' ? [t.dnsName, (t.ips || []).join(','), t.port] : [t.arn];
  const c = edge.client;
  return JSON.stringify([c.namespace, c.name, c.kind || '', t.type, ...target, edge.clusterId || '']);
}

/** `since` of the filter (a datetime-local value, or any date text) → epoch ms, or null. */
export function parseSince(text) {
  const value = (text || '').trim();
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

// ------------------------------------------------------------------------- the find expression

const FIND_KEYS = {
  kind: 'kind', ns: 'ns', namespace: 'ns', method: 'method', name: 'name', workload: 'name',
  topic: 'topic', path: 'path', action: 'action', port: 'port',
};
export const FIND_HELP = 'kind: ns: method: name: topic: path: action: port: — space = and, '
  + 'comma = or, leading - = not, * = any characters';

/** Kiali-like find expression → {terms, error}. `kind:kafka ns:shop,db -method:dns cart`: terms
 * joined by and; a term's values (comma-separated) by or; `-` negates a term; a bare word is
 * `name:`. Keys: kind, ns (namespace), method, name (workload), topic, path, action, port. */
export function parseFind(text) {
  const terms = [];
  for (const word of (text || '').trim().split(/\s+/).filter(Boolean)) {
    let negate = false;
    let body = word;
    if (body.startsWith('-') || body.startsWith('!')) {
      negate = true;
      body = body.slice(1);
    }
    const colon = body.indexOf(':');
    const rawKey = colon > 0 ? body.slice(0, colon).toLowerCase() : 'name';
    const rawValue = colon > 0 ? body.slice(colon + 1) : body;
    const key = FIND_KEYS[rawKey];
    if (!key) return { terms: [], error: `unknown key “${rawKey}:” (use ${FIND_HELP})` };
    const values = rawValue.split(',').map((v) => v.trim().toLowerCase()).filter(Boolean);
    if (!values.length) return { terms: [], error: `“${word}” has no value` };
    if (key === 'kind') {
      const bad = values.find((v) => !KINDS.includes(v) && !v.includes('*'));
      if (bad) return { terms: [], error: `kind “${bad}” is not one of ${KINDS.join(', ')}` };
    }
    if (key === 'port' && values.some((v) => !/^\d+$/.test(v))) {
      return { terms: [], error: `port “${rawValue}” is not a number` };
    }
    terms.push({ key, values, negate, matchers: values.map((v) => matcher(key, v)) });
  }
  return { terms, error: null };
}

// Names and paths match anywhere in the text; the others match whole (both allow `*`).
const CONTAINS = new Set(['name', 'topic', 'path']);

function matcher(key, value) {
  if (value.includes('*')) {
    const pattern = value.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
    const re = new RegExp(CONTAINS.has(key) ? pattern : `^${pattern}$`, 'i');
    return (text) => re.test(text);
  }
  if (CONTAINS.has(key)) return (text) => text.toLowerCase().includes(value);
  return (text) => text.toLowerCase() === value;
}

function anyOf(term, texts) {
  return texts.some((text) => term.matchers.some((m) => m(String(text))));
}

/** The texts of an edge a find key looks at. */
function edgeTexts(key, edge) {
  const t = edge.target;
  switch (key) {
    case 'kind': return [edgeKind(edge)];
    case 'ns': return [edge.client.namespace, t.type === 'workload' ? t.namespace : ''];
    case 'method': return edge.methods || [];
    case 'name': return [edge.client.name, t.type === 'workload' ? t.name
      : t.type === 'internet' ? internetName(t) : t.arn, ...(t.ips || [])];
    case 'topic': return (edge.kafkaTopics || []).map((k) => k.name);
    case 'path': return (edge.http || []).map((h) => h.path);
    case 'action': return edge.awsActions || [];
    case 'port': return t.type === 'internet' && t.port ? [String(t.port)] : [];
    default: return [];
  }
}

export function findMatchesEdge(find, edge) {
  return find.terms.every((term) => anyOf(term, edgeTexts(term.key, edge)) !== term.negate);
}

/** A summary link between groups (no edge details): true/false where the term can tell from
 * kinds and namespaces, false where it cannot (the link's edges are not loaded). */
export function findMatchesLink(find, link, labels) {
  return find.terms.every((term) => {
    if (term.key === 'kind') return anyOf(term, [link.kind]) !== term.negate;
    if (term.key === 'ns') return anyOf(term, [labels(link.source), labels(link.target)]) !== term.negate;
    return false;
  });
}

/** Find terms that only loaded edges can answer (for the "expand to search" note). */
export function needsEdges(find) {
  return find.terms.some((t) => t.key !== 'kind' && t.key !== 'ns');
}

// ------------------------------------------------------------------------- filters

/** The filters as the form holds them → the predicates the view applies. */
export function makeFilters({ namespaces = [], search = '', kinds = KINDS, since = '', find = '' } = {}) {
  return {
    namespaces: new Set(namespaces),
    search: search.trim().toLowerCase(),
    kinds: new Set(kinds),
    since: parseSince(since),
    sinceText: since,
    find: parseFind(find),
  };
}

/** Filters that hide edges (beyond namespaces): then only the endpoints of kept edges show. */
export function narrowing(filters) {
  return Boolean(filters.search) || filters.kinds.size < KINDS.length || filters.since !== null
    || filters.find.terms.length > 0;
}

export function edgePasses(filters, edge) {
  if (!filters.kinds.has(edgeKind(edge))) return false;
  if (filters.since !== null && Date.parse(edge.lastSeen) < filters.since) return false;
  const t = edge.target;
  if (filters.namespaces.size && !filters.namespaces.has(edge.client.namespace)
      && !(t.type === 'workload' && filters.namespaces.has(t.namespace))) return false;
  if (filters.search) {
    const names = edgeTexts('name', edge);
    if (!names.some((n) => n.toLowerCase().includes(filters.search))) return false;
  }
  return findMatchesEdge(filters.find, edge);
}
