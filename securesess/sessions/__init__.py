"""Sessions: the hub protocol (``wire``), the hub that serves it, its client, and events."""
