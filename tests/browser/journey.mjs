// The browser journey, in headless Chromium (Debian's, driven by playwright-core):
// open the demo SPA, sign in through the provider's form, see the claims, call the API, look
// at the session list, sign out through the provider. Every request and response the browser
// sees is recorded (redirects included, headers and bodies) and written out with what the page
// could read (document.cookie, localStorage, sessionStorage) and the cookies as stored, for the
// Rust test to scan against the real token values. With `step-up` (the demo's development
// issuer), it also walks the demo's step-up: a payment refused for a password sign-in, the
// sign-in "with MFA", the payment going through, and the admin API.
//
//   node journey.mjs <app-origin> <output.json> [user] [step-up]
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './chromium.mjs';

const [, , origin, output, user = 'alice', mode = ''] = process.argv;
if (!origin || !output) {
  console.error('usage: node journey.mjs <app-origin> <output.json> [user]');
  process.exit(2);
}

const { context: browser, close } = await launch();
const record = { steps: [], requests: [], responses: [] };
const pending = []; // response bodies still being read
const step = (name) => { record.steps.push(name); };

try {
  const page = browser.pages()[0] || await browser.newPage();
  page.on('request', (request) => {
    const entry = { url: request.url(), method: request.method(), navigation: request.isNavigationRequest() };
    record.requests.push(entry);
    pending.push(request.allHeaders().then((h) => { entry.headers = h; }, () => {}));
  });
  page.on('response', (response) => {
    const entry = { url: response.url(), status: response.status() };
    record.responses.push(entry);
    pending.push(response.allHeaders().then((h) => { entry.headers = h; }, () => {}));
    if (response.status() < 300 || response.status() >= 400) {
      pending.push(response.text().then((b) => { entry.body = b; }, () => {}));
    }
  });

  await page.goto(`${origin}/`);
  await page.locator('#status').filter({ hasText: 'Signed out' }).waitFor();
  step('signed-out');

  await page.click('#signin');
  if (process.env.GLEWLWYD_PASSWORD) {
    // glewlwyd's own login page (a React app): login and password, then its grant and
    // continue steps, whichever it shows.
    await page.locator('#username').fill(user);
    await page.locator('#password').fill(process.env.GLEWLWYD_PASSWORD);
    await page.getByRole('button', { name: 'OK', exact: true }).click();
    // Its grant page: tick every scope the app asks for, grant, then continue back to the app.
    const grant = page.getByRole('button', { name: 'Grant access' });
    await grant.waitFor();
    if (process.env.SCREENSHOTS) await page.screenshot({ path: join(process.env.SCREENSHOTS, 'glewlwyd-grant.png'), fullPage: true });
    for (const box of await page.locator('input[type=checkbox]:not(:checked):not(:disabled)').all()) await box.check();
    await grant.click();
    await page.getByRole('button', { name: 'Continue' }).click();
  } else {
    await page.getByRole('button', { name: `Sign in as ${user}`, exact: true }).click();
  }
  // Back through the callback's same-origin hop to the first page after login.
  await page.locator('#status').filter({ hasText: 'Signed in as' }).waitFor();
  step('signed-in');
  record.claimsText = await page.locator('#claims').innerText();

  await page.click('#call-api');
  await page.locator('#api-result').waitFor();
  if (process.env.SCREENSHOTS) await page.screenshot({ path: join(process.env.SCREENSHOTS, 'signed-in.png'), fullPage: true });
  record.apiResult = await page.locator('#api-result').innerText();
  step('api-called');

  if (mode === 'step-up') {
    const result = page.locator('#authz-result');
    await page.click('#call-admin');
    await result.filter({ hasText: '/api/admin/users: HTTP' }).waitFor();
    record.adminResult = await result.innerText();
    await page.click('#pay');
    await result.filter({ hasText: 'step_up_required' }).waitFor();
    record.paymentRefused = await result.innerText();
    step('payment-refused');

    await page.click('#step-up');
    await page.getByRole('button', { name: `Sign in as ${user} with MFA`, exact: true }).click();
    await page.locator('#status').filter({ hasText: 'Signed in as' }).waitFor();
    await page.click('#pay');
    await result.filter({ hasText: '/api/payments/transfer: HTTP' }).waitFor();
    record.paymentAfterStepUp = await result.innerText();
    record.claimsAfterStepUp = await page.locator('#claims').innerText();
    if (process.env.SCREENSHOTS) await page.screenshot({ path: join(process.env.SCREENSHOTS, 'stepped-up.png'), fullPage: true });
    step('stepped-up');
  }

  await page.locator('#sessions li').first().waitFor();
  record.sessionsText = await page.locator('#sessions').innerText();
  step('sessions-listed');

  record.pageState = await page.evaluate(() => ({
    documentCookie: document.cookie,
    localStorage: JSON.stringify(Object.entries(localStorage)),
    sessionStorage: JSON.stringify(Object.entries(sessionStorage)),
  }));
  record.cookies = await browser.cookies();

  // Clicked from inside the page: Playwright's own navigation tracking does not settle after
  // this chain (a fetch answered with Clear-Site-Data, a cross-origin POST, a 303); what
  // matters is the outcome the user sees.
  // The provider asks for confirmation only while the browser still holds its session cookie,
  // which Clear-Site-Data (on by default) deletes when both share a host; either way the
  // journey ends back on the app, signed out.
  await page.evaluate(() => document.getElementById('signout').click());
  const confirm = page.getByRole('button', { name: 'Yes, sign me out' });
  const signedOut = page.locator('#status').filter({ hasText: 'Signed out' });
  if (process.env.GLEWLWYD_PASSWORD) {
    // glewlwyd's end-session page ("The client wishes you to close the current session"):
    // its Logout button (clicked in the page: an error toast of its own may cover it).
    const ask = page.getByText('wishes you to close the current session');
    await ask.or(signedOut).first().waitFor();
    if (!(await signedOut.isVisible())) {
      // The page may render its button before its handler is ready (seen once in CI: a click
      // that sent nothing): click again until the DELETE goes out, a few times at most.
      const isEnd = (r) => r.url().includes('/api/oidc/session/') && r.request().method() === 'DELETE';
      let ended;
      for (let attempt = 0; attempt < 5 && !ended; attempt += 1) {
        const deleted = page.waitForResponse(isEnd, { timeout: 6000 }).catch(() => undefined);
        await page.evaluate(() => [...document.querySelectorAll('button')].find((b) => b.textContent.trim() === 'Logout').click());
        ended = await deleted;
      }
      if (!ended) throw new Error('glewlwyd never ended its session after five clicks on Logout');
      record.providerSessionEnded = ended.status();
      // glewlwyd 2.7 keeps the user on its own page after that (it drops post_logout_redirect_uri
      // on the way to it): the user comes back to the app by hand.
      await page.goto(`${origin}/`);
    }
  } else {
    await confirm.or(signedOut).waitFor();
    if (await confirm.isVisible()) {
      await page.evaluate(() => document.querySelector('button[name="logout"]').click());
    }
  }
  await signedOut.waitFor();
  step('signed-out-again');
  record.cookiesAfter = await browser.cookies();
  await Promise.all(pending);
} catch (error) {
  record.error = String(error && error.stack || error);
  const page = browser.pages()[0];
  if (page) {
    record.lastUrl = page.url();
    record.lastHtml = await page.content().catch(() => '');
  }
} finally {
  writeFileSync(output, JSON.stringify(record));
  await close();
}
process.exit(record.error ? 1 : 0);
