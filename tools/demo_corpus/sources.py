"""What the builder needs from Debian: tools, the GM soundfont, and the real sound files.

The event sounds are recordings shipped by Debian game/music packages. Each `EventSource`
is one physical recording (a door type's open+close files, or one surface's footstep takes,
count as one source): held-out clips only ever use sources never used in train.
Licences are copied from each package's /usr/share/doc/<pkg>/copyright.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

from . import audio

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
FESTIVAL_VOICE_DIR = "/usr/share/festival/voices/english/kal_diphone"

# executable -> Debian package that provides it
TOOL_PACKAGES = {
    "espeak-ng": "espeak-ng",
    "fluidsynth": "fluidsynth",
    "text2wave": "festival",
}
# path -> package (non-executable prerequisites)
FILE_PACKAGES = {
    SOUNDFONT: "fluid-soundfont-gm",
    FESTIVAL_VOICE_DIR: "festvox-kallpc16k",
}

_MT = "/usr/share/games/minetest/games/minetest_game/mods"
_LC = "/usr/share/games/lincity-ng/sounds"
_CB = "/usr/share/games/chromium-bsu/wav"
_HE = "/usr/share/games/heroes/sfx"
_LM = "/usr/share/lmms/samples"

# Licence notes per package (Debian copyright file, stanza covering the files used).
_MT_CC_BY_SA = ("CC-BY-SA-3.0", "2010-2016 celeron55 (Perttu Ahola) and Minetest contributors")
_MT_DOORS = ("CC-BY-3.0", "2014 CGEffex, bennstir; 2015-2016 MasterGollum, Gambit; 2016 BarkersPinhead, rivernile7, HazMatt")
_MT_CC0 = ("CC0-1.0", "no copyright (public domain dedication)")
_LC_LIC = ("GPL-2+ (upstream dual-licensed GPL / CC-BY-SA-2.0)", "2004-2008 LinCity-NG contributors")
_CB_LIC = ("Expat", "2008 Brian Redfern")
_HE_LIC = ("GPL-2+", "1997-2000 Alexandre Duret-Lutz, Romuald Genevois, Alexandre Liverneaux, Philippe Meisburger")
_LM_LIC = ("GPL-2+", "2004-2014 LMMS developers")


@dataclasses.dataclass(frozen=True)
class EventSource:
    id: str             # stable recording id, e.g. "minetest-data/fire_large"
    event: str          # event class label
    package: str        # Debian package shipping the files
    files: tuple        # absolute installed paths (several = takes of the same thing)
    license: str
    copyright: str
    desc: str           # noun phrase for captions, e.g. "a wooden door"
    kind: str           # how clips are cut: continuous | impulse | steps | door
    words: tuple = ()   # extra lowercase tags (all in the UTS vocabulary)


def _src(event, package, name, files, lic, desc, kind, words=()):
    return EventSource(f"{package}/{name}", event, package, tuple(files), lic[0], lic[1], desc, kind, tuple(words))


def _steps(material, n, desc, words=()):
    files = [f"{_MT}/default/sounds/default_{material}_footstep.{i}.ogg" for i in range(1, n + 1)]
    return _src("footsteps", "minetest-data", f"{material}_footstep", files, _MT_CC_BY_SA, desc, "steps", words)


def _door(name, files, lic, desc, words=()):
    return _src("door", "minetest-data", name, files, lic, desc, "door", words)


EVENT_SOURCES: tuple[EventSource, ...] = (
    # flowing water
    *(_src("water", "minetest-data", f"env_sounds_water.{i}", [f"{_MT}/env_sounds/sounds/env_sounds_water.{i}.ogg"],
           _MT_CC_BY_SA, "a babbling stream", "continuous", ("stream", "river")) for i in (1, 2, 3, 4)),
    # fire
    *(_src("fire", "minetest-data", f"fire_fire.{i}", [f"{_MT}/fire/sounds/fire_fire.{i}.ogg"],
           _MT_CC_BY_SA, "a crackling fire", "continuous", ("crackling",)) for i in (1, 2, 3)),
    _src("fire", "minetest-data", "fire_small", [f"{_MT}/fire/sounds/fire_small.ogg"], _MT_CC_BY_SA,
         "a small crackling fire", "continuous", ("crackling",)),
    _src("fire", "minetest-data", "fire_large", [f"{_MT}/fire/sounds/fire_large.ogg"], _MT_CC_BY_SA,
         "a large roaring fire", "continuous", ("crackling",)),
    *(_src("fire", "lincity-ng-data", f"Fire{i}", [f"{_LC}/Fire{i}.wav"], _LC_LIC,
           "a burning building with sparse crackles", "continuous", ("crackle",)) for i in (1, 2, 3)),
    # footsteps, one source per surface
    _steps("gravel", 4, "gravel", ("gravel",)),
    _steps("snow", 5, "snow", ("snow",)),
    _steps("sand", 3, "sand"),
    _steps("grass", 3, "grass"),
    _steps("hard", 3, "a hard stone floor", ("stone",)),
    _steps("metal", 3, "a metal floor", ("metal",)),
    _steps("wood", 2, "wooden boards", ("wood",)),
    _steps("dirt", 2, "dirt"),
    _steps("ice", 3, "ice", ("ice",)),
    # doors: (open, close) takes of the same door
    _door("doors_door", [f"{_MT}/doors/sounds/doors_door_open.ogg", f"{_MT}/doors/sounds/doors_door_close.ogg"],
          _MT_DOORS, "a wooden door", ("wood",)),
    _door("doors_steel_door", [f"{_MT}/doors/sounds/doors_steel_door_open.ogg",
                               f"{_MT}/doors/sounds/doors_steel_door_close.ogg"], _MT_DOORS, "a steel door", ("metal",)),
    _door("doors_fencegate", [f"{_MT}/doors/sounds/doors_fencegate_open.ogg",
                              f"{_MT}/doors/sounds/doors_fencegate_close.ogg"], _MT_DOORS, "a wooden garden gate", ("wood",)),
    _door("doors_glass_door", [f"{_MT}/doors/sounds/doors_glass_door_open.ogg",
                               f"{_MT}/doors/sounds/doors_glass_door_close.ogg"], _MT_CC0, "a glass door", ()),
    _door("xpanes_steel_bar_door", [f"{_MT}/xpanes/sounds/xpanes_steel_bar_door_open.ogg",
                                    f"{_MT}/xpanes/sounds/xpanes_steel_bar_door_close.ogg"], _MT_CC_BY_SA,
          "a barred iron gate", ("metal",)),
    # explosions
    _src("explosion", "minetest-data", "tnt_explode", [f"{_MT}/tnt/sounds/tnt_explode.ogg"], _MT_CC0,
         "a dynamite blast", "impulse", ("blast",)),
    _src("explosion", "chromium-bsu-data", "exploBig", [f"{_CB}/exploBig.wav"], _CB_LIC,
         "a big explosion", "impulse", ("boom",)),
    _src("explosion", "chromium-bsu-data", "exploStd", [f"{_CB}/exploStd.wav"], _CB_LIC,
         "a short explosion", "impulse", ("blast",)),
    _src("explosion", "chromium-bsu-data", "boom", [f"{_CB}/boom.wav"], _CB_LIC,
         "a dull boom", "impulse", ("boom",)),
    _src("explosion", "lmms-common", "explode01", [f"{_LM}/effects/explode01.ogg"], _LM_LIC,
         "a long rumbling explosion", "impulse", ("rumble",)),
    _src("explosion", "heroes-sound-effects", "explo01", [f"{_HE}/explo01.wav"], _HE_LIC,
         "a small explosion", "impulse", ("blast",)),
    # breaking glass
    *(_src("glass", "minetest-data", f"default_break_glass.{i}", [f"{_MT}/default/sounds/default_break_glass.{i}.ogg"],
           _MT_CC_BY_SA, "a pane of glass shattering", "impulse", ("shatter",)) for i in (1, 2, 3)),
    # crowds
    *(_src("crowd", "lincity-ng-data", f"SportsCroud{i}", [f"{_LC}/SportsCroud{i}.wav"], _LC_LIC,
           "a stadium crowd", "continuous", ("audience", "cheering")) for i in (1, 2, 3)),
    _src("crowd", "heroes-sound-effects", "foule1", [f"{_HE}/foule1.wav"], _HE_LIC,
         "a cheering crowd", "continuous", ("cheering",)),
    _src("crowd", "heroes-sound-effects", "foule2", [f"{_HE}/foule2.wav"], _HE_LIC,
         "a cheering crowd", "continuous", ("cheering",)),
    _src("crowd", "lmms-common", "applause01", [f"{_LM}/misc/applause01.ogg"], _LM_LIC,
         "an audience applauding", "continuous", ("applause", "clapping")),
    _src("crowd", "lmms-common", "raving_crowd01", [f"{_LM}/misc/raving_crowd01.ogg"], _LM_LIC,
         "a roaring concert crowd", "continuous", ("cheering", "audience")),
    # road traffic
    *(_src("traffic", "lincity-ng-data", f"TraficHigh{i}", [f"{_LC}/TraficHigh{i}.wav"], _LC_LIC,
           "busy road traffic", "continuous", ("car", "road")) for i in (1, 2, 3)),
    *(_src("traffic", "lincity-ng-data", f"TraficLow{i}", [f"{_LC}/TraficLow{i}.wav"], _LC_LIC,
           "light road traffic with a passing car", "continuous", ("car", "road")) for i in (1, 2, 3)),
)

EVENT_CLASSES = tuple(sorted({s.event for s in EVENT_SOURCES}))
# Classes whose every source lasts the whole clip: mixtures use only these as the background,
# so any crop of a mixture really holds both layers (a lone impulse would leave most crops
# sounding like the foreground alone, which makes the "mixture" label noise).
BACKGROUND_CLASSES = tuple(c for c in EVENT_CLASSES
                           if all(s.kind in ("continuous", "steps") for s in EVENT_SOURCES if s.event == c))
SOUND_PACKAGES = tuple(sorted({s.package for s in EVENT_SOURCES}))
ALL_PACKAGES = ("espeak-ng", "festival", "festvox-kallpc16k", "fluidsynth", "fluid-soundfont-gm", *SOUND_PACKAGES)
APT_GET = "apt-get install -y --no-install-recommends " + " ".join(ALL_PACKAGES)


class MissingPrerequisites(RuntimeError):
    """Raised with a message naming the Debian packages to install."""


def check_prerequisites() -> None:
    """Fails early, naming every missing Debian package and the apt-get line to fix it."""
    missing: dict[str, list[str]] = {}
    for exe, pkg in TOOL_PACKAGES.items():
        if shutil.which(exe) is None:
            missing.setdefault(pkg, []).append(f"executable {exe}")
    for path, pkg in FILE_PACKAGES.items():
        if not os.path.exists(path):
            missing.setdefault(pkg, []).append(path)
    for src in EVENT_SOURCES:
        for f in src.files:
            if not os.path.isfile(f):
                missing.setdefault(src.package, []).append(f)
    if missing:
        lines = [f"  {pkg}: missing {len(items)} item(s), e.g. {items[0]}" for pkg, items in sorted(missing.items())]
        raise MissingPrerequisites(
            "the demo corpus is made from sound produced by Debian packages, and these are not installed:\n"
            + "\n".join(lines)
            + f"\nInstall them with:\n  sudo {APT_GET}\n(as root, drop 'sudo'; run 'apt-get update' first)")


def package_version(pkg: str) -> str:
    """Installed Debian version of `pkg` (or 'unknown' off Debian)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tool_versions(tmp: str) -> dict[str, str]:
    """First line of each tool's --version, recorded because audio may differ across versions
    (run with scratch files in `tmp`, see audio.run_tool)."""
    def first_line(cmd):
        try:
            out = audio.run_tool(cmd, tmp, check=False, text=True, timeout=20)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "unknown"
    return {
        "espeak-ng": first_line(["espeak-ng", "--version"]),
        "fluidsynth": first_line(["fluidsynth", "--version"]),
        "festival": first_line(["festival", "--version"]),
        "fluid-soundfont-gm": package_version("fluid-soundfont-gm"),
    }
