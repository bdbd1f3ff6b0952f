"""Keyhouse's benchmarks (issue 7): every number a ratio against a ceiling or a peer, same run.

``python -m bench`` (what ./scripts/bench runs; bench/cli.py) runs the scenarios of
bench/scenarios/ on the harness of bench/harness/ and writes the report. The other modules here
are programs of their own: bench/ceilings.py (in-process ceilings), bench/slow_clients.py (the
slow-client attack), bench/baseline_pyjwt_app.py (the PyJWT baseline server), bench/fuzz.py (the
long property-test run), bench/jose_choice.py (the JOSE measurements the README quotes), and a
library, bench/mass_tokens.py (many distinct valid tokens, each sent once). See bench/README.md.
"""
