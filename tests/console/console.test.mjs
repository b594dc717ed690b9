// console.test.mjs - the admin console in a real browser (Debian's chromium, headless, driven by
// playwright-core) against the real operator and API server of the stack in the environment
// (source .local/cluster.env). Run by hack/test.sh (suite "console") or:
//   cd tests/console && npm ci && node --test --test-concurrency=1 console.test.mjs
// Screenshots of each screen go to docs/console/*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = process.env.TENANCY_ROOT || path.resolve(HERE, '../..');
const CHROMIUM = process.env.TENANCY_CHROMIUM || '/usr/bin/chromium';
const RUN = 'c' + Date.now().toString(36).slice(-6);
const LABEL = 'console-test-run';
const LOGDIR = process.env.TENANCY_TEST_LOG_DIR || os.tmpdir();
// Screenshots go beside the logs; TENANCY_CONSOLE_SHOTS=docs refreshes the ones docs/console.md links.
const SHOTS = process.env.TENANCY_CONSOLE_SHOTS === 'docs' ? path.join(ROOT, 'docs/console') : path.join(LOGDIR, 'console');

for (const v of ['KUBECONFIG', 'TENANCY_OPERATOR_BIN', 'TENANCY_TEST_TOKENS_FILE']) {
  if (!process.env[v]) throw new Error(`${v} is not set: source .local/cluster.env and export TENANCY_OPERATOR_BIN`);
}
if (!fs.existsSync(CHROMIUM)) {
  throw new Error(`chromium is missing at ${CHROMIUM}: apt-get install chromium (hack/install-deps.sh installs it)`);
}

let dir, ca, op, apiPort, probePort, ns, adminToken, nobodyToken, alphaToken, browser, opLog;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function kubectl(args, input) {
  return execFileSync('kubectl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
}
function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}
// One HTTPS request to the operator's API listener (its certificate verified with our CA).
function req(method, p, { token, body, contentType } = {}) {
  return new Promise((resolve, reject) => {
    const headers = {};
    if (token) headers.Authorization = 'Bearer ' + token;
    let data;
    if (body !== undefined) { data = typeof body === 'string' ? body : JSON.stringify(body); headers['Content-Type'] = contentType || 'application/json'; headers['Content-Length'] = Buffer.byteLength(data); }
    const r = https.request({ host: '127.0.0.1', port: apiPort, path: p, method, headers, ca }, (res) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { s += c; });
      res.on('end', () => { let json = null; try { json = JSON.parse(s); } catch { /* not JSON */ } resolve({ status: res.statusCode, headers: res.headers, body: s, json }); });
    });
    r.on('error', reject);
    if (data) r.write(data);
    r.end();
  });
}
async function until(what, fn, timeoutMs = 60000) {
  const t0 = Date.now();
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not true after ${timeoutMs} ms (last: ${last && last.message ? last.message : JSON.stringify(last)})`);
    await sleep(250);
  }
}
function tenant(name, spec, extraLabels) {
  return { apiVersion: 'tenancy.dev/v1alpha1', kind: 'Tenant', metadata: { name, labels: Object.assign({ [LABEL]: RUN }, extraLabels || {}) },
    spec: Object.assign({ state: 'Draft', plan: 'starter', isolation: 'shared', residency: { allowedRegions: ['eu-west-1'] }, environments: ['prod'] }, spec) };
}
async function shot(page, name, fullPage = true) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage });
}
async function shotOf(locator, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await locator.scrollIntoViewIfNeeded();
  await locator.screenshot({ path: path.join(SHOTS, name + '.png') });
}
// The profile of id, reloaded until fn(page) holds (history and audit rows are written as the
// operator reconciles).
async function profileUntil(page, id, what, fn, timeoutMs = 90000) {
  return until(what, async () => {
    await page.goto(`https://127.0.0.1:${apiPort}/console/#/tenants/${id}`);
    await page.reload();
    await page.waitForFunction(() => ['history', 'audit'].every((x) => { const e = document.getElementById(x); return e && !e.textContent.includes('Loading'); }));
    return fn(page);
  }, timeoutMs);
}
const texts = (page, sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent));
// The password of the audit database's DSN: never in an answer.
const PG_PASSWORD = (() => { try { return new URL(process.env.TENANCY_PG_DSN || '').password; } catch { return ''; } })();
async function signIn(page, token) {
  await page.goto(`https://127.0.0.1:${apiPort}/console/`);
  await page.waitForSelector('#token');
  // keyboard only: the field, Tab to the button, Enter
  await page.focus('#token');
  await page.keyboard.insertText(token);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'signin', 'Tab from the token field reaches the Sign in button');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#results table, #results p');
}
async function noHorizontalScroll(page, what) {
  const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(sw <= iw + 1, `${what} at 200% zoom scrolls sideways (${sw} > ${iw})`);
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tn-console-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', `${dir}/tls.key`, '-out', `${dir}/tls.crt`], { stdio: 'ignore' });
  ca = fs.readFileSync(`${dir}/tls.crt`);
  // the API, the shipped roles (the console's included), the sample Plans, Regions and policy
  kubectl(['apply', '--server-side', '--force-conflicts', '--field-manager=tenancy-tests', '-f', `${ROOT}/crds/`]);
  kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', `${ROOT}/crds/`]);
  for (const f of ['manifests/deploy/00-namespace.yaml', 'manifests/deploy/20-tenant-roles.yaml', 'manifests/deploy/25-console-roles.yaml',
    'manifests/deploy/45-actor-policy.yaml', 'manifests/samples/00-plans.yaml', 'manifests/samples/01-regions.yaml', 'manifests/samples/02-policies.yaml']) {
    kubectl(['apply', '-f', `${ROOT}/${f}`]);
  }
  ns = 'console-' + RUN;
  kubectl(['create', 'namespace', ns]);
  kubectl(['-n', ns, 'create', 'serviceaccount', 'staff']);
  kubectl(['-n', ns, 'create', 'serviceaccount', 'nobody']);
  kubectl(['create', 'clusterrolebinding', `${ns}-staff`, '--clusterrole=tenancy-console-operator', `--serviceaccount=${ns}:staff`]);
  adminToken = kubectl(['-n', ns, 'create', 'token', 'staff', '--duration=2h']).trim();
  nobodyToken = kubectl(['-n', ns, 'create', 'token', 'nobody', '--duration=2h']).trim();
  // the API server's static tokens: readapi-alpha is in the group readapi-team-alpha
  const line = fs.readFileSync(process.env.TENANCY_TEST_TOKENS_FILE, 'utf8').split('\n').find((l) => l.includes(',readapi-alpha,'));
  alphaToken = line.split(',')[0];

  apiPort = await freePort();
  probePort = await freePort();
  const metricsPort = await freePort();
  opLog = path.join(LOGDIR, `console-operator-${RUN}.log`);
  const fd = fs.openSync(opLog, 'w');
  op = spawn(process.env.TENANCY_OPERATOR_BIN, [`--metrics-bind-address=127.0.0.1:${metricsPort}`, `--health-probe-bind-address=127.0.0.1:${probePort}`,
    `--api-bind-address=127.0.0.1:${apiPort}`, `--api-cert-file=${dir}/tls.crt`, `--api-key-file=${dir}/tls.key`, '--leader-elect=false', '--log-level=debug',
    // one service thread: with more, the HTTP server leaks its TLS contexts at exit (LSan, 700 KB,
    // before the console too; the server is being rewritten), which would fail this suite
    '--api-workers=1'],
  { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  await until('the read API answers', async () => (await req('GET', '/api/v1/tenants?limit=1', { token: adminToken })).status === 200);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});

after(async () => {
  if (browser) await browser.close();
  try { kubectl(['delete', 'tenants', '-l', `${LABEL}=${RUN}`, '--wait=false']); } catch { /* best effort */ }
  // let the operator run the finalizers before it stops
  try { await until('the run\'s tenants are gone', () => kubectl(['get', 'tenants', '-l', `${LABEL}=${RUN}`, '-o', 'name']).trim() === '', 120000); } catch (e) { console.error(e.message); }
  if (op) {
    op.kill('SIGTERM');
    await new Promise((r) => { const t = setTimeout(() => { op.kill('SIGKILL'); r(); }, 20000); op.on('exit', () => { clearTimeout(t); r(); }); });
    const log = fs.readFileSync(opLog, 'utf8');
    assert.doesNotMatch(log, /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/, `the operator's log (${opLog}) has a sanitizer report`);
  }
  try { kubectl(['delete', 'namespace', ns, '--wait=false']); kubectl(['delete', 'clusterrolebinding', `${ns}-staff`]); } catch { /* best effort */ }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the page is served with strict security headers, API answers are never cached', async () => {
  const r = await req('GET', '/console/');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/html/);
  assert.match(r.headers['content-security-policy'], /default-src 'none'; script-src 'self'/);
  assert.doesNotMatch(r.headers['content-security-policy'], /unsafe-inline|unsafe-eval/);
  assert.equal(r.headers['x-frame-options'], 'DENY');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.doesNotMatch(r.body, /<script>|<script [^>]*>[^<]|https?:\/\//, 'no inline script, nothing from another origin');
  assert.equal((await req('GET', '/console/app.js')).headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal((await req('GET', '/console/nope.js')).status, 404);
  assert.equal((await req('GET', '/console')).status, 308);
  assert.equal((await req('GET', '/api/v1/tenants?limit=1', { token: adminToken })).headers['cache-control'], 'no-store');
  assert.equal((await req('GET', '/console/kube/apis/tenancy.dev/v1alpha1/plans', { token: adminToken })).headers['cache-control'], 'no-store');
});

test('the forwarder refuses a request without a token, other paths, verbs and parameters, and the API server sees the user', async () => {
  const base = '/console/kube/apis/tenancy.dev/v1alpha1';
  const t = tenant(`${RUN}-fwd`, {});
  let r = await req('POST', `${base}/tenants?dryRun=All`, { body: t });
  assert.equal(r.status, 401, 'no token: 401 (the operator never acts with its own credentials)');
  r = await req('POST', `${base}/tenants?dryRun=All`, { body: t, token: '' });
  assert.equal(r.status, 401);
  for (const p of ['/console/kube/api/v1/secrets', '/console/kube/api/v1/namespaces/kube-system/secrets', `${base}/tenants/x/status`,
    '/console/kube/apis/rbac.authorization.k8s.io/v1/clusterroles', `${base}/../../../api/v1/secrets`, `${base}/Tenants`]) {
    r = await req('GET', p, { token: adminToken });
    // 404 from the forwarder; a `..` segment is already refused by the HTTP server (400)
    assert.ok(p.includes('/../') ? r.status === 400 : r.status === 404, `${p} must not be forwarded: ${r.status} ${r.body}`);
  }
  r = await req('GET', `${base}/tenants?watch=true`, { token: adminToken });
  assert.equal(r.status, 400, 'watch is not forwarded');
  r = await req('POST', `${base}/tenants?dryRun=Nope`, { token: adminToken, body: t });
  assert.equal(r.status, 400);
  r = await req('PATCH', `${base}/tenants`, { token: adminToken, body: {} });
  assert.equal(r.status, 405, 'no PATCH of a collection');
  r = await req('POST', `${base}/tenants`, { token: adminToken, body: 'x=1', contentType: 'application/x-www-form-urlencoded' });
  assert.equal(r.status, 415, 'only JSON bodies');
  // the API server sees the user: a ServiceAccount with no role is refused BY NAME
  r = await req('POST', `${base}/tenants?dryRun=All`, { token: nobodyToken, body: t });
  assert.equal(r.status, 403, r.body);
  assert.match(r.json.message, new RegExp(`system:serviceaccount:${ns}:nobody`), 'the API server judged the user\'s own identity');
  // ... and the staff account may; the dry run creates nothing
  r = await req('POST', `${base}/tenants?dryRun=All`, { token: adminToken, body: t });
  assert.equal(r.status, 201, r.body);
  assert.throws(() => kubectl(['get', 'tenant', t.metadata.name]), /NotFound/);
  // the forwarder keeps its connections to the API server: later calls reuse them
  for (let i = 0; i < 5; i++) assert.equal((await req('GET', `${base}/plans`, { token: adminToken })).status, 200);
  await until('the operator logged a forwarded call on a kept connection', () => /console: GET \/apis\/tenancy.dev\/v1alpha1\/plans: 200 \(connection reused\)/.test(fs.readFileSync(opLog, 'utf8')), 10000);
});

test('sign in with a ServiceAccount token, onboard a tenant (residency refused on its field), suspend, resume, delete', async () => {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) errors.push(m.text()); });
  await page.goto(`https://127.0.0.1:${apiPort}/console/`);
  await page.waitForSelector('#token');
  await shot(page, 'signin');
  await signIn(page, adminToken);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('tenancy.console.token') !== null), true);

  // onboarding wizard
  const id = `${RUN}-acme`;
  await page.click('nav >> text=Onboard a tenant');
  await page.waitForSelector('#w-metadata\\.name');
  // regions the policy does not allow cannot be chosen
  await page.check('input[name=flag][value=eu-only]');
  assert.equal(await page.isDisabled('#w-regions input[value=us-east-1]'), true, 'eu-only must rule out us-east-1');
  await page.uncheck('input[name=flag][value=eu-only]');
  await page.fill('#w-metadata\\.name', id);
  await page.fill('#w-spec\\.displayName', 'Acme Console Test');
  await page.selectOption('#w-plan', 'starter');
  await page.check('#w-regions input[value=eu-west-1]');
  await page.fill('#w-spec\\.residency\\.preferredRegion', 'us-east-1'); // not among the allowed: refused
  await page.fill('#w-contact-name', 'Ada Lovelace');
  await page.fill('#w-contact-email', 'ada@acme.example');
  await page.fill('#w-externalIds', `billing=cus_${RUN}`);
  await page.click('#w-check');
  const fieldErr = page.locator('#err-spec\\.residency\\.preferredRegion');
  await fieldErr.filter({ hasText: 'must be one of' }).waitFor();
  assert.match(await fieldErr.textContent(), /preferredRegion us-east-1 must be one of spec.residency.allowedRegions: eu-west-1/);
  assert.equal(await page.getAttribute('#w-spec\\.residency\\.preferredRegion', 'aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'w-spec.residency.preferredRegion', 'focus moves to the refused field');
  await shot(page, 'wizard-refused');
  assert.throws(() => kubectl(['get', 'tenant', id]), /NotFound/, 'the dry run created nothing');
  await page.fill('#w-spec\\.residency\\.preferredRegion', 'eu-west-1');
  await page.check('#w-activate');
  await page.click('#w-check');
  await page.waitForSelector('#dry-ok');
  await page.click('#w-create');
  await page.waitForURL(new RegExp(`#/tenants/${id}$`));
  const created = JSON.parse(kubectl(['get', 'tenant', id, '-o', 'json']));
  assert.equal(created.spec.state, 'Active');
  assert.deepEqual(created.spec.externalIds, { billing: `cus_${RUN}` });
  assert.equal(created.spec.contacts[0].email, 'ada@acme.example');
  kubectl(['label', 'tenant', id, `${LABEL}=${RUN}`]);

  const stateIs = async (s) => until(`tenant ${id} shows ${s}`, async () => {
    await page.goto(`https://127.0.0.1:${apiPort}/console/#/tenants/${id}`);
    await page.reload();
    await page.waitForSelector('#tenant-state');
    return (await page.textContent('#tenant-state')) === s;
  }, 90000);
  await stateIs('Active');
  await page.locator('text=billing').first().waitFor();
  await shot(page, 'profile');
  // 200% zoom: the same page at half the CSS width, twice the pixels
  await page.setViewportSize({ width: 640, height: 900 });
  await noHorizontalScroll(page, 'the profile');
  await page.setViewportSize({ width: 1280, height: 900 });

  // suspend (keyboard: the button, the reason, Enter), then resume
  await page.focus('button[data-action=Suspended]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('dialog[open]');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'action-reason', 'the dialog takes the focus');
  await page.keyboard.insertText('unpaid invoice');
  await shot(page, 'lifecycle-suspend');
  await page.keyboard.press('Enter');
  await stateIs('Suspended');
  assert.equal(JSON.parse(kubectl(['get', 'tenant', id, '-o', 'json'])).spec.stateReason, 'unpaid invoice');
  await page.click('button[data-action=Active]');
  await page.click('#action-submit');
  await stateIs('Active');

  // the audit timeline (the PostgreSQL audit trail) and the history with its diffs
  await profileUntil(page, id, 'the profile shows the suspension in its history and audit timeline', async (pg) => {
    const diffs = await texts(pg, '#history ul.diff li');
    const actions = await texts(pg, '#audit tbody tr td:nth-child(3)');
    return diffs.includes('~ spec.state: "Active" -> "Suspended"') && diffs.includes('~ spec.state: "Suspended" -> "Active"') &&
      actions.includes('suspend') && actions.includes('resume');
  });
  const diffs = await texts(page, '#history ul.diff li');
  assert.ok(diffs.includes('+ spec.stateReason: "unpaid invoice"'), `the reason appears as added: ${diffs.join(' | ')}`);
  const gens = (await page.$$eval('#history li.version', (lis) => lis.map((l) => Number(l.dataset.generation))));
  assert.deepEqual(gens, gens.slice().sort((a, b) => b - a), 'newest first');
  assert.ok(gens.includes(1), 'down to the first version');
  const firstVersion = await texts(page, `#history li.version[data-generation="1"] ul.diff li`);
  assert.ok(firstVersion.includes(`+ spec.displayName: "Acme Console Test"`), `the first version lists its fields as added: ${firstVersion.join(' | ')}`);
  const actors = await texts(page, '#audit tbody tr td:nth-child(2)');
  assert.ok(actors.some((a) => a.includes(`system:serviceaccount:${ns}:staff`)), `the audit rows name the user: ${actors.join(', ')}`);
  await shotOf(page.locator('section[aria-labelledby=h-history]'), 'profile-history');
  await shotOf(page.locator('section[aria-labelledby=h-audit]'), 'profile-audit');
  for (const what of ['history', 'audit']) {
    const r = await req('GET', `/api/v1/tenants/${id}/${what}?limit=1`, { token: adminToken });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.items.length, 1);
    assert.ok(r.json.metadata.continue, `${what}: a continue token for the next page`);
    const next = await req('GET', `/api/v1/tenants/${id}/${what}?limit=100&continue=${encodeURIComponent(r.json.metadata.continue)}`, { token: adminToken });
    assert.equal(next.status, 200, next.body);
    assert.ok(next.json.items.length >= 1);
    assert.ok(!next.json.items.some((x) => JSON.stringify(x) === JSON.stringify(r.json.items[0])), `${what}: the next page starts after the first`);
    assert.equal((await req('GET', `/api/v1/tenants/${id}/${what}?continue=x'--`, { token: adminToken })).status, 400);
    assert.equal((await req('GET', `/api/v1/tenants/${id}/${what}?limit=101`, { token: adminToken })).status, 400);
    if (PG_PASSWORD) assert.ok(!r.body.includes(PG_PASSWORD) && !next.body.includes(PG_PASSWORD), 'no secret in the answer');
  }

  // delete: archive first (Active -> Archived), then Deleted with the id typed
  await page.click('button[data-action=Archived]');
  await page.click('#action-submit');
  await stateIs('Archived');
  await page.click('button[data-action=Deleted]');
  await page.fill('#action-confirm', 'not-the-id');
  await page.click('#action-submit');
  await page.locator('#action-error').filter({ hasText: `Type ${id}` }).waitFor();
  assert.equal(JSON.parse(kubectl(['get', 'tenant', id, '-o', 'json'])).spec.state, 'Archived', 'a wrong confirmation changes nothing');
  await page.fill('#action-confirm', id);
  await shot(page, 'lifecycle-delete');
  await page.click('#action-submit');
  await stateIs('Deleted');
  const gone = JSON.parse(kubectl(['get', 'tenant', id, '-o', 'json']));
  assert.equal(gone.spec.deletionConfirmation, id);
  assert.equal(await page.locator('#actions button').count(), 0, 'no action on a tombstone');

  await page.click('nav >> text=Plans');
  await page.locator('td', { hasText: 'starter' }).first().waitFor();
  await shot(page, 'plans');
  await page.click('nav >> text=Regions');
  await page.locator('td', { hasText: 'eu-west-1' }).first().waitFor();
  await shot(page, 'regions');
  await page.click('#signout');
  await page.waitForSelector('#token');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('tenancy.console.token')), null, 'sign out forgets the token');
  assert.deepEqual(errors, [], 'no script error in the page');
  await ctx.close();
});

test('a tenant\'s group sees only its tenant', async () => {
  const mine = `${RUN}-alpha`;
  const other = `${RUN}-beta`;
  kubectl(['create', '-f', '-'], JSON.stringify(tenant(mine, { displayName: 'Alpha Co', identity: { groupBindings: [{ group: 'readapi-team-alpha', role: 'tenant-admin' }] } })));
  kubectl(['create', '-f', '-'], JSON.stringify(tenant(other, { displayName: 'Beta Co' })));
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await ctx.newPage();
  // wait until the operator's cache has both
  await until('the read API has both tenants', async () => (await req('GET', `/api/v1/tenants?q=${RUN}-&limit=1000`, { token: adminToken })).json.items.length >= 2);
  await signIn(page, alphaToken);
  // the directory renders after its list call answers: wait for its row before reading them all
  await page.locator('#results tbody tr td:first-child', { hasText: mine }).first().waitFor();
  const ids = await page.$$eval('#results tbody tr td:first-child', (tds) => tds.map((t) => t.textContent));
  assert.deepEqual(ids, [mine], 'the group sees exactly its tenant in the directory');
  await shot(page, 'directory-tenant-group');
  await page.goto(`https://127.0.0.1:${apiPort}/console/#/tenants/${other}`);
  await page.locator('[role=alert]', { hasText: 'Cannot read tenant' }).waitFor();
  assert.match(await page.textContent('main'), /may not|Forbidden|forbidden/);
  // nor can it change its own tenant's lifecycle: the API server refuses it (no RBAC on tenants)
  await page.goto(`https://127.0.0.1:${apiPort}/console/#/tenants/${mine}`);
  await page.click('button[data-action=Active]');
  await page.click('#action-submit');
  await page.locator('#action-error', { hasText: 'Refused' }).waitFor();
  assert.match(await page.textContent('#action-error'), /readapi-alpha/);
  assert.equal(JSON.parse(kubectl(['get', 'tenant', mine, '-o', 'json'])).spec.state, 'Draft');

  // history and audit timeline: the group reads its own tenant's, and is refused another's
  kubectl(['patch', 'tenant', mine, '--type=merge', '-p', JSON.stringify({ spec: { displayName: 'Alpha Company' } })]);
  kubectl(['patch', 'tenant', other, '--type=merge', '-p', JSON.stringify({ spec: { displayName: 'Beta Company' } })]);
  await profileUntil(page, mine, 'the group sees its tenant\'s history diff and audit row', async (pg) =>
    (await texts(pg, '#history ul.diff li')).includes('~ spec.displayName: "Alpha Co" -> "Alpha Company"') &&
    (await texts(pg, '#audit tbody tr td:nth-child(3)')).some((x) => /^spec\./.test(x)));
  await shot(page, 'profile-tenant-group');
  for (const what of ['history', 'audit']) {
    let r = await req('GET', `/api/v1/tenants/${mine}/${what}`, { token: alphaToken });
    assert.equal(r.status, 200, `${what} of its own tenant: ${r.body}`);
    assert.equal(r.json.tenant, mine);
    r = await req('GET', `/api/v1/tenants/${other}/${what}`, { token: alphaToken });
    assert.equal(r.status, 403, `${what} of another tenant: ${r.body}`);
    assert.match(r.json.detail, /readapi-alpha may not get tenant/);
    assert.ok(!r.body.includes('Beta'), 'nothing of the other tenant leaks');
    r = await req('GET', `/api/v1/tenants/${other}/${what}`, { token: nobodyToken });
    assert.equal(r.status, 403, 'a ServiceAccount with no role');
    r = await req('GET', `/api/v1/tenants/${other}/${what}`);
    assert.equal(r.status, 401, 'no token');
    r = await req('GET', `/api/v1/tenants/${RUN}-nosuch/${what}`, { token: adminToken });
    assert.equal(r.status, 404);
  }
  await ctx.close();

  // an admin reads any tenant's history and audit timeline, in the page too
  const actx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const apage = await actx.newPage();
  await signIn(apage, adminToken);
  await profileUntil(apage, other, 'the admin sees the other tenant\'s history diff and audit row', async (pg) =>
    (await texts(pg, '#history ul.diff li')).includes('~ spec.displayName: "Beta Co" -> "Beta Company"') &&
    (await texts(pg, '#audit tbody tr td:nth-child(3)')).some((x) => /^spec\./.test(x)));
  await apage.setViewportSize({ width: 640, height: 900 });
  await noHorizontalScroll(apage, 'the profile with its history');
  await actx.close();
});

test('paging through 1,000 tenants with continue tokens', async () => {
  const n = 1000;
  const items = [];
  for (let i = 0; i < n; i++) items.push(tenant(`${RUN}-p${String(i).padStart(4, '0')}`, { displayName: `Paged ${i}` }));
  kubectl(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  await until('the read API has the 1,000 tenants', async () => {
    const r = await req('GET', `/api/v1/tenants?q=${RUN}-p&limit=1000`, { token: adminToken });
    return r.status === 200 && r.json.items.length === n;
  }, 180000);
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  await signIn(page, adminToken);
  await page.fill('#f-q', `${RUN}-p`);
  await page.press('#f-q', 'Enter');
  await page.waitForFunction(() => location.hash.includes('q='));
  const seen = [];
  const pageTimes = [];
  for (let p = 0; ; p++) {
    await page.waitForSelector('#page-info');
    const ids = await page.$$eval('#results tbody tr td:first-child', (tds) => tds.map((t) => t.textContent));
    pageTimes.push(Number((await page.textContent('#page-info')).match(/(\d+) ms/)[1]));
    assert.equal(ids.length, 50, `page ${p + 1} has 50 tenants`);
    seen.push(...ids);
    if (p === 0) {
      await page.waitForSelector('.counts li[data-state=Draft]');
      await shot(page, 'directory', false);
      await page.setViewportSize({ width: 640, height: 900 });
      await noHorizontalScroll(page, 'the directory');
      await page.setViewportSize({ width: 1280, height: 900 });
    }
    if (!(await page.$('#next-page'))) break;
    const before = ids[0];
    await page.click('#next-page');
    await page.waitForFunction((b) => { const td = document.querySelector('#results tbody tr td'); return td && td.textContent !== b; }, before);
  }
  assert.equal(seen.length, n, 'every tenant once');
  assert.deepEqual(seen, items.map((t) => t.metadata.name), 'in name order, none twice, none skipped');
  const draft = await page.textContent('.counts li[data-state=Draft]');
  assert.match(draft, /^Draft: 1000\+?$/);
  // back one page
  await page.click('#prev-page');
  await page.waitForFunction(() => { const td = document.querySelector('#results tbody tr td'); return td && td.textContent.endsWith('p0900'); });
  pageTimes.sort((a, b) => a - b);
  console.log(`directory: ${pageTimes.length} pages of 50; in-browser time per page p50 ${pageTimes[Math.floor(pageTimes.length / 2)]} ms, max ${pageTimes[pageTimes.length - 1]} ms`);
  await ctx.close();
});
