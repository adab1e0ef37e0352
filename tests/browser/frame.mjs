// Front-channel logout in headless Chromium (issue 29, item 1): a page frames a client's
// logout URL, as a provider's logout page does. Prints whether the frame rendered cloakroom's
// answer (a Content-Security-Policy frame-ancestors that refuses the framing page shows an
// error instead). A fresh profile: the frame carries no cookie of cloakroom's.
//
//   node frame.mjs <framing-page-url>   → {"rendered": true|false, "text": "..."}
import { launch } from './chromium.mjs';

const [, , pageUrl] = process.argv;
const { page, close } = await launch();
let result;
try {
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
  await close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(result.error ? 1 : 0);
