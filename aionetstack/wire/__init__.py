"""Stateless header views and builders, one module per protocol.

Parsers take a buffer (``bytes``, ``bytearray`` or ``memoryview``) and an offset and never copy
the payload: they return the header fields and the payload's position. Builders produce a header
with one ``struct`` call. Bad input raises :class:`aionetstack.errors.MalformedPacket`.
"""

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview
"""Anything the parsers and the checksum read: contiguous bytes, byte-formatted."""
