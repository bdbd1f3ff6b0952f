"""What every scenario is built on: server processes, wrk runs, ratios and their targets, the
stack under test and the peer, and the report."""
