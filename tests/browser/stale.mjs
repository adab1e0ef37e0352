// Stale sign-in answers in headless Chromium (issue 29, item 3): after signing in, the back
// button, and the used callback opened again from another site (a cross-site navigation, which
// carries no SameSite=Strict cookie), must land on the app signed in, never on an error page;
// in a browser without a session the same link starts one fresh sign-in.
//
//   node stale.mjs <app-origin> <output.json>
import { writeFileSync } from 'node:fs';
import { launch } from './chromium.mjs';

const [, , origin, output] = process.argv;
const record = { steps: [], navigations: [] };
const contexts = [];

// Opens `url` by a link on a page of another site (an opaque data: origin): cross-site.
const openFromElsewhere = async (page, url) => {
  await page.goto(`data:text/html,<a id="go" href="${encodeURI(url)}">go</a>`);
  await page.click('#go');
};

try {
  const first = await launch();
  contexts.push(first);
  const { page } = first;
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) record.navigations.push(frame.url()); });
  await page.goto(`${origin}/`);
  await page.locator('#status').filter({ hasText: 'Signed out' }).waitFor();
  await page.click('#signin');
  await page.getByRole('button', { name: 'Sign in as alice', exact: true }).click();
  const signedIn = page.locator('#status').filter({ hasText: 'Signed in as' });
  await signedIn.waitFor();
  const callback = record.navigations.find((u) => u.includes('/bff/callback?'));
  if (!callback) throw new Error('no callback navigation recorded');
  record.steps.push('signed-in');

  // The used answer again, from another site: on to the app, still signed in.
  await openFromElsewhere(page, callback);
  await signedIn.waitFor();
  record.afterCrossSite = page.url();
  record.steps.push('cross-site-stale-callback');

  // The back button, twice (onto the other site's page, then onto the callback's): the app,
  // signed in, or a page of the provider; never an error page of cloakroom's.
  await page.goBack();
  await page.goBack();
  await page.waitForLoadState('load');
  record.afterBack = page.url();
  record.afterBackText = await page.locator('body').innerText().catch(() => '');
  record.steps.push('back-button');

  // A browser without a session: the same link starts one fresh sign-in at the provider.
  const second = await launch();
  contexts.push(second);
  await openFromElsewhere(second.page, callback);
  await second.page.getByRole('button', { name: 'Sign in as alice', exact: true }).click();
  await second.page.locator('#status').filter({ hasText: 'Signed in as' }).waitFor();
  record.steps.push('fresh-sign-in');
} catch (error) {
  record.error = String(error && error.stack || error);
  const page = contexts.at(-1)?.page;
  if (page) {
    record.lastUrl = page.url();
    record.lastText = await page.locator('body').innerText().catch(() => '');
  }
} finally {
  writeFileSync(output, JSON.stringify(record));
  for (const { close } of contexts) await close();
}
process.exit(record.error ? 1 : 0);
