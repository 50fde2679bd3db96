"""Minimal Standard MIDI File (format 1) writer: just enough for fluidsynth to render.

Written by hand so the corpus builder needs no MIDI dependency. Notes are given in beats
(quarter notes) and converted to ticks; every channel gets its own track.
"""

from __future__ import annotations

import dataclasses
import struct

TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9  # GM percussion lives on channel 10 (index 9)


@dataclasses.dataclass
class Note:
    start: float      # beats
    duration: float   # beats
    pitch: int        # MIDI note number
    velocity: int = 90


@dataclasses.dataclass
class Track:
    channel: int
    program: int                 # GM program 0-127 (drum kit number on the drum channel)
    notes: list[Note] = dataclasses.field(default_factory=list)
    volume: int = 100            # CC7
    pan: int = 64                # CC10
    reverb: int = 40             # CC91 send


def _varlen(value: int) -> bytes:
    """MIDI variable-length quantity (7 bits per byte, MSB = continue)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def _track_bytes(events: list[tuple[int, int, bytes]]) -> bytes:
    """events: (tick, order, raw message); order breaks ties so note-offs precede note-ons."""
    events.sort(key=lambda e: (e[0], e[1]))
    out, last = bytearray(), 0
    for tick, _, msg in events:
        out += _varlen(tick - last) + msg
        last = tick
    return _chunk(b"MTrk", bytes(out))


def write_midi(tracks: list[Track], bpm: float, beats_per_bar: int = 4, end_beats: float | None = None) -> bytes:
    """Returns the bytes of a format-1 SMF with a tempo track and one track per `Track`.

    `end_beats` puts the end-of-track marker late enough for release and reverb tails.
    """
    tempo_us = int(round(60_000_000 / bpm))
    last_beat = max((n.start + n.duration for t in tracks for n in t.notes), default=0.0)
    end_tick = int(round((end_beats if end_beats is not None else last_beat + 1.0) * TICKS_PER_BEAT))
    denominator_pow = 2  # x/4 time
    meta = [
        (0, 0, b"\xff\x51\x03" + tempo_us.to_bytes(3, "big")),
        (0, 0, bytes([0xFF, 0x58, 0x04, beats_per_bar, denominator_pow, 24, 8])),
        (end_tick, 9, b"\xff\x2f\x00"),
    ]
    chunks = [_track_bytes(meta)]
    for t in tracks:
        ch = t.channel & 0x0F
        ev: list[tuple[int, int, bytes]] = [
            (0, 0, bytes([0xB0 | ch, 7, t.volume])),
            (0, 0, bytes([0xB0 | ch, 10, t.pan])),
            (0, 0, bytes([0xB0 | ch, 91, t.reverb])),
            (0, 1, bytes([0xC0 | ch, t.program & 0x7F])),
        ]
        for n in t.notes:
            on = int(round(n.start * TICKS_PER_BEAT))
            off = max(on + 1, int(round((n.start + n.duration) * TICKS_PER_BEAT)))
            pitch = max(0, min(127, n.pitch))
            vel = max(1, min(127, n.velocity))
            ev.append((on, 3, bytes([0x90 | ch, pitch, vel])))
            ev.append((off, 2, bytes([0x80 | ch, pitch, 0])))
        ev.append((max(end_tick, max((e[0] for e in ev), default=0)), 9, b"\xff\x2f\x00"))
        chunks.append(_track_bytes(ev))
    header = _chunk(b"MThd", struct.pack(">HHH", 1, len(chunks), TICKS_PER_BEAT))
    return header + b"".join(chunks)
