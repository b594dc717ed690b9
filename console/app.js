/* Tenancy console: plain JS, no framework. Reads go to the read API (/api/v1), changes to the
 * Kubernetes API through the operator's forwarder (/console/kube/...), always with the user's own
 * bearer token (sessionStorage). Every piece of data is put in the page as text (never innerHTML). */
'use strict';

const TOKEN_KEY = 'tenancy.console.token';
const KUBE = '/console/kube/apis/tenancy.dev/v1alpha1';
const STATES = ['Draft', 'Active', 'Suspended', 'Archived', 'Deleted'];
const ISOLATIONS = ['shared', 'dedicated', 'hybrid'];
const TRANSITIONS = {
  Draft: ['Active', 'Deleted'], Active: ['Suspended', 'Archived'], Suspended: ['Active', 'Archived'],
  Archived: ['Active', 'Deleted'], Deleted: [],
};
const ACTION_LABEL = { Active: 'Activate', Suspended: 'Suspend', Archived: 'Archive', Deleted: 'Delete' };

const main = document.getElementById('main');

/* ---- DOM helpers ---- */
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
function say(msg) { document.getElementById('status').textContent = msg; }
function show(title, ...kids) {
  main.replaceChildren(h('h1', { id: 'page-title' }, title), ...kids);
  document.title = title + ' - Tenancy console';
  main.focus();
}
function table(headers, rows, caption) {
  return h('table', {}, caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))));
}
function kv(obj) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return h('p', { class: 'muted' }, 'none');
  return table(['name', 'value'], entries.map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)]));
}

/* ---- calls ---- */
function token() { return sessionStorage.getItem(TOKEN_KEY); }
class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.message)) || ('HTTP ' + status));
    this.status = status; this.body = body;
  }
}
async function call(method, url, body) {
  const opts = { method, cache: 'no-store', credentials: 'omit', headers: { Authorization: 'Bearer ' + token(), Accept: 'application/json' } };
  if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  const r = await fetch(url, opts);
  let j = null;
  try { j = await r.json(); } catch (e) { j = null; }
  if (r.status === 401) { signOut('Your token was not accepted (401): sign in again.'); }
  if (!r.ok) throw new ApiError(r.status, j);
  return j;
}
const readapi = (path) => call('GET', '/api/v1' + path);
const kube = (method, path, body) => call(method, KUBE + path, body);
const enc = encodeURIComponent;

/* ---- sign-in ---- */
function signOut(msg) {
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById('nav').hidden = true;
  location.hash = '#/signin';
  if (msg) setTimeout(() => { const e = document.getElementById('signin-error'); if (e) e.textContent = msg; }, 0);
}
function signIn() {
  const err = h('p', { id: 'signin-error', class: 'error', role: 'alert' });
  const ta = h('textarea', { id: 'token', rows: 4, cols: 60, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'token-help' });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const t = ta.value.trim();
      if (!t) { err.textContent = 'Paste a bearer token.'; ta.focus(); return; }
      sessionStorage.setItem(TOKEN_KEY, t);
      try {
        await readapi('/tenants?limit=1');
      } catch (e) {
        if (e.status !== 403) { sessionStorage.removeItem(TOKEN_KEY); err.textContent = 'Sign-in failed: ' + e.message; return; }
      }
      document.getElementById('nav').hidden = false;
      location.hash = '#/tenants';
    },
  },
  h('label', { for: 'token' }, 'Bearer token'),
  h('p', { id: 'token-help', class: 'muted' }, 'A ServiceAccount token (kubectl create token NAME) or your OIDC id token. It stays in this tab (sessionStorage) and is sent only to this operator, which passes it on to the Kubernetes API as it is.'),
  ta, h('p', {}, h('button', { type: 'submit', id: 'signin' }, 'Sign in')), err);
  show('Sign in', form);
}

/* ---- directory ---- */
async function directory(params) {
  const f = { q: params.get('q') || '', plan: params.get('plan') || '', region: params.get('region') || '', state: params.get('state') || '', isolation: params.get('isolation') || '' };
  const limit = params.get('limit') || '50';
  const cont = params.get('continue') || '';
  const prev = params.get('prev') ? params.get('prev').split(',') : [];
  const input = (name, label) => h('div', {}, h('label', { for: 'f-' + name }, label), h('input', { id: 'f-' + name, name, value: f[name], type: 'search' }));
  const select = (name, label, opts) => h('div', {}, h('label', { for: 'f-' + name }, label),
    h('select', { id: 'f-' + name, name }, h('option', { value: '' }, 'any'), opts.map((o) => h('option', { value: o, selected: o === f[name] }, o))));
  const form = h('form', {
    class: 'filters', role: 'search',
    onsubmit: (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      for (const k of Object.keys(f)) { const v = form.elements[k].value.trim(); if (v) p.set(k, v); }
      p.set('limit', limit);
      location.hash = '#/tenants?' + p.toString();
    },
  }, input('q', 'Search (id, name, external id)'), input('plan', 'Plan'), input('region', 'Region'),
  select('state', 'State', STATES), select('isolation', 'Isolation', ISOLATIONS), h('button', { type: 'submit' }, 'Apply filters'));
  const counts = h('ul', { class: 'counts', 'aria-label': 'Tenants by state' });
  const results = h('div', { id: 'results', 'aria-live': 'polite' }, h('p', {}, 'Loading…'));
  show('Tenants', form, h('h2', {}, 'By state'), counts, h('h2', {}, 'Directory'), results);

  const base = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) base.set(k, v);
  const t0 = performance.now();
  try {
    const q = new URLSearchParams(base); q.set('limit', limit); if (cont) q.set('continue', cont);
    q.set('counts', 'state'); /* the counts by state come with the page, from the same snapshot */
    const list = await readapi('/tenants?' + q.toString());
    const ms = Math.round(performance.now() - t0);
    const by = (list.metadata && list.metadata.countsByState) || {};
    counts.replaceChildren(...STATES.map((s) => h('li', { 'data-state': s }, `${s}: ${by[s] || 0}`)));
    const rows = list.items.map((t) => [
      h('a', { href: '#/tenants/' + enc(t.metadata.name) }, t.metadata.name),
      (t.spec && t.spec.displayName) || '',
      (t.status && t.status.state) || (t.spec && t.spec.state) || '',
      (t.spec && t.spec.plan) || '',
      (t.status && t.status.placement && t.status.placement.region) || '',
      (t.status && t.status.placement && t.status.placement.isolation) || (t.spec && t.spec.isolation) || '',
    ]);
    const pager = h('div', { class: 'pager' });
    const go = (c, p) => { const n = new URLSearchParams(base); n.set('limit', limit); if (c) n.set('continue', c); if (p.length) n.set('prev', p.join(',')); location.hash = '#/tenants?' + n.toString(); };
    if (cont) pager.append(h('button', { type: 'button', class: 'secondary', id: 'prev-page', onclick: () => go(prev[prev.length - 1] || '', prev.slice(0, -1)) }, 'Previous page'));
    if (list.metadata && list.metadata.continue) pager.append(h('button', { type: 'button', id: 'next-page', onclick: () => go(list.metadata.continue, cont ? prev.concat([cont]) : prev.concat([''])) }, 'Next page'));
    pager.append(h('span', { class: 'muted', id: 'page-info' }, `${list.items.length} on this page (page ${prev.length + 1}), ${ms} ms`));
    results.replaceChildren(rows.length ? table(['Id', 'Name', 'State', 'Plan', 'Region', 'Isolation'], rows, 'Tenants') : h('p', {}, 'No tenant matches.'), pager);
    say(`${list.items.length} tenants shown`);
  } catch (e) {
    results.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'Cannot list tenants: ' + e.message));
  }
}

/* ---- tenant profile ---- */
function conditionsTable(conds) {
  if (!conds || !conds.length) return h('p', { class: 'muted' }, 'none yet');
  return table(['Type', 'Status', 'Reason', 'Message', 'Since'], conds.map((c) => [c.type, h('span', { class: 'badge ' + c.status }, c.status), c.reason || '', c.message || '', c.lastTransitionTime || '']), 'Conditions');
}
async function profile(id) {
  show('Tenant ' + id, h('p', {}, 'Loading…'));
  let t;
  try { t = await readapi('/tenants/' + enc(id)); } catch (e) {
    show('Tenant ' + id, h('p', { class: 'error', role: 'alert' }, `Cannot read tenant ${id}: ${e.message}`));
    return;
  }
  const spec = t.spec || {}; const st = t.status || {};
  const state = st.state || spec.state || 'Draft';
  const actions = h('div', { class: 'actions', id: 'actions' });
  for (const to of TRANSITIONS[spec.state || 'Draft'] || []) {
    const label = (spec.state === 'Suspended' && to === 'Active') ? 'Resume' : (spec.state === 'Archived' && to === 'Active') ? 'Restore' : ACTION_LABEL[to];
    actions.append(h('button', { type: 'button', class: to === 'Deleted' ? 'danger' : '', 'data-action': to, onclick: () => lifecycleDialog(t, to, label) }, label));
  }
  const contacts = (spec.contacts || []).map((c) => [c.role || '', c.name || '', c.email || '']);
  const audit = h('div', { id: 'audit', 'aria-live': 'polite' }, h('p', {}, 'Loading…'));
  const history = h('div', { id: 'history', 'aria-live': 'polite' }, h('p', {}, 'Loading…'));
  show('Tenant ' + id,
    h('p', {}, h('strong', {}, spec.displayName || id), ' · state ', h('span', { id: 'tenant-state', class: 'badge' }, state),
      spec.state && spec.state !== state ? ` (requested ${spec.state})` : '', spec.stateReason ? ` · reason: ${spec.stateReason}` : ''),
    h('h2', {}, 'Lifecycle'), actions.childElementCount ? actions : h('p', { class: 'muted' }, 'No further transition: Deleted is final.'),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-contacts' }, h('h2', { id: 'h-contacts' }, 'Contacts'), contacts.length ? table(['Role', 'Name', 'Email'], contacts) : h('p', { class: 'muted' }, 'none')),
      h('section', { class: 'card', 'aria-labelledby': 'h-xid' }, h('h2', { id: 'h-xid' }, 'External ids'), kv(spec.externalIds)),
      h('section', { class: 'card', 'aria-labelledby': 'h-plan' }, h('h2', { id: 'h-plan' }, 'Plan ', spec.plan || ''),
        h('h3', {}, 'Quotas'), kv((st.derived || {}).quotas), h('h3', {}, 'Rate limits'), kv((st.derived || {}).rateLimits), h('h3', {}, 'Features'), kv((st.derived || {}).features)),
      h('section', { class: 'card', 'aria-labelledby': 'h-place' }, h('h2', { id: 'h-place' }, 'Placement'),
        kv({ region: (st.placement || {}).region || '-', isolation: (st.placement || {}).isolation || spec.isolation || '-', allowedRegions: ((spec.residency || {}).allowedRegions || []).join(', ') || 'any', preferredRegion: (spec.residency || {}).preferredRegion || '-', flags: ((spec.residency || {}).flags || []).join(', ') || '-' })),
      h('section', { class: 'card', 'aria-labelledby': 'h-ns' }, h('h2', { id: 'h-ns' }, 'Namespaces'), (st.namespaces || []).length ? h('ul', {}, st.namespaces.map((n) => h('li', {}, n))) : h('p', { class: 'muted' }, 'none')),
      h('section', { class: 'card', 'aria-labelledby': 'h-db' }, h('h2', { id: 'h-db' }, 'Database'), kv(st.database))),
    h('h2', {}, 'Conditions'), conditionsTable(st.conditions),
    h('h2', {}, 'Timeline'), h('p', { class: 'muted' }, 'Times: ', ['createdAt', 'activatedAt', 'suspendedAt', 'archivedAt', 'deletedAt'].filter((k) => st[k]).map((k) => `${k} ${st[k]}`).join(' · ') || 'none'),
    h('section', { 'aria-labelledby': 'h-audit' }, h('h2', { id: 'h-audit' }, 'Audit timeline'),
      h('p', { class: 'muted' }, 'The audit trail\'s rows for this tenant (tenancy.audit_events), newest first.'), audit),
    h('section', { 'aria-labelledby': 'h-history' }, h('h2', { id: 'h-history' }, 'History'),
      h('p', { class: 'muted' }, 'Every accepted version of the spec, newest first, with what changed from the version before it.'), history));
  pagedList(audit, '/tenants/' + enc(id) + '/audit', 'audit', (items) => table(['When', 'Actor', 'Action', 'Outcome', 'Generation', 'Correlation id'],
    items.map((r) => [r.at, r.actor, r.action, h('span', { class: 'badge outcome-' + r.outcome }, r.outcome),
      r.generationBefore !== null || r.generationAfter !== null ? `${r.generationBefore ?? '-'} → ${r.generationAfter ?? '-'}` : '', r.correlationId || '']), 'Audit timeline'),
  'No audit rows for this tenant yet.');
  pagedList(history, '/tenants/' + enc(id) + '/history', 'history', (items) => h('ol', { class: 'history' }, items.map((v) =>
    h('li', { class: 'version', 'data-generation': v.generation },
      h('h3', {}, `Generation ${v.generation}`, ' ', h('span', { class: 'muted' }, `${v.at} by ${v.actor}`)),
      h('p', { class: 'muted' }, v.previousGeneration ? `changes from generation ${v.previousGeneration}:` : 'first recorded version:'),
      v.changes.length ? h('ul', { class: 'diff', 'aria-label': `changes in generation ${v.generation}` }, v.changes.map((c) =>
        h('li', { class: 'diff-' + ({ '~': 'changed', '+': 'added', '-': 'removed' }[c[0]] || 'other') }, h('code', {}, c))))
        : h('p', { class: 'muted' }, 'no change to the spec')))),
  'No recorded version yet.');
}

/* A list read a page at a time (?limit&continue), with an "Older" button while there is more. */
async function pagedList(box, path, name, render, empty) {
  const pages = h('div', {});
  const more = h('div', { class: 'pager' });
  box.replaceChildren(pages, more);
  async function load(cont) {
    more.replaceChildren(h('span', { class: 'muted' }, 'Loading…'));
    try {
      const page = await readapi(path + '?limit=20' + (cont ? '&continue=' + enc(cont) : ''));
      if (!cont && !page.items.length) { box.replaceChildren(h('p', { class: 'muted' }, empty)); return; }
      pages.append(render(page.items));
      more.replaceChildren();
      const next = page.metadata && page.metadata.continue;
      if (next) more.append(h('button', { type: 'button', class: 'secondary', id: name + '-older', onclick: () => load(next) }, 'Older'));
    } catch (e) { more.replaceChildren(h('p', { class: 'error', role: 'alert' }, `Cannot read the ${name}: ${e.message}`)); }
  }
  await load('');
}

function lifecycleDialog(t, to, label) {
  const id = t.metadata.name;
  const err = h('p', { class: 'error', role: 'alert', id: 'action-error' });
  const reason = h('input', { id: 'action-reason', maxlength: 256 });
  const confirm = to === 'Deleted' ? h('input', { id: 'action-confirm', autocomplete: 'off', 'aria-describedby': 'confirm-help' }) : null;
  const dlg = h('dialog', { 'aria-labelledby': 'dlg-title' });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (confirm && confirm.value !== id) { err.textContent = `Type ${id} to confirm.`; confirm.focus(); return; }
      const spec = { state: to };
      if (reason.value.trim()) spec.stateReason = reason.value.trim();
      if (confirm) spec.deletionConfirmation = confirm.value;
      try {
        await kube('PATCH', '/tenants/' + enc(id), { spec });
        dlg.close(); dlg.remove();
        say(`${label}: requested for ${id}`);
        setTimeout(() => profile(id), 300);
      } catch (e) { err.textContent = 'Refused: ' + e.message; }
    },
  },
  h('h2', { id: 'dlg-title' }, `${label} tenant ${id}?`),
  h('p', {}, `spec.state becomes ${to}.`),
  h('label', { for: 'action-reason' }, 'Reason (recorded with the transition)'), reason,
  confirm ? [h('label', { for: 'action-confirm' }, `Type the tenant id (${id}) to confirm`), h('p', { id: 'confirm-help', class: 'muted' }, 'Deleted is final: what the tenant owns is removed and the id is never reused.'), confirm] : null,
  err,
  h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'action-submit', class: to === 'Deleted' ? 'danger' : '' }, label),
    h('button', { type: 'button', class: 'secondary', onclick: () => { dlg.close(); dlg.remove(); } }, 'Cancel')));
  dlg.append(form);
  document.body.append(dlg);
  dlg.showModal();
  reason.focus();
}

/* ---- onboarding wizard ---- */
async function wizard() {
  show('Onboard a tenant', h('p', {}, 'Loading plans, regions and policies…'));
  let plans = [], regions = [], policies = [];
  const notes = [];
  try { plans = (await kube('GET', '/plans')).items; } catch (e) { notes.push('plans: ' + e.message); }
  try { regions = (await kube('GET', '/regions')).items; } catch (e) { notes.push('regions: ' + e.message); }
  try { policies = (await kube('GET', '/tenancypolicies')).items; } catch (e) { notes.push('policies: ' + e.message); }
  const flagRules = {}; /* flag -> allowed regions (intersection over the policies) */
  for (const p of policies) for (const r of (p.spec && p.spec.residency) || []) {
    flagRules[r.flag] = flagRules[r.flag] ? flagRules[r.flag].filter((x) => (r.allowedRegions || []).includes(x)) : (r.allowedRegions || []).slice();
  }
  const fieldErr = (name) => h('span', { class: 'field-error', id: 'err-' + name, 'data-field': name, role: 'alert' });
  const text = (name, label, attrs) => [h('label', { for: 'w-' + name }, label), h('input', Object.assign({ id: 'w-' + name, name, 'aria-describedby': 'err-' + name }, attrs || {})), fieldErr(name)];
  const regionBox = h('div', { id: 'w-regions', role: 'group', 'aria-labelledby': 'l-regions' });
  const flagsBox = h('div', { role: 'group', 'aria-labelledby': 'l-flags' }, Object.keys(flagRules).length ? Object.keys(flagRules).map((f) => h('label', {}, h('input', { type: 'checkbox', name: 'flag', value: f, onchange: () => renderRegions() }), ` ${f} (regions: ${flagRules[f].join(', ') || 'none'})`)) : h('p', { class: 'muted' }, 'No residency flags defined by policy.'));
  const isolation = h('select', { id: 'w-isolation', name: 'isolation', onchange: () => renderRegions(), 'aria-describedby': 'err-spec.isolation' }, ISOLATIONS.map((i) => h('option', { value: i }, i)));
  const datalist = h('datalist', { id: 'region-list' });
  function renderRegions() {
    const iso = isolation.value;
    const flags = [...form.querySelectorAll('input[name=flag]:checked')].map((x) => x.value);
    const checked = new Set([...regionBox.querySelectorAll('input:checked')].map((x) => x.value));
    regionBox.replaceChildren();
    datalist.replaceChildren();
    if (!regions.length) regionBox.append(h('p', { class: 'muted' }, 'No Region is defined (or you may not list them).'));
    for (const r of regions) {
      const name = r.metadata.name; const s = r.spec || {};
      let why = '';
      if (s.available === false) why = 'not available';
      else if (s.isolationModes && !s.isolationModes.includes(iso)) why = `does not host ${iso}`;
      else for (const f of flags) if (!(flagRules[f] || []).includes(name)) why = `not allowed by ${f}`;
      const box = h('input', { type: 'checkbox', name: 'region', value: name, disabled: !!why, checked: !why && checked.has(name) });
      regionBox.append(h('label', {}, box, ` ${name}`, why ? h('span', { class: 'muted' }, ` (${why})`) : ''));
      if (!why) datalist.append(h('option', { value: name }));
    }
  }
  const plan = h('select', { id: 'w-plan', name: 'plan', 'aria-describedby': 'err-spec.plan' }, plans.map((p) => h('option', { value: p.metadata.name }, p.metadata.name)));
  const result = h('div', { id: 'wizard-result', 'aria-live': 'polite' });
  const form = h('form', { id: 'wizard', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); submit(false); } },
    h('fieldset', {}, h('legend', {}, '1. Identity'), text('metadata.name', 'Tenant id (a DNS label)', { required: true }), text('spec.displayName', 'Display name')),
    h('fieldset', {}, h('legend', {}, '2. Plan and isolation'), h('label', { for: 'w-plan' }, 'Plan'), plan, fieldErr('spec.plan'),
      h('label', { for: 'w-isolation' }, 'Isolation'), isolation, fieldErr('spec.isolation')),
    h('fieldset', {}, h('legend', {}, '3. Residency'), h('p', { id: 'l-flags' }, 'Residency flags (TenancyPolicy)'), flagsBox,
      h('p', { id: 'l-regions' }, 'Allowed regions (only those the isolation and the flags permit can be chosen)'), regionBox, fieldErr('spec.residency.allowedRegions'),
      text('spec.residency.preferredRegion', 'Preferred region', { list: 'region-list' }), datalist, fieldErr('spec.residency')),
    h('fieldset', {}, h('legend', {}, '4. Contacts and external ids'),
      text('contact-name', 'Technical contact name'), text('contact-email', 'Technical contact email', { type: 'email' }), fieldErr('spec.contacts'),
      text('externalIds', 'External ids (system=id, comma separated, e.g. billing=cus_1)'), fieldErr('spec.externalIds')),
    h('fieldset', {}, h('legend', {}, '5. Environments'), text('spec.environments', 'Environments (comma separated)', { value: 'prod' }),
      h('label', {}, h('input', { type: 'checkbox', id: 'w-activate', name: 'activate' }), ' Activate at once (else Draft)')),
    h('p', { class: 'error', id: 'err-general', role: 'alert' }),
    h('div', { class: 'actions' }, h('button', { type: 'button', id: 'w-check', class: 'secondary', onclick: () => submit(true) }, 'Check (server dry run)'), h('button', { type: 'submit', id: 'w-create' }, 'Create tenant')),
    result);
  show('Onboard a tenant', notes.length ? h('p', { class: 'error' }, 'Some choices could not be loaded: ' + notes.join('; ')) : '', form);
  renderRegions();

  function body() {
    const v = (n) => form.elements[n] ? form.elements[n].value.trim() : '';
    const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
    const spec = { plan: v('plan'), isolation: isolation.value, state: document.getElementById('w-activate').checked ? 'Active' : 'Draft' };
    if (v('spec.displayName')) spec.displayName = v('spec.displayName');
    const residency = {};
    const allowed = [...regionBox.querySelectorAll('input:checked')].map((x) => x.value);
    if (allowed.length) residency.allowedRegions = allowed;
    if (v('spec.residency.preferredRegion')) residency.preferredRegion = v('spec.residency.preferredRegion');
    const flags = [...form.querySelectorAll('input[name=flag]:checked')].map((x) => x.value);
    if (flags.length) residency.flags = flags;
    if (Object.keys(residency).length) spec.residency = residency;
    if (v('contact-name') || v('contact-email')) spec.contacts = [{ role: 'technical', name: v('contact-name'), email: v('contact-email') }];
    const xids = {};
    for (const p of list(v('externalIds'))) { const i = p.indexOf('='); if (i > 0) xids[p.slice(0, i).trim()] = p.slice(i + 1).trim(); else xids[p] = ''; }
    if (Object.keys(xids).length) spec.externalIds = xids;
    const envs = list(v('spec.environments'));
    if (envs.length) spec.environments = envs;
    return { apiVersion: 'tenancy.dev/v1alpha1', kind: 'Tenant', metadata: { name: v('metadata.name') }, spec };
  }
  function showErrors(e) {
    const causes = (e.body && e.body.details && e.body.details.causes) || [];
    let placed = 0;
    for (const c of causes) {
      const field = (c.field || '').replace(/\[\d+\]$/, '').replace(/\[.*$/, '');
      let slot = null;
      for (let f = field; f && !slot; f = f.includes('.') ? f.slice(0, f.lastIndexOf('.')) : '') slot = form.querySelector(`[data-field="${CSS.escape(f)}"]`);
      if (slot) { slot.textContent = (slot.textContent ? slot.textContent + ' ' : '') + (c.message || c.reason); placed++; const inp = document.getElementById('w-' + field); if (inp) inp.setAttribute('aria-invalid', 'true'); }
    }
    if (placed < causes.length || !causes.length) document.getElementById('err-general').textContent = e.message;
    const first = form.querySelector('.field-error:not(:empty)');
    if (first) { const inp = document.getElementById('w-' + first.dataset.field); (inp || first).focus(); }
  }
  async function submit(dry) {
    form.querySelectorAll('.field-error').forEach((x) => { x.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((x) => x.removeAttribute('aria-invalid'));
    document.getElementById('err-general').textContent = '';
    result.replaceChildren();
    const b = body();
    try {
      await kube('POST', '/tenants?dryRun=All', b); /* every refusal first, with nothing written */
    } catch (e) { showErrors(e); say('The server refused the tenant: see the fields'); return; }
    if (dry) { result.replaceChildren(h('p', { class: 'ok', id: 'dry-ok' }, 'The API server accepts this tenant (dry run: nothing was created).')); return; }
    try {
      await kube('POST', '/tenants', b);
      say('Tenant created'); location.hash = '#/tenants/' + enc(b.metadata.name);
    } catch (e) { showErrors(e); }
  }
}

/* ---- plans and regions ---- */
async function plansPage() {
  show('Plans', h('p', {}, 'Loading…'));
  try {
    const l = await kube('GET', '/plans');
    show('Plans', l.items.length ? table(['Plan', 'Features', 'Quotas', 'Rate limits'], l.items.map((p) => [p.metadata.name, kv((p.spec || {}).features), kv((p.spec || {}).quotas), kv((p.spec || {}).rateLimits)]), 'Plans') : h('p', {}, 'No plan.'));
  } catch (e) { show('Plans', h('p', { class: 'error', role: 'alert' }, 'Cannot list plans: ' + e.message)); }
}
async function regionsPage() {
  show('Regions', h('p', {}, 'Loading…'));
  try {
    const l = await kube('GET', '/regions');
    show('Regions', h('p', { class: 'muted' }, 'Database servers as the Region declares them, and the health the operator reports in the Region\'s conditions.'),
      l.items.length ? table(['Region', 'Available', 'Isolation modes', 'Database servers', 'Health (conditions)'], l.items.map((r) => {
        const s = r.spec || {};
        return [r.metadata.name, String(s.available !== false), (s.isolationModes || []).join(', '),
          (s.databaseServers || []).length ? h('ul', {}, s.databaseServers.map((d) => h('li', {}, `${d.name}: ${d.host}:${d.port || 5432} (${(d.serves || []).join(', ')})`))) : 'none',
          conditionsTable((r.status || {}).conditions)];
      }), 'Regions') : h('p', {}, 'No region.'));
  } catch (e) { show('Regions', h('p', { class: 'error', role: 'alert' }, 'Cannot list regions: ' + e.message)); }
}

/* ---- router ---- */
function route() {
  document.querySelectorAll('dialog').forEach((d) => d.remove());
  const hash = location.hash.slice(1) || '/tenants';
  const [path, qs] = hash.split('?');
  if (!token()) { if (path !== '/signin') { location.hash = '#/signin'; return; } return signIn(); }
  document.getElementById('nav').hidden = false;
  const params = new URLSearchParams(qs || '');
  const m = path.match(/^\/tenants\/([^/]+)$/);
  if (path === '/signin') return signIn();
  if (m) return profile(decodeURIComponent(m[1]));
  if (path === '/new') return wizard();
  if (path === '/plans') return plansPage();
  if (path === '/regions') return regionsPage();
  return directory(params);
}
document.getElementById('signout').addEventListener('click', () => signOut());
window.addEventListener('hashchange', route);
route();
