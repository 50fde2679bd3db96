"""Music: a tiny composer (melody over a chord progression, plus accompaniment) rendered
by fluidsynth with the FluidR3 GM soundfont.

Each clip uses ONE instrument family for both melody and accompaniment, so the
`instrument` probe label is unambiguous (a piano clip has no strings in it).
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import audio
from .midi import DRUM_CHANNEL, Note, Track, write_midi
from .sources import SOUNDFONT

# GM program -> caption name
PROGRAM_NAMES = {
    0: "grand piano", 1: "bright piano", 2: "electric grand piano", 4: "electric piano", 5: "electric piano",
    8: "celesta", 9: "glockenspiel", 11: "vibraphone", 12: "marimba", 13: "xylophone", 14: "tubular bells",
    16: "drawbar organ", 17: "percussive organ", 18: "rock organ", 19: "church organ", 20: "reed organ",
    24: "nylon-string guitar", 25: "steel-string acoustic guitar", 26: "jazz guitar", 27: "clean electric guitar",
    32: "acoustic upright bass", 33: "fingered electric bass", 34: "picked electric bass", 35: "fretless bass",
    36: "slap bass", 40: "violin", 41: "viola", 42: "cello", 44: "tremolo strings", 45: "pizzicato strings",
    48: "string ensemble", 49: "slow strings", 56: "trumpet", 57: "trombone", 58: "tuba", 59: "muted trumpet",
    60: "french horn", 61: "brass section", 65: "alto saxophone", 66: "tenor saxophone", 68: "oboe",
    70: "bassoon", 71: "clarinet", 72: "piccolo", 73: "flute", 80: "square-wave synth lead",
    81: "sawtooth synth lead", 87: "bass-and-lead synth", 88: "new-age synth pad", 89: "warm synth pad",
    90: "polysynth pad", 94: "halo synth pad", 95: "sweeping synth pad",
}
DRUM_KITS = {0: "standard drum kit", 8: "room drum kit", 16: "power drum kit", 24: "electronic drum kit",
             25: "TR-808 drum machine", 32: "jazz drum kit", 40: "brush drum kit"}

PLURAL_PROGRAMS = {44, 45, 49}  # names that take no article ("on pizzicato strings")

# family -> lead programs, accompaniment programs, accompaniment styles, lead range, family tag
FAMILIES = {
    "piano": dict(lead=(0, 1, 2, 4, 5), acc=None, styles=("block", "alberti", "arpeggio"),
                  lo=60, hi=84, tag="piano"),
    "strings": dict(lead=(40, 41, 42, 48), acc=(48, 49, 44), styles=("pad", "pad", "pizzicato"),
                    lo=55, hi=84, tag="strings"),
    "brass": dict(lead=(56, 57, 59, 60), acc=(61, 57, 58), styles=("pad", "stabs"),
                  lo=52, hi=79, tag="brass"),
    "woodwind": dict(lead=(73, 71, 68, 72, 65, 66), acc=(70, 71, 73), styles=("pad", "arpeggio"),
                     lo=60, hi=86, tag="woodwind"),
    "guitar": dict(lead=(24, 25, 26, 27), acc=None, styles=("strum", "arpeggio"),
                   lo=52, hi=79, tag="guitar"),
    "organ": dict(lead=(16, 17, 18, 19, 20), acc=None, styles=("pad", "block"),
                  lo=60, hi=84, tag="organ"),
    "bass": dict(lead=(32, 33, 34, 35, 36), acc=None, styles=("walking", "rootfifth", "funk"),
                 lo=28, hi=55, tag="bass"),
    "drums": dict(lead=tuple(DRUM_KITS), acc=None, styles=("rock", "funk", "shuffle", "bossa"),
                  lo=0, hi=0, tag="drums"),
    "mallet": dict(lead=(12, 13, 11, 9, 8, 14), acc=(12, 11), styles=("arpeggio", "block"),
                   lo=60, hi=88, tag=None),  # no family word in UTS: the instrument tag names it
    "synth": dict(lead=(80, 81, 87), acc=(88, 89, 90, 94, 95), styles=("pad", "arpeggio"),
                  lo=55, hi=84, tag="synthesizer"),
}
# lead program -> a more specific tag (all in the UTS vocabulary)
PROGRAM_TAGS = {0: "classical", 2: "electric", 4: "electric", 5: "electric",
                40: "violin", 41: "viola", 42: "cello", 48: "orchestra",
                56: "trumpet", 59: "trumpet", 57: "trombone", 60: "horn",
                73: "flute", 72: "flute", 71: "clarinet", 68: "oboe", 65: "saxophone", 66: "saxophone",
                24: "acoustic", 25: "acoustic", 26: "jazz", 27: "electric",
                18: "rock", 19: "church",
                12: "marimba", 13: "xylophone", 11: "vibraphone", 9: "glockenspiel", 8: "celesta", 14: "chimes",
                80: "synth", 81: "synth", 87: "lead"}

PITCH_NAMES = ("C", "C sharp", "D", "E flat", "E", "F", "F sharp", "G", "A flat", "A", "B flat", "B")
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (1, 4, 0, 5), (0, 5, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (0, 3, 6, 2)),
}


def plan_music(rng, family: str, seconds: float) -> dict:
    """Random but fully serialisable musical choices (stored as ground truth)."""
    fam = FAMILIES[family]
    meter = 3 if rng.random() < 0.2 and family != "drums" else 4
    bpm = int(rng.integers(60, 161)) if family != "drums" else int(rng.integers(80, 161))
    mode = "major" if rng.random() < 0.6 else "minor"
    lead = int(rng.choice(fam["lead"]))
    acc = int(rng.choice(fam["acc"])) if fam["acc"] else lead
    style = str(rng.choice(fam["styles"]))
    if family == "strings" and style == "pizzicato":
        acc = 45
    return dict(family=family, lead_program=lead, acc_program=acc, bpm=bpm, meter=meter,
                tonic=int(rng.integers(0, 12)), mode=mode, style=style,
                progression=int(rng.integers(0, 4)), velocity=int(rng.integers(60, 116)),
                seconds=seconds, seed=int(rng.integers(0, 2 ** 31)))


def key_name(p: dict) -> str:
    return f"{PITCH_NAMES[p['tonic']]} {p['mode']}"


def _chord(scale, degree):
    """Scale-degree triad as semitone offsets from the tonic (may exceed 12)."""
    return [scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]


def _fit(pitch, lo, hi):
    while pitch < lo:
        pitch += 12
    while pitch > hi:
        pitch -= 12
    return pitch


def compose(p: dict) -> tuple[list[Track], float]:
    """Tracks and total length in beats for the plan `p`."""
    rng = np.random.default_rng(p["seed"])
    fam = FAMILIES[p["family"]]
    meter, bpm = p["meter"], p["bpm"]
    bar_sec = meter * 60.0 / bpm
    bars = max(1, math.ceil((p["seconds"] + 0.8) / bar_sec))
    total = bars * meter
    vel = p["velocity"]
    if p["family"] == "drums":
        return [Track(DRUM_CHANNEL, p["lead_program"], _drums(rng, p["style"], bars, meter, vel), reverb=30)], total

    scale = MAJOR if p["mode"] == "major" else MINOR
    root = 48 + p["tonic"]
    prog = PROGRESSIONS[p["mode"]][p["progression"]]
    chords = [_chord(scale, prog[b % len(prog)]) for b in range(bars)]
    if p["family"] == "bass":
        return [Track(0, p["lead_program"], _bassline(rng, p["style"], chords, root, meter, vel), reverb=20)], total

    lead = _melody(rng, scale, chords, root, meter, fam["lo"], fam["hi"], vel)
    acc = _accompaniment(rng, p["style"], chords, root, meter, vel - 18)
    tracks = [Track(0, p["lead_program"], lead, volume=110, pan=int(rng.integers(50, 78)), reverb=45),
              Track(1, p["acc_program"], acc, volume=85, pan=int(rng.integers(40, 88)), reverb=55)]
    return tracks, total


def _melody(rng, scale, chords, root, meter, lo, hi, vel):
    rhythms = ((1.0,), (0.5, 0.5), (0.75, 0.25), (0.5, 0.25, 0.25), (1.5, 0.5), (2.0,))
    notes, beat = [], 0.0
    total = len(chords) * meter
    deg = int(rng.integers(0, 7)) + 7  # scale-degree position, 7 = tonic one octave up
    centre = (lo + hi) // 2
    while beat < total - 1e-6:
        cell = rhythms[int(rng.integers(0, len(rhythms)))]
        for d in cell:
            if beat >= total - 1e-6:
                break
            d = min(d, total - beat)
            bar = int(beat // meter)
            strong = abs(beat % meter) < 1e-6
            deg += int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
            if strong:  # land on a chord tone on downbeats
                tones = [(c // 12) * 7 + scale.index(c % 12) for c in chords[bar]]
                deg = min((t + 7 * k for t in tones for k in range(0, 4)), key=lambda t: abs(t - deg))
            pitch = root + 12 * (deg // 7) + scale[deg % 7]
            if pitch < lo or pitch > hi:
                deg = 7 + (deg % 7)
                pitch = _fit(root + 12 + scale[deg % 7], lo, hi)
            if abs(pitch - centre) > 14:
                pitch = _fit(pitch, centre - 12, centre + 12)
            if rng.random() > 0.08:  # occasional rest
                notes.append(Note(beat, d * 0.95, pitch, int(vel + rng.integers(-8, 9) + (8 if strong else 0))))
            beat += d
    return notes


def _accompaniment(rng, style, chords, root, meter, vel):
    notes = []
    for b, ch in enumerate(chords):
        t0 = b * meter
        tones = [root + c for c in ch]
        bass = _fit(tones[0], 36, 52)
        if style in ("pad", "block"):
            step = meter if style == "pad" else 1
            for k in range(0, meter, step):
                for tone in tones:
                    notes.append(Note(t0 + k, step * 0.95, _fit(tone, 55, 72), vel))
                notes.append(Note(t0 + k, step * 0.95, bass, vel))
        elif style in ("arpeggio", "alberti"):
            order = [0, 2, 1, 2] if style == "alberti" else [0, 1, 2, 1]
            for k in range(meter * 2):
                tone = _fit(tones[order[k % 4]], 48, 67)
                notes.append(Note(t0 + k * 0.5, 0.48, tone, vel - (0 if k % 2 == 0 else 8)))
        elif style == "strum":
            pattern = (0.0, 1.0, 1.5, 2.5, 3.0) if meter == 4 else (0.0, 1.0, 2.0)
            voicing = sorted({_fit(t, 52, 67) for t in tones} | {bass})
            for k, s in enumerate(pattern):
                down = k % 2 == 0
                for i, tone in enumerate(voicing if down else voicing[::-1]):
                    notes.append(Note(t0 + s + 0.02 * i, 0.45, tone, vel - (0 if down else 10)))
        elif style == "pizzicato":
            for k in range(meter):
                notes.append(Note(t0 + k, 0.3, _fit(tones[k % 3], 48, 67), vel))
                if k == 0:
                    notes.append(Note(t0, 0.3, bass, vel))
        elif style == "stabs":
            notes.append(Note(t0, 0.9, bass, vel))
            for k in range(meter):
                for tone in tones:
                    notes.append(Note(t0 + k + 0.5, 0.3, _fit(tone, 50, 67), vel))
    return notes


def _bassline(rng, style, chords, root, meter, vel):
    notes = []
    for b, ch in enumerate(chords):
        t0 = b * meter
        r = _fit(root + ch[0] - 12, 28, 43)
        fifth, third = r + (ch[2] - ch[0]), r + (ch[1] - ch[0])
        nxt = _fit(root + chords[(b + 1) % len(chords)][0] - 12, 28, 43)
        if style == "walking":
            line = [r, third, fifth, nxt + (1 if rng.random() < 0.5 else -1)][:meter]
            notes += [Note(t0 + k, 0.9, p, vel) for k, p in enumerate(line)]
        elif style == "rootfifth":
            notes.append(Note(t0, 1.9 if meter == 4 else 0.9, r, vel))
            notes.append(Note(t0 + (2 if meter == 4 else 1), 1.9 if meter == 4 else 1.9, fifth, vel - 6))
        else:  # funk: syncopated eighths with octave pops
            for k in range(meter * 2):
                if rng.random() < 0.7 or k == 0:
                    p = r + (12 if k % 4 == 3 else 0)
                    notes.append(Note(t0 + 0.5 * k, 0.3, p, vel + (10 if k % 4 == 3 else 0)))
    return notes


def _drums(rng, style, bars, meter, vel):
    kick, snare, hat, ohat, ride, crash, rim = 36, 38, 42, 46, 51, 49, 37
    toms = (50, 47, 45, 43)
    notes = []
    for b in range(bars):
        t0 = b * meter
        if b == 0:
            notes.append(Note(t0, 1.0, crash, vel))
        fill = b == bars - 1 and bars > 1 and rng.random() < 0.7
        for k in range(meter * 4):  # sixteenth grid
            t = t0 + k * 0.25
            beat, sub = divmod(k, 4)
            if fill and beat >= meter - 1:
                notes.append(Note(t, 0.2, toms[min(3, k - 4 * (meter - 1))], vel))
                continue
            h = vel - 20 + int(rng.integers(-6, 7))
            if style == "rock":
                if sub % 2 == 0:
                    notes.append(Note(t, 0.2, hat, h))
                if sub == 0 and beat % 2 == 0 or (beat == 2 and sub == 2 and rng.random() < 0.4):
                    notes.append(Note(t, 0.2, kick, vel))
                if sub == 0 and beat % 2 == 1:
                    notes.append(Note(t, 0.2, snare, vel))
            elif style == "funk":
                notes.append(Note(t, 0.1, hat, h - (10 if sub % 2 else 0)))
                if (beat == 0 and sub == 0) or (beat == 2 and sub == 2) or (beat == 1 and sub == 3 and rng.random() < .5):
                    notes.append(Note(t, 0.2, kick, vel))
                if sub == 0 and beat % 2 == 1:
                    notes.append(Note(t, 0.2, snare, vel))
                elif rng.random() < 0.08:
                    notes.append(Note(t, 0.1, snare, vel - 40))  # ghost note
            elif style == "shuffle":
                if sub in (0, 3):
                    notes.append(Note(t - (0.08 if sub == 3 else 0), 0.2, ride, h))
                if sub == 0 and beat % 2 == 0:
                    notes.append(Note(t, 0.2, kick, vel))
                if sub == 0 and beat % 2 == 1:
                    notes.append(Note(t, 0.2, snare, vel - 10))
            else:  # bossa
                if sub % 2 == 0:
                    notes.append(Note(t, 0.2, hat if sub == 0 else ohat, h - 8))
                if (sub == 0 and beat % 2 == 0) or (sub == 2 and beat % 2 == 1):
                    notes.append(Note(t, 0.2, kick, vel - 10))
                if k in (0, 3, 6, 10, 13) and k < meter * 4:
                    notes.append(Note(t, 0.2, rim, vel - 5))
    return notes


def render_music(p: dict, num_samples: int, tmp: str, tag: str) -> np.ndarray:
    """Composes, writes the MIDI file and renders it with fluidsynth (reverb/chorus off: the
    builder adds rooms itself so that 'reverb' in captions is under its control)."""
    tracks, beats = compose(p)
    mid, wav = os.path.join(tmp, f"{tag}.mid"), os.path.join(tmp, f"{tag}.wav")
    with open(mid, "wb") as f:
        f.write(write_midi(tracks, p["bpm"], p["meter"], end_beats=beats + 2))
    cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(audio.SR),
           "-O", "float", "-T", "wav", "-F", wav, SOUNDFONT, mid]
    audio.run_tool(cmd, tmp, timeout=120)
    x, sr = audio.read_mono(wav)
    os.remove(mid)
    os.remove(wav)
    x = audio.resample(x, sr)
    return audio.fit_length(audio.fade(x, 0.0, 0.0), num_samples)
