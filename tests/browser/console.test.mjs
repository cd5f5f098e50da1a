// browser.console: the admin console page (console/, served by `atrest serve`
// at /console/) in Debian's chromium, driven by playwright-core, against the
// `atrest dev` stack that run.sh started and prepared. Plain node, no test
// framework: steps run in order (each state builds on the previous one); the
// first failure stops the run and the remaining steps count as skipped. The
// closing line is "N passed, N failed, N skipped"; the exit code is non-zero
// on any failure. Every wait is bounded. Screenshots of each state go to
// $ATR_ARTIFACTS.
//
// Scenario: the files and their security headers; sign in (form, errors,
// sign-in link with the token in the fragment, sign out); enable with a
// malformed URI, an EC key and a URI whose permission is missing (each shows
// its own failing check); enable with the good URI (own key, version shown);
// unwrapKey revoked in the vault and the monitor advanced: degraded, then
// the locked banner with the reason and its fix; disable while locked (the
// 423 message); access restored: active again; disable; the page at 375 px;
// keyboard use; no CSP violation or script error anywhere.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`console.test.mjs: ${name} is not set (run it through run.sh)`);
    process.exit(2);
  }
  return v;
};

const CONSOLE = env('ATR_CONSOLE_URL'); // https://127.0.0.1:P/console/
const SERVICE = env('ATR_SERVICE_URL');
const VAULT = env('ATR_VAULT_URL');
const IDENTITY = env('ATR_IDENTITY_URL');
const TENANT = env('ATR_TENANT');
const TOKEN = env('ATR_ADMIN_TOKEN');
const GOOD_URI = env('ATR_GOOD_URI');
const EC_URI = env('ATR_EC_URI');
const BYOK_SP = env('ATR_BYOK_SP');
const SVC_SECRET = readFileSync(env('ATR_SERVICE_ADMIN_SECRET_FILE'), 'utf8').trim();
const VAULT_SECRET = readFileSync(env('ATR_VAULT_ADMIN_SECRET_FILE'), 'utf8').trim();
const VAULT_CLIENT_ID = env('ATR_VAULT_CLIENT_ID');
const VAULT_CLIENT_SECRET = env('ATR_VAULT_CLIENT_SECRET');
const ARTIFACTS = env('ATR_ARTIFACTS');
const CHROMIUM = process.env.ATR_CHROMIUM || '/usr/bin/chromium';
const PAGE_URL = `${CONSOLE}?poll=1000`;
const WAIT_MS = 30000; // any one wait for the page
const CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

mkdirSync(ARTIFACTS, { recursive: true });

// ------------------------------------------------------------------ helpers

class Failure extends Error {}

function assert(cond, msg) {
  if (!cond) throw new Failure(msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One HTTPS call (the CA comes from NODE_EXTRA_CA_CERTS); {status, headers, text, json}. */
async function http(method, url, { bearer, body, form, redirect } = {}) {
  const headers = {};
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let payload;
  if (form) {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    payload = new URLSearchParams(form).toString();
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const r = await fetch(url, {
    method,
    headers,
    body: payload,
    redirect: redirect || 'follow',
    signal: AbortSignal.timeout(30000),
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: r.status, headers: r.headers, text, json };
}

async function serviceAdmin(path, body = {}) {
  const r = await http('POST', `${SERVICE}${path}`, { bearer: SVC_SECRET, body });
  assert(r.status === 200, `POST ${path}: ${r.status} ${r.text}`);
  return r.json;
}

/** Moves the service's clock forward and runs one monitor pass. */
async function advanceMonitor(seconds) {
  await serviceAdmin('/admin/clock', { advanceSeconds: seconds });
  return serviceAdmin('/admin/monitor/run');
}

/** The key permissions of the service's application on the vault "contoso". */
async function grant(perms) {
  const r = await http('PUT', `${VAULT}/admin/vaults/contoso/accessPolicies/${BYOK_SP}`, {
    bearer: VAULT_SECRET,
    body: { tenantId: TENANT, permissions: { keys: perms } },
  });
  assert(r.status === 200 || r.status === 201, `access policy: ${r.status} ${r.text}`);
}

async function vaultToken() {
  const r = await http('POST', `${IDENTITY}/${TENANT}/oauth2/v2.0/token`, {
    form: {
      grant_type: 'client_credentials',
      client_id: VAULT_CLIENT_ID,
      client_secret: VAULT_CLIENT_SECRET,
      scope: 'https://vault.azure.net/.default',
    },
  });
  assert(r.status === 200 && r.json && r.json.access_token, `vault token: ${r.status}`);
  return r.json.access_token;
}

async function encryption() {
  const r = await http('GET', `${SERVICE}/v1/tenants/${TENANT}/encryption`, { bearer: TOKEN });
  assert(r.status === 200, `GET encryption: ${r.status} ${r.text}`);
  return r.json;
}

let page;
let context;
const problems = []; // CSP violations, script errors, failed console loads

async function shot(name, { fullPage = true } = {}) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage });
}

/** Waits until the state badge reads @p text. */
async function badge(text) {
  const b = page.locator('#state-badge');
  await b.filter({ hasText: new RegExp(`^${text}`) }).waitFor({ timeout: WAIT_MS });
  assert((await b.getAttribute('role')) === 'status', 'the state badge has no role="status"');
}

/** Fills the key URI (through its label) and submits with the button or the Enter key. */
async function enable(uri, { withEnter = false } = {}) {
  const input = page.getByLabel('Key identifier (URI) of an RSA key');
  await input.fill(uri);
  if (withEnter) await input.press('Enter');
  else await page.locator('#enable-button').click();
  // the request ran: the report is there and the button is usable again
  await page.locator('#report[data-result]:not([hidden])').waitFor({ timeout: WAIT_MS });
  await page.waitForFunction(() => !document.getElementById('enable-button').disabled, null, {
    timeout: WAIT_MS,
  });
}

/** The report's checks as {name: outcome}. */
async function checks() {
  return page.$$eval('#report-checks li', (lis) =>
    Object.fromEntries(lis.map((li) => [li.dataset.check, li.dataset.outcome])),
  );
}

async function expectFailedCheck(name, code, textPart) {
  const box = page.locator('#report');
  assert((await box.getAttribute('data-result')) === 'failed', 'the report is not a failure');
  const c = await checks();
  assert(c[name] === 'failed', `check ${name}: want failed, got ${JSON.stringify(c)}`);
  const order = ['uri', 'servicePrincipal', 'list', 'wrap', 'unwrap', 'purgeProtection'];
  const i = order.indexOf(name);
  for (const [k, v] of Object.entries(c)) {
    const j = order.indexOf(k);
    if (j >= 0 && j < i) assert(v === 'passed', `check ${k} before ${name}: ${v}`);
    if (j > i) assert(v === 'not run', `check ${k} after ${name}: ${v}`);
  }
  assert(Object.keys(c).length === 6, `want all 6 checks listed: ${JSON.stringify(c)}`);
  const item = page.locator(`#report-checks li[data-check="${name}"]`);
  const text = await item.innerText();
  assert(/Failed/.test(text), `the failed check does not say Failed: ${text}`);
  assert(/Fix: /.test(text), `the failed check shows no fix: ${text}`);
  if (code) {
    const title = await page.locator('#report-title').innerText();
    assert(title.includes(code) || text.includes(code), `reason ${code} not shown: ${title}`);
  }
  if (textPart) assert(text.includes(textPart), `'${textPart}' not in the check: ${text}`);
  assert((await box.getAttribute('role')) === 'alert', 'a failed report is not an alert');
}

async function auditHas(action) {
  await page
    .locator(`#audit-rows tr[data-action="${action}"]`)
    .first()
    .waitFor({ timeout: WAIT_MS });
}

async function openDisableDialog() {
  await page.locator('#disable-button').click();
  const dlg = page.getByRole('dialog', { name: 'Stop using your own key?' });
  await dlg.waitFor({ timeout: WAIT_MS });
  return dlg;
}

// ------------------------------------------------------------------ steps

const steps = [];
const step = (name, fn) => steps.push({ name, fn });

step('the console files: types, security headers, 301 and 404', async () => {
  const index = await http('GET', CONSOLE);
  assert(index.status === 200, `GET /console/: ${index.status}`);
  assert(index.headers.get('content-type') === 'text/html; charset=utf-8', 'index type');
  assert(index.headers.get('content-security-policy') === CSP, 'CSP of index.html');
  assert(index.headers.get('x-content-type-options') === 'nosniff', 'nosniff');
  assert(index.headers.get('referrer-policy') === 'no-referrer', 'Referrer-Policy');
  assert(index.headers.get('cache-control') === 'no-store', 'Cache-Control');
  assert(!/<script>|\son[a-z]+=|style=/.test(index.text), 'inline script, handler or style');
  const types = {
    'console.js': 'text/javascript; charset=utf-8',
    'console.css': 'text/css; charset=utf-8',
    'index.html': 'text/html; charset=utf-8',
    'favicon.svg': 'image/svg+xml',
  };
  for (const [f, t] of Object.entries(types)) {
    const r = await http('GET', `${CONSOLE}${f}`);
    assert(r.status === 200 && r.headers.get('content-type') === t, `${f}: ${r.status}`);
    assert(r.headers.get('content-security-policy') === CSP, `CSP of ${f}`);
  }
  const moved = await http('GET', CONSOLE.replace(/\/$/, ''), { redirect: 'manual' });
  assert(moved.status === 301, `GET /console: ${moved.status}`);
  assert(moved.headers.get('location') === '/console/', 'Location of /console');
  const missing = await http('GET', `${CONSOLE}nope.js`);
  assert(missing.status === 404, `unknown file: ${missing.status}`);
  assert(missing.json && missing.json.error && missing.json.error.code === 'NotFound',
    `unknown file body: ${missing.text}`);
  // no authentication on the files; the API still wants a token
  const api = await http('GET', `${SERVICE}/v1/tenants/${TENANT}/encryption`);
  assert(api.status === 401, `the API without a token: ${api.status}`);
});

step('sign in: the form refuses what is not a token, then signs in', async () => {
  await page.goto(PAGE_URL, { waitUntil: 'load', timeout: WAIT_MS });
  await page.locator('#signin:not([hidden])').waitFor({ timeout: WAIT_MS });
  const field = page.getByLabel('Access token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#signin-error:not([hidden])').waitFor({ timeout: WAIT_MS });
  await field.fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#signin-error', { hasText: 'not an access token' }).waitFor({
    timeout: WAIT_MS,
  });
  assert((await field.getAttribute('aria-invalid')) === 'true', 'the field is not marked invalid');
  await shot('01-sign-in');
  // a well-formed token the service refuses (signature changed): back to the form, with why
  const [h, p, sig] = TOKEN.split('.');
  const mid = Math.floor(sig.length / 2);
  const bad = `${h}.${p}.${sig.slice(0, mid)}${sig[mid] === 'A' ? 'B' : 'A'}${sig.slice(mid + 1)}`;
  await field.fill(bad);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#signin-error', { hasText: 'did not accept your token' }).waitFor({
    timeout: WAIT_MS,
  });
  await field.fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#account-tenant', { hasText: TENANT }).waitFor({ timeout: WAIT_MS });
  await badge('Active');
  const mode = await page.locator('#d-mode').innerText();
  assert(mode === 'Service-managed keys', `mode: ${mode}`);
  assert(
    (await page.locator('#account-detail').innerText()).includes('DataEncryption.Admin'),
    'the roles of the token are not shown',
  );
  assert(await page.locator('#disable').isHidden(), 'disable offered without a customer key');
  await shot('02-managed');
});

step('sign out clears the token; the sign-in link signs in and leaves the URL', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#signin:not([hidden])').waitFor({ timeout: WAIT_MS });
  const kept = await page.evaluate(() => window.sessionStorage.length);
  assert(kept === 0, `sessionStorage keeps ${kept} items after sign-out`);
  // a fresh tab opening the link
  await page.goto('about:blank');
  await page.goto(`${PAGE_URL}#token=${TOKEN}`, { waitUntil: 'load', timeout: WAIT_MS });
  await page.locator('#account-tenant', { hasText: TENANT }).waitFor({ timeout: WAIT_MS });
  const url = page.url();
  assert(!url.includes('#') && !url.includes(TOKEN), `the token stays in the URL: ${url}`);
  assert(url.endsWith('?poll=1000'), `the query was lost: ${url}`);
  const stored = await page.evaluate(() => window.sessionStorage.getItem('atrest.console.token'));
  assert(stored === TOKEN, 'the token is not in sessionStorage');
  await page.reload({ waitUntil: 'load', timeout: WAIT_MS });
  await page.locator('#account-tenant', { hasText: TENANT }).waitFor({ timeout: WAIT_MS });
  await badge('Active');
});

step('keyboard: skip link first, a visible focus ring', async () => {
  await page.locator('body').click({ position: { x: 1, y: 300 } });
  await page.keyboard.press('Tab');
  const first = await page.evaluate(() => document.activeElement.className);
  assert(first === 'skip', `the first Tab stop is "${first}", not the skip link`);
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert(outline !== 'none', 'no visible focus outline');
});

step('enable with a malformed URI: the uri check fails', async () => {
  await enable('not a key uri', { withEnter: true });
  await expectFailedCheck('uri', 'InvalidKeyUri');
  const invalid = await page.locator('#key-uri').getAttribute('aria-invalid');
  assert(invalid === 'true', 'the URI field is not marked invalid');
  await shot('03-enable-malformed-uri');
});

step('enable with an EC key: the wrap check fails (KeyNotRsa); busy while it runs', async () => {
  // slow the PUT down so the disabled button can be seen
  await page.route('**/v1/tenants/*/encryption', async (route) => {
    if (route.request().method() === 'PUT') await sleep(1500);
    await route.continue();
  });
  const input = page.getByLabel('Key identifier (URI) of an RSA key');
  await input.fill(EC_URI);
  await page.locator('#enable-button').click();
  await page.waitForFunction(() => document.getElementById('enable-button').disabled, null, {
    timeout: 5000,
  });
  assert(await page.locator('#enable-progress').isVisible(), 'no progress text while checking');
  await page.locator('#report[data-result]:not([hidden])').waitFor({ timeout: WAIT_MS });
  await page.waitForFunction(() => !document.getElementById('enable-button').disabled, null, {
    timeout: WAIT_MS,
  });
  await page.unroute('**/v1/tenants/*/encryption');
  await expectFailedCheck('wrap', 'KeyNotRsa', 'RSA');
  await shot('04-enable-ec-key');
});

step('enable with a permission missing: the unwrap check fails and names it', async () => {
  await grant(['list', 'wrapKey']);
  try {
    await enable(GOOD_URI);
    await expectFailedCheck('unwrap', 'PermissionMissing', 'unwrapKey');
    await shot('05-enable-permission-missing');
  } finally {
    await grant(['list', 'wrapKey', 'unwrapKey']);
  }
  await auditHas('encryption.enable.refused');
});

step('enable with the good URI: your own key, its version shown', async () => {
  await enable(GOOD_URI);
  assert((await page.locator('#report').getAttribute('data-result')) === 'passed', 'report');
  const c = await checks();
  assert(
    Object.keys(c).length === 6 && Object.values(c).every((v) => v === 'passed'),
    `every check passed: ${JSON.stringify(c)}`,
  );
  await page.locator('#d-mode', { hasText: 'Your own key' }).waitFor({ timeout: WAIT_MS });
  await badge('Active');
  const vt = await vaultToken();
  const key = await http('GET', `${VAULT}/keys/tenant-key?api-version=7.4`, { bearer: vt });
  assert(key.status === 200, `the key in the vault: ${key.status}`);
  const version = key.json.key.kid.split('/').pop();
  const shown = await page.locator('#d-key-version').innerText();
  assert(shown.includes(version), `key version: want ${version}, page shows ${shown}`);
  const uri = await page.locator('#d-key-uri').innerText();
  assert(uri === GOOD_URI, `key URI shown: ${uri}`);
  assert(await page.locator('#disable').isVisible(), 'no way to disable');
  assert(await page.locator('#problem').isHidden(), 'a problem is shown while active');
  await auditHas('encryption.enable');
  await shot('06-own-key-active');
});

step('unwrapKey revoked, monitor advanced: degraded, then locked with the reason', async () => {
  await grant(['list', 'wrapKey']);
  await advanceMonitor(301);
  await badge('Degraded');
  await page.locator('#problem:not([hidden])').waitFor({ timeout: WAIT_MS });
  assert((await page.locator('#problem-code').innerText()) === 'PermissionMissing', 'reason');
  await page.locator('#row-lock-at:not([hidden])').waitFor({ timeout: WAIT_MS });
  await shot('07-degraded');
  await advanceMonitor(3600);
  await badge('Locked');
  await page.locator('#problem-title', { hasText: 'locked' }).waitFor({ timeout: WAIT_MS });
  const code = await page.locator('#problem-code').innerText();
  assert(code === 'PermissionMissing', `locked reason code: ${code}`);
  const steps = await page.locator('#problem-steps').innerText();
  assert(steps.includes('unwrapKey'), `the fix does not name unwrapKey: ${steps}`);
  assert(/Access policies/.test(steps), `the fix does not say where: ${steps}`);
  const reason = await page.locator('#problem-reason').innerText();
  assert(reason.length > 10, `no reason in plain words: ${reason}`);
  const enc = await encryption();
  assert(enc.state === 'locked', `the API says ${enc.state}`);
  await auditHas('encryption.lock');
  await shot('08-locked');
});

step('at 375 px the locked page fits the screen', async () => {
  await page.setViewportSize({ width: 375, height: 812 });
  await sleep(300);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert(wide <= 375, `the page is ${wide} px wide at 375 px`);
  assert(await page.locator('#problem').isVisible(), 'the locked banner is not visible');
  await shot('09-locked-375px');
  await page.setViewportSize({ width: 1280, height: 900 });
});

step('disable while locked: the dialog, Escape, then the 423 message', async () => {
  let dlg = await openDisableDialog();
  const text = await dlg.innerText();
  assert(/service-managed keys/.test(text), `the dialog does not say what happens: ${text}`);
  assert(/customer layer is removed/.test(text), 'the dialog does not name the customer layer');
  await shot('10-disable-dialog', { fullPage: false }); // the modal over the viewport
  await page.keyboard.press('Escape');
  await dlg.waitFor({ state: 'hidden', timeout: WAIT_MS });
  const focused = await page.evaluate(() => document.activeElement.id);
  assert(focused === 'disable-button', `focus after Escape: ${focused}`);
  dlg = await openDisableDialog();
  await page.getByRole('button', { name: 'Remove the customer key' }).click();
  const result = page.locator('#disable-result[data-kind="error"]:not([hidden])');
  await result.waitFor({ timeout: WAIT_MS });
  const msg = await result.innerText();
  assert(/locked/i.test(msg) && /restore access/i.test(msg), `423 message: ${msg}`);
  await badge('Locked');
  await shot('11-disable-refused-locked');
});

step('access restored: active again', async () => {
  await grant(['list', 'wrapKey', 'unwrapKey']);
  await advanceMonitor(301);
  await badge('Active');
  await page.locator('#problem').waitFor({ state: 'hidden', timeout: WAIT_MS });
  assert((await page.locator('#d-mode').innerText()) === 'Your own key', 'mode after restore');
  await auditHas('encryption.restore');
  const enc = await encryption();
  assert(enc.state === 'customer', `the API says ${enc.state}`);
  await shot('12-restored');
});

step('disable: back to service-managed keys', async () => {
  await openDisableDialog();
  await page.getByRole('button', { name: 'Remove the customer key' }).click();
  const result = page.locator('#notice[data-kind="ok"]:not([hidden])');
  await result.waitFor({ timeout: WAIT_MS });
  const msg = await result.innerText();
  assert(/service-managed keys/.test(msg), `disable message: ${msg}`);
  await page.locator('#d-mode', { hasText: 'Service-managed keys' }).waitFor({ timeout: WAIT_MS });
  await badge('Active');
  assert(await page.locator('#disable').isHidden(), 'disable still offered');
  await auditHas('encryption.disable');
  const enc = await encryption();
  assert(enc.mode === 'managed', `the API says ${enc.mode}`);
  await shot('13-disabled');
  // the narrow layout of the audit panel
  await page.setViewportSize({ width: 375, height: 812 });
  await sleep(300);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert(wide <= 375, `the page is ${wide} px wide at 375 px`);
  await shot('14-managed-375px');
  await page.setViewportSize({ width: 1280, height: 900 });
});

step('unexpected answers never break the page', async () => {
  const answers = [
    // [encryption status, body, audit body, what the page must show]
    [200, '{"mode":5,"state":{"x":1},"keyUri":[],"reasonText":7,"keyVersion":null}',
      '{"value":[1,null,"x",{"time":5,"action":{},"detail":"x","actor":[]}]}', null],
    [200, 'not json', 'also not json', 'status 200'],
    [502, '<html>bad gateway</html>', '{"value":{}}', 'status 502'],
    [200, 'null', '{}', 'status 200'],
  ];
  for (const [status, body, audit, where] of answers) {
    // the page notices each change at its next refresh (1 s)
    await page.route('**/v1/tenants/*/encryption', (r) =>
      r.request().method() === 'GET'
        ? r.fulfill({ status, contentType: 'application/json', body })
        : r.continue(),
    );
    await page.route('**/v1/tenants/*/audit*', (r) =>
      r.fulfill({ status: 200, contentType: 'application/json', body: audit }),
    );
    if (where === null) {
      await badge('Unknown');
    } else {
      await page
        .locator('#page-error:not([hidden])', { hasText: `cannot be loaded. The service answered with ${where}` })
        .waitFor({ timeout: WAIT_MS });
    }
    await page.unroute('**/v1/tenants/*/encryption');
    await page.unroute('**/v1/tenants/*/audit*');
  }
  await shot('15-unexpected-answer');
  // the real answers again
  await badge('Active');
  await page.locator('#page-error').waitFor({ state: 'hidden', timeout: WAIT_MS });
  await auditHas('encryption.disable');
  assert(problems.length === 0, problems.join('\n'));
});

step('no CSP violation, script error or failed load on the page', async () => {
  assert(problems.length === 0, problems.join('\n'));
});

// ------------------------------------------------------------------ run

const t0 = Date.now();
let passed = 0;
let failed = 0;
let skipped = 0;
let browser;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox'],
    timeout: 60000,
  });
  // the stack's certificates come from its own local CA
  context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 900 },
  });
  page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.setDefaultNavigationTimeout(WAIT_MS);
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    // answers of 4xx/5xx (refusals the test provokes) are expected
    if (m.type() === 'error' && !/status of [45]\d\d/.test(m.text()))
      problems.push(`console error: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.url().includes('/console/') && r.status() >= 400)
      problems.push(`${r.status()} for ${r.url()}`);
  });
} catch (e) {
  console.error(`FAIL cannot start chromium (${CHROMIUM}): ${e.message}`);
  console.log(`0 passed, 1 failed, ${steps.length} skipped`);
  process.exit(1);
}

for (const s of steps) {
  if (failed > 0) {
    skipped++;
    console.log(`SKIP ${s.name}`);
    continue;
  }
  const t = Date.now();
  try {
    await s.fn();
    passed++;
    console.log(`ok   ${s.name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${s.name}: ${e instanceof Failure ? e.message : e.stack || e}`);
    try {
      await shot('failure');
      console.log(`     screenshot: ${join(ARTIFACTS, 'failure.png')}`);
    } catch {
      // the page may be gone
    }
  }
}
await browser.close().catch(() => {});
console.log(`browser.console: ${((Date.now() - t0) / 1000).toFixed(1)} s, screenshots in ${ARTIFACTS}`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
