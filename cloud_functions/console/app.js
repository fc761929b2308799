// The console's behaviour: signing in, loading and live refresh, drawing the view (graph, list,
// details), drilling down, filters, exports and the AWS view. console.js wires the page's events
// to these; page.js holds the page's fixed parts.

import { Api, explain } from './api.js';
import { renderAws } from './aws.js';
import { GraphData, EXPAND_ALL_UP_TO, tenantOf } from './data.js';
import { detailsHtml } from './details.js';
import { $, $$ } from './dom.js';
import { downloadRoute, selectionScope } from './exports.js';
import { Graph } from './graph.js';
import { renderList } from './list.js';
import {
  checkedNamespaces, readFilters, renderClusters, renderNamespaceBoxes, setMessage, setState, showEmpty,
} from './page.js';
import * as state from './state.js';
import { buildView } from './view.js';

export const BASE = new URL('..', import.meta.url).href.replace(/\/$/, ''); // the page is served at <BASE>/
const REFRESH_MS = 15000;
const SELECTION_CHARS = 8000; // the export route's bound on workloads= and namespaces=
const root = document.documentElement;

window.consoleTimings = { firstRender: null, lastFilter: null, lastFilterComplete: null };

export const app = {
  api: null, data: null, graph: null, tenant: '', aggregate: true,
  cluster: '', expanded: new Set(), autoExpanded: new Set(), expandAll: false, known: new Set(),
  view: null, selection: [], timer: null, loading: false, again: null, ready: false, rendering: null,
  filterStarted: null, renders: 0, tab: 'graph', policies: null, awsStatus: '', chosen: new Set(),
};
window.networkMapper = { app, state }; // for the browser tests and the bench: read-only use

export function fail(error) {
  const told = explain(error, BASE);
  if (told.state === 'signed-out') signOut();
  else setState('error'); // a graph drawn before stays visible beneath the message
  setMessage(told.kind, told.text);
}

// ---------------------------------------------------------------------------- drawing

async function render(requested) {
  // a refresh that overtakes a user's change (whose layout is still being computed) draws that
  // change, laid out as the user's change would have been
  const reason = requested === 'refresh' && app.rendering && app.rendering !== 'refresh' ? app.rendering : requested;
  app.rendering = reason;
  const filters = readFilters();
  $('#find').setAttribute('aria-invalid', filters.find.error ? 'true' : 'false');
  $('#find-error').textContent = filters.find.error || '';
  const data = app.data;
  if (!data) return; // signed out meanwhile
  const began = performance.now();
  const view = buildView({
    groups: data.summary.groups, links: data.summary.links, edges: data.edges,
    loadedAll: data.loadedAll, loadedNs: data.loadedNs, expanded: app.expanded, filters,
  });
  app.view = view;
  let drawn = true;
  try {
    drawn = await app.graph.show(view, { reason, fit: reason === 'first' });
  } catch (error) {
    setMessage('error', `The graph could not be laid out (${error.message}); the list below still shows it.`);
  }
  if (!drawn || app.view !== view) return; // a newer render took over
  app.rendering = null;
  const listed = performance.now();
  renderList($('#graph-list'), view, new Set(app.selection));
  app.selection = app.selection.filter((id) => view.nodes.has(id) || view.edges.has(id) || view.containers.has(id));
  renderDetails();
  // where the time went, for the bench: computing the view, the layout, drawing, the list
  window.consoleTimings.phases = { reason, nodes: view.nodes.size, edges: view.edges.size, ...app.graph.phases, total: performance.now() - began, list: performance.now() - listed };
  if (view.nodes.size) root.dataset.drawn = 'true';
  else delete root.dataset.drawn;
  app.renders += 1;
  root.dataset.renders = String(app.renders);
  const now = performance.now();
  if (window.consoleTimings.firstRender === null) window.consoleTimings.firstRender = now;
  if (app.filterStarted !== null) {
    window.consoleTimings.lastFilter = now - app.filterStarted;
    app.filterStarted = null;
  }
  if (app.tab === 'aws') renderAwsView();
}

function renderDetails() {
  const ctx = {
    view: app.view, edges: app.data.edges, groups: app.data.summary.groups,
    shown: new Set([...app.view.nodes.keys(), ...app.view.containers.keys(), ...app.view.edges.keys()]),
  };
  $('#details-body').innerHTML = detailsHtml(app.selection, ctx);
}

function markSelection() {
  const chosen = new Set(app.selection);
  for (const button of $$('#graph-list button.node, #graph-list button.edge')) {
    const li = button.closest('li');
    const id = button.dataset.boxId || li.dataset.nodeId || li.dataset.edgeId;
    if (chosen.has(id)) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
  }
}

// ---------------------------------------------------------------------------- loading

function query() {
  const since = state.parseSince($('#filter-since').value);
  return { cluster: app.cluster, since: since === null ? '' : new Date(since).toISOString() };
}

export async function load({ first }) {
  if (app.loading) { // one load at a time; a change asked for meanwhile loads again after it
    app.again = app.again || (first ? 'first' : 'refresh');
    return;
  }
  const data = app.data; // another sign-in (or a sign-out) makes this load stale
  if (!data) return;
  app.loading = true;
  try {
    if (first && !app.cluster) app.cluster = localStorage.getItem(state.STORAGE.cluster) || '';
    const clusters = await app.api.clusters(app.tenant);
    const fresh = clusters.length ? await data.load({ ...query(), first }) : false;
    if (app.data !== data) return;
    const cluster = renderClusters(clusters, app.cluster);
    if (cluster !== app.cluster) { // the remembered cluster is gone: all clusters, loaded again
      app.cluster = cluster;
      data.reset();
      app.again = 'first';
      return;
    }
    if (!clusters.length) {
      showEmpty(clusters, BASE);
      return;
    }
    if (!fresh) return;
    const namespaces = app.data.namespaces();
    if (first) {
      app.expandAll = app.data.loadedAll;
      app.expanded = new Set(app.expandAll ? namespaces : []);
      app.autoExpanded.clear();
      app.known = new Set(namespaces);
    } else {
      // a small graph shows namespaces that appear since expanded, as it started; the ones the
      // user collapsed stay collapsed
      for (const ns of namespaces) {
        if (!app.known.has(ns) && app.expandAll && app.data.loadedAll) app.expanded.add(ns);
        app.known.add(ns);
      }
    }
    renderNamespaceBoxes(data.summary.groups);
    const since = query().since;
    if (app.data.summary.edges === 0 && !since) {
      showEmpty(clusters, BASE);
      await render(first ? 'first' : 'refresh');
      return;
    }
    await render(first || !app.ready ? 'first' : 'refresh');
    app.ready = true;
    setState('ready');
    if (app.data.summary.edges === 0) setMessage('info', `No edge was seen since ${new Date(since).toLocaleString()}: clear “Seen since” to see older ones.`);
    else setMessage(null);
    $('#updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
    if (app.tab === 'aws' && !first) await loadPolicies();
  } catch (error) {
    if (app.data === data) fail(error);
  } finally {
    app.loading = false;
  }
  if (app.again) {
    const again = app.again;
    app.again = null;
    await load({ first: again === 'first' });
  }
}

export async function start(token) {
  stopTimer();
  app.api = new Api(BASE, token);
  app.ready = false;
  app.cluster = '';
  setMessage(null);
  setState('loading');
  try {
    app.tenant = await tenantOf(app.api);
  } catch (error) {
    fail(error);
    if (root.dataset.state !== 'signed-out') startTimer(() => start(token));
    return;
  }
  app.data = new GraphData(app.api, app.tenant, app.aggregate);
  if (!app.graph) {
    app.graph = new Graph($('#graph'), { select: onSelect, toggle: toggleNamespace });
    app.graph.warmUp();
  }
  await load({ first: true });
  startTimer(() => load({ first: !app.ready }));
}

function startTimer(tick) {
  stopTimer();
  app.timer = setInterval(() => { if (!document.hidden) tick(); }, REFRESH_MS);
}

function stopTimer() {
  if (app.timer) clearInterval(app.timer);
  app.timer = null;
}

export function signOut() {
  stopTimer();
  localStorage.removeItem(state.STORAGE.token);
  app.api = null;
  app.data = null;
  app.view = null;
  app.ready = false;
  app.selection = [];
  app.chosen = new Set();
  // nothing of the tenant stays on the page for the next token
  if (app.graph) app.graph.clear();
  $('#graph-list').innerHTML = '';
  $('#namespace-boxes').innerHTML = '';
  $('#aws-view').innerHTML = '';
  delete root.dataset.drawn;
  setMessage(null);
  setState('signed-out');
}

// ---------------------------------------------------------------------------- user actions

function onSelect(ids) {
  app.selection = ids;
  markSelection();
  renderDetails();
}

export function selectId(id) {
  const view = app.view;
  if (!app.graph || !view || !(view.nodes.has(id) || view.containers.has(id) || view.edges.has(id))) return;
  app.graph.select([id], { center: true });
  app.selection = [id];
  markSelection();
  renderDetails();
}

export async function toggleNamespace(ns, open) {
  if (!app.data) return;
  try {
    if (open) {
      $('#graph-list').setAttribute('aria-busy', 'true');
      if (!(await app.data.ensure([ns], query()))) return;
      app.expanded.add(ns);
    } else {
      app.expanded.delete(ns);
      app.autoExpanded.delete(ns);
    }
    await render('change');
  } catch (error) {
    fail(error);
  } finally {
    $('#graph-list').removeAttribute('aria-busy');
  }
}

export async function onFilterChange(event, started = performance.now()) {
  if (!app.data || !app.graph) return;
  app.filterStarted = started;
  if (event && event.target.id === 'filter-since') {
    await load({ first: false });
    return;
  }
  const chosen = checkedNamespaces();
  const added = [...chosen].filter((ns) => !app.chosen.has(ns));
  for (const ns of app.chosen) {
    if (!chosen.has(ns) && app.autoExpanded.has(ns)) {
      app.expanded.delete(ns);
      app.autoExpanded.delete(ns);
    }
  }
  app.chosen = chosen;
  await render('filter');
  if (!added.length || app.data.loadedAll) return;
  // Drill down: load the chosen namespaces' edges, and show their workloads when few enough.
  try {
    if (!(await app.data.ensure(added, query()))) return;
  } catch (error) {
    fail(error);
    return;
  }
  const current = checkedNamespaces();
  const size = app.data.summary.groups.filter((g) => g.kind === 'namespace' && current.has(g.label)).reduce((n, g) => n + g.workloads, 0);
  const opening = added.filter((ns) => current.has(ns) && !app.expanded.has(ns));
  if (!opening.length || size > EXPAND_ALL_UP_TO) return;
  for (const ns of opening) {
    app.expanded.add(ns);
    app.autoExpanded.add(ns);
  }
  await render('change');
  window.consoleTimings.lastFilterComplete = performance.now() - started;
}

export async function onExport(format) {
  if (!app.api || !app.view) return;
  const scopeName = $('#export-scope').value;
  let scope = { workloads: [], namespaces: [] };
  if (scopeName === 'selection') {
    scope = selectionScope(app.selection, app.view, app.data.edges);
    if (!scope.workloads.length && !scope.namespaces.length) {
      setMessage('info', 'Nothing selected to export: select workloads or namespaces on the graph or in the list, or set the scope to “Whole graph”.');
      return;
    }
    if (scope.workloads.join(',').length > SELECTION_CHARS || scope.namespaces.join(',').length > SELECTION_CHARS) {
      setMessage('info', `The selection is too long for one export (${scope.workloads.length} workloads): select their namespaces instead.`);
      return;
    }
  }
  try {
    await downloadRoute(app.api, app.tenant, format, { cluster: app.cluster, scope });
  } catch (error) {
    fail(error);
  }
}

export async function showTab(name) {
  app.tab = name;
  root.dataset.tab = name;
  for (const tab of $$('[role=tab]')) {
    const on = tab.dataset.tab === name;
    tab.setAttribute('aria-selected', on ? 'true' : 'false');
    tab.tabIndex = on ? 0 : -1;
  }
  $('#graph-panel').hidden = name !== 'graph';
  $('#aws-view').hidden = name !== 'aws';
  if (name === 'graph') {
    if (app.graph) app.graph.resize();
    return;
  }
  app.policies = null;
  app.awsStatus = 'Loading the IAM policies…';
  renderAwsView();
  await loadPolicies();
}

/** The IAM policies of the AWS view (the export route, format=iam), drawn when they come. */
async function loadPolicies() {
  if (!app.api) return;
  try {
    const { text } = await app.api.exportText(app.tenant, 'iam', { cluster: app.cluster });
    app.policies = JSON.parse(text);
  } catch (error) {
    app.awsStatus = explain(error, BASE).text;
  }
  renderAwsView();
}

function renderAwsView() {
  if (!app.data) return;
  const edges = app.data.loadedAll ? app.data.edges : null;
  renderAws($('#aws-view'), { edges, policies: app.policies, status: app.awsStatus });
}
