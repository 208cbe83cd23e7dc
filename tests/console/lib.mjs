// Shared harness of the console's browser tests: a real `freshet up` (its own data
// directory, ports picked by the system) and real headless Chromium driven by
// playwright-core. Screenshots and server logs go to $CONSOLE_ARTIFACTS (default
// target/console-screenshots at the repository root).
//
// The server and browser of the running suite are module state: `freshet`, `baseUrl`,
// `context` and `page` are live bindings, so `import { page } from './lib.mjs'` always sees
// the current page once `launchBrowser()` has run. Every step checks with `assertClean()`
// that the page logged no error, that no request failed, and that no request went anywhere
// but the freshet under test on 127.0.0.1.
//
// A test file either calls `useFreshet()` inside its `describe` (starts everything before,
// resets the problem lists before each step, stops everything after) or wires the same
// functions into its own hooks.

import { after, before, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = path.resolve(ROOT, process.env.CONSOLE_ARTIFACTS || 'target/console-screenshots');
export const FRESHET_BIN = process.env.FRESHET_BIN || path.join(ROOT, 'target/release/freshet');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ADMIN_TOKEN = 'console-test-admin-token';
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
/** Long enough for a cold start of the broker and the services on a busy 2-core machine. */
export const STARTUP_MS = 90_000;
export const STEP_MS = 120_000;

/** Chromium flags for a machine without internet: no background connections at all. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The running server: `{ child, log, logName, url }` (set by `startFreshet`). */
export let freshet;
/** Its HTTP origin, e.g. http://127.0.0.1:41234 (set by `startFreshet`). */
export let baseUrl;
/** The browser profile and its first page (set by `launchBrowser`). */
export let context;
export let page;
/** What the browser did wrong since the last `resetProblems()` / `assertClean()`. */
export const problems = [];
export const foreignRequests = [];
const scratchDirs = [];

/**
 * Starts `freshet up` and resolves with `{ child, log, logName, url }`, the HTTP base URL
 * read from its log; also sets `freshet` and `baseUrl`. `prepare` gets the data directory
 * before the server starts (to add users). `logName` is the file its log goes to in the
 * artifacts.
 */
export async function startFreshet({ prepare, logName = 'freshet.log' } = {}) {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'freshet-console-data-'));
  scratchDirs.push(dataDir);
  if (prepare) await prepare(dataDir);
  const child = spawn(FRESHET_BIN, [
    'up',
    '--data-dir', dataDir,
    '--kafka-listen', '127.0.0.1:0',
    '--http-listen', '127.0.0.1:0',
    '--admin-token', ADMIN_TOKEN,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  child.stdout.on('data', (chunk) => log.push(chunk.toString()));
  child.stderr.on('data', (chunk) => log.push(chunk.toString()));
  // However the test run ends, the server does not outlive it.
  process.on('exit', () => child.kill('SIGKILL'));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`freshet printed no HTTP address within ${STARTUP_MS} ms:\n${log.join('')}`)), STARTUP_MS);
    const look = () => {
      const match = log.join('').match(/HTTP API on (http:\/\/[^\s]+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stderr.on('data', look);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`freshet exited (${code ?? signal}) before serving:\n${log.join('')}`));
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${FRESHET_BIN}: ${error.message}`));
    });
  });
  freshet = { child, log, logName, url: new URL(url).origin };
  baseUrl = freshet.url;
  return freshet;
}

/** Stops the server started last (SIGTERM, then SIGKILL after 20 s) and saves its log. */
export async function stopFreshet() {
  if (!freshet) return;
  const { child, log, logName } = freshet;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timeout = new Promise((resolve) => setTimeout(() => resolve('timeout'), 20_000));
    if ((await Promise.race([exited, timeout])) === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
  }
  await writeFile(path.join(ARTIFACTS, logName), log.join(''));
}

/** Removes the data directories and browser profiles made so far. */
export async function removeScratch() {
  await Promise.all(scratchDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

/**
 * A request to the API from the test itself (not through the browser). A JSON `body` is
 * sent as JSON; `raw` (a string or bytes) is sent as it is, with `contentType`.
 */
export async function apiCall(pathname, { method = 'GET', body, raw, contentType, token } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (raw !== undefined && contentType) headers['content-type'] = contentType;
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${baseUrl}${pathname}`, {
    method,
    headers,
    body: body === undefined ? raw : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (an export, a plain-text error): the caller reads `text`.
  }
  return { status: response.status, headers: response.headers, json, text };
}

/** A fresh browser profile watched for problems, with its first page; sets `context`, `page`. */
export async function launchBrowser() {
  const profile = await mkdtemp(path.join(tmpdir(), 'freshet-console-chromium-'));
  scratchDirs.push(profile);
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: DESKTOP,
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  watch(context);
  context.on('page', watchPage);
  page = context.pages()[0] ?? await context.newPage();
  watchPage(page);
  page.setDefaultTimeout(30_000);
  return page;
}

/**
 * Registers the usual hooks in the calling `describe`: start freshet and the browser
 * before, forget earlier problems before each step, stop and clean up after.
 */
export function useFreshet({ prepare, logName } = {}) {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    await startFreshet({ prepare, logName });
    assert.match(baseUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    await launchBrowser();
  });
  // A failed step leaves its own problems behind, not the next step's.
  beforeEach(resetProblems);
  after(async () => {
    await context?.close();
    await stopFreshet();
    await removeScratch();
  });
}

/** Polls `probe` until `done` accepts its result; fails with the last result. */
export async function eventually(probe, done, { timeout = STEP_MS, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (done(last)) return last;
    if (Date.now() > deadline) assert.fail(`${what} not reached within ${timeout} ms; last: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Saves a screenshot of the current page as `<name>.png` in the artifacts. */
export async function screenshot(name) {
  // Away from the navigation, so no link shows its hover state.
  await page.mouse.move(page.viewportSize().width - 1, page.viewportSize().height - 1);
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

/** Opens a console page by its hash and waits until its title is shown. */
export async function open(hash, title) {
  await page.goto(`${baseUrl}/${hash}`);
  await page.locator('.page-head h1', { hasText: title }).waitFor();
}

/** The whole number in a text, ignoring separators and units ("1,234 B" → 1234). */
export function number(text) {
  return Number(String(text).replace(/[^\d]/g, ''));
}

/** Waits until the element's text, read as a whole number, equals `expected`. */
export async function waitForNumber(selector, expected, timeout = STEP_MS) {
  await page.waitForFunction(([sel, want]) => {
    const element = document.querySelector(sel);
    return element !== null && Number(element.textContent.replace(/[^\d]/g, '')) === want;
  }, [selector, expected], { timeout, polling: 250 });
}

/** Forgets the problems seen so far (before a step, or before a part that must be clean). */
export function resetProblems() {
  problems.splice(0);
  foreignRequests.splice(0);
}

/** Fails the step if the browser saw an error, a failed request or a request elsewhere. */
export function assertClean() {
  const seen = problems.splice(0);
  const foreign = foreignRequests.splice(0);
  assert.deepEqual(seen, [], 'the page logged errors or requests failed');
  assert.deepEqual(foreign, [], 'the page sent requests to another host');
}

function watch(browserContext) {
  browserContext.on('request', (request) => {
    const url = new URL(request.url());
    // data: and blob: URLs are made by the page itself (a download it assembled, say).
    const local = url.protocol === 'data:' || url.protocol === 'blob:';
    if (!local && url.host !== new URL(baseUrl).host) foreignRequests.push(request.url());
  });
  browserContext.on('requestfailed', (request) => {
    problems.push(`request failed: ${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  browserContext.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.request().method()} ${response.url()}`);
  });
  browserContext.on('weberror', (error) => problems.push(`uncaught: ${error.error().message}`));
}

function watchPage(newPage) {
  newPage.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
}
