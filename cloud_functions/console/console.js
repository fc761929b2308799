// The console's wiring: the page's events to app.js, the URL fragment's token, and start-up.
// The DOM contract (ids, data attributes, states) is the one the browser tests and the bench rely
// on; see index.html.

import {
  app, fail, load, onExport, onFilterChange, selectId, showTab, signOut, start, toggleNamespace,
} from './app.js';
import { $, $$, download } from './dom.js';
import { ROUTE_EXPORTS, downloadGraphJson, downloadPng, downloadSvg } from './exports.js';
import { setState } from './page.js';
import * as state from './state.js';

function bind() {
  $('#sign-in').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('#token').value.trim();
    if (!token) return;
    $('#token').value = '';
    localStorage.setItem(state.STORAGE.token, token);
    start(token);
  });
  $('#sign-out').addEventListener('click', signOut);
  $('.skip').addEventListener('click', (event) => {
    event.preventDefault(); // focus the list itself: the fragment is the sign-in's
    const first = $('#graph-list button');
    if (first) first.focus();
  });
  $('#refresh').addEventListener('click', () => (app.ready ? load({ first: false }) : start(localStorage.getItem(state.STORAGE.token) || '')));
  $('#cluster').addEventListener('change', () => {
    if (!app.data) return;
    app.cluster = $('#cluster').value;
    localStorage.setItem(state.STORAGE.cluster, app.cluster);
    app.data.reset();
    app.ready = false;
    load({ first: true });
  });
  let typing = null;
  const later = (event) => {
    clearTimeout(typing);
    const started = performance.now();
    typing = setTimeout(() => onFilterChange(event, started), 120);
  };
  $('#filter-search').addEventListener('input', later);
  $('#find').addEventListener('input', later);
  $('#filters').addEventListener('change', (event) => {
    if (event.target.id !== 'filter-search' && event.target.id !== 'find') onFilterChange(event);
  });
  $('#filters').addEventListener('submit', (event) => event.preventDefault());
  $('#clear-namespaces').addEventListener('click', () => {
    for (const box of $$('#filter-namespace input[name=namespace]:checked')) box.checked = false;
    onFilterChange(null);
  });
  $('#graph-list').addEventListener('click', (event) => {
    const button = event.target.closest('button');
    if (!button) return;
    if (button.dataset.toggleNamespace !== undefined) {
      toggleNamespace(button.dataset.toggleNamespace, button.getAttribute('aria-expanded') !== 'true');
      return;
    }
    const li = button.closest('li');
    if (li.dataset.kind === 'namespace') { // Enter on a collapsed namespace drills into it
      const ns = li.dataset.nodeId.slice(3);
      toggleNamespace(ns, true).then(() => selectId(`nsbox:${ns}`));
      return;
    }
    const id = button.dataset.boxId || li.dataset.nodeId || li.dataset.edgeId;
    if (id) selectId(id);
  });
  $('#graph-list').addEventListener('focusin', (event) => {
    const li = event.target.closest('li[data-node-id]');
    if (app.graph) app.graph.highlight(li ? li.dataset.nodeId : null);
  });
  $('#graph-list').addEventListener('focusout', () => app.graph && app.graph.highlight(null));
  $('#details').addEventListener('click', (event) => {
    const button = event.target.closest('button');
    if (!button) return;
    if (button.dataset.goto) selectId(button.dataset.goto);
    if (button.dataset.expandNamespace) toggleNamespace(button.dataset.expandNamespace, true);
    if (button.dataset.collapseNamespace) toggleNamespace(button.dataset.collapseNamespace, false);
  });
  for (const format of Object.keys(ROUTE_EXPORTS)) $(`#export-${format}`).addEventListener('click', () => onExport(format));
  $('#export-graph-json').addEventListener('click', () => app.view && downloadGraphJson(app.view, app.graph.positions(), {
    tenantId: app.tenant, cluster: app.cluster || null, generatedAt: new Date().toISOString(),
  }));
  $('#export-svg').addEventListener('click', () => app.graph && downloadSvg(app.graph));
  $('#export-png').addEventListener('click', () => app.graph && downloadPng(app.graph).catch(fail));
  $('#fit').addEventListener('click', () => app.graph && app.graph.fit());
  $('#relayout').addEventListener('click', () => app.view && app.graph.show(app.view, { reason: 'relayout', fit: true }));
  for (const tab of $$('[role=tab]')) tab.addEventListener('click', () => showTab(tab.dataset.tab));
  $('#tabs').addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowRight' && event.key !== 'ArrowLeft') return;
    const next = app.tab === 'graph' ? 'aws' : 'graph';
    showTab(next);
    $(`[role=tab][data-tab="${next}"]`).focus();
  });
  $('#aws-view').addEventListener('click', (event) => {
    const workload = event.target.closest('button') && event.target.closest('button').dataset.downloadPolicy;
    const policy = workload && (app.policies || []).find((p) => `${p.workload.namespace}/${p.workload.name}` === workload);
    if (policy) download(`iam-policy-${workload.replace('/', '-')}.json`, `${JSON.stringify(policy.policyDocument, null, 2)}\n`, 'application/json');
  });
  document.addEventListener('keydown', (event) => {
    const typingInField = event.target.closest && event.target.closest('input, textarea, select, [contenteditable]');
    if (event.key === '/' && !typingInField && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      $('#filter-search').focus();
      $('#filter-search').select();
    }
  });
  window.addEventListener('hashchange', () => {
    const fragment = takeFragment();
    if (fragment.token) start(fragment.token);
  });
  window.addEventListener('resize', () => app.graph && app.graph.resize());
}

/** The fragment's token (saved; then removed from the address bar) and options. */
function takeFragment() {
  const fragment = state.parseFragment(window.location.hash);
  if (!fragment.token) return fragment; // options come with a token (an in-page link is no option)
  app.aggregate = fragment.aggregate;
  localStorage.setItem(state.STORAGE.token, fragment.token);
  const url = `${window.location.pathname}${window.location.search}${fragment.rest ? `#${fragment.rest}` : ''}`;
  history.replaceState(null, '', url);
  return fragment;
}

function main() {
  bind();
  app.aggregate = state.parseFragment(window.location.hash).aggregate;
  takeFragment();
  const token = localStorage.getItem(state.STORAGE.token);
  if (token) {
    start(token);
  } else {
    setState('signed-out');
    $('#token').focus();
  }
}

main();
