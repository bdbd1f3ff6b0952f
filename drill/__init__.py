"""``issuer drill``: key rotations, an emergency key revocation and a user revocation under
live verification load.

Against a running stack (the local one or compose), the drill

* keeps ``concurrency`` workers calling ``GET /whoami`` on every resource service named, with
  access tokens minted from the issuer every ``token_interval`` seconds (so each carries the kid
  that signs at that moment); with ``--revoke-user``, every other worker sends that user's
  tokens (password grant, then refresh grant); ``--rate`` caps the workers' requests a second
  in all (a drill against production need not run the services flat out);
* performs ``rotations`` planned rotations through the admin API (published ahead, never
  ``now``), ``interval`` seconds apart; then (``--revoke-user``) disables the user through the
  admin API, and (``--revoke``) revokes the signing key; for each revocation every service gets
  ``--probes`` probes holding covered tokens, whose first refusals give p50/p99/max from the
  admin call's request time, judged by the service's events subscription (see
  :mod:`drill.refusals`); the user is enabled again after the drill;
* watches each service's ``/healthz`` to see when a kid enters or leaves its JWKS cache;
* prints one progress line a second on stderr and ends with a report (a table, or JSON), and
  with ``--html`` a page with the timeline.

The drill fails (exit status 1) when a valid token was refused or a request failed, in
particular around a planned rotation, or when a service refused a revocation's tokens later
than its bound (p99 under a second with the subscription up; the JWKS poll interval plus a
margin for a key with it down; a user's tokens have no bound then, which is reported).

A client of the stack's HTTP interfaces only: nothing here imports the issuer. The modules:
:mod:`drill.config` (the options and their checks), :mod:`drill.client` (the calls to the
issuer and the services' ``/healthz``), :mod:`drill.records` (what the drill observes),
:mod:`drill.runner` (the load and the timetable), :mod:`drill.pacing` (``--rate``),
:mod:`drill.revocations` (the user and key revocations and their probes),
:mod:`drill.refusals` (percentiles and verdicts),
:mod:`drill.report` (the verdict, as JSON and as a table), :mod:`drill.series` (the time
series), :mod:`drill.timeline` (the picture's geometry) and :mod:`drill.html` (the page).
"""
