"""A licence-free synthetic speech → ARKit-52 data set with exact ground truth.

Speech comes from espeak-ng (through ctypes on ``libespeak-ng.so.1``), whose phoneme events give the start time of
every phoneme it speaks. Each phoneme maps to one or two visemes (a diphthong glides between two); each viseme is a
target pose over the ARKit-52 mouth/jaw channels. The curves blend the targets with dominance functions
(Cohen & Massaro's coarticulation model: every phoneme pulls the face towards its target with a strength that decays
away from its centre; bilabials pull hard and narrowly, /h/ and /k/ barely, so neighbours show through), then add a
speaker's talking style (articulation and jaw gain, smile bias, left/right asymmetry, brow raise on stressed
syllables, blink rate), an optional emotion, and stochastic upper-face motion (Poisson blinks, brow flicks, gaze).

One utterance carries K takes that differ in the stochastic channels AND in articulation (gain, timing jitter,
expression level), so the same audio has several plausible motions (what diffusion samples should show).

Determinism: espeak-ng keeps state between syntheses (pitch/filter history shifts samples slightly), and the first
synthesis in a process differs from later ones. So :class:`Espeak` makes one throwaway synthesis when it starts and
the generator synthesises every clip in ONE fresh (spawned) process in a fixed order; only the (pure, seeded) motion
part runs in worker processes. Same arguments + seed ⇒ same bytes, whatever ran before in the calling process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from diffusiontalker.arkit import ARKIT_52, ARKIT_INDEX
from diffusiontalker.audio import FPS, SAMPLE_RATE, num_frames, resample
from diffusiontalker.errors import DataError

ESPEAK_SAMPLE_RATE = 22_050  # what espeak-ng synthesises at
NUM_CHANNELS = len(ARKIT_52)

# espeak-ng API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_SENTENCE, _EVENT_END, _EVENT_PHONEME = 0, 1, 2, 5, 7
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry")


# --------------------------------------------------------------------------------------------------------------------
# espeak-ng through ctypes
# --------------------------------------------------------------------------------------------------------------------
class _EspeakEvent(ctypes.Structure):
    """``espeak_EVENT``; ``id`` is the 8-byte union whose chars hold the phoneme mnemonic for phoneme events."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the synthesis
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_EspeakEvent))


@dataclass(frozen=True)
class Phone:
    """One phoneme espeak spoke: [start, end) in seconds and its mnemonic (e.g. ``"p"``, ``"A:"``, ``"_:"``)."""

    start: float
    end: float
    name: str


@dataclass
class Speech:
    """Raw espeak output: int16 audio at 22,050 Hz, the phonemes and the word start times (seconds)."""

    audio: np.ndarray  # (N22,) int16
    phones: list[Phone]
    word_starts: list[float]


class Espeak:
    """The process-wide espeak-ng synthesiser (the library is a singleton with global state: use :meth:`get`)."""

    _instance: Espeak | None = None
    _lock = threading.RLock()  # espeak is not re-entrant; one synthesis at a time

    def __init__(self) -> None:
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self._lib = ctypes.CDLL(path)
        except OSError:
            try:
                self._lib = ctypes.CDLL("libespeak-ng.so.1")
            except OSError as exc:
                raise DataError("espeak-ng is not installed (libespeak-ng.so.1 not found); install it with "
                                "`apt-get install espeak-ng` to generate the synthetic data set") from exc
        lib = self._lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise DataError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: ctypes must not free it
        lib.espeak_SetSynthCallback(self._callback)
        self.synthesize("warm up.", "en-us", 175, 50, 50)  # the first synthesis in a process differs; throw it away

    @classmethod
    def get(cls) -> Espeak:
        """The shared instance of this process (created, with its warm-up synthesis, on first use)."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(self, wav, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type in (_EVENT_PHONEME, _EVENT_WORD):
                name = bytes(ev.id).split(b"\0", 1)[0].decode("latin-1") if ev.type == _EVENT_PHONEME else ""
                self._events.append((ev.type, ev.audio_position, name))
            i += 1
        return 0

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int,
                   volume: int = 100) -> Speech:
        """Speak ``text``; returns int16 audio at :attr:`sample_rate` with phoneme intervals and word starts."""
        with Espeak._lock:
            lib = self._lib
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise DataError(f"espeak-ng has no voice {voice!r}; try 'en-us', 'en-us+m3' or 'en-gb-x-rp'")
            lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
            lib.espeak_SetParameter(_PARAM_VOLUME, int(volume), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise DataError(f"espeak-ng failed to synthesise {text[:40]!r} (error {err})")
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            events = self._events
        total = len(audio) / self.sample_rate
        starts = [(pos / 1000.0, name) for kind, pos, name in events if kind == _EVENT_PHONEME]
        phones = []
        for k, (t0, name) in enumerate(starts):
            t1 = starts[k + 1][0] if k + 1 < len(starts) else total
            phones.append(Phone(min(t0, total), min(max(t1, t0), total), name))
        words = [pos / 1000.0 for kind, pos, _ in events if kind == _EVENT_WORD]
        return Speech(audio=audio.astype(np.int16, copy=False), phones=phones, word_starts=words)


# --------------------------------------------------------------------------------------------------------------------
# Visemes: target poses over the ARKit-52 channels
# --------------------------------------------------------------------------------------------------------------------
def _pose(**values: float) -> np.ndarray:
    """A (52,) pose; a name without Left/Right (``mouthSmile``) sets both sides."""
    out = np.zeros(NUM_CHANNELS, np.float32)
    for name, v in values.items():
        if name in ARKIT_INDEX:
            out[ARKIT_INDEX[name]] = v
        else:
            left, right = name + "Left", name + "Right"
            if left not in ARKIT_INDEX:
                raise KeyError(name)
            out[ARKIT_INDEX[left]] = v
            out[ARKIT_INDEX[right]] = v
    return out


# name -> (pose, dominance strength, lip-free): lip-free consonants barely constrain lip shape (rounding/spreading
# of the neighbouring vowels shows through them: "t" in "two" is rounded).
VISEMES: dict[str, tuple[np.ndarray, float, bool]] = {
    "REST": (_pose(), 0.8, False),
    "PBM": (_pose(jawOpen=0.02, mouthClose=0.75, mouthPress=0.5, mouthRollLower=0.15, mouthRollUpper=0.12,
                  mouthShrugLower=0.12), 12.0, False),
    "FV": (_pose(jawOpen=0.08, mouthRollLower=0.6, mouthUpperUp=0.3, mouthClose=0.1, mouthShrugUpper=0.1), 4.0, False),
    "TH": (_pose(jawOpen=0.18, tongueOut=0.4, mouthLowerDown=0.15), 2.0, False),
    "TD": (_pose(jawOpen=0.15, mouthStretch=0.12, mouthLowerDown=0.08), 0.9, True),
    "SZ": (_pose(jawOpen=0.07, mouthStretch=0.3, mouthSmile=0.12, mouthUpperUp=0.12, mouthLowerDown=0.12,
                 mouthClose=0.05), 1.6, False),
    "SH": (_pose(jawOpen=0.1, mouthFunnel=0.5, mouthPucker=0.25, mouthUpperUp=0.25, mouthLowerDown=0.2,
                 mouthShrugUpper=0.15), 2.5, False),
    "KG": (_pose(jawOpen=0.22, mouthStretch=0.1), 0.6, True),
    "H": (_pose(jawOpen=0.3, mouthLowerDown=0.1), 0.3, True),
    "R": (_pose(jawOpen=0.14, mouthPucker=0.35, mouthFunnel=0.3), 1.5, False),
    "W": (_pose(jawOpen=0.08, mouthPucker=0.75, mouthFunnel=0.4, mouthClose=0.05), 3.0, False),
    "J": (_pose(jawOpen=0.12, mouthStretch=0.3, mouthSmile=0.2), 1.2, False),
    "L": (_pose(jawOpen=0.22, mouthLowerDown=0.1, mouthStretch=0.05), 0.8, True),
    "AA": (_pose(jawOpen=0.68, mouthLowerDown=0.35, mouthUpperUp=0.1, mouthStretch=0.08), 1.3, False),
    "AH": (_pose(jawOpen=0.45, mouthLowerDown=0.25, mouthStretch=0.05), 1.1, False),
    "EH": (_pose(jawOpen=0.4, mouthStretch=0.3, mouthSmile=0.15, mouthLowerDown=0.25, mouthUpperUp=0.1), 1.1, False),
    "IH": (_pose(jawOpen=0.22, mouthStretch=0.38, mouthSmile=0.22, mouthUpperUp=0.1), 1.0, False),
    "IY": (_pose(jawOpen=0.15, mouthStretch=0.5, mouthSmile=0.32, mouthUpperUp=0.15, cheekSquint=0.08), 1.1, False),
    "SCHWA": (_pose(jawOpen=0.28, mouthLowerDown=0.12), 0.8, False),
    "ER": (_pose(jawOpen=0.22, mouthFunnel=0.3, mouthPucker=0.2), 1.0, False),
    "AO": (_pose(jawOpen=0.5, mouthFunnel=0.5, mouthPucker=0.2, mouthLowerDown=0.2), 1.2, False),
    "OH": (_pose(jawOpen=0.35, mouthFunnel=0.55, mouthPucker=0.4), 1.2, False),
    "UH": (_pose(jawOpen=0.22, mouthFunnel=0.4, mouthPucker=0.45), 1.0, False),
    "UW": (_pose(jawOpen=0.12, mouthPucker=0.8, mouthFunnel=0.5), 1.4, False),
}

# Every mnemonic espeak-ng emits for English voices (collected over ~12k words x 10 voices), with a few rarer ones.
# A tuple of two visemes is a glide (diphthong): the first holds 55 % of the phoneme, the second the rest.
PHONEME_VISEMES: dict[str, tuple[str, ...]] = {
    # pauses / boundaries
    "_": ("REST",), "_:": ("REST",), "_!": ("REST",), "_|": ("REST",), "_^_": ("REST",), "_#": ("REST",),
    # bilabials, labiodentals, dentals
    "p": ("PBM",), "b": ("PBM",), "m": ("PBM",), "m-": ("PBM",),
    "f": ("FV",), "v": ("FV",),
    "T": ("TH",), "D": ("TH",),
    # alveolars (flaps t#, unreleased t[, syllabic n-)
    "t": ("TD",), "d": ("TD",), "n": ("TD",), "t#": ("TD",), "t[": ("TD",), "t2": ("TD",), "d#": ("TD",),
    "n-": ("TD",), "n#": ("TD",), "l": ("L",), "l#": ("L",), "l/": ("L",), "l/2": ("L",), "?": ("KG",),
    "s": ("SZ",), "z": ("SZ",),
    "S": ("SH",), "Z": ("SH",), "tS": ("SH",), "dZ": ("SH",),
    "k": ("KG",), "g": ("KG",), "N": ("KG",), "x": ("KG",), "h": ("H",),
    "r": ("R",), "r-": ("R",), "r/": ("R",), "*": ("TD",),
    "w": ("W",), "w#": ("W",), "W": ("W",),
    "j": ("J",), ";": ("J",),
    # vowels
    "a": ("AA",), "aa": ("AA",), "A:": ("AA",), "A@": ("AA", "ER"), "A": ("AA",), "a#": ("AH",), "V": ("AH",),
    "VR": ("AH", "ER"), "E": ("EH",), "e": ("EH",), "e@": ("EH", "SCHWA"), "E2": ("EH",),
    "I": ("IH",), "I2": ("IH",), "I#": ("IH",), "i": ("IY",), "i:": ("IY",), "i@": ("IY", "SCHWA"),
    "i@3": ("IY", "SCHWA"), "IR": ("IH", "ER"),
    "@": ("SCHWA",), "@2": ("SCHWA",), "@-": ("SCHWA",), "@5": ("SCHWA",), "@L": ("SCHWA", "L"),
    "3": ("SCHWA",), "3:": ("ER",), "3:r": ("ER",),
    "0": ("AO",), "0#": ("AO",), "O:": ("AO",), "O": ("AO",), "O2": ("AO",), "O@": ("AO", "ER"), "o@": ("OH", "ER"),
    "o": ("OH",), "oU": ("OH", "UW"), "oU#": ("OH", "UW"), "@U": ("SCHWA", "UW"),
    "U": ("UH",), "u:": ("UW",), "uu": ("UW",), "u": ("UW",), "U@": ("UH", "SCHWA"), "u@": ("UW", "SCHWA"),
    "eI": ("EH", "IY"), "eI#": ("EH", "IY"), "aI": ("AA", "IY"), "aI2": ("AA", "IY"), "aI3": ("AA", "IY"),
    "aI@": ("AA", "IH"), "aU": ("AA", "UW"), "aU@": ("AA", "UW"), "OI": ("AO", "IY"), "ju:": ("J", "UW"),
}

_VOWEL_VISEMES = {"AA", "AH", "EH", "IH", "IY", "SCHWA", "ER", "AO", "OH", "UH", "UW"}
_DIACRITICS = "#:;-[]|/!'2345,"


def phoneme_visemes(name: str) -> tuple[tuple[str, ...], str]:
    """Visemes of one espeak mnemonic and how they were found: ``"known"``, ``"approx"`` (after stripping
    diacritics) or ``"unknown"`` (guessed from the first character; counted in stats.json, never dropped)."""
    if name in PHONEME_VISEMES:
        return PHONEME_VISEMES[name], "known"
    stripped = name.strip(_DIACRITICS) or name
    for cand in (stripped, name.rstrip(_DIACRITICS), name[:2], name[:1]):
        if cand and cand in PHONEME_VISEMES and cand != "_":
            return PHONEME_VISEMES[cand], "approx"
    if name.startswith("_"):
        return ("REST",), "approx"
    first = name[:1]
    return (("SCHWA",) if first in "aeiouAEIOUV03@" else ("TD",)), "unknown"


# --------------------------------------------------------------------------------------------------------------------
# Speakers and emotions
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: an espeak voice (variant + pitch + range + rate) and a talking style."""

    name: str
    voice: str
    pitch: int  # espeak 0..99
    pitch_range: int  # espeak 0..99
    rate: int  # words per minute
    articulation: float = 1.0  # gain on mouth shapes
    jaw_gain: float = 1.0
    jaw_bias: float = 0.0  # added to jawOpen while speaking
    smile: float = 0.0  # resting smile bias
    asymmetry: float = 0.0  # >0: left side stronger
    brow_stress: float = 0.2  # brow raise on stressed syllables
    blink_rate: float = 15.0  # blinks per minute
    coarticulation: float = 0.05  # s, spread of each phoneme's dominance
    gaze: float = 0.06  # idle eye motion amplitude

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# (name, voice, pitch, range, rate): several share a voice variant but differ in pitch/rate/style.
_SPEAKER_VOICES: tuple[tuple[str, str, int, int, int], ...] = (
    ("ava", "en-us+f2", 62, 60, 170), ("ben", "en-us+m3", 40, 45, 165), ("cleo", "en-us+f2", 78, 75, 195),
    ("dan", "en-us+m3", 56, 55, 200), ("eve", "en-gb-x-rp", 52, 50, 150), ("finn", "en-gb-scotland", 45, 60, 175),
    ("gia", "en-us+f4", 70, 55, 160), ("hugo", "en-us-nyc", 36, 40, 185), ("iris", "en-us+f4", 56, 80, 210),
    ("jack", "en-gb-x-rp", 66, 65, 180), ("kate", "en-us+f1", 68, 50, 175), ("leo", "en-us+m1", 46, 35, 150),
    ("mia", "en-gb-scotland+f2", 64, 55, 185), ("ned", "en-us+m7", 50, 70, 160), ("olga", "en-us+f1", 55, 45, 140),
    ("paul", "en-us+m1", 60, 60, 205),
)
# Held-out speakers use voices no training speaker uses.
_HELDOUT_VOICES: tuple[tuple[str, str, int, int, int], ...] = (
    ("quinn", "en-029+m2", 48, 55, 170), ("rosa", "en-gb-x-gbclan+f4", 66, 60, 180),
    ("sam", "en+klatt", 50, 50, 165), ("tara", "en-gb-x-gbcwmd+f3", 60, 70, 190),
    ("uma", "en-us+f3", 72, 65, 175), ("vic", "en-us+m5", 42, 50, 155),
)
_EXTRA_VARIANTS = ("en-us+m2", "en-us+m4", "en-us+m6", "en-us+f3", "en-gb-x-rp+f3", "en-us-nyc+m5")


def _style_for(name: str, voice: str, pitch: int, pitch_range: int, rate: int) -> Speaker:
    """A speaker's style, drawn from a generator seeded by the NAME (so a speaker is the same in every data set)."""
    r = np.random.default_rng(zlib.crc32(name.encode()))
    return Speaker(
        name=name, voice=voice, pitch=pitch, pitch_range=pitch_range, rate=rate,
        articulation=float(r.uniform(0.75, 1.3)), jaw_gain=float(r.uniform(0.8, 1.25)),
        jaw_bias=float(r.uniform(0.0, 0.06)), smile=float(r.uniform(0.0, 0.3)),
        asymmetry=float(r.uniform(-0.25, 0.25)), brow_stress=float(r.uniform(0.05, 0.45)),
        blink_rate=float(r.uniform(8.0, 28.0)), coarticulation=float(r.uniform(0.03, 0.08)),
        gaze=float(r.uniform(0.03, 0.1)),
    )


def make_speakers(count: int, heldout: int = 0) -> tuple[list[Speaker], list[Speaker]]:
    """``count`` training speakers and ``heldout`` held-out ones (own voices). Same names/styles for every seed."""
    if count < 1:
        raise DataError(f"need at least 1 speaker, got {count}")
    main = []
    for i in range(count):
        if i < len(_SPEAKER_VOICES):
            main.append(_style_for(*_SPEAKER_VOICES[i]))
        else:  # procedurally extend with shared variants
            r = np.random.default_rng(1000 + i)
            main.append(_style_for(f"spk{i:02d}", _EXTRA_VARIANTS[i % len(_EXTRA_VARIANTS)], int(r.integers(30, 80)),
                                   int(r.integers(35, 80)), int(r.integers(145, 210))))
    held = []
    for i in range(heldout):
        if i < len(_HELDOUT_VOICES):
            held.append(_style_for(*_HELDOUT_VOICES[i]))
        else:
            r = np.random.default_rng(2000 + i)
            held.append(_style_for(f"held{i:02d}", _HELDOUT_VOICES[i % len(_HELDOUT_VOICES)][1],
                                   int(r.integers(30, 80)), int(r.integers(35, 80)), int(r.integers(145, 210))))
    return main, held


# emotion -> (voice changes: pitch, range, rate factor, volume; face biases)
_EMOTION_VOICE = {"neutral": (0, 0, 1.0, 100), "happy": (8, 15, 1.08, 110), "sad": (-6, -20, 0.85, 80),
                  "angry": (3, 25, 1.1, 130)}
_EMOTION_FACE = {
    "neutral": _pose(),
    "happy": _pose(mouthSmile=0.35, cheekSquint=0.3, eyeSquint=0.12, mouthDimple=0.1),
    "sad": _pose(mouthFrown=0.3, browInnerUp=0.35, eyeLookDown=0.1, mouthShrugLower=0.1),
    "angry": _pose(browDown=0.4, noseSneer=0.2, eyeSquint=0.2, mouthPress=0.08, mouthFrown=0.1),
}


# --------------------------------------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------------------------------------
_NAMES = ("Bob", "Mary", "Peter", "Anna", "Tom", "Maria", "Paul", "Olivia", "Frank", "Julia", "Victor", "Emma",
          "Walter", "Bella", "George", "Molly", "Harvey", "Lucy", "Sam", "Ruth")
_ADJ = ("big", "small", "bright", "purple", "warm", "quiet", "old", "broken", "famous", "happy", "heavy", "smooth",
        "yellow", "tiny", "proud", "lovely", "busy", "muddy", "shiny", "strange", "brave", "calm", "fresh", "wooden",
        "open", "blue", "soft", "awful", "golden", "huge")
_NOUNS = ("map", "boat", "apple", "garden", "window", "market", "father", "mother", "bottle", "puppy", "castle",
          "river", "pocket", "blanket", "mountain", "coffee", "movie", "piano", "bubble", "village", "teacher",
          "parrot", "pillow", "ocean", "forest", "wagon", "feather", "ladder", "museum", "bicycle", "potato",
          "umbrella", "rabbit", "violin", "shadow", "harbor", "doctor", "letter", "garage", "zoo")
_VERBS_PAST = ("bought", "found", "painted", "moved", "opened", "watched", "carried", "borrowed", "fixed", "loved",
               "dropped", "visited", "pushed", "washed", "followed", "baked", "played", "remembered", "grabbed",
               "touched")
_VERBS = ("buy", "find", "paint", "move", "open", "watch", "carry", "borrow", "fix", "visit", "push", "wash",
          "follow", "bake", "play", "grab", "check", "build", "share", "keep")
_PLACES = ("by the harbor", "in the garden", "at the market", "near the bridge", "on the boat", "behind the barn",
           "under the table", "at the museum", "in the morning", "after the party", "before lunch", "last summer",
           "at home", "on Monday", "in the park")
_ADVERBS = ("quickly", "slowly", "happily", "barely", "openly", "maybe", "probably", "finally", "never", "always")
_PRON = ("we", "they", "she", "he", "you", "I")


def _pick(rng: np.random.Generator, seq: tuple[str, ...]) -> str:
    return seq[int(rng.integers(len(seq)))]


def make_sentence(rng: np.random.Generator, max_words: int = 16) -> str:
    """One English sentence from word lists and a tiny grammar (1–3 clauses, commas give pauses)."""

    def noun_phrase() -> str:
        r = rng.random()
        if r < 0.35:
            return _pick(rng, _NAMES)
        det = _pick(rng, ("the", "a", "my", "her", "our", "that", "his"))
        if det == "a" and _pick(rng, _ADJ + _NOUNS)[0] in "aeiou":
            det = "the"
        adj = _pick(rng, _ADJ) + " " if rng.random() < 0.6 else ""
        phrase = f"{det} {adj}{_pick(rng, _NOUNS)}"
        return phrase.replace("a a", "an a").replace("a o", "an o").replace("a u", "an u")

    def clause() -> str:
        r = rng.random()
        if r < 0.3:
            return f"{noun_phrase()} {_pick(rng, _VERBS_PAST)} {noun_phrase()} {_pick(rng, _PLACES)}"
        if r < 0.5:
            return f"{_pick(rng, _PRON)} should {_pick(rng, _VERBS)} {noun_phrase()}"
        if r < 0.65:
            return f"{noun_phrase()} {_pick(rng, _ADVERBS)} {_pick(rng, _VERBS_PAST)} {noun_phrase()}"
        if r < 0.8:
            return f"{_pick(rng, _PRON)} {_pick(rng, _VERBS_PAST)} {noun_phrase()}"
        return f"{noun_phrase()} was {_pick(rng, _ADJ)} {_pick(rng, _PLACES)}"

    for _ in range(20):
        n = 1 + int(rng.random() < 0.65) + int(rng.random() < 0.3)
        parts = [clause() for _ in range(n)]
        joiners = [_pick(rng, (", and ", ", but ", ", so ", ". Then ", ", because ")) for _ in range(n - 1)]
        text = parts[0]
        for j, p in zip(joiners, parts[1:]):
            text += j + p
        question = rng.random() < 0.12
        if question:
            text = "did " + text
        text = text[0].upper() + text[1:] + ("?" if question else ".")
        text = ". ".join(s[:1].upper() + s[1:] for s in text.split(". "))
        if 4 <= len(text.split()) <= max_words:
            return text
    return text


# --------------------------------------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------------------------------------
_LIP_SHAPE = np.zeros(NUM_CHANNELS, np.float32)  # channels lip-free consonants barely constrain
for _n in ("mouthFunnel", "mouthPucker", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
           "mouthStretchRight"):
    _LIP_SHAPE[ARKIT_INDEX[_n]] = 1.0
_CONSTRICTION = np.zeros(NUM_CHANNELS, np.float32)  # closure channels a gain must not weaken
for _n in ("mouthClose", "mouthPressLeft", "mouthPressRight", "mouthRollLower", "mouthRollUpper"):
    _CONSTRICTION[ARKIT_INDEX[_n]] = 1.0
_MOUTH = np.array([n.startswith(("mouth", "jaw")) or n == "tongueOut" for n in ARKIT_52], np.float32)
_LEFT = np.array([n.endswith("Left") for n in ARKIT_52], np.float32)
_RIGHT = np.array([n.endswith("Right") for n in ARKIT_52], np.float32)
_JAW = ARKIT_INDEX["jawOpen"]
_ASYM = np.array([n.startswith(("mouth", "brow", "cheek", "nose")) for n in ARKIT_52], np.float32)


@dataclass
class Segment:
    """One viseme segment: centre (s), half-width (s), viseme name, and whether it is a stressed vowel."""

    centre: float
    half: float
    viseme: str
    stressed: bool = False


def phones_to_segments(phones: list[Phone], word_starts: list[float] | None = None) -> tuple[list[Segment], Counter]:
    """Viseme segments of a phoneme sequence, plus counts of how each phoneme was resolved (known/approx/unknown).

    A stressed syllable is the longest vowel of a word of 3+ phonemes when it is longer than the utterance's median
    vowel (espeak lengthens stressed vowels, so this is audible).
    """
    segs: list[Segment] = []
    status: Counter = Counter()
    vowel_durs = []
    for ph in phones:
        vis, how = phoneme_visemes(ph.name)
        status[how] += 1
        dur = max(ph.end - ph.start, 1e-3)
        if len(vis) == 1:
            segs.append(Segment(ph.start + dur / 2, dur / 2, vis[0]))
        else:  # glide: 55 % first target, 45 % second
            cut = ph.start + 0.55 * dur
            segs.append(Segment((ph.start + cut) / 2, (cut - ph.start) / 2, vis[0]))
            segs.append(Segment((cut + ph.end) / 2, (ph.end - cut) / 2, vis[1]))
        if vis[0] in _VOWEL_VISEMES:
            vowel_durs.append(dur)
    if vowel_durs and word_starts:
        median = float(np.median(vowel_durs))
        bounds = list(word_starts) + [np.inf]
        for w0, w1 in zip(bounds[:-1], bounds[1:]):
            idx = [k for k, s in enumerate(segs) if w0 <= s.centre < w1 and s.viseme in _VOWEL_VISEMES]
            if len([s for s in segs if w0 <= s.centre < w1]) < 3 or not idx:
                continue
            best = max(idx, key=lambda k: segs[k].half)
            if 2 * segs[best].half > 1.1 * median:
                segs[best].stressed = True
    return segs, status


def _bump(t: np.ndarray, t0: float, dur: float, attack: float = 0.35) -> np.ndarray:
    """A smooth 0→1→0 event starting at ``t0`` lasting ``dur`` (raised-cosine attack, slower release)."""
    x = (t - t0) / max(dur, 1e-3)
    out = np.zeros_like(t)
    up = (x >= 0) & (x < attack)
    down = (x >= attack) & (x < 1)
    out[up] = np.sin(0.5 * np.pi * x[up] / attack) ** 2
    out[down] = np.cos(0.5 * np.pi * (x[down] - attack) / (1 - attack)) ** 2
    return out


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, rate_hz: float = 0.6) -> np.ndarray:
    """Piecewise-constant targets at Poisson times (saccade-like), smoothed: values in about [-1, 1]."""
    n = len(t)
    if n == 0:
        return np.zeros(0, np.float32)
    duration = float(t[-1] - t[0]) + 1e-3
    times = np.sort(rng.uniform(t[0], t[-1] + 1e-3, size=rng.poisson(rate_hz * duration) + 1))
    levels = rng.uniform(-1, 1, size=len(times) + 1)
    sig = levels[np.searchsorted(times, t)]
    kernel = np.hanning(5)
    kernel /= kernel.sum()
    return np.convolve(np.pad(sig, 2, mode="edge"), kernel, mode="valid").astype(np.float32)


def articulate(segments: list[Segment], times: np.ndarray, speaker: Speaker, rng: np.random.Generator,
               gain: float = 1.0, jitter: float = 0.0, spread: float = 1.0) -> np.ndarray:
    """Mouth/jaw curves (T, 52) by dominance-function blending of viseme targets at ``times`` (seconds).

    D_i(t) = a_i · w_i,c · exp(-((t - c_i) / s_i)^2) with s_i = half-width / 2 + coarticulation spread;
    y_c(t) = Σ_i D_i(t) P_i,c / Σ_i D_i(t) (Cohen & Massaro's weighted average of targets).
    ``jitter`` (s) moves each centre by up to ±jitter; ``gain`` scales the shapes (not closures).
    """
    P = len(segments)
    if P == 0:
        return np.zeros((len(times), NUM_CHANNELS), np.float32)
    centres = np.array([s.centre for s in segments], np.float64)
    closure = np.array([s.viseme in ("PBM", "FV") for s in segments])
    if jitter > 0:  # closures are timed more tightly (±jitter/2): the lips must meet where the sound stops
        limit = np.where(closure, jitter / 2, jitter)
        centres = centres + np.clip(rng.normal(0, jitter / 2, P), -limit, limit)
    halves = np.array([s.half for s in segments], np.float64)
    width = 0.5 * halves + speaker.coarticulation * spread  # (P,)
    poses = np.stack([VISEMES[s.viseme][0] for s in segments])  # (P, 52)
    alpha = np.array([VISEMES[s.viseme][1] for s in segments], np.float64)  # (P,)
    weights = np.ones((P, NUM_CHANNELS), np.float64)
    lipfree = np.array([VISEMES[s.viseme][2] for s in segments])
    weights[lipfree] = 1.0 - 0.85 * _LIP_SHAPE
    # closures dominate narrowly but last at least ~60 ms (lips stay shut even when the burst is short)
    width[closure] = 0.5 * np.maximum(halves[closure], 0.03) + 0.5 * speaker.coarticulation * spread
    # shape gain (not on closures) and stress emphasis on the jaw
    scale = np.where(_CONSTRICTION > 0, 1.0, gain * speaker.articulation)[None, :].repeat(P, 0)
    scale[:, _JAW] = gain * speaker.jaw_gain
    stressed = np.array([s.stressed for s in segments])
    scale[stressed, _JAW] *= 1.12
    poses = poses * scale
    tau = np.abs(times[None, :] - centres[:, None]) / width[:, None]  # (P, T)
    dom = alpha[:, None] * np.exp(-(tau ** 2))  # (P, T)
    num = np.einsum("pt,pc->tc", dom, weights * poses)  # (T, 52)
    den = np.einsum("pt,pc->tc", dom, weights) + 1e-3  # a faint rest pose far from any phoneme
    out = num / den
    # jaw bias while speaking (not during pauses/closures): proportional to how open the jaw already is
    out[:, _JAW] += speaker.jaw_bias * np.clip(out[:, _JAW] / 0.3, 0, 1)
    return out.astype(np.float32)


def _stress_times(segments: list[Segment]) -> list[float]:
    return [s.centre - s.half for s in segments if s.stressed]


def make_takes(segments: list[Segment], num_frames_: int, speaker: Speaker, rng: np.random.Generator,
               takes: int = 4, emotion: str = "neutral", speech_span: tuple[float, float] | None = None) -> np.ndarray:
    """K takes (K, T, 52) of one utterance: articulation varies (gain ±15 %, timing jitter ±20 ms, expression
    level), and stochastic upper-face channels are drawn per take (Poisson blinks of 150–250 ms, brow flicks,
    gaze). Values are clipped to [0, 1]."""
    if emotion not in _EMOTION_FACE:
        raise DataError(f"unknown emotion {emotion!r}; choose one of {list(EMOTIONS)}")
    t = (np.arange(num_frames_) + 0.5) / FPS  # frame centres (s)
    duration = num_frames_ / FPS
    out = np.zeros((takes, num_frames_, NUM_CHANNELS), np.float32)
    stress = _stress_times(segments)
    for k in range(takes):
        gain = float(rng.uniform(0.85, 1.15))
        spread = float(rng.uniform(0.8, 1.2))
        lead = float(rng.uniform(-0.005, 0.015))  # the face often leads the sound slightly
        m = articulate(segments, t + lead, speaker, rng, gain=gain, jitter=0.02, spread=spread)
        expression = float(rng.uniform(0.7, 1.3))
        bias = _pose(mouthSmile=speaker.smile, cheekSquint=0.4 * speaker.smile) + _EMOTION_FACE[emotion]
        m += expression * bias[None, :]
        # brow raise on stressed syllables (each with probability 0.7 in a take)
        brow = np.zeros(num_frames_, np.float32)
        for ts in stress:
            if rng.random() < 0.7:
                brow += speaker.brow_stress * float(rng.uniform(0.7, 1.2)) * _bump(t, ts - 0.05, 0.4)
        # brow flicks (Poisson, ~1 per 6 s) and idle brow drift
        for _ in range(rng.poisson(duration / 6.0)):
            brow += float(rng.uniform(0.1, 0.3)) * _bump(t, float(rng.uniform(0, duration)),
                                                          float(rng.uniform(0.25, 0.45)))
        brow += 0.03 * (_smooth_noise(rng, t, 0.4) + 1.0)
        m[:, ARKIT_INDEX["browInnerUp"]] += brow
        m[:, ARKIT_INDEX["browOuterUpLeft"]] += 0.8 * brow
        m[:, ARKIT_INDEX["browOuterUpRight"]] += 0.8 * brow
        # blinks: Poisson at the speaker's rate, 150–250 ms lid closures, never overlapping
        blink = np.zeros(num_frames_, np.float32)
        rate = speaker.blink_rate / 60.0 * float(rng.uniform(0.8, 1.2))
        t_next = float(rng.exponential(1.0 / rate)) - 0.5
        while t_next < duration:
            dur = float(rng.uniform(0.15, 0.25))
            blink = np.maximum(blink, float(rng.uniform(0.85, 1.0)) * _bump(t, t_next, dur))
            t_next += dur + 0.15 + float(rng.exponential(1.0 / rate))
        m[:, ARKIT_INDEX["eyeBlinkLeft"]] += blink * float(rng.uniform(0.95, 1.0))
        m[:, ARKIT_INDEX["eyeBlinkRight"]] += blink * float(rng.uniform(0.95, 1.0))
        # gaze: horizontal and vertical drifts split into the ARKit in/out/up/down pairs
        horiz = speaker.gaze * _smooth_noise(rng, t, 0.5)
        vert = speaker.gaze * _smooth_noise(rng, t, 0.4)
        look_left, look_right = np.clip(horiz, 0, None), np.clip(-horiz, 0, None)
        m[:, ARKIT_INDEX["eyeLookOutLeft"]] += look_left
        m[:, ARKIT_INDEX["eyeLookInRight"]] += look_left
        m[:, ARKIT_INDEX["eyeLookInLeft"]] += look_right
        m[:, ARKIT_INDEX["eyeLookOutRight"]] += look_right
        for side in ("Left", "Right"):
            m[:, ARKIT_INDEX["eyeLookUp" + side]] += np.clip(vert, 0, None)
            m[:, ARKIT_INDEX["eyeLookDown" + side]] += np.clip(-vert, 0, None) + 0.3 * blink
        # left/right asymmetry of the speaker (mouth, cheeks and brows; never the lids)
        a = speaker.asymmetry
        m *= (1.0 + a * _ASYM * (_LEFT - _RIGHT))[None, :]
        out[k] = np.clip(m, 0.0, 1.0)
    return out


# --------------------------------------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class ClipSpec:
    """Everything that decides one synthetic clip (drawn by the generator in a fixed order)."""

    index: int
    speaker: Speaker
    text: str
    sentence_id: int
    split: str
    emotion: str
    lead: float  # s of silence before the speech
    trail: float  # s of silence after it
    seed: int
    takes: int = 4

    @property
    def stem(self) -> str:
        return f"{self.speaker.name}_{self.index:05d}"


def speak(spec: ClipSpec, engine: Espeak | None = None) -> Speech:
    """Synthesise a clip's speech with its speaker's voice and emotion (must run in the one synthesis process)."""
    engine = engine or Espeak.get()
    dp, dr, fr, vol = _EMOTION_VOICE[spec.emotion]
    s = spec.speaker
    return engine.synthesize(spec.text, s.voice, int(round(s.rate * fr)), int(np.clip(s.pitch + dp, 0, 99)),
                             int(np.clip(s.pitch_range + dr, 0, 99)), vol)


def render_clip(spec: ClipSpec, speech: Speech) -> dict:
    """Audio at 16 kHz with silences, phonemes and K takes of motion for one clip (a pure, seeded function)."""
    rng = np.random.default_rng(spec.seed)
    voice = resample(speech.audio.astype(np.float32) / 32768.0, ESPEAK_SAMPLE_RATE, SAMPLE_RATE)
    lead_n, trail_n = int(round(spec.lead * SAMPLE_RATE)), int(round(spec.trail * SAMPLE_RATE))
    audio = np.concatenate([np.zeros(lead_n, np.float32), voice, np.zeros(trail_n, np.float32)])
    offset = lead_n / SAMPLE_RATE
    total = len(audio) / SAMPLE_RATE
    phones = [Phone(p.start + offset, p.end + offset, p.name) for p in speech.phones]
    # explicit silences before and after the speech, so the face rests there (and plots show them)
    phones = [Phone(0.0, offset, "_")] + phones + [Phone(phones[-1].end, total, "_")]
    words = [w + offset for w in speech.word_starts]
    segments, status = phones_to_segments(phones, words)
    T = num_frames(len(audio))
    motion = make_takes(segments, T, spec.speaker, rng, takes=spec.takes, emotion=spec.emotion)
    unknown = Counter(p.name for p in phones if phoneme_visemes(p.name)[1] == "unknown")
    approx = Counter(p.name for p in phones if phoneme_visemes(p.name)[1] == "approx")
    return {
        "audio": audio.astype(np.float32), "motion": motion, "kind": "blendshape", "names": np.array(ARKIT_52),
        "speaker": spec.speaker.name, "emotion": spec.emotion, "text": spec.text,
        "phone_starts": np.array([p.start for p in phones], np.float32),
        "phone_ends": np.array([p.end for p in phones], np.float32),
        "phone_names": np.array([p.name for p in phones], dtype=str),
        "stressed_starts": np.array(_stress_times(segments), np.float32),
        "_phone_counts": Counter(p.name for p in phones), "_unknown": unknown, "_approx": approx,
        "_status": status,
    }


# --------------------------------------------------------------------------------------------------------------------
# The whole data set
# --------------------------------------------------------------------------------------------------------------------
MIN_CLIP_SECONDS, MAX_CLIP_SECONDS = 2.0, 8.0


def _split_sizes(n: int) -> tuple[int, int, int]:
    """80/10/10 with at least one val and one test sentence when there are 3 or more."""
    if n < 3:
        return n, 0, 0
    n_val = max(1, int(round(0.1 * n)))
    n_test = max(1, int(round(0.1 * n)))
    return n - n_val - n_test, n_val, n_test


def plan_clips(speakers: list[Speaker], clips_per_speaker: int, seed: int, heldout: list[Speaker] | None = None,
               takes: int = 4, emotions: tuple[str, ...] | list[str] = EMOTIONS) -> list[ClipSpec]:
    """Decide every clip (text, speaker, split, emotion, silences, seed) from ``seed``, in a fixed order.

    Each sentence is spoken by two training speakers and splits go BY SENTENCE (80/10/10), so a sentence never
    appears in two splits. Held-out speakers speak val/test sentences into the ``test_heldout`` split.
    """
    for e in emotions:
        if e not in EMOTIONS:
            raise DataError(f"unknown emotion {e!r}; choose from {list(EMOTIONS)}")
    if clips_per_speaker < 1:
        raise DataError(f"clips per speaker must be at least 1, got {clips_per_speaker}")
    if takes < 1:
        raise DataError(f"takes must be at least 1, got {takes}")
    heldout = heldout or []
    rng = np.random.default_rng(seed)
    n_clips = len(speakers) * clips_per_speaker
    n_sent = max(1, (n_clips + 1) // 2)
    sentences: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(sentences) < n_sent:
        s = make_sentence(rng)
        attempts += 1
        if s not in seen or attempts > 50 * n_sent:
            seen.add(s)
            sentences.append(s)
    order = rng.permutation(n_sent)
    n_tr, n_va, _ = _split_sizes(n_sent)
    split_of = {}
    for rank, sid in enumerate(order):
        split_of[int(sid)] = "train" if rank < n_tr else ("val" if rank < n_tr + n_va else "test")
    slots = np.repeat(np.arange(len(speakers)), clips_per_speaker)
    rng.shuffle(slots)
    per_speaker: dict[int, list[int]] = {i: [] for i in range(len(speakers))}
    for j, spk in enumerate(slots):
        per_speaker[int(spk)].append(j // 2)
    emo = list(emotions)
    if len(emo) > 1 and "neutral" in emo:
        probs = np.array([0.55 if e == "neutral" else 0.45 / (len(emo) - 1) for e in emo])
    else:
        probs = np.full(len(emo), 1.0 / len(emo))

    specs: list[ClipSpec] = []

    def add(speaker: Speaker, sid: int, split: str) -> None:
        specs.append(ClipSpec(
            index=len(specs), speaker=speaker, text=sentences[sid], sentence_id=sid, split=split,
            emotion=emo[int(rng.choice(len(emo), p=probs))], lead=float(rng.uniform(0.15, 0.9)),
            trail=float(rng.uniform(0.2, 0.9)), seed=int(rng.integers(2**62)), takes=takes))

    for i, spk in enumerate(speakers):
        for sid in sorted(per_speaker[i]):
            add(spk, sid, split_of[sid])
    pool = sorted(s for s, sp in split_of.items() if sp != "train") or list(range(n_sent))
    for spk in heldout:
        for sid in rng.choice(pool, size=max(2, clips_per_speaker // 4), replace=True):
            add(spk, int(sid), "test_heldout")
    return specs


def _fit_duration(spec: ClipSpec, speech: Speech) -> ClipSpec:
    """Shrink/extend the silences so the clip lasts 2–8 s where the speech allows."""
    speech_s = len(speech.audio) / ESPEAK_SAMPLE_RATE
    total = spec.lead + speech_s + spec.trail
    if total > MAX_CLIP_SECONDS:
        excess = total - MAX_CLIP_SECONDS
        cut = min(excess, spec.lead + spec.trail - 0.2)
        share = spec.lead / (spec.lead + spec.trail)
        spec.lead -= cut * share
        spec.trail -= cut * (1 - share)
    elif total < MIN_CLIP_SECONDS:
        spec.trail += MIN_CLIP_SECONDS - total
    return spec


def _render_and_write(args: tuple[ClipSpec, Speech, str]) -> dict:
    """Worker: render one clip and write it; returns its statistics (no arrays)."""
    from diffusiontalker.data.clips import write_clip

    spec, speech, out = args
    clip = render_clip(spec, speech)
    stats = {k: clip.pop(k) for k in list(clip) if k.startswith("_")}
    write_clip(f"{out}/{spec.split}/{spec.stem}.npz", **clip)
    return {"split": spec.split, "seconds": len(clip["audio"]) / SAMPLE_RATE, "speaker": spec.speaker.name,
            "emotion": spec.emotion, **stats}


def generate_dataset(out: str, speakers: int = 10, clips_per_speaker: int = 200, seed: int = 0,
                     heldout_speakers: int = 0, takes: int = 4, workers: int = 1,
                     emotions: tuple[str, ...] | list[str] = EMOTIONS, progress: bool = True) -> dict:
    """Generate a synthetic clip directory at ``out`` (meta.json, norm.npz, stats.json, split folders).

    Speech is synthesised in this process in plan order (espeak's state makes order matter); rendering and
    writing run in ``workers`` processes. Returns the statistics written to stats.json.
    """
    import json
    import multiprocessing as mp
    import time
    from pathlib import Path

    from tqdm import tqdm

    from diffusiontalker.data.clips import compute_norm

    t_start = time.perf_counter()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    main, held = make_speakers(speakers, heldout_speakers)
    specs = plan_clips(main, clips_per_speaker, seed, held, takes=takes, emotions=emotions)
    for split in sorted({s.split for s in specs}):
        (root / split).mkdir(exist_ok=True)
    results: list[dict] = []
    phone_counts: Counter = Counter()
    bar = tqdm(total=len(specs), desc="synthetic clips", unit="clip", disable=not progress)
    # speech: one fresh process, fixed order (espeak's state carries over between syntheses)
    synth_pool = mp.get_context("spawn").Pool(1)
    pool = None
    if workers > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
        pool = ctx.Pool(workers)
    try:
        chunk = 32
        for c0 in range(0, len(specs), chunk):
            batch = specs[c0:c0 + chunk]
            jobs = []
            for spec, speech in zip(batch, synth_pool.map(speak, batch, chunksize=len(batch))):
                if not speech.phones or len(speech.audio) == 0:
                    raise DataError(f"espeak-ng produced no speech for {spec.text!r} ({spec.speaker.voice})")
                jobs.append((_fit_duration(spec, speech), speech, str(root)))
            it = pool.imap(_render_and_write, jobs) if pool else map(_render_and_write, jobs)
            for res in it:
                results.append(res)
                phone_counts.update(res["_phone_counts"])
                bar.update(1)
    finally:
        bar.close()
        synth_pool.terminate()
        synth_pool.join()
        if pool:
            pool.close()
            pool.join()
    elapsed = time.perf_counter() - t_start
    names = sorted(s.name for s in main)
    meta = {
        "kind": "blendshape", "fps": FPS, "sample_rate": SAMPLE_RATE, "names": list(ARKIT_52),
        "speakers": names, "heldout_speakers": sorted(s.name for s in held), "source": "synthetic",
        "takes": takes, "seed": seed, "emotions": list(emotions),
        "speaker_styles": {s.name: s.to_dict() for s in main + held},
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2))
    compute_norm(root)
    unknown: Counter = Counter()
    approx: Counter = Counter()
    for r in results:
        unknown.update(r["_unknown"])
        approx.update(r["_approx"])
    splits = sorted({r["split"] for r in results})
    stats = {
        "clips": len(results),
        "hours": sum(r["seconds"] for r in results) / 3600.0,
        "splits": {s: sum(r["split"] == s for r in results) for s in splits},
        "split_hours": {s: sum(r["seconds"] for r in results if r["split"] == s) / 3600.0 for s in splits},
        "sentences": len({sp.sentence_id for sp in specs}),
        "seconds_min": min(r["seconds"] for r in results), "seconds_max": max(r["seconds"] for r in results),
        "emotions": dict(Counter(r["emotion"] for r in results)),
        "phoneme_counts": dict(sorted(phone_counts.items(), key=lambda kv: -kv[1])),
        "unknown_phonemes": dict(unknown), "approximated_phonemes": dict(approx),
        "unknown_phoneme_count": sum(unknown.values()),
        "generation_seconds": elapsed, "clips_per_second": len(results) / max(elapsed, 1e-9),
        "workers": workers, "takes": takes, "seed": seed,
    }
    (root / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def plot_clip(clip_path: str, out_png: str, take: int = 0,
              channels: tuple[str, ...] = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "eyeBlinkLeft"),
              seconds: float | None = None) -> str:
    """Plot one synthetic clip's main channels against its phoneme intervals (matplotlib Agg) and save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffusiontalker.data.clips import read_clip

    clip = read_clip(clip_path)
    motion = clip["motion"]
    takes = motion if motion.ndim == 3 else motion[None]
    names = [str(n) for n in clip["names"]]
    t = (np.arange(takes.shape[1]) + 0.5) / FPS
    audio = clip["audio"]
    ta = np.arange(len(audio)) / SAMPLE_RATE
    end = seconds or t[-1] + 0.5 / FPS
    fig, axes = plt.subplots(len(channels) + 1, 1, figsize=(14, 1.6 * (len(channels) + 1)), sharex=True)
    axes[0].plot(ta, audio, lw=0.4, color="0.3")
    axes[0].set_ylabel("audio")
    axes[0].set_title(f"{clip['speaker']} ({clip['emotion']}): {clip.get('text', '')}", fontsize=10)
    starts, ends, pnames = clip["phone_starts"], clip["phone_ends"], [str(p) for p in clip["phone_names"]]
    bil = {"p", "b", "m"}
    for ax, ch in zip(axes[1:], channels):
        j = names.index(ch)
        for k in range(takes.shape[0]):
            ax.plot(t, takes[k, :, j], lw=1.6 if k == take else 0.7, alpha=1.0 if k == take else 0.45,
                    label=f"take {k}" if ch == channels[0] else None)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(ch, fontsize=9)
    for ax in axes:
        for s0, s1, p in zip(starts, ends, pnames):
            if s0 > end:
                break
            if p in bil:
                ax.axvspan(s0, s1, color="tab:red", alpha=0.15, lw=0)
            elif p in ("a", "aa", "A:", "aI", "aU", "V", "A@"):
                ax.axvspan(s0, s1, color="tab:green", alpha=0.15, lw=0)
            ax.axvline(s0, color="0.85", lw=0.4)
    lo = float(np.min(audio)) if len(audio) else -1.0
    for k, (s0, s1, p) in enumerate(zip(starts, ends, pnames)):
        if s0 <= end and not p.startswith("_"):  # phoneme labels along the bottom of the audio panel, staggered
            axes[0].text((s0 + s1) / 2, lo * (0.75 + 0.2 * (k % 2)), p, ha="center", va="center", fontsize=7,
                         color="tab:blue")
    axes[1].legend(loc="upper right", fontsize=7, ncol=takes.shape[0])
    axes[-1].set_xlim(0, end)
    axes[-1].set_xlabel("seconds (red: /p b m/, green: open vowels; phonemes in blue on the audio)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
