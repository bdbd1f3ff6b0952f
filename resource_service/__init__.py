"""A Keyhouse resource service: verifies access tokens offline against the issuer's JWKS."""
