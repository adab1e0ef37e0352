// A DPoP-protected API (RFC 9449 §7) for cloakroom's tests, verifying as a resource server
// would, with a standard JOSE library (`jose`, from oidc-provider's own dependencies):
//   - `Authorization: DPoP <token>`; the token a JWT of the provider (its JWKS), bound to a key
//     (`cnf.jkt`); a bound token presented as `Bearer` is refused;
//   - exactly one `DPoP` proof: `dpop+jwt`, ES256, signed by the key its header embeds, whose
//     RFC 7638 thumbprint is the token's `cnf.jkt`; `htm` the request's method, `htu` this
//     API's URL for the request's path (no query), `ath` the token's hash, a `jti` never seen
//     before, `iat` within five minutes, and the API's current nonce (else `use_dpop_nonce`
//     with a `DPoP-Nonce` header, as §9 has it).
//
//   node dpop-api.mjs <issuer>
// Prints `{"port": …}`; exits when its stdin closes. Test-only endpoints: GET /__test/seen
// (every request: its path, headers and verdict), POST /__test/rotate (a new nonce).
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, jwtVerify } from 'jose';

const [, , issuer] = process.argv;
const keys = createRemoteJWKSet(new URL(`${issuer}/jwks`));
const seenJtis = new Set();
const seen = [];
let nonce = randomBytes(16).toString('base64url');

class Refusal extends Error {
  constructor(error, description) {
    super(description);
    this.error = error;
  }
}

async function verify(req, origin) {
  const authorization = req.headers.authorization || '';
  const [scheme, token, ...rest] = authorization.split(' ');
  if (!token || rest.length) throw new Refusal('invalid_token', 'no token');
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, keys, { issuer }));
  } catch (e) {
    throw new Refusal('invalid_token', `the token does not verify: ${e.code || e.message}`);
  }
  const jkt = claims.cnf?.jkt;
  if (!jkt) throw new Refusal('invalid_token', 'the token is not DPoP-bound');
  if (scheme !== 'DPoP') throw new Refusal('invalid_token', `a DPoP-bound token presented as ${scheme}`);
  const proofs = req.headersDistinct.dpop || [];
  if (proofs.length !== 1) throw new Refusal('invalid_dpop_proof', `${proofs.length} DPoP proofs`);
  let proof;
  try {
    proof = await jwtVerify(proofs[0], EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
  } catch (e) {
    throw new Refusal('invalid_dpop_proof', `the proof does not verify: ${e.code || e.message}`);
  }
  const { payload, protectedHeader } = proof;
  if (await calculateJwkThumbprint(protectedHeader.jwk) !== jkt) {
    throw new Refusal('invalid_dpop_proof', 'the proof is signed by another key than the token is bound to');
  }
  if (payload.htm !== req.method) throw new Refusal('invalid_dpop_proof', 'htm mismatch');
  const expected = new URL(req.url, origin);
  expected.search = '';
  if (payload.htu !== expected.href) throw new Refusal('invalid_dpop_proof', `htu mismatch: ${payload.htu}`);
  if (payload.ath !== createHash('sha256').update(token).digest('base64url')) {
    throw new Refusal('invalid_dpop_proof', 'ath mismatch');
  }
  if (typeof payload.iat !== 'number' || Math.abs(Date.now() / 1000 - payload.iat) > 300) {
    throw new Refusal('invalid_dpop_proof', 'iat is not recent');
  }
  if (typeof payload.jti !== 'string' || seenJtis.has(payload.jti)) {
    throw new Refusal('invalid_dpop_proof', 'the proof was used before (jti)');
  }
  if (payload.nonce !== nonce) throw new Refusal('use_dpop_nonce', 'use the nonce');
  seenJtis.add(payload.jti);
  return { sub: claims.sub, jkt, aud: claims.aud };
}

const server = http.createServer(async (req, res) => {
  const origin = `http://127.0.0.1:${server.address().port}`;
  if (req.url === '/__test/seen') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(seen));
  }
  if (req.url === '/__test/rotate' && req.method === 'POST') {
    nonce = randomBytes(16).toString('base64url');
    res.writeHead(204);
    return res.end();
  }
  const record = { method: req.method, path: req.url, headers: req.headers };
  seen.push(record);
  try {
    const verified = await verify(req, origin);
    record.verdict = 'ok';
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ...verified, method: req.method, path: req.url }));
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    record.verdict = e.message;
    const headers = {
      'content-type': 'application/json',
      'www-authenticate': `DPoP error="${e.error}", error_description="${e.message.replace(/["\\]/g, '')}", algs="ES256"`,
    };
    if (e.error === 'use_dpop_nonce') headers['dpop-nonce'] = nonce;
    res.writeHead(401, headers);
    res.end(JSON.stringify({ error: e.error, reason: e.message }));
  }
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
