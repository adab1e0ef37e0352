// An API taking certificate-bound access tokens (RFC 8705 §3) for cloakroom's tests, verifying
// as a resource server would, with a standard JOSE library (`jose`) and node's TLS:
//   - https, asking every client for a certificate (TLS_CA's or any other: the binding, not the
//     CA, decides);
//   - `Authorization: Bearer <token>`, the token a JWT of the provider (its JWKS) carrying
//     `cnf.x5t#S256`, the SHA-256 thumbprint of the certificate presented on this connection;
//     a token without the confirmation, or presented with another certificate or none, is
//     refused (`401 invalid_token`).
//
//   TLS_CERT=… TLS_KEY=… TLS_CA=… NODE_EXTRA_CA_CERTS=… node mtls-api.mjs <issuer>
// Prints `{"port": …}`; exits when its stdin closes. GET /__test/seen: every request, with
// the thumbprint of the certificate it came with and the verdict.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [, , issuer] = process.argv;
const keys = createRemoteJWKSet(new URL(`${issuer}/jwks`));
const seen = [];

class Refusal extends Error {}

function thumbprint(req) {
  const raw = req.socket.getPeerCertificate?.()?.raw;
  return raw ? createHash('sha256').update(raw).digest('base64url') : undefined;
}

async function verify(req, presented) {
  const [scheme, token, ...rest] = (req.headers.authorization || '').split(' ');
  if (scheme !== 'Bearer' || !token || rest.length) throw new Refusal('no Bearer token');
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, keys, { issuer }));
  } catch (e) {
    throw new Refusal(`the token does not verify: ${e.code || e.message}`);
  }
  const bound = claims.cnf?.['x5t#S256'];
  if (!bound) throw new Refusal('the token is not bound to a certificate');
  if (!presented) throw new Refusal('no client certificate on this connection');
  if (presented !== bound) throw new Refusal('the token is bound to another certificate');
  return { sub: claims.sub, x5t: bound, aud: claims.aud };
}

const server = https.createServer({
  cert: readFileSync(process.env.TLS_CERT),
  key: readFileSync(process.env.TLS_KEY),
  ca: readFileSync(process.env.TLS_CA),
  requestCert: true,
  rejectUnauthorized: false,
}, async (req, res) => {
  if (req.url === '/__test/seen') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(seen));
  }
  const presented = thumbprint(req);
  const record = { method: req.method, path: req.url, presented };
  seen.push(record);
  try {
    const verified = await verify(req, presented);
    record.verdict = 'ok';
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ...verified, path: req.url }));
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    record.verdict = e.message;
    res.writeHead(401, {
      'content-type': 'application/json',
      'www-authenticate': `Bearer error="invalid_token", error_description="${e.message}"`,
    });
    res.end(JSON.stringify({ error: 'invalid_token', reason: e.message }));
  }
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
