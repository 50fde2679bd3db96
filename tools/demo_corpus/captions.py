"""Captions, summaries and tags written from a clip's ground-truth plan.

Everything said is derived from the plan (not measured from audio), so the text is identical
across machines for a seed. Phrasing is drawn at random from several templates so a text
encoder sees varied sentences; tags come only from `TAG_LEXICON`, a hard-coded list of words
checked against the released UTS vocabulary (label_3k) when the tool was written.
"""

from __future__ import annotations

import random

from .music import DRUM_KITS, FAMILIES, PLURAL_PROGRAMS, PROGRAM_NAMES, PROGRAM_TAGS, key_name
from .sources import EVENT_SOURCES
from .texts import LANGUAGES, TOPICS

# Every tag the builder may emit. All are one lowercase word present in the UTS 3k vocabulary.
TAG_LEXICON = frozenset("""
speech voice talking spoken narration reading monologue male female man woman whisper synthetic robotic computer
accent american british english german french spanish italian russian hindi japanese
fast slow moderate high low calm
music instrumental melody chords accompaniment harmony arpeggio solo major minor tempo upbeat waltz
happy sad cheerful gentle lively energetic peaceful melancholic dramatic relaxing bright dark
piano keyboard classical strings violin viola cello orchestra orchestral brass trumpet trombone horn woodwind flute
clarinet oboe saxophone guitar acoustic electric jazz organ church bass bassline funk groove drums drum
percussion beat rhythm drumming snare cymbal rock shuffle latin marimba xylophone vibraphone glockenspiel celesta chimes bell
synthesizer synth electronic pad lead
water stream river gurgling nature outdoor fire crackling crackle footsteps footstep walking gravel snow stone
metal wood wooden ice door opening closing creaking gate indoor explosion boom blast explosive rumble impact
glass shatter shattering crash crowd cheering audience applause clapping stadium traffic car road street
engine vehicle passing background ambience environment
quiet loud soft clean clear reverb reverberant echo room hall noise hiss hum distant
""".split())

SOURCES = {s.id: s for s in EVENT_SOURCES}

EVENT_INFO = {
    # class: (tags, most salient first; background phrase for mixtures; context sentences)
    "water": (("water", "stream", "gurgling", "nature", "outdoor", "river"), "water babbles",
              ("Water gurgles and splashes without a break, like a small brook over stones.",
               "It is a steady outdoor ambience of running water.")),
    "fire": (("fire", "crackling", "crackle", "ambience", "environment"), "a fire crackles",
             ("Sharp pops and crackles rise over a soft roar, the sound of burning wood.",
              "The crackling is irregular, as flames flare up and settle again.")),
    "footsteps": (("footsteps", "walking", "footstep"), "someone walks past",
                  ("Each step is a short, distinct impact, repeated in a regular rhythm.",
                   "The steps keep an even walking rhythm with slight variations in force.")),
    "door": (("door", "indoor"), "a door is opened and closed",
             ("The mechanism clicks and the door moves on its hinges.",
              "It is a short everyday sound with a clear attack and a quick decay.")),
    "explosion": (("explosion", "boom", "blast", "explosive", "impact"), "an explosion booms",
                  ("The blast starts with a sharp crack and decays into a low rumble.",
                   "A powerful low-frequency boom dominates the clip.")),
    "glass": (("glass", "shatter", "shattering", "crash", "impact"), "glass shatters",
              ("Bright, high-pitched fragments tinkle as the pieces scatter.",
               "The crash is sudden and sharp, followed by falling shards.")),
    "crowd": (("crowd", "cheering", "audience", "ambience"), "a crowd cheers",
              ("Many voices blend into one roar, with whistles and shouts here and there.",
               "No single word can be made out in the mass of voices.")),
    "traffic": (("traffic", "car", "road", "vehicle", "engine", "street", "passing", "outdoor"), "traffic passes",
                ("Engines hum and tyres hiss on the road as vehicles go by.",
                 "It sounds like standing near a road with cars passing.")),
}
OUTDOOR_SURFACES = ("gravel", "snow", "sand", "grass", "dirt", "ice")

FAMILY_NOUN = {"piano": "piano", "strings": "string", "brass": "brass", "woodwind": "woodwind",
               "guitar": "guitar", "organ": "organ", "bass": "bass", "drums": "drum",
               "mallet": "mallet percussion", "synth": "synthesizer"}


def _a(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


# ---------------------------------------------------------------- acoustic traits

def level_word(db: float) -> str:
    return "quiet" if db < -33 else "loud" if db > -26.5 else "moderate"


def trait_sentences(r: random.Random, t: dict) -> tuple[list[str], list[str]]:
    """Sentences and tags for loudness, room and background noise."""
    out, tags = [], []
    lvl = level_word(t["level_db"])
    out.append(r.choice({
        "quiet": ["The recording is quiet, as if heard from a distance.", "Overall the level is low and soft.",
                  "It is played back at a quiet level."],
        "moderate": ["The level is moderate.", "It sits at a comfortable, medium loudness.",
                     "The loudness is average, neither soft nor loud."],
        "loud": ["It is loud and close to the microphone.", "The level is high and the sound is up front.",
                 "The recording is loud."],
    }[lvl]))
    if lvl == "quiet":
        tags.append(r.choice(["quiet", "soft"]))
    elif lvl == "loud":
        tags.append("loud")
    rv = t.get("reverb")
    if rv:
        out.append(r.choice({
            "room": ["It sounds like it was recorded in a small room.",
                     "A short reverberation places it in a small room."],
            "hall": ["There is noticeable reverb, as in a large hall.",
                     "A clear echo of a big hall follows every sound."],
            "church": ["A long, echoing reverb suggests a church or another very large space.",
                       "The sound rings on for a long time, as in a cathedral."],
        }[rv["space"]]))
        tags.append({"room": "room", "hall": "reverb", "church": "reverberant"}[rv["space"]])
        if rv["space"] == "church":
            tags.append("echo")
    elif r.random() < 0.5:
        out.append(r.choice(["The sound is dry, with little reverberation.", "There is almost no room echo.",
                             "The acoustics are dry and direct."]))
    nz = t.get("noise")
    if nz:
        strength = "faint" if nz["snr_db"] > 24 else "noticeable"
        out.append({
            "hiss": f"A {strength} hiss of background noise runs underneath.",
            "rumble": f"A {strength} low rumble sits in the background.",
            "hum": f"A {strength} electrical hum can be heard throughout.",
        }[nz["kind"]])
        tags += [nz["kind"], "noise"]
    elif not rv:
        tags.append(r.choice(["clean", "clear"]))
    return out, tags


# ---------------------------------------------------------------- speech

def _speaker(r: random.Random, s: dict) -> str:
    g = s["gender"]
    return r.choice({"male": ["a man", "a male speaker", "a male voice"],
                     "female": ["a woman", "a female speaker", "a female voice"]}[g])


def _pace(s: dict) -> str:
    if s["engine"] == "festival":
        return "slowly" if s["stretch"] > 1.1 else "quickly" if s["stretch"] < 0.92 else "at a normal pace"
    return "slowly" if s["rate"] < 145 else "quickly" if s["rate"] > 178 else "at a normal pace"


def _pitch_word(s: dict) -> str:
    if s["engine"] == "festival":
        return "low-pitched" if s["f0"] < 100 else "high-pitched" if s["f0"] > 128 else "mid-pitched"
    return "low-pitched" if s["pitch"] < 38 else "high-pitched" if s["pitch"] > 62 else "mid-pitched"


def speech_parts(r: random.Random, s: dict) -> tuple[list[str], str, list[str]]:
    """(caption sentences, summary, tags) for the speech component."""
    from .speech import ESPEAK_VARIANTS
    lang = LANGUAGES[s["language"]][1]
    who = _speaker(r, s)
    accent = ""
    if s["language"] == "english":
        accent = " with a British accent" if s.get("voice") == "en-gb" else " with an American accent"
    whisper = s.get("variant") in ("whisper", "whisperf")
    verb = "whispers" if whisper else r.choice(["speaks", "talks", "says a sentence"])
    first = r.choice([
        f"{_cap(who)} {verb} in {lang}{accent}.",
        f"In {lang}, {who} {verb.replace('says a sentence', 'reads out a sentence')}{accent}.",
        f"We hear {who} speaking {lang}{accent}.",
    ])
    pace, pitch = _pace(s), _pitch_word(s)
    if s["engine"] == "festival":
        detail = (f"The voice is a {pitch} synthetic diphone voice from the Festival speech synthesizer, "
                  f"and the words come {pace}.")
    else:
        vdesc = ESPEAK_VARIANTS[s["variant"]][1]
        detail = r.choice([
            f"It is {vdesc}, {pitch}, speaking {pace} at about {s['rate']} words per minute.",
            f"The synthetic espeak-ng voice (variant {s['variant']}, {vdesc}) is {pitch} and talks {pace}.",
            f"The text-to-speech voice sounds {'robotic' if r.random() < .5 else 'synthetic'}: {vdesc}, "
            f"{pitch}, {pace}.",
        ])
    topic = TOPICS[s["topic"]]
    pron = "He" if s["gender"] == "male" else "She"
    about = r.choice([f"The sentence is about {topic}.", f"{pron} talks about {topic}.",
                      f"The topic is {topic}."])
    summary = r.choice([
        f"{_cap(who)} speaks {lang} about {topic}.",
        f"A {s['gender']} synthetic voice talking in {lang} about {topic}.",
        f"{lang} speech by {who}, about {topic}.",
    ])
    tags = ["speech", s["gender"], s["language"], r.choice(["voice", "talking", "spoken"])]
    if whisper:
        tags.append("whisper")
    tags.append(r.choice(["synthetic", "robotic", "computer"]))
    if pace != "at a normal pace":
        tags.append("slow" if pace == "slowly" else "fast")
    if accent:
        tags.append("british" if "British" in accent else "american")
    return [first, detail, about], summary, tags


# ---------------------------------------------------------------- music

def _tempo_word(bpm: int) -> str:
    return "slow" if bpm < 85 else "fast" if bpm >= 128 else "moderate"


def _mood(m: dict) -> str:
    tempo = _tempo_word(m["bpm"])
    if m["mode"] == "major":
        return {"slow": "gentle", "moderate": "cheerful", "fast": "lively"}[tempo]
    return {"slow": "melancholic", "moderate": "dark", "fast": "dramatic"}[tempo]


def music_parts(r: random.Random, m: dict) -> tuple[list[str], str, list[str]]:
    fam = m["family"]
    tempo = _tempo_word(m["bpm"])
    meter = "in three-four time, like a waltz" if m["meter"] == 3 else "in four-four time"
    if fam == "drums":
        kit = DRUM_KITS[m["lead_program"]]
        style = {"rock": "a straight rock", "funk": "a syncopated funk", "shuffle": "a swinging shuffle",
                 "bossa": "a light latin"}[m["style"]]
        first = r.choice([f"{_cap(_a(kit))} plays {style} beat.", f"A drummer plays {style} pattern on {_a(kit)}.",
                          f"Solo drums: {_a(kit)} keeps {style} groove going."])
        detail = r.choice([
            f"Kick drum, snare and cymbals lock into a steady rhythm at about {m['bpm']} beats per minute.",
            f"The tempo is {tempo}, around {m['bpm']} beats per minute, with hi-hats marking the subdivisions.",
        ])
        mood = r.choice(["There is no melody, only percussion.", "It is purely rhythmic, with no pitched instruments.",
                         "The pattern ends with a short fill on the toms." if m.get("fill") else
                         "The groove repeats without pitched instruments."])
        summary = r.choice([f"A {tempo} {m['style'] if m['style'] != 'bossa' else 'latin'} drum beat at {m['bpm']} BPM.",
                            f"Solo drum kit playing {style} groove."])
        tags = ["music", "drums", "percussion", r.choice(["beat", "drumming", "rhythm"]),
                {"rock": "rock", "funk": "funk", "shuffle": "shuffle", "bossa": "latin"}[m["style"]]]
        if m["lead_program"] == 32:
            tags.append("jazz")
        if m["lead_program"] in (24, 25):
            tags.append("electronic")
        tags.append({"slow": "slow", "moderate": "moderate", "fast": "fast"}[tempo])
        return [first, detail, mood], summary, tags

    lead, acc = PROGRAM_NAMES[m["lead_program"]], PROGRAM_NAMES[m["acc_program"]]
    acc_np = acc if m["acc_program"] in PLURAL_PROGRAMS else _a(acc)  # noun phrase
    key, mood = key_name(m), _mood(m)
    if fam == "bass":
        style = {"walking": "a walking", "rootfifth": "a simple root-and-fifth", "funk": "a syncopated funky"}[m["style"]]
        first = r.choice([f"{_cap(_a(lead))} plays {style} bass line in {key}.",
                          f"Solo bass: {_a(lead)} plays {style} line in {key}."])
        detail = f"The tempo is {tempo}, about {m['bpm']} beats per minute, {meter}."
        mood_s = r.choice(["The low notes outline the chords with no other instruments.",
                           f"It has {_a(mood)} feel, carried only by the bass."])
        summary = f"{_cap(_a(mood))} solo bass line in {key} at {m['bpm']} BPM."
        tags = ["music", "bass", r.choice(["bassline", "groove"]), m["mode"], "instrumental",
                "fast" if tempo == "fast" else "slow" if tempo == "slow" else "moderate"]
        if m["style"] == "funk" or m["lead_program"] == 36:
            tags.append("funk")
        if m["lead_program"] == 32:
            tags.append("jazz")
        return [first, detail, mood_s], summary, tags

    acc_desc = {
        "block": "block chords", "alberti": "an Alberti-style broken-chord pattern", "arpeggio": "flowing arpeggios",
        "pad": "sustained chords", "pizzicato": "plucked pizzicato chords", "stabs": "short chord stabs",
        "strum": "strummed chords",
    }[m["style"]]
    same = m["acc_program"] == m["lead_program"]
    first = r.choice([
        f"{_cap(_a(lead))} plays {_a(mood)} melody in {key}.",
        f"{_cap(_a(mood))} tune in {key} is played on {_a(lead)}.",
        f"This is {FAMILY_NOUN[fam]} music: {_a(lead)} carries {_a(mood)} melody in {key}.",
    ])
    if same:
        second = r.choice([f"The same instrument accompanies itself with {acc_desc}.",
                           f"Underneath the tune it adds {acc_desc}."])
    else:
        second = r.choice([f"{_cap(acc_np)} {'accompany' if m['acc_program'] in PLURAL_PROGRAMS else 'accompanies'}"
                           f" it with {acc_desc}.", f"It is backed by {acc_desc} on {acc_np}."])
    third = r.choice([f"The tempo is {tempo}, about {m['bpm']} beats per minute, {meter}.",
                      f"It moves at around {m['bpm']} beats per minute, {meter}, and feels {mood}."])
    summary = r.choice([f"{_cap(_a(mood))} {lead} melody in {key} at {m['bpm']} BPM.",
                        f"{_cap(FAMILY_NOUN[fam])} music in {key}, {tempo} and {mood}."])
    tags = ["music"] + [t for t in (FAMILIES[fam]["tag"], PROGRAM_TAGS.get(m["lead_program"])) if t]
    if fam == "mallet":
        tags.append("percussion")
    tags += [r.choice(["melody", "instrumental"]), m["mode"],
             {"block": "chords", "alberti": "arpeggio", "arpeggio": "arpeggio", "pad": "chords",
              "pizzicato": "accompaniment", "stabs": "chords", "strum": "chords"}[m["style"]]]
    tags.append({"gentle": "gentle", "cheerful": "cheerful", "lively": "lively", "melancholic": "melancholic",
                 "dark": "dark", "dramatic": "dramatic"}[mood])
    if m["meter"] == 3:
        tags.append("waltz")
    tags.append("fast" if tempo == "fast" else "slow" if tempo == "slow" else "tempo")
    return [first, second, third], summary, tags


# ---------------------------------------------------------------- events

def _steps_pace(interval: float) -> str:
    return "briskly" if interval < 0.5 else "slowly" if interval > 0.62 else "at a steady pace"


def event_parts(r: random.Random, e: dict) -> tuple[list[str], str, list[str], str]:
    """(sentences, summary, tags, short background phrase) for an event component."""
    src = SOURCES[e["source"]]
    core, bg_phrase, context = EVENT_INFO[src.event]
    desc = src.desc
    if src.kind == "continuous":
        first = r.choice([f"The sound of {desc} fills the whole clip.", f"{_cap(desc)} can be heard throughout.",
                          f"A recording of {desc}."])
        summary = r.choice([f"{_cap(desc)}.", f"The continuous sound of {desc}."])
    elif src.kind == "impulse":
        noun = {"explosion": "explosion", "glass": "glass crash"}[src.event]
        if e["count"] == 1:
            first = r.choice([f"There is {desc}.", f"A single {noun} is heard: {desc}.",
                              f"Suddenly, {desc} breaks the silence."])
        else:
            first = r.choice([f"Two {noun}es are heard, one after the other." if noun.endswith("crash")
                              else f"Two {noun}s are heard, one after the other.",
                              f"There are two bursts of sound, each like {desc}."])
        summary = r.choice([f"{_cap(desc)}.", f"{'One' if e['count'] == 1 else 'Two'} {noun}"
                            f"{'' if e['count'] == 1 else ('es' if noun.endswith('crash') else 's')} in a quiet space."])
    elif src.kind == "door":
        act = {"open": "is opened", "close": "is shut", "open_close": "is opened and, a moment later, closed again"}
        first = r.choice([f"{_cap(desc)} {act[e['action']]}.", f"Someone uses {desc}: it {act[e['action']]}."])
        summary = f"{_cap(desc)} {act[e['action']]}."
    else:  # steps
        pace = _steps_pace(e["interval"])
        first = r.choice([f"Footsteps cross {desc} {pace}.", f"Someone walks {pace} on {desc}.",
                          f"We hear a person walking on {desc}, {pace}."])
        summary = r.choice([f"Footsteps on {desc}.", f"A person walking {pace} on {desc}."])
    tags = list(core[:4]) + [w for w in src.words if w not in core][:2]
    if src.kind == "door":
        tags.append({"open": "opening", "close": "closing", "open_close": r.choice(["opening", "closing"])}[e["action"]])
        if "gate" in desc:
            tags.append("gate")
    if src.kind == "steps":
        tags.append("outdoor" if any(w in desc for w in OUTDOOR_SURFACES) else "indoor")
    tags += list(core[4:])
    return [first, r.choice(context)], summary, tags, bg_phrase


# ---------------------------------------------------------------- whole clip

def _finish_tags(tags: list[str], fillers: list[str]) -> list[str]:
    seen, out = set(), []
    for t in tags + fillers:
        if t in TAG_LEXICON and t not in seen:
            seen.add(t)
            out.append(t)
    if len(out) < 5:
        raise AssertionError(f"too few tags: {out}")
    return out[:10]


def describe(spec: dict) -> tuple[str, str, list[str]]:
    """(caption, one-sentence summary, 5-10 tags) for a plan entry."""
    r = random.Random(spec["seed"] ^ 0x5EED)
    dom, traits = spec["domain"], spec["traits"]
    trait_s, trait_t = trait_sentences(r, traits)
    if dom == "speech":
        s, summ, tags = speech_parts(r, spec["speech"])
        s.append(r.choice(["There is no music or other sound.", "No music plays in the background."]))
        return " ".join(s + trait_s), summ, _finish_tags(tags + trait_t, ["voice", "spoken"])
    if dom == "music":
        s, summ, tags = music_parts(r, spec["music"])
        return " ".join(s + trait_s), summ, _finish_tags(tags + trait_t, ["instrumental", "music"])
    if dom == "sound":
        s, summ, tags, _ = event_parts(r, spec["event"])
        if spec["labels"]["event"] == "crowd":
            s.append("There is no music.")
        else:
            s.append(r.choice(["There is no speech or music.", "No voices or music can be heard."]))
        filler = "ambience" if spec["event"]["kind"] == "continuous" else "impact"
        return " ".join(s + trait_s), summ, _finish_tags(tags[:8] + trait_t, [filler, "environment"])
    # mixture: a foreground (speech or music) over a background event
    e_s, e_summ, e_tags, bg = event_parts(r, spec["event"])
    snr = spec["mix"]["snr_db"]
    rel = (r.choice(["The foreground stays clearly on top of the background sound.",
                     "The background is much quieter than the foreground."]) if snr >= 9 else
           r.choice(["The background is almost as loud as the foreground.",
                     "Both layers are similarly loud and compete for attention."]))
    if spec["mix"]["fg"] == "speech":
        s, summ, tags = speech_parts(r, spec["speech"])
        sp = spec["speech"]
        verb = "whispers in" if sp.get("variant") in ("whisper", "whisperf") else "speaks"
        lead = f"{_cap(_speaker(r, sp))} {verb} {LANGUAGES[sp['language']][1]} while {bg} in the background."
        summary = r.choice([f"{_cap(_speaker(r, sp))} {verb} {LANGUAGES[sp['language']][1]} while {bg}.",
                            f"{LANGUAGES[sp['language']][1]} speech over a background where {bg}."])
        body = [lead, s[1], s[2], f"Behind the voice: {e_s[0][0].lower() + e_s[0][1:]}", rel]
        tags = tags[:3] + e_tags[:2] + ["background"] + tags[3:]
    else:
        s, summ, tags = music_parts(r, spec["music"])
        fam_noun = FAMILY_NOUN[spec["music"]["family"]]
        lead = r.choice([f"{_cap(fam_noun)} music plays while {bg}.", f"While {bg}, {fam_noun} music is playing."])
        summary = r.choice([f"{_cap(fam_noun)} music playing while {bg}.",
                            f"{_cap(bg)} over {fam_noun} music."])
        first = s[0].split(": ", 1)[1] if s[0].startswith("This is") else s[0]
        body = [lead, _cap(first), s[-1], f"At the same time, {e_s[0][0].lower() + e_s[0][1:]}", rel]
        tags = tags[:2] + e_tags[:2] + ["background"] + tags[2:]
    return " ".join(body + trait_s), summary, _finish_tags(tags + trait_t, ["background", "noise"])
