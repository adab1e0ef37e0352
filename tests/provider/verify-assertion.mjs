// Verifies an identity assertion the way an upstream would, with a standard JOSE library
// (`jose`, from oidc-provider's own dependencies) against cloakroom's published JWKS.
//
//   node verify-assertion.mjs <jwks-url> <issuer> <audience> <jwt>
// Prints the payload as JSON and exits 0, or prints the reason and exits 1.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [, , jwksUrl, issuer, audience, jwt] = process.argv;
try {
  const { payload, protectedHeader } = await jwtVerify(jwt, createRemoteJWKSet(new URL(jwksUrl)), {
    issuer,
    audience,
    algorithms: ['EdDSA'],
  });
  console.log(JSON.stringify({ payload, header: protectedHeader }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error.code || error.message) }));
  process.exit(1);
}
