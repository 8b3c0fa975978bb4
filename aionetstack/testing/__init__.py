"""Tools for testing TCP and programs built on aionetstack (a deterministic network simulator)."""
