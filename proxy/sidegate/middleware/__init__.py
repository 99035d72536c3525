"""Middlewares, outermost first: errors, request_id, auth."""
