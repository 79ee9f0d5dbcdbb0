"""Reading the event stream's websocket frames off a raw socket."""

from __future__ import annotations


def payload(frame: bytes) -> str:
    """The text of one unmasked server frame (FIN + text opcode checked)."""
    assert frame[0] == 0x81 and not frame[1] & 0x80
    length = frame[1] & 0x7F
    offset = 2 if length < 126 else 4 if length == 126 else 10
    return frame[offset:].decode()

