#!/usr/bin/env node
// Opens one local HTML page in headless Chromium (Debian's, driven by puppeteer-core from
// build/npm, both installed by scripts/test-setup.sh) the way a user opens a saved report: from
// file://, with a fresh profile and no network. It records every request the page makes besides
// its own document (each is aborted, so a page that needs the network fails visibly), console
// errors and uncaught exceptions, optionally waits for a JS expression to be truthy, evaluates
// one, and takes a screenshot. It prints one JSON object on stdout:
//   {"requests": [urls], "console_errors": [..], "page_errors": [..], "value": <eval result>,
//    "load_ms": <navigation start to load event>, "wait_ms": <load to --wait true>,
//    "screenshot": <path or null>}
// and exits 0; it exits 2 with one line on stderr when it cannot run (no browser, bad page).
//
//   node tests/vis/browser_check.js PAGE.html [--eval EXPR] [--wait EXPR] [--screenshot OUT.png]
//        [--width 1280] [--height 900] [--full-page] [--timeout-ms 30000]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

function die(msg) {
  process.stderr.write(`browser_check: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = {page: null, evalExpr: null, wait: null, screenshot: null, width: 1280, height: 900,
             fullPage: false, timeoutMs: 30000};
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) die(`${k} expects a value`);
      return argv[++i];
    };
    if (k === '--eval') a.evalExpr = next();
    else if (k === '--wait') a.wait = next();
    else if (k === '--screenshot') a.screenshot = next();
    else if (k === '--width') a.width = parseInt(next(), 10);
    else if (k === '--height') a.height = parseInt(next(), 10);
    else if (k === '--full-page') a.fullPage = true;
    else if (k === '--timeout-ms') a.timeoutMs = parseInt(next(), 10);
    else if (k.startsWith('--')) die(`unknown option ${k}`);
    else if (a.page === null) a.page = k;
    else die(`unexpected argument ${k}`);
  }
  if (!a.page) die('expected PAGE.html');
  return a;
}

function loadPuppeteer() {
  const candidates = [
    process.env.SAELAB_NPM_DIR && path.join(process.env.SAELAB_NPM_DIR, 'node_modules'),
    path.join(__dirname, '..', '..', 'build', 'npm', 'node_modules'),
  ].filter(Boolean);
  for (const dir of candidates) {
    try {
      return require(path.join(dir, 'puppeteer-core'));
    } catch (e) { /* try the next */ }
  }
  die(`puppeteer-core not found in ${candidates.join(' or ')} (run scripts/test-setup.sh)`);
}

function chromiumPath() {
  const candidates = [process.env.SAELAB_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser']
    .filter(Boolean);
  for (const c of candidates) if (fs.existsSync(c)) return c;
  die(`no Chromium at ${candidates.join(' or ')} (run scripts/test-setup.sh)`);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const pagePath = path.resolve(a.page);
  if (!fs.existsSync(pagePath)) die(`${a.page}: no such file`);
  const pageUrl = 'file://' + pagePath;
  const puppeteer = loadPuppeteer();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'saelab-chromium-'));
  let browser;
  try {
    browser = await puppeteer.launch({
      executablePath: chromiumPath(),
      headless: true,
      userDataDir: profile,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', '--no-first-run',
             '--disable-default-apps', '--disable-extensions'],
      timeout: a.timeoutMs,
    });
    const page = await browser.newPage();
    await page.setViewport({width: a.width, height: a.height});
    const requests = [];
    const consoleErrors = [];
    const pageErrors = [];
    await page.setRequestInterception(true);
    page.on('request', (req) => {
      const url = req.url();
      if (url === pageUrl && req.isNavigationRequest()) return req.continue();
      requests.push(url);
      return req.abort();
    });
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    page.on('pageerror', (err) => pageErrors.push(String(err && err.message ? err.message : err)));
    await page.goto(pageUrl, {waitUntil: 'load', timeout: a.timeoutMs});
    const loadMs = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      return nav ? nav.loadEventEnd - nav.startTime : null;
    });
    let waitMs = null;
    if (a.wait) {
      const t0 = Date.now();
      await page.waitForFunction(a.wait, {timeout: a.timeoutMs, polling: 20});
      waitMs = Date.now() - t0;
    }
    let value = null;
    if (a.evalExpr) value = await page.evaluate(a.evalExpr);
    if (a.screenshot) await page.screenshot({path: a.screenshot, fullPage: a.fullPage});
    process.stdout.write(JSON.stringify({requests, console_errors: consoleErrors,
                                         page_errors: pageErrors, value: value === undefined ? null : value,
                                         load_ms: loadMs, wait_ms: waitMs,
                                         screenshot: a.screenshot || null}) + '\n');
  } catch (e) {
    die(String(e && e.message ? e.message : e).split('\n')[0]);
  } finally {
    if (browser) await browser.close().catch(() => {});
    fs.rmSync(profile, {recursive: true, force: true});
  }
}

main();
