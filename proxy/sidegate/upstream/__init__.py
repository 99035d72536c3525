"""Talking to upstream model servers: transport, pools and balancing, SSE relay."""
