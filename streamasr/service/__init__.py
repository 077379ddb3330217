"""The websocket service: protocol, batching worker, per-connection session, server."""
