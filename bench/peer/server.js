// node-oidc-provider as the peer Keyhouse is measured against (issue 7, scenario 1).
//
// One process, one client, client_credentials only, client_secret_basic, and an RFC 8707 resource
// indicator that makes the provider issue an RS256 JWT access token (RFC 9068 style), which is the
// same work Keyhouse's POST /token does. Listens on 127.0.0.1 only.
//
// Usage: node server.js [--port 8100]
// Env:   PEER_CLIENT_ID, PEER_CLIENT_SECRET, PEER_RESOURCE (defaults below).
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

const port = Number(arg('port', process.env.PEER_PORT || '8100'));
const host = '127.0.0.1';
const clientId = process.env.PEER_CLIENT_ID || 'bench-client';
const clientSecret = process.env.PEER_CLIENT_SECRET || 'bench-secret-0123456789abcdef0123456789abcdef';
const resource = process.env.PEER_RESOURCE || 'urn:keyhouse:photos';

// A fresh RSA-2048 signing key per run, like Keyhouse's first start.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-rs256', use: 'sig', alg: 'RS256' };

const provider = new Provider(`http://${host}:${port}`, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'photos:read photos:write',
    },
  ],
  jwks: { keys: [jwk] },
  scopes: ['photos:read', 'photos:write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (resourceIndicator !== resource) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'photos:read photos:write',
          audience: resourceIndicator,
          accessTokenTTL: 900,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

// Quiet: no per-request logging; errors only.
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = provider.listen(port, host, () => {
  console.log(`peer listening on http://${host}:${port} (oidc-provider, pid ${process.pid})`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
