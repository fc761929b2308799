// What the page holds of the tenant's graph: the summary (namespace groups and links), and the
// edges of the namespaces loaded so far (all of them when the graph is small, or with
// `#aggregate=off`). A namespace's edges are fetched when the user expands it or filters to it;
// a refresh fetches again exactly what is loaded.

import { ApiError } from './api.js';
import { edgeKey } from './state.js';
import { namespacesOf, summarize, totalWorkloads } from './view.js';

export const EXPAND_ALL_UP_TO = 150; // workloads: up to this many, everything starts expanded

export class GraphData {
  constructor(api, tenant, aggregate) {
    this.api = api;
    this.tenant = tenant;
    this.aggregate = aggregate;
    this.reset();
  }

  reset() {
    this.summary = { groups: [], links: [], edges: 0 };
    this.byKey = new Map();
    this.loadedAll = false;
    this.loadedNs = new Set();
    this.generation = (this.generation || 0) + 1;
  }

  get edges() {
    return [...this.byKey.values()];
  }

  isLoaded(ns) {
    return this.loadedAll || this.loadedNs.has(ns);
  }

  namespaces() {
    return namespacesOf(this.summary.groups);
  }

  /** Whether the whole graph is small enough to start expanded (one namespace, or few workloads). */
  small() {
    return this.namespaces().length <= 1 || totalWorkloads(this.summary.groups) <= EXPAND_ALL_UP_TO;
  }

  replaceEdges(edges) {
    this.byKey = new Map(edges.map((e) => [edgeKey(e), e]));
  }

  /** Load (first) or reload (refresh) what the page shows. Returns false when a newer load
   * (another cluster, another "since") superseded this one. */
  async load({ cluster, since, first }) {
    const generation = this.generation;
    const query = { cluster, since };
    if (!this.aggregate) {
      const edges = await this.api.edges(this.tenant, query);
      if (generation !== this.generation) return false;
      this.replaceEdges(edges);
      this.summary = summarize(edges);
      this.loadedAll = true;
      return true;
    }
    const summary = await this.api.summary(this.tenant, query);
    if (generation !== this.generation) return false;
    const previous = this.summary;
    this.summary = summary;
    if (first) this.loadedAll = this.small();
    else if (!this.loadedAll && this.small() && previous.groups.length === 0) this.loadedAll = true;
    let edges = [];
    if (this.loadedAll) {
      edges = await this.api.edges(this.tenant, query);
    } else if (this.loadedNs.size) {
      edges = await this.api.edges(this.tenant, { ...query, namespaces: [...this.loadedNs].sort() });
    }
    if (generation !== this.generation) return false;
    this.replaceEdges(edges);
    return true;
  }

  /** Fetch the edges of `namespaces` not loaded yet (added to what is held). */
  async ensure(namespaces, { cluster, since }) {
    const missing = namespaces.filter((ns) => !this.isLoaded(ns));
    if (!missing.length) return true;
    const generation = this.generation;
    const edges = await this.api.edges(this.tenant, { cluster, since, namespaces: missing });
    if (generation !== this.generation) return false;
    for (const e of edges) this.byKey.set(edgeKey(e), e);
    for (const ns of missing) this.loadedNs.add(ns);
    return true;
  }
}

/** The tenant of a token: `GET /v1/session`. */
export async function tenantOf(api) {
  const session = await api.session();
  if (!session || !session.tenantId) throw new ApiError(500, 'bad_response', '/v1/session named no tenant');
  return session.tenantId;
}
