"""Suite-wide settings: hypothesis runs derandomized (a failure replays exactly) with no example database."""

from hypothesis import settings

settings.register_profile("aionetstack", derandomize=True, database=None, deadline=None)
settings.load_profile("aionetstack")
