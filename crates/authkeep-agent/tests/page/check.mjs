// Loads the agent's status page in the machine's Chromium (Debian's package; no
// browser is downloaded) the way a person would: the key form, a wrong key, the
// right key, the table, the state filter and the id filter. Prints what it saw as
// one JSON object on stdout for the Rust test to judge, and saves a screenshot.
//
// usage: node check.mjs URL SCREENSHOT   (the API key in AUTHKEEP_PAGE_KEY)
import { chromium } from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
const key = process.env.AUTHKEEP_PAGE_KEY;
if (!url || !screenshot || !key) {
  console.error('usage: AUTHKEEP_PAGE_KEY=… node check.mjs URL SCREENSHOT');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const rows = async () =>
    page.$$eval('#accounts tbody tr', (trs) =>
      trs.map((tr) => ({ account: tr.dataset.account, state: tr.dataset.state })));

  const first = await page.goto(url);
  const form = { status: first.status(), asks_key: (await page.$('#key')) !== null };

  await page.fill('#key', 'not-the-key');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const wrong = { error_shown: (await page.$('#error')) !== null, table: (await page.$('#accounts')) !== null };

  await page.fill('#key', key);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const all = await rows();
  const cookies = (await context.cookies()).map((c) => ({
    name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, is_key: c.value === key,
  }));
  const cookie_visible_to_script = await page.evaluate(() => document.cookie);
  // The cookie opens the page only: the API still wants the bearer key.
  const api_with_cookie = (await context.request.get(new URL('/v1/accounts', url).href)).status();
  await page.screenshot({ path: screenshot, fullPage: true });
  const html_all = await page.content();

  await page.selectOption('#state', 'needs_login');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const needs_login = await rows();

  await page.selectOption('#state', '');
  await page.fill('#q', process.env.AUTHKEEP_PAGE_QUERY || '');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const by_id = await rows();

  // A reload keeps the page: the cookie is remembered.
  const reloaded = await page.reload();
  const after_reload = { status: reloaded.status(), table: (await page.$('#accounts')) !== null };

  console.log(JSON.stringify({
    form, wrong, all, cookies, cookie_visible_to_script, api_with_cookie, needs_login, by_id, after_reload,
    html: html_all,
  }));
} finally {
  await browser.close();
}
