"""``issuer drill``: key rotations and an emergency revocation under live verification load.

Against a running stack (the local one or compose), the drill

* keeps ``concurrency`` workers calling ``GET /whoami`` on every resource service named, with
  access tokens minted from the issuer every ``token_interval`` seconds (so each carries the kid
  that signs at that moment);
* performs ``rotations`` planned rotations through the admin API (published ahead, never
  ``now``), ``interval`` seconds apart, then (``revoke``) one emergency revocation of the signing
  key, while holding on to a token signed by that key and probing every service with it;
* watches each service's ``/healthz`` to see when a kid enters or leaves its JWKS cache;
* prints one progress line a second on stderr and ends with a report (a table, or JSON).

The drill fails (exit status 1) when a valid token was refused or a request failed, in
particular around a planned rotation, or when a service kept accepting the revoked key for
longer than the stated bound (the services' JWKS poll interval plus a margin).

A client of the stack's HTTP interfaces only: nothing here imports the issuer. The modules:
:mod:`drill.config` (the options and their checks), :mod:`drill.client` (the calls to the
issuer and the services' ``/healthz``), :mod:`drill.records` (what the drill observes),
:mod:`drill.runner` (the load and the timetable) and :mod:`drill.report` (the verdict, as JSON
and as a table).
"""
