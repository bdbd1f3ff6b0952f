"""The Keyhouse issuer: signs RFC 9068 access tokens and publishes its keys as a JWKS."""
