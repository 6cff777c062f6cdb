"""Random ids made in bulk, from one read of the system's randomness per batch.

`uuid.uuid4()` reads the system's randomness for every id, and that system call releases the GIL: the
store's writer thread takes it, and the event loop waits to get it back. The hot paths (Context ids,
instance ids, notification ids) therefore draw their ids from batches made here.
"""

from __future__ import annotations

import os


def uuid4_texts(count: int) -> list[str]:
    """`count` random UUIDs (version 4, RFC 4122 variant) in their canonical text form."""
    if count <= 0:
        return []
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # RFC 4122 variant
    h = raw.hex()
    return [f"{h[k:k + 8]}-{h[k + 8:k + 12]}-{h[k + 12:k + 16]}-{h[k + 16:k + 20]}-{h[k + 20:k + 32]}"
            for k in range(0, 32 * count, 32)]
