"""Speech rendering with espeak-ng (all languages) and festival (extra English voice).

espeak-ng variants give the speaker identity: m1-m7 and f1-f5 are its male and female
voice variants, 'whisper'/'whisperf' whispered ones. Rate is words per minute, pitch 0-99.
"""

from __future__ import annotations

import os

import numpy as np

from . import audio

# variant -> (gender word, short description used in captions)
ESPEAK_VARIANTS = {
    "m1": ("male", "a plain male voice"),
    "m2": ("male", "a full-bodied male voice"),
    "m3": ("male", "a bright male voice"),
    "m4": ("male", "a warm male voice"),
    "m5": ("male", "a rough male voice"),
    "m6": ("male", "a soft male voice"),
    "m7": ("male", "a nasal male voice"),
    "f1": ("female", "a clear female voice"),
    "f2": ("female", "a light female voice"),
    "f3": ("female", "a bright female voice"),
    "f4": ("female", "a soft female voice"),
    "f5": ("female", "a warm female voice"),
    "whisper": ("male", "a whispering male voice"),
    "whisperf": ("female", "a whispering female voice"),
}
WHISPER_VARIANTS = ("whisper", "whisperf")


def render_espeak(text: str, voice: str, variant: str, rate: int, pitch: int, tmp: str) -> np.ndarray:
    """Speaks `text` and returns 16 kHz mono float32."""
    path = os.path.join(tmp, "espeak.wav")
    cmd = ["espeak-ng", "-b", "1", "-v", f"{voice}+{variant}", "-s", str(rate), "-p", str(pitch),
           "-w", path, "--stdin"]
    audio.run_tool(cmd, tmp, input=text.encode("utf-8"), timeout=60)
    x, sr = audio.read_mono(path)
    os.remove(path)
    return audio.resample(x, sr)


def render_festival(text: str, stretch: float, f0_mean: int, tmp: str) -> np.ndarray:
    """Festival's kal diphone voice (American male); stretch > 1 is slower, f0 in Hz."""
    txt, wav = os.path.join(tmp, "festival.txt"), os.path.join(tmp, "festival.wav")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    setup = (f"(begin (voice_kal_diphone) (Parameter.set 'Duration_Stretch {stretch:.3f}) "
             f"(set! int_lr_params '((target_f0_mean {f0_mean}) (target_f0_std {max(8, f0_mean // 7)}) "
             f"(model_f0_mean 170) (model_f0_std 34))))")
    audio.run_tool(["text2wave", "-o", wav, "-eval", setup, txt], tmp, timeout=120)
    x, sr = audio.read_mono(wav)
    os.remove(txt)
    os.remove(wav)
    return audio.resample(x, sr)


def render_speech(p: dict, num_samples: int, tmp: str) -> np.ndarray:
    """Renders the plan's speech params to exactly num_samples, cutting at a pause when too long."""
    if p["engine"] == "festival":
        x = render_festival(p["text"], p["stretch"], p["f0"], tmp)
    else:
        x = render_espeak(p["text"], p["voice"], p["variant"], p["rate"], p["pitch"], tmp)
    x = audio.trim_silence(x)
    lead = int(p["lead_in"] * audio.SR)
    x = np.concatenate([np.zeros(lead, np.float32), x])
    if len(x) > num_samples:
        cut = audio.last_pause_before(x, num_samples, min_len=int(1.5 * audio.SR))
        x = audio.fade(x[:cut], 0.0, 0.03)
    return audio.fit_length(x, num_samples)
