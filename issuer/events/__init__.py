"""Security events pushed to resource services (issue 17 §2): the store, what records them, and
the broadcaster that serves them on ``GET /events``."""

from issuer.events.emitter import SecurityEvents, security_events
from issuer.events.store import EventStore, StoredEvent

__all__ = ["EventStore", "SecurityEvents", "StoredEvent", "security_events"]
