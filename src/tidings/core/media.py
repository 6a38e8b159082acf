"""Media types and playing times of files, from their first bytes (pure).

What `tidings publish --attach` and :meth:`EmbeddedNode.add_blob` write in an
attachment: the media type by the file's magic bytes (else its name), and the
duration where it is cheap to know (a PCM WAV header, an MP3 read as constant
bit rate).
"""

from __future__ import annotations

import mimetypes
import struct

#: Media types by the first bytes of a file, for files without a known extension.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"ID3", 0, "audio/mpeg"),
    (b"\xff\xfb", 0, "audio/mpeg"),
    (b"\xff\xf3", 0, "audio/mpeg"),
    (b"OggS", 0, "audio/ogg"),
    (b"fLaC", 0, "audio/flac"),
    (b"%PDF-", 0, "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),
    (b"\x1a\x45\xdf\xa3", 0, "video/webm"),
)
_MP3_BITRATES = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


def media_type_of(name: str, head: bytes) -> str:
    """The media type of a file: by its first bytes, else by its name."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "audio/mp4" if brand in (b"M4A ", b"M4B ") else "video/mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, offset, kind in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return kind
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def duration_of(media_type: str, head: bytes, size: int) -> int | None:
    """Playing time in whole seconds where it is cheap to know from the first bytes:
    a PCM WAV file, or an MP3 read as constant bit rate."""
    if media_type == "audio/wav" and len(head) >= 44 and head[36:40] == b"data":
        byte_rate = struct.unpack_from("<I", head, 28)[0]
        return round(struct.unpack_from("<I", head, 40)[0] / byte_rate) if byte_rate else None
    if media_type == "audio/mpeg":
        start = 0
        if head[:3] == b"ID3" and len(head) >= 10:  # skip the tag (a syncsafe size)
            start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        frame = head[start:start + 4]
        if len(frame) == 4 and frame[0] == 0xFF and frame[1] & 0xE0 == 0xE0 \
                and frame[1] & 0x18 == 0x18 and frame[1] & 0x06 == 0x02:  # MPEG-1 Layer III
            index = frame[2] >> 4
            if 0 < index < len(_MP3_BITRATES):
                return round((size - start) * 8 / (_MP3_BITRATES[index] * 1000))
    return None
