// The cloud API client: the token goes in the Authorization header only (never in a URL), every
// paged route is walked to its end, and failures become one of two errors the page can explain:
// ApiError (the API answered with an error status) or Unreachable (no answer at all).

const PAGE = 5000; // edges a page: well under the route's 10,000 cap and its 6 MB answer
const TIMEOUT_MS = 60000;
const MAX_PAGES = 1000;
// Namespaces one graph request names: the store takes at most 100, and the query stays short.
const NAMESPACES_PER_REQUEST = 50;
const NAMESPACE_CHARS_PER_REQUEST = 1500;
const MAX_THROTTLED_RETRIES = 6;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export class Unreachable extends Error {
  constructor(message) {
    super(message);
    this.name = 'Unreachable';
  }
}

/** Query parameters without the empty ones. */
function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === '' || value === false) continue;
    q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** Namespaces split into groups one request may carry. */
export function namespaceChunks(namespaces) {
  const chunks = [];
  let chunk = [];
  let chars = 0;
  for (const ns of namespaces) {
    if (chunk.length && (chunk.length >= NAMESPACES_PER_REQUEST || chars + ns.length + 1 > NAMESPACE_CHARS_PER_REQUEST)) {
      chunks.push(chunk);
      chunk = [];
      chars = 0;
    }
    chunk.push(ns);
    chars += ns.length + 1;
  }
  if (chunk.length) chunks.push(chunk);
  return chunks;
}

export class Api {
  /** @param base the API's base URL (the console's own origin and path prefix) */
  constructor(base, token) {
    this.base = base.replace(/\/+$/, '');
    this.token = token;
    this.queue = Promise.resolve();
  }

  /** One request at a time: the local cloud answers a tenant's requests beyond its free workers
   * with 429, and the page's requests (a refresh, a drill-down, an export) gain nothing by racing. */
  request(path, params) {
    const turn = this.queue.then(() => this.send(path, params));
    this.queue = turn.catch(() => undefined); // a failed request does not stop the next
    return turn;
  }

  async send(path, params, attempt = 0) {
    const url = `${this.base}${path}${query(params)}`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    let response;
    try {
      response = await fetch(url, {
        headers: { Authorization: `Bearer ${this.token}`, Accept: 'application/json, application/yaml' },
        cache: 'no-store',
        signal: controller.signal,
      });
    } catch (error) {
      const why = error && error.name === 'AbortError' ? `no answer within ${TIMEOUT_MS / 1000} s` : 'the connection failed';
      throw new Unreachable(`Cannot reach the API at ${this.base} (${why}).`);
    } finally {
      clearTimeout(timer);
    }
    if (response.status === 429 && attempt < MAX_THROTTLED_RETRIES) {
      // Throttled (the cloud limits requests per tenant, as API Gateway does): wait as told, retry.
      const told = Number(response.headers.get('Retry-After'));
      const wait = Math.min(Number.isFinite(told) && told > 0 ? told * 1000 : 500 * (attempt + 1), 5000);
      await new Promise((resolve) => setTimeout(resolve, wait));
      return this.send(path, params, attempt + 1);
    }
    if (!response.ok) throw await this.failure(response);
    return response;
  }

  async failure(response) {
    let code = '';
    let message = response.statusText || `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || '';
        message = body.error.message || message;
      } else if (body && body.message) {
        message = body.message;
      }
    } catch (_) {
      // not JSON (a proxy's page): the status says enough
    }
    return new ApiError(response.status, code, message);
  }

  async json(path, params) {
    const response = await this.request(path, params);
    try {
      return await response.json();
    } catch (_) {
      throw new ApiError(response.status, 'bad_response', `${path} did not answer JSON`);
    }
  }

  /** {tenantId, role} of the token. */
  session() {
    return this.json('/v1/session');
  }

  async clusters(tenant) {
    const body = await this.json(`/v1/tenants/${encodeURIComponent(tenant)}/clusters`);
    return body.clusters || [];
  }

  summary(tenant, { cluster, since, namespaces } = {}) {
    return this.json(`/v1/tenants/${encodeURIComponent(tenant)}/graph/summary`, {
      cluster, since, namespace: namespaces && namespaces.join(','),
    });
  }

  /** Every edge of the graph route (pages followed), for some namespaces (null: all). With no
   * cluster chosen the copies of an edge in several clusters come merged (`merge=true`). */
  async edges(tenant, { cluster, since, namespaces } = {}) {
    const path = `/v1/tenants/${encodeURIComponent(tenant)}/graph`;
    const batches = namespaces ? namespaceChunks(namespaces) : [null];
    const all = [];
    for (const chunk of batches) {
      let cursor = null;
      for (let page = 0; page < MAX_PAGES; page += 1) {
        const body = await this.json(path, {
          cluster, since, merge: !cluster, limit: PAGE, cursor,
          namespace: chunk && chunk.join(','),
        });
        all.push(...(body.edges || []));
        cursor = body.nextCursor;
        if (!cursor) break;
      }
    }
    return all;
  }

  /** The export route's body, every page joined in order: YAML streams concatenate (each
   * document starts with `---`); JSON pages (IAM list, edges document) join their lists. One
   * page is returned as it came, byte for byte. */
  async exportText(tenant, format, { cluster, workloads, namespaces } = {}) {
    const path = `/v1/tenants/${encodeURIComponent(tenant)}/export`;
    const pages = [];
    let contentType = '';
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const response = await this.request(path, {
        format, cluster, limit: PAGE, cursor,
        workloads: workloads && workloads.length ? workloads.join(',') : '',
        namespaces: namespaces && namespaces.length ? namespaces.join(',') : '',
      });
      contentType = response.headers.get('Content-Type') || contentType;
      pages.push(await response.text());
      cursor = response.headers.get('X-Next-Cursor');
      if (!cursor) break;
    }
    return { text: joinPages(pages, contentType), contentType };
  }
}

export function joinPages(pages, contentType) {
  if (pages.length === 1 || !contentType.includes('json')) return pages.join('');
  const bodies = pages.map((p) => JSON.parse(p));
  if (Array.isArray(bodies[0])) return JSON.stringify(bodies.flat());
  return JSON.stringify({ ...bodies[0], edges: bodies.flatMap((b) => b.edges || []) });
}

/** An error → what to tell the user: {kind, state, text}. */
export function explain(error, origin) {
  if (error instanceof ApiError) {
    if (error.status === 401) {
      return { state: 'signed-out', kind: 'error', text: 'The token was refused (401): it is unknown or revoked. Paste a read token of your tenant (make demo prints one; an owner mints more with POST /v1/tenants/<tenant id>/tokens).' };
    }
    if (error.status === 403) {
      return { state: 'error', kind: 'error', text: `This token may not read that (403: ${error.message}). Use a read token of the tenant.` };
    }
    if (error.status === 429) {
      return { state: 'error', kind: 'error', text: 'The API is rate limiting this tenant (429). The page retries on the next refresh.' };
    }
    if (error.status >= 500) {
      return { state: 'error', kind: 'error', text: `The API failed: HTTP ${error.status}${error.code ? ` (${error.code})` : ''}: ${error.message}. The page retries every 15 s; press Refresh to retry now.` };
    }
    return { state: 'error', kind: 'error', text: `The API refused the request: HTTP ${error.status}${error.code ? ` (${error.code})` : ''}: ${error.message}.` };
  }
  if (error instanceof Unreachable) {
    return { state: 'error', kind: 'error', text: `${error.message} Check that the cloud is running at ${origin} and that this machine can reach it; the page retries every 15 s.` };
  }
  return { state: 'error', kind: 'error', text: `Something went wrong in the page: ${error && error.message ? error.message : error}.` };
}
