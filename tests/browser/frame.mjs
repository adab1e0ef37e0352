// Front-channel logout in headless Chromium (issue 29, item 1): a page frames a client's
// logout URL, as a provider's logout page does. Prints whether the frame rendered cloakroom's
// answer (a Content-Security-Policy frame-ancestors that refuses the framing page shows an
// error instead). A fresh profile: the frame carries no cookie of cloakroom's.
//
//   node frame.mjs <framing-page-url>   → {"rendered": true|false, "text": "..."}
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [, , pageUrl] = process.argv;
const profile = mkdtempSync(join(tmpdir(), 'cloakroom-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
});
let result;
try {
  const page = context.pages()[0] || await context.newPage();
  const answered = page.waitForResponse((r) => r.url().includes('/bff/frontchannel-logout'));
  await page.goto(pageUrl);
  const response = await answered;
  await page.waitForTimeout(500);
  const frame = page.frames().find((f) => f !== page.mainFrame());
  const text = frame ? await frame.locator('body').innerText().catch(() => '') : '';
  result = { status: response.status(), frameUrl: frame?.url(), rendered: text.includes('Signed out.'), text };
} catch (error) {
  result = { error: String(error && error.stack || error) };
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(result.error ? 1 : 0);
