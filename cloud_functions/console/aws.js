// The AWS view (#aws-view): which workloads call which AWS resources with which actions (a row
// per workload and resource: tr[data-workload=<ns>/<name>]), and each workload's IAM policy as
// the cloud's export route (format=iam) writes it.

import { esc, when } from './dom.js';

/** AWS edges → rows, by workload then resource. */
export function awsRows(edges) {
  return edges
    .filter((e) => e.target.type === 'aws')
    .map((e) => ({
      workload: `${e.client.namespace}/${e.client.name}`,
      namespace: e.client.namespace,
      name: e.client.name,
      arn: e.target.arn,
      actions: e.awsActions || [],
      methods: e.methods || [],
      lastSeen: e.lastSeen,
    }))
    .sort((a, b) => a.workload.localeCompare(b.workload) || a.arn.localeCompare(b.arn));
}

/** The same rows from the IAM export alone (workload, resource, actions), for a graph whose
 * edges are not all loaded: one request instead of every AWS client's namespace. */
export function policyRows(policies) {
  const rows = [];
  for (const p of policies || []) {
    for (const statement of p.policyDocument.Statement || []) {
      rows.push({
        workload: `${p.workload.namespace}/${p.workload.name}`, namespace: p.workload.namespace, name: p.workload.name,
        arn: statement.Resource, actions: statement.Action || [], methods: [], lastSeen: '',
      });
    }
  }
  return rows.sort((a, b) => a.workload.localeCompare(b.workload) || a.arn.localeCompare(b.arn));
}

/** @param edges  the loaded edges when they are all loaded (rows with their last seen), else null */
export function renderAws(root, { edges, policies, status }) {
  const rows = edges ? awsRows(edges) : policyRows(policies);
  const waiting = !edges && policies === null;
  const table = waiting ? `<p class="muted">${esc(status || 'Loading…')}</p>` : rows.length
    ? `<table class="aws"><caption>AWS calls seen: ${rows.length} workload–resource pair${rows.length === 1 ? '' : 's'}</caption>`
      + '<thead><tr><th scope="col">Workload</th><th scope="col">Namespace</th><th scope="col">Resource</th><th scope="col">Actions</th><th scope="col">Last seen</th></tr></thead><tbody>'
      + rows.map((r) => `<tr data-workload="${esc(r.workload)}"><th scope="row">${esc(r.name)}</th><td>${esc(r.namespace)}</td>`
        + `<td class="arn"><code>${esc(r.arn)}</code></td><td>${r.actions.map((a) => `<code>${esc(a)}</code>`).join(' ') || '<span class="muted">none recorded</span>'}</td>`
        + `<td>${r.lastSeen ? `<time datetime="${esc(r.lastSeen)}">${esc(when(r.lastSeen))}</time>` : '<span class="muted">see the graph</span>'}</td></tr>`).join('')
      + '</tbody></table>'
    : '<p class="muted">No workload was seen calling AWS. Pods opt in with the label <code>network-mapper.otterize.com/aws-visibility: "true"</code> when the chart runs with <code>--set aws.visibility.enabled=true</code>.</p>';
  let policyHtml = '';
  if (policies === null) {
    policyHtml = `<p class="muted">${esc(status || 'Loading the IAM policies…')}</p>`;
  } else if (policies.length) {
    policyHtml = policies.map((p) => {
      const workload = `${p.workload.namespace}/${p.workload.name}`;
      return `<section class="policy" data-policy-workload="${esc(workload)}"><h4>${esc(p.workload.name)} <span class="muted">namespace ${esc(p.workload.namespace)} · policy name <code>${esc(p.policyName)}</code></span></h4>`
        + `<pre tabindex="0" aria-label="IAM policy of ${esc(workload)}">${esc(JSON.stringify(p.policyDocument, null, 2))}</pre>`
        + `<button type="button" data-download-policy="${esc(workload)}">Download this policy</button></section>`;
    }).join('');
  } else {
    policyHtml = '<p class="muted">No IAM policy: no AWS action was recorded.</p>';
  }
  root.innerHTML = '<h2>AWS</h2><p class="muted">Which workloads call which AWS resources, with which actions, and the least-privilege IAM policy each needs (the same exporter as the CLI).</p>'
    + `${table}<h3>IAM policy per workload</h3>${policyHtml}`;
}
