"""Names both sides of Keyhouse agree on: the issuer's paths, its grant types, its admin API.

The issuer serves these paths and accepts these values; the resource services, the drill and
the benchmarks call them. Each is spelled here once.
"""

from __future__ import annotations

# -- the issuer's endpoints ----------------------------------------------------------------------

TOKEN_PATH = "/token"  # RFC 6749 §3.2
REVOCATION_PATH = "/revoke"  # RFC 7009
INTROSPECTION_PATH = "/introspect"  # RFC 7662
JWKS_PATH = "/.well-known/jwks.json"  # RFC 7517, named by the metadata's jwks_uri
METADATA_PATH = "/.well-known/oauth-authorization-server"  # RFC 8414 §3
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"  # the same document

# -- sign-in for people (issue 16) ---------------------------------------------------------------

AUTHORIZE_PATH = "/authorize"  # RFC 6749 §3.1, the authorization endpoint (GET)
LOGIN_PATH = "/login"  # the login form's POST
CONSENT_PATH = "/consent"  # the consent form's POST
USERINFO_PATH = "/userinfo"  # OpenID Connect Core §5.3
END_SESSION_PATH = "/logout"  # OpenID Connect RP-Initiated Logout 1.0
STATIC_PATH = "/static"  # the pages' stylesheet

# -- every service's operations endpoints ----------------------------------------------------

HEALTH_PATH = "/healthz"  # liveness: 200 while the process runs
READINESS_PATH = "/readyz"  # readiness: 200 ready, 503 with a reason while not

# -- RFC 6749 grant types the token endpoint supports ------------------------------------------

GRANT_TYPES = ("client_credentials", "password", "refresh_token", "authorization_code")

# -- the issuer's admin API: a bearer token for this audience holding this scope ---------------

ADMIN_AUDIENCE = "issuer"
ADMIN_SCOPE = "issuer:admin"
