// The cloakroom demo SPA. Everything it knows comes from calls to cloakroom: /bff/user,
// /bff/sessions, /bff/logout and the API routes. It never sees a token.
//
// Served by cloakroom itself, it calls its own origin. Served from elsewhere (a CDN on a
// sibling host of the same site, listed in cloakroom's `[spa] origins`), index.html names
// cloakroom's origin in <meta name="cloakroom">, and the calls go there with credentials.
const BFF = document.querySelector('meta[name="cloakroom"]')?.content || '';
const CSRF = { 'X-CSRF': '1' };
const $ = (id) => document.getElementById(id);
// Where a sign-in returns: this page, as a path on cloakroom's own origin, or in full.
const here = () => (BFF ? location.href.split('#')[0] : location.pathname + location.search);

async function call(path, options = {}) {
  const response = await fetch(BFF + path, {
    ...options,
    credentials: BFF ? 'include' : 'same-origin',
    headers: { Accept: 'application/json', ...CSRF, ...(options.headers || {}) },
  });
  let body = null;
  const text = await response.text();
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  return { status: response.status, body };
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function signIn() {
  location.assign(`${BFF}/bff/login?returnUrl=${encodeURIComponent(here())}`);
}

function signedOut(message) {
  $('status').textContent = message || 'Signed out.';
  $('signin').hidden = false;
  $('signout').hidden = true;
  for (const id of ['claims-section', 'api-section', 'authz-section', 'sessions-section']) $(id).hidden = true;
}

function time(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

function renderClaims(user) {
  const list = $('claims');
  list.replaceChildren();
  for (const [name, value] of Object.entries(user.claims)) {
    const term = document.createElement('dt');
    term.textContent = name;
    const detail = document.createElement('dd');
    detail.textContent = typeof value === 'string' ? value : JSON.stringify(value);
    list.append(term, detail);
  }
  $('session-times').textContent =
    `Signed in ${time(user.session.created_at)}; the session ends by ${time(user.session.expires_at)} at the latest.`;
}

async function loadSessions() {
  const { status, body } = await call('/bff/sessions');
  if (status !== 200) { $('sessions-section').hidden = true; return; }
  const list = $('sessions');
  list.replaceChildren();
  for (const session of body.sessions) {
    const item = document.createElement('li');
    item.textContent = `${session.device} from ${session.ip}, last seen ${time(session.last_seen)}`;
    if (session.current) {
      const mark = document.createElement('strong');
      mark.textContent = ' (this browser)';
      item.append(mark);
    } else {
      const end = document.createElement('button');
      end.textContent = 'End';
      end.className = 'small';
      end.addEventListener('click', async () => {
        const result = await call(`/bff/sessions/${encodeURIComponent(session.id)}`, { method: 'DELETE' });
        if (result.status !== 200) showError(`Could not end that session (HTTP ${result.status}).`);
        await loadSessions();
      });
      item.append(' ', end);
    }
    list.append(item);
  }
  $('sessions-section').hidden = false;
}

async function refresh() {
  showError('');
  const { status, body } = await call('/bff/user');
  if (status === 401) return signedOut();
  if (status !== 200) {
    signedOut('Your session could not be checked.');
    return showError(`cloakroom answered HTTP ${status}${body && body.error ? ` (${body.error})` : ''}. Try again shortly.`);
  }
  const name = body.claims.name || body.claims.email || body.sub;
  $('status').textContent = `Signed in as ${name}.`;
  $('signin').hidden = true;
  $('signout').hidden = false;
  renderClaims(body);
  $('claims-section').hidden = false;
  $('api-section').hidden = false;
  $('authz-section').hidden = false;
  await loadSessions();
}

async function callApi() {
  showError('');
  const { status, body } = await call('/api/hello');
  const result = $('api-result');
  if (status === 401) {
    signedOut('Your session has ended. Sign in again to continue.');
    return;
  }
  result.textContent = `HTTP ${status}\n${typeof body === 'string' ? body : JSON.stringify(body, null, 2)}`;
  result.hidden = false;
  if (status >= 400) showError(`The API call failed (HTTP ${status}${body && body.error ? `: ${body.error}` : ''}).`);
}

// A route's rules (403 forbidden) and step-up (401 step_up_required) answer as JSON; a step-up
// carries the sign-in link, to which the page appends where to come back to.
let stepUpLink = null;

async function callGuarded(path, options) {
  showError('');
  const { status, body } = await call(path, options);
  const result = $('authz-result');
  result.textContent = `${options && options.method ? options.method : 'GET'} ${path}: HTTP ${status}\n` +
    (typeof body === 'string' ? body : JSON.stringify(body, null, 2));
  result.hidden = false;
  const stepUp = status === 401 && body && body.error === 'step_up_required';
  if (status === 401 && !stepUp) return signedOut('Your session has ended. Sign in again to continue.');
  stepUpLink = stepUp ? BFF + body.login_url + encodeURIComponent(here()) : null;
  $('step-up').hidden = !stepUp;
}

async function signOut() {
  const { status, body } = await call('/bff/logout', { method: 'POST' });
  if (status !== 200) return showError(`Sign-out failed (HTTP ${status}).`);
  if (body && body.logout_url) location.assign(body.logout_url);
  else signedOut();
}

$('signin').addEventListener('click', signIn);
$('signout').addEventListener('click', signOut);
$('call-admin').addEventListener('click', () => callGuarded('/api/admin/users').catch((e) => showError(e.message)));
$('pay').addEventListener('click', () => callGuarded('/api/payments/transfer', { method: 'POST' }).catch((e) => showError(e.message)));
$('step-up').addEventListener('click', () => { if (stepUpLink) location.assign(stepUpLink); });
$('call-api').addEventListener('click', () => callApi().catch((e) => showError(`The API call failed: ${e.message}`)));
refresh().catch((e) => { signedOut('cloakroom cannot be reached.'); showError(e.message); });
