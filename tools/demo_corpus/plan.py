"""The clip plan: every random choice of the corpus, made up front from one seed.

Rendering is a pure function of a plan entry, so the clip list, labels, captions and tags
are identical for a seed on any machine (only the audio samples may follow tool versions).

Splits are held out by recording: a TTS sentence rendering or a MIDI rendering is used by
one clip only, held-out speech uses sentences never spoken in train, and held-out event
clips (and mixture backgrounds) come from source files never used in train.
"""

from __future__ import annotations

import random

import numpy as np

from . import events, music
from .sources import BACKGROUND_CLASSES, EVENT_CLASSES, EVENT_SOURCES
from .speech import ESPEAK_VARIANTS, WHISPER_VARIANTS
from .texts import LANGUAGES, SENTENCES, TOPICS

SPLITS = ("train", "heldout")
HELDOUT_FRACTION = 0.25
DOMAIN_SHARE = {"speech": 0.4, "music": 0.27, "sound": 0.2, "mixture": 0.13}
LANGUAGE_CLASSES = tuple(LANGUAGES)
INSTRUMENT_CLASSES = tuple(music.FAMILIES)


def domain_counts(n: int) -> dict[str, int]:
    mix, sound, mus = (round(n * DOMAIN_SHARE[d]) for d in ("mixture", "sound", "music"))
    return {"speech": n - mix - sound - mus, "music": mus, "sound": sound, "mixture": mix}


def _cycle(rng: random.Random, classes, n: int) -> list:
    """n class picks, balanced (counts differ by at most one), order shuffled."""
    order = list(classes)
    rng.shuffle(order)
    picks = [order[i % len(order)] for i in range(n)]
    rng.shuffle(picks)
    return picks


def _assign_splits(rng: random.Random, keys: list) -> list[str]:
    """~25% held out within each class key (stratified); a class with >= 4 clips always gets
    both splits, smaller ones are rounded at random so small corpora stay near 25% too."""
    out = [""] * len(keys)
    by_key: dict = {}
    for i, k in enumerate(keys):
        by_key.setdefault(k, []).append(i)
    for k in sorted(by_key, key=str):
        idx = by_key[k]
        want = len(idx) * HELDOUT_FRACTION
        h = int(want) + (1 if rng.random() < want - int(want) else 0)
        held = set(rng.sample(idx, h))
        for i in idx:
            out[i] = "heldout" if i in held else "train"
    if out and "heldout" not in out and len(out) >= 2:
        out[rng.randrange(len(out))] = "heldout"
    return out


def split_sources(rng: random.Random) -> dict[str, dict[str, list[str]]]:
    """event class -> split -> source ids (>= 1 held-out source per class)."""
    res: dict = {}
    for cls in EVENT_CLASSES:
        ids = [s.id for s in EVENT_SOURCES if s.event == cls]
        rng.shuffle(ids)
        h = max(1, round(len(ids) * HELDOUT_FRACTION))
        res[cls] = {"heldout": sorted(ids[:h]), "train": sorted(ids[h:])}
    return res


def split_topics(rng: random.Random) -> dict[str, dict[str, list[str]]]:
    """language -> split -> topics; held-out sentences are never spoken in train."""
    res = {}
    for lang in LANGUAGE_CLASSES:
        topics = list(TOPICS)
        rng.shuffle(topics)
        res[lang] = {"heldout": sorted(topics[:3]), "train": sorted(topics[3:])}
    return res


class _Picker:
    """Round-robin over a shuffled pool so every item gets used before any repeats."""

    def __init__(self, rng: random.Random):
        self.rng, self.state = rng, {}

    def __call__(self, key, pool):
        q = self.state.get(key)
        if not q:
            q = list(pool)
            self.rng.shuffle(q)
            self.state[key] = q
        return q.pop()


def _speech_params(rng: random.Random, lang: str, topic: str) -> dict:
    p = {"language": lang, "topic": topic, "text": SENTENCES[lang][topic],
         "lead_in": round(rng.uniform(0.05, 0.4), 3)}
    if lang == "english" and rng.random() < 0.25:
        p.update(engine="festival", voice="kal_diphone", variant="kal", gender="male",
                 stretch=round(rng.uniform(0.85, 1.2), 3), f0=rng.randint(85, 140))
        return p
    voice = LANGUAGES[lang][0]
    if lang == "english" and rng.random() < 0.5:
        voice = "en-gb"
    gender = rng.choice(["female", "male"])  # balanced, although espeak has more male variants
    variants = [v for v, (g, _) in ESPEAK_VARIANTS.items() if g == gender]
    whisper = [v for v in variants if v in WHISPER_VARIANTS]
    variant = whisper[0] if rng.random() < 0.07 else rng.choice([v for v in variants if v not in whisper])
    p.update(engine="espeak-ng", voice=voice, variant=variant, gender=ESPEAK_VARIANTS[variant][0],
             rate=rng.randint(130, 195), pitch=rng.randint(25, 75))
    return p


def _traits(rng: random.Random, domain: str) -> dict:
    """Loudness, room and noise: independent of the class, so they are no shortcut for probes."""
    t = {"level_db": round(rng.uniform(-38, -22), 1), "reverb": None, "noise": None}
    if rng.random() < {"speech": 0.3, "music": 0.35, "sound": 0.2, "mixture": 0.2}[domain]:
        space = rng.choice(["room", "hall", "church"])
        rt60 = {"room": (0.25, 0.45), "hall": (0.6, 1.0), "church": (1.2, 1.8)}[space]
        wet = {"room": (0.15, 0.3), "hall": (0.25, 0.4), "church": (0.35, 0.5)}[space]
        t["reverb"] = {"space": space, "rt60": round(rng.uniform(*rt60), 2), "wet": round(rng.uniform(*wet), 2)}
    if domain != "mixture" and rng.random() < 0.2:
        t["noise"] = {"kind": rng.choice(["hiss", "rumble", "hum"]), "snr_db": round(rng.uniform(15, 35), 1)}
    return t


def make_plan(num_clips: int, seed: int) -> list[dict]:
    """The ordered clip list: train clips first, then held-out, each shuffled across domains."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    counts = domain_counts(num_clips)
    sources = split_sources(rng)
    topics = split_topics(rng)
    pick = _Picker(rng)
    specs: list[dict] = []

    def new(domain, i, split, seconds):
        n = int(round(seconds * 16000))
        return {"id": f"{domain}-{i:04d}", "domain": domain, "split": split, "num_samples": n,
                "seed": rng.randrange(2 ** 31), "traits": _traits(rng, domain),
                "speech": None, "music": None, "event": None, "mix": None}

    def speech(spec, lang):
        topic = pick(("topic", lang, spec["split"]), topics[lang][spec["split"]])
        spec["speech"] = _speech_params(rng, lang, topic)

    def event(spec, cls):
        src = pick(("source", cls, spec["split"]), sources[cls][spec["split"]])
        spec["event"] = events.plan_event(nrng, src, spec["num_samples"] / 16000)
        return src

    # speech
    langs = _cycle(rng, LANGUAGE_CLASSES, counts["speech"])
    for i, (lang, split) in enumerate(zip(langs, _assign_splits(rng, langs))):
        s = new("speech", i, split, rng.uniform(2.0, 3.0))
        speech(s, lang)
        s["labels"] = {"domain": "speech", "language": lang, "recording": f"tts/{s['id']}"}
        s["components"] = [f"tts/{s['id']}"]
        specs.append(s)
    # music
    fams = _cycle(rng, INSTRUMENT_CLASSES, counts["music"])
    for i, (fam, split) in enumerate(zip(fams, _assign_splits(rng, fams))):
        s = new("music", i, split, rng.uniform(2.0, 3.0))
        s["music"] = music.plan_music(nrng, fam, s["num_samples"] / 16000)
        s["labels"] = {"domain": "music", "instrument": fam, "recording": f"midi/{s['id']}"}
        s["components"] = [f"midi/{s['id']}"]
        specs.append(s)
    # sound events
    evs = _cycle(rng, EVENT_CLASSES, counts["sound"])
    for i, (cls, split) in enumerate(zip(evs, _assign_splits(rng, evs))):
        s = new("sound", i, split, rng.uniform(2.0, 3.0))
        src = event(s, cls)
        s["labels"] = {"domain": "sound", "event": cls, "recording": src}
        s["components"] = [src]
        specs.append(s)
    # mixtures: alternate speech / music foregrounds over a sustained event background, both
    # layers comparably loud (0-6 dB), so the clip is audibly two layers throughout
    n_mix = counts["mixture"]
    fgs = ["speech" if i % 2 == 0 else "music" for i in range(n_mix)]
    mix_langs = _cycle(rng, LANGUAGE_CLASSES, fgs.count("speech"))
    mix_fams = _cycle(rng, INSTRUMENT_CLASSES, fgs.count("music"))
    mix_evs = _cycle(rng, BACKGROUND_CLASSES, n_mix)
    for i, (fg, split) in enumerate(zip(fgs, _assign_splits(rng, fgs))):
        s = new("mixture", i, split, rng.uniform(2.0, 3.0))
        if fg == "speech":
            lang = mix_langs.pop()
            speech(s, lang)
            s["labels"] = {"domain": "mixture", "language": lang}
            fg_rec = f"tts/{s['id']}"
            s["mix"] = {"fg": "speech", "snr_db": round(rng.uniform(0, 6), 1)}
        else:
            fam = mix_fams.pop()
            s["music"] = music.plan_music(nrng, fam, s["num_samples"] / 16000)
            s["labels"] = {"domain": "mixture", "instrument": fam}
            fg_rec = f"midi/{s['id']}"
            s["mix"] = {"fg": "music", "snr_db": round(rng.uniform(0, 6), 1)}
        src = event(s, mix_evs[i])
        s["labels"].update(event=mix_evs[i], recording=fg_rec)
        s["components"] = [fg_rec, src]
        specs.append(s)

    for s in specs:
        s["labels"]["split"] = s["split"]
    ordered = []
    for split in SPLITS:
        part = [s for s in specs if s["split"] == split]
        rng.shuffle(part)
        ordered += part
    return ordered
