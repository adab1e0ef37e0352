// A real OpenID provider for cloakroom's tests: oidc-provider (OpenID Certified) on 127.0.0.1.
//
// The harness starts it with `node server.mjs`, reads one JSON line `{"issuer": ...}` from stdout,
// and registers one client per test through dynamic client registration (RFC 7591), so every test
// owns its redirect_uri. The process exits when its stdin closes, i.e. when the test process ends.
//
// Settings come from the environment so tests can shape the provider:
//   ACCESS_TOKEN_TTL   seconds (default 300)
//   ID_TOKEN_TTL       seconds (default 3600: tests move their clock past access-token expiry)
//   ISSUER             the issuer to claim, when tests reach the provider through a gate
//   TLS_CERT, TLS_KEY  PEM files: serve https (the issuer is then https://127.0.0.1:<port>)
//   DPOP_REQUIRE_NONCE "1": every DPoP proof must carry the provider's nonce (RFC 9449 §8),
//                      so a client's first proof is answered `use_dpop_nonce`
//   FAPI               "1": the FAPI 2.0 Security Profile (oidc-provider's `fapi` feature),
//                      pushed authorization requests required, and an ES256 signing key beside
//                      the RSA one (FAPI 2.0 allows PS256, ES256 and EdDSA ID tokens)
//   MTLS               "1" (with TLS_CERT, TLS_KEY and TLS_CA): RFC 8705, tls_client_auth and
//                      self_signed_tls_client_auth with access tokens bound to the client's
//                      certificate; the endpoints for them (`mtls_endpoint_aliases`) on a second
//                      https listener that asks for a client certificate (one of TLS_CA's, or
//                      a self-signed one), while the issuer's own listener asks for none, so a
//                      client that ignores the aliases presents no certificate
//   USERINFO_CLAIMS    "1": as OpenID Connect Core has it, scope claims (name, email, groups)
//                      only at the userinfo endpoint, and the sign-in's access token bound to
//                      no resource, so that userinfo accepts it
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import Provider, { errors, interactionPolicy } from 'oidc-provider';

const accounts = {
  alice: { sub: 'alice', name: 'Alice Example', email: 'alice@example.com', email_verified: true, groups: ['staff', 'admins'] },
  bob: { sub: 'bob', name: 'Bob Example', email: 'bob@example.com', email_verified: true, groups: ['staff'] },
};

// The benchmark (bench/run) signs in thousands of distinct users: `bench-<n>`, made on demand.
const account = (id) => accounts[id] ?? (/^bench-\d{1,6}$/.test(id)
  ? { sub: id, name: `Bench User ${id.slice(6)}`, email: `${id}@example.com`, email_verified: true, groups: ['staff'] }
  : undefined);

export const API_RESOURCE = 'urn:cloakroom:test-api';
const ttl = (name, fallback) => Number(process.env[name] || fallback);

// Step-up, as real providers do it: a sign-in asking for an `acr_values` the provider session
// does not have prompts for a new login (the sign-in page offers a plain and an "MFA" one).
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check(
  'acr_step_up', 'a stronger authentication was asked for', 'login_required',
  (ctx) => {
    // Asked once per authorization: the user's answer to that prompt stands, even if weaker.
    if (ctx.oidc.result?.login) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    const asked = (ctx.oidc.params.acr_values || '').split(' ').filter(Boolean);
    return asked.length > 0 && !asked.includes(ctx.oidc.session.acr)
      ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT;
  },
));

const configuration = {
  clients: [],
  acrValues: ['pwd', 'mfa'],
  // Tests read claims from the ID token (userinfo refuses resource-bound JWT access tokens),
  // unless USERINFO_CLAIMS asks for the claims at userinfo only.
  conformIdTokenClaims: process.env.USERINFO_CLAIMS === '1',
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'groups'],
  },
  cookies: { keys: ['cloakroom-test-provider-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    clientCredentials: { enabled: true },
    // DPoP (RFC 9449): proofs bind a client's tokens to its key; nonces when asked for.
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: () => process.env.DPOP_REQUIRE_NONCE === '1',
    },
    rpInitiatedLogout: {
      enabled: true,
      // The stock page imports a web font from the internet, which a test browser cannot load.
      logoutSource: async (ctx, form) => {
        ctx.body = `<!doctype html><meta charset="utf-8"><title>Test provider sign-out</title>
          <h1>Sign out of the test provider?</h1>${form}
          <button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
          <button type="submit" form="op.logoutForm">No, stay signed in</button>`;
      },
    },
    backchannelLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => (process.env.USERINFO_CLAIMS === '1' ? undefined : API_RESOURCE),
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resourceIndicator) => ({
        scope: 'api:read',
        audience: resourceIndicator,
        accessTokenFormat: 'jwt',
        accessTokenTTL: ttl('ACCESS_TOKEN_TTL', 300),
      }),
    },
  },
  // PKCE on every authorization-code grant, confidential clients included.
  pkce: { required: () => true },
  // Refresh tokens for any client allowed the grant (oidc-provider otherwise also demands prompt=consent).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: {
    IdToken: ttl('ID_TOKEN_TTL', 3600),
    AccessToken: ttl('ACCESS_TOKEN_TTL', 300),
    RefreshToken: 24 * 3600,
  },
  interactions: { policy, url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // Back-channel logout calls go to cloakroom on loopback, which oidc-provider's SSRF guard
  // refuses. The tests allow exactly loopback, and nothing else.
  fetch: async (url, options) => {
    const { hostname } = new URL(url);
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) {
      throw new Error(`the test provider only calls loopback, not ${hostname}`);
    }
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  findAccount: async (_ctx, id) => {
    const found = account(id);
    if (!found) return undefined;
    return { accountId: id, claims: async () => ({ ...found }) };
  },
};

if (process.env.FAPI === '1') {
  const signing = async (alg, kid) => {
    const { privateKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
    return { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
  };
  configuration.jwks = { keys: [await signing('RS256', 'fapi-rs256'), await signing('ES256', 'fapi-es256')] };
  configuration.features.fapi = { enabled: true, profile: '2.0' };
  configuration.features.pushedAuthorizationRequests = { enabled: true, requirePushedAuthorizationRequests: true };
}

// Mutual TLS (RFC 8705), as oidc-provider documents it: the certificate from the TLS socket,
// verified against TLS_CA for tls_client_auth (its subject DN is the registered one), or
// matched to a registered key for self_signed_tls_client_auth.
let mtlsServer;
if (process.env.MTLS === '1') {
  const peer = (ctx) => {
    const raw = ctx.socket.getPeerCertificate?.()?.raw;
    return raw ? new X509Certificate(raw) : undefined;
  };
  configuration.features.mTLS = {
    enabled: true,
    certificateBoundAccessTokens: true,
    tlsClientAuth: true,
    selfSignedTlsClientAuth: true,
    getCertificate: peer,
    certificateAuthorized: (ctx) => ctx.socket.authorized === true,
    certificateSubjectMatches: (ctx, property, expected) =>
      property === 'tls_client_auth_subject_dn' && peer(ctx)?.subject === expected,
  };
  configuration.clientAuthMethods = [
    'client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
    'tls_client_auth', 'self_signed_tls_client_auth',
  ];
  mtlsServer = https.createServer({
    cert: readFileSync(process.env.TLS_CERT),
    key: readFileSync(process.env.TLS_KEY),
    ca: readFileSync(process.env.TLS_CA),
    requestCert: true,
    rejectUnauthorized: false,
  });
  await new Promise((resolve) => mtlsServer.listen(0, '127.0.0.1', resolve));
  const base = `https://127.0.0.1:${mtlsServer.address().port}`;
  configuration.discovery = {
    mtls_endpoint_aliases: {
      token_endpoint: `${base}/token`,
      revocation_endpoint: `${base}/token/revocation`,
      introspection_endpoint: `${base}/token/introspection`,
      userinfo_endpoint: `${base}/me`,
      pushed_authorization_request_endpoint: `${base}/request`,
    },
  };
}

// Token exchange (RFC 8693), registered through oidc-provider's documented registerGrantType:
// a client trades an access token issued to it (a JWT of this provider's, verified against its
// own JWKS) for an opaque one naming the `audience`/`resource` asked for. The policy, as real
// providers have one: any `urn:cloakroom:` audience but `urn:cloakroom:forbidden`.
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
function tokenExchange(issuer, exchanged) {
  const keys = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  return async (ctx) => {
    const { subject_token: subject, subject_token_type: subjectType, audience, resource, scope } = ctx.oidc.params;
    if (!subject || subjectType !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('subject_token (an access token) is required');
    }
    let claims;
    try {
      ({ payload: claims } = await jwtVerify(subject, keys, { issuer }));
    } catch {
      throw new errors.InvalidGrant('subject_token is not a valid access token of this provider');
    }
    if (claims.client_id !== ctx.oidc.client.clientId) {
      throw new errors.InvalidGrant('subject_token was issued to another client');
    }
    const target = audience || resource;
    if (!target || !target.startsWith('urn:cloakroom:') || target === 'urn:cloakroom:forbidden') {
      throw new errors.InvalidTarget('this audience may not be asked for');
    }
    const token = `xchg_${randomBytes(24).toString('base64url')}`;
    exchanged.set(token, { sub: claims.sub, clientId: ctx.oidc.client.clientId, audience, resource, scope });
    ctx.body = {
      access_token: token,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: ttl('ACCESS_TOKEN_TTL', 300),
      ...(scope ? { scope } : {}),
    };
  };
}

function html(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><meta charset="utf-8"><title>Test provider</title>${body}`);
}

async function readForm(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return new URLSearchParams(raw);
}

async function interaction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
  const { prompt, params, session } = details;

  if (prompt.name === 'login') {
    if (action === 'login' && req.method === 'POST') {
      const form = await readForm(req);
      const accountId = form.get('login');
      if (!account(accountId)) return html(res, 400, '<p>unknown user</p>');
      // `mfa=1`: the second factor was used (a higher acr); otherwise a password sign-in.
      const mfa = form.get('mfa') === '1';
      const login = { accountId, acr: mfa ? 'mfa' : 'pwd', amr: mfa ? ['pwd', 'otp'] : ['pwd'] };
      return provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
    }
    if (action === 'abort' && req.method === 'POST') {
      return provider.interactionFinished(req, res, {
        error: 'access_denied', error_description: 'End-User aborted interaction',
      }, { mergeWithLastSubmission: false });
    }
    const users = Object.keys(accounts).map((id) =>
      `<button name="login" value="${id}" type="submit">Sign in as ${id}</button>`).join(' ');
    return html(res, 200, `<h1>Test provider sign-in</h1>
      <form method="post" action="/interaction/${uid}/login">${users}
        <label><input type="checkbox" name="mfa" value="1"> with a second factor (MFA)</label></form>
      <form method="post" action="/interaction/${uid}/abort"><button type="submit">Cancel</button></form>`);
  }

  // Consent: granted automatically for whatever the client asked.
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (!grant) grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
  if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
  if (missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function basicClientId(req) {
  const header = req.headers.authorization || '';
  if (!header.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(header.slice(6), 'base64').toString();
  return decodeURIComponent(decoded.split(':')[0]);
}

const tls = process.env.TLS_CERT && process.env.TLS_KEY;
const server = tls
  ? https.createServer({ cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) })
  : http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = process.env.ISSUER || `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration);
  const exchanged = new Map();
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange(issuer, exchanged),
    ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope']);
  // Userinfo answers, counted per client (oidc-provider emits no event of its own for them);
  // a middleware must be in place before the callback is made.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'userinfo' && ctx.status === 200) {
      events.push({ type: 'userinfo', clientId: ctx.oidc.client?.clientId });
    }
    // Test-only: the refresh token's lifetime in token answers, per client, in the field and
    // form some providers use (Keycloak's `refresh_expires_in`, a number).
    const lifetime = refreshLifetime.get(ctx.oidc?.client?.clientId);
    if (ctx.oidc?.route === 'token' && ctx.status === 200 && lifetime !== undefined && ctx.body?.refresh_token) {
      ctx.body = { ...ctx.body, refresh_expires_in: lifetime };
    }
  });
  const callback = provider.callback();

  // Test-only observation: what the provider issued and revoked, so tests can check at the
  // provider (e.g. introspect a refresh token after logout) and count token-endpoint calls.
  const events = [];
  const outage = new Map();
  const refreshLifetime = new Map();
  provider.on('grant.success', (ctx) => events.push({
    type: 'grant.success', grant_type: ctx.oidc.params?.grant_type, clientId: ctx.oidc.client?.clientId,
    // The actual token values issued, so tests can scan what a browser received for them.
    tokens: ['access_token', 'refresh_token', 'id_token'].map((k) => ctx.body?.[k]).filter(Boolean),
  }));
  provider.on('grant.error', (ctx, err) => events.push({
    type: 'grant.error', grant_type: ctx.oidc.params?.grant_type, error: err.error, clientId: ctx.oidc.client?.clientId,
  }));
  provider.on('refresh_token.saved', (token) => events.push({ type: 'refresh_token.saved', token: token.jti, grantId: token.grantId, clientId: token.clientId }));
  provider.on('grant.revoked', (_ctx, grantId) => events.push({ type: 'grant.revoked', grantId }));

  const handle = async (req, res) => {
    // Test-only failure switch, per client: its token requests get an OAuth error, by default
    // a 503 `server_error` (an outage), or `error=invalid_client` (401: its credentials refused),
    // or `empty-<status>` (that status, with no body at all).
    if (req.url === '/__test/outage' && req.method === 'POST') {
      const form = await readForm(req);
      if (form.get('on') === 'true') outage.set(form.get('client_id'), form.get('error') || 'server_error');
      else outage.delete(form.get('client_id'));
      res.writeHead(204);
      return res.end();
    }
    if (req.url === '/__test/refresh-lifetime' && req.method === 'POST') {
      const form = await readForm(req);
      if (form.get('seconds')) refreshLifetime.set(form.get('client_id'), Number(form.get('seconds')));
      else refreshLifetime.delete(form.get('client_id'));
      res.writeHead(204);
      return res.end();
    }
    if (req.url === '/token' && req.method === 'POST' && outage.has(basicClientId(req))) {
      const error = outage.get(basicClientId(req));
      // `empty-400`, `empty-403`: a refusal with an empty body, as glewlwyd answers.
      const bare = /^empty-(\d{3})$/.exec(error);
      if (bare) {
        res.writeHead(Number(bare[1]));
        return res.end();
      }
      res.writeHead(error === 'invalid_client' ? 401 : 503, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error, error_description: 'simulated by the test' }));
    }
    // Test-only: a page of the provider's origin that frames a client's front-channel logout
    // URL, as a provider's logout page does (Front-Channel Logout 1.0).
    if (req.url.startsWith('/__test/frame?')) {
      const src = new URL(req.url, issuer).searchParams.get('src') || '';
      const attr = src.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(`<!doctype html><title>Signed out at the provider</title><iframe id="rp" src="${attr}"></iframe>`);
    }
    // Test-only: what an exchanged token was issued for (an upstream would introspect it).
    if (req.url.startsWith('/__test/exchanged?')) {
      const token = new URL(req.url, issuer).searchParams.get('token');
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(exchanged.get(token) ?? null));
    }
    if (req.url === '/__test/events') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(events));
    }
    const match = /^\/interaction\/([^/]+)(?:\/(login|abort))?$/.exec(req.url.split('?')[0]);
    if (!match) return callback(req, res);
    try {
      await interaction(provider, req, res, match[1], match[2]);
    } catch (err) {
      html(res, 400, `<p>${String(err.message).replace(/[<>&"]/g, '')}</p>`);
    }
  };
  server.on('request', handle);
  mtlsServer?.on('request', handle);
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

// Exit with the test process: the harness holds our stdin open for as long as it lives.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
