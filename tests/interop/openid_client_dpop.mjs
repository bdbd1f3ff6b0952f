// openid-client (node), a client no one here wrote, obtains a DPoP-bound token from a Keyhouse
// issuer and calls a resource service with it (RFC 9449): discovery, a client_credentials grant
// with a DPoP handle on an ES256 key pair made here, then fetchProtectedResource with the same
// handle. Two refusals are tried too: the token sent as Bearer, and the token sent as DPoP with a
// proof by another key.
//
// Run by tests/e2e/test_interop_openid_client_dpop.py:
//   node openid_client_dpop.mjs < settings.json
// settings (stdin, so that the secret is never on a command line):
//   {"issuer", "client_id", "client_secret", "token_endpoint_auth_method", "scope", "audience",
//    "resource_url"}
// Prints one JSON object on stdout: what the run saw, never a token (the key's thumbprint and
// the token's cnf.jkt are public values). On failure it prints {"error": ...} and exits 1.

import { createHash } from 'node:crypto';
import * as client from 'openid-client';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

// RFC 7638 thumbprint of an EC public key: SHA-256 of {crv, kty, x, y} in that order, base64url.
async function thumbprint(publicKey) {
  const jwk = await crypto.subtle.exportKey('jwk', publicKey);
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical, 'utf8').digest('base64url');
}

function authentication(settings) {
  switch (settings.token_endpoint_auth_method) {
    case 'client_secret_post':
      return client.ClientSecretPost(settings.client_secret);
    case 'client_secret_basic':
    case undefined:
    case null:
      return client.ClientSecretBasic(settings.client_secret);
    default:
      throw new Error(`unsupported auth method ${settings.token_endpoint_auth_method}`);
  }
}

// What a resource service answered: status, the WWW-Authenticate schemes and error codes, and the
// JSON body's error (never the body's token-bearing parts; the services echo none).
async function answer(response) {
  const challenge = response.headers.get('www-authenticate') ?? '';
  const body = await response.text();
  let json = null;
  try {
    json = JSON.parse(body);
  } catch {
    json = null;
  }
  return {
    status: response.status,
    challenge_schemes: [...challenge.matchAll(/(?:^|,\s*)(Bearer|DPoP)\b/g)].map((m) => m[1]),
    challenge_errors: [...challenge.matchAll(/error="([^"]*)"/g)].map((m) => m[1]),
    error: json?.error ?? null,
    json,
  };
}

// fetchProtectedResource with a DPoP handle. A 401 with a challenge comes back as openid-client's
// WWWAuthenticateChallengeError; its response is reported like any other, with the error's name.
async function protectedFetch(config, accessToken, url, handle) {
  try {
    const response = await client.fetchProtectedResource(
      config,
      accessToken,
      url,
      'GET',
      undefined,
      undefined,
      { DPoP: handle },
    );
    return { ...(await answer(response)), thrown: null };
  } catch (err) {
    if (err?.name === 'WWWAuthenticateChallengeError' && err.response instanceof Response) {
      return { ...(await answer(err.response)), thrown: err.name };
    }
    throw err;
  }
}

async function main() {
  const settings = await readStdin();
  const config = await client.discovery(
    new URL(settings.issuer),
    settings.client_id,
    { token_endpoint_auth_method: settings.token_endpoint_auth_method ?? 'client_secret_basic' },
    authentication(settings),
    { execute: [client.allowInsecureRequests] }, // the test issuer listens on http://127.0.0.1
  );
  const metadata = config.serverMetadata();

  const keyPair = await client.randomDPoPKeyPair('ES256');
  const jkt = await thumbprint(keyPair.publicKey);
  const dpop = client.getDPoPHandle(config, keyPair);

  const tokens = await client.clientCredentialsGrant(
    config,
    { scope: settings.scope, audience: settings.audience },
    { DPoP: dpop },
  );
  // The access token is a JWT: its payload's cnf says which key it is bound to.
  const payload = JSON.parse(
    Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString('utf8'),
  );

  const url = new URL(settings.resource_url);
  const bound = await protectedFetch(config, tokens.access_token, url, dpop);
  // The same token as a bearer token: plain fetch, so that nothing DPoP rides along.
  const asBearer = await answer(
    await fetch(url, { headers: { authorization: `Bearer ${tokens.access_token}` } }),
  );
  // The same token with a proof by a key it is not bound to (openid-client signs it properly).
  const otherKey = await client.randomDPoPKeyPair('ES256');
  const otherHandle = client.getDPoPHandle(config, otherKey);
  const wrongKey = await protectedFetch(config, tokens.access_token, url, otherHandle);

  return {
    discovery: {
      issuer: metadata.issuer,
      token_endpoint: metadata.token_endpoint,
      dpop_signing_alg_values_supported: metadata.dpop_signing_alg_values_supported ?? null,
    },
    key_thumbprint: jkt,
    token_type: tokens.token_type,
    scope: tokens.scope ?? null,
    expires_in: tokens.expiresIn() ?? null,
    token_claims: {
      iss: payload.iss,
      aud: payload.aud,
      sub: payload.sub,
      scope: payload.scope ?? null,
      cnf: payload.cnf ?? null,
    },
    dpop_fetch: bound,
    bearer_fetch: asBearer,
    other_key_fetch: wrongKey,
  };
}

try {
  process.stdout.write(`${JSON.stringify(await main())}\n`);
} catch (err) {
  const detail = {
    error: `${err?.name ?? 'Error'}: ${err?.message ?? String(err)}`,
    code: err?.code ?? null,
    cause: typeof err?.cause?.message === 'string' ? err.cause.message : null,
    // An OAuth error response's fields (openid-client's ResponseBodyError); never a token.
    oauth_error: err?.error ?? null,
    oauth_error_description: err?.error_description ?? null,
    status: err?.status ?? null,
    // A 401 with WWW-Authenticate (openid-client's WWWAuthenticateChallengeError): its challenges.
    challenges: Array.isArray(err?.cause)
      ? err.cause.map((c) => ({ scheme: c.scheme, error: c.parameters?.error ?? null }))
      : null,
  };
  process.stdout.write(`${JSON.stringify(detail)}\n`);
  process.exitCode = 1;
}
