"""The web app: a backend-for-frontend that signs people in through the issuer (code flow with
PKCE) and keeps their tokens on the server, giving the browser only its own session cookie."""
