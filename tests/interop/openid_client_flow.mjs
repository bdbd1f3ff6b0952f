// openid-client (node), a relying party no one here wrote, signs a person in at a Keyhouse issuer:
// discovery, the authorization code flow with PKCE (S256), state and nonce, the id_token checked
// (signature against the issuer's JWKS, iss, aud, azp, exp, iat, nonce; at_hash here), /userinfo.
//
// Run by tests/e2e/test_interop_openid_client.py:
//   node openid_client_flow.mjs < settings.json
// settings (stdin, so that the password is never on a command line):
//   {"issuer", "client_id", "redirect_uri", "scope", "username", "password"}
// The person's part (the login form, and the consent form when the issuer shows one) is played
// by fetch with the cookies carried by hand, as a browser would post them.
// Prints one JSON object on stdout: what the flow saw, never a token. On failure it prints
// {"error": ...} and exits 1.

import { createHash } from 'node:crypto';
import * as client from 'openid-client';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

// -- the person's browser: cookies and forms ---------------------------------------------------

class CookieJar {
  constructor() {
    this.cookies = new Map();
  }

  take(response) {
    const attributes = [];
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...rest] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const attrs = rest.map((a) => a.trim().toLowerCase());
      attributes.push({ name, attrs });
      if (attrs.some((a) => a === 'max-age=0' || a.startsWith('max-age=-')) || value === '') {
        this.cookies.delete(name);
      } else {
        this.cookies.set(name, value);
      }
    }
    return attributes;
  }

  header() {
    return [...this.cookies].map(([n, v]) => `${n}=${v}`).join('; ');
  }
}

function decodeEntities(text) {
  return text
    .replace(/&#(\d+);/g, (_, n) => String.fromCodePoint(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n) => String.fromCodePoint(parseInt(n, 16)))
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function attribute(tag, name) {
  const match = tag.match(new RegExp(`\\s${name}\\s*=\\s*("([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i'));
  if (!match) return undefined;
  return decodeEntities(match[2] ?? match[3] ?? match[4]);
}

// The page's forms: [{action, method, fields: {name: value} (hidden inputs), names: [every input]}]
function forms(html, pageUrl) {
  const found = [];
  for (const form of html.matchAll(/<form\b[^>]*>[\s\S]*?<\/form>/gi)) {
    const open = form[0].match(/<form\b[^>]*>/i)[0];
    const fields = {};
    const names = [];
    for (const input of form[0].matchAll(/<(input|button)\b[^>]*>/gi)) {
      const name = attribute(input[0], 'name');
      if (name === undefined) continue;
      names.push(name);
      if ((attribute(input[0], 'type') ?? '').toLowerCase() === 'hidden') {
        fields[name] = attribute(input[0], 'value') ?? '';
      }
    }
    found.push({
      action: new URL(attribute(open, 'action') ?? pageUrl, pageUrl).href,
      method: (attribute(open, 'method') ?? 'get').toLowerCase(),
      fields,
      names,
    });
  }
  return found;
}

async function post(jar, url, origin, fields) {
  const response = await fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      origin,
      cookie: jar.header(),
    },
    body: new URLSearchParams(fields),
  });
  const cookies = jar.take(response);
  return { response, cookies, body: await response.text() };
}

// Plays the person from the authorization URL to the redirect back to the client: returns the
// callback URL (with code, state, iss) and what the person saw on the way.
async function signIn(authorizationUrl, issuer, redirectUri, username, password) {
  const jar = new CookieJar();
  const origin = new URL(issuer).origin;
  const seen = { pages: [], cookies: [] };
  let response = await fetch(authorizationUrl, { redirect: 'manual' });
  seen.cookies.push(...jar.take(response));
  let url = authorizationUrl.href;
  let body = await response.text();
  for (let step = 0; step < 5; step += 1) {
    if (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get('location'), url);
      if (location.href.startsWith(redirectUri)) {
        return { callback: location, seen };
      }
      url = location.href;
      response = await fetch(location, { redirect: 'manual', headers: { cookie: jar.header() } });
      seen.cookies.push(...jar.take(response));
      body = await response.text();
      continue;
    }
    if (response.status !== 200 && response.status !== 401) {
      throw new Error(`the issuer answered ${response.status} at ${url}: ${body.slice(0, 300)}`);
    }
    const page = forms(body, url).find((f) => f.method === 'post');
    if (!page) throw new Error(`no form on the page at ${url} (${response.status})`);
    let fields;
    if (page.names.includes('password')) {
      if (seen.pages.includes('login')) throw new Error('the login form came back: login refused');
      seen.pages.push('login');
      fields = { ...page.fields, username, password };
    } else if (page.names.includes('decision')) {
      seen.pages.push('consent');
      fields = { ...page.fields, decision: 'approve' };
    } else {
      throw new Error(`a form with neither password nor decision at ${url}`);
    }
    url = page.action;
    let cookies;
    ({ response, body, cookies } = await post(jar, page.action, origin, fields));
    seen.cookies.push(...cookies);
  }
  throw new Error('no redirect back to the client after five pages');
}

// -- the relying party ----------------------------------------------------------------------------

function atHash(accessToken) {
  // OIDC Core 3.1.3.6: base64url of the left half of SHA-256 (RS256) of the access token's ASCII.
  const digest = createHash('sha256').update(accessToken, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

async function main() {
  const settings = await readStdin();
  const config = await client.discovery(
    new URL(settings.issuer),
    settings.client_id,
    { token_endpoint_auth_method: 'none', id_token_signed_response_alg: 'RS256' },
    client.None(),
    { execute: [client.allowInsecureRequests] }, // the test issuer listens on http://127.0.0.1
  );
  client.enableNonRepudiationChecks(config); // verify the id_token's signature with the JWKS
  const metadata = config.serverMetadata();

  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const nonce = client.randomNonce();
  const state = client.randomState();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: settings.redirect_uri,
    scope: settings.scope,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    nonce,
    state,
  });

  const { callback, seen } = await signIn(
    authorizationUrl,
    settings.issuer,
    settings.redirect_uri,
    settings.username,
    settings.password,
  );
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: codeVerifier,
    expectedNonce: nonce,
    expectedState: state,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const header = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url').toString());
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);

  return {
    discovery: {
      issuer: metadata.issuer,
      authorization_endpoint: metadata.authorization_endpoint,
      token_endpoint: metadata.token_endpoint,
      userinfo_endpoint: metadata.userinfo_endpoint,
      jwks_uri: metadata.jwks_uri,
    },
    pages: seen.pages,
    issuer_cookies: seen.cookies,
    callback_params: [...callback.searchParams.keys()].sort(),
    callback_iss: callback.searchParams.get('iss'),
    nonce_sent: nonce,
    token_type: tokens.token_type,
    scope: tokens.scope ?? null,
    expires_in: tokens.expiresIn() ?? null,
    refresh_token_issued: typeof tokens.refresh_token === 'string',
    id_token_header: { alg: header.alg, kid: header.kid, typ: header.typ ?? null },
    id_token_claims: claims,
    at_hash_matches: claims.at_hash === atHash(tokens.access_token),
    userinfo,
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
  };
  process.stdout.write(`${JSON.stringify(detail)}\n`);
  process.exitCode = 1;
}
