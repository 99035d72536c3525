"""End-to-end load benchmark: Sidegate beside the ceiling, the floor and its peers (see cli.py)."""
