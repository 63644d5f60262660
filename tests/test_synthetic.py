"""The synthetic espeak-ng data set: phoneme timing on real espeak output, ranges, takes, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffusiontalker.arkit import ARKIT_52, ARKIT_INDEX
from diffusiontalker.audio import FPS, SAMPLE_RATE, num_frames
from diffusiontalker.data import synthetic as S
from diffusiontalker.data.clips import ClipDataset, read_clip

# mnemonics espeak-ng 1.51 emitted for ~12k English words over 10 English voices
_OBSERVED = """_ _: n t s d k r I E l p i: @ m z f aI I2 eI b a V v 0 3 oU i j u: N g @L ; S dZ a# w h A@ aU T o@
                tS i@ 3: I# OI t# O@ aa O: U e@ i@3 A: aI2 aI@ r- O2 t[ Z D U@ @- t2 VR aI3 ? n- IR w# _| @2 x"""
OBSERVED = _OBSERVED.split()
BILABIALS, OPEN_VOWELS = {"p", "b", "m"}, {"a", "aa", "A:"}


@pytest.fixture(scope="module")
def utterance():
    speaker = S.make_speakers(4)[0][3]  # "dan": a fast talker, the hardest case for closures
    spec = S.ClipSpec(index=0, speaker=speaker, text="Bob bought a big map, and papa paid for my palm tree.",
                      sentence_id=0, split="train", emotion="neutral", lead=0.4, trail=0.3, seed=3, takes=4)
    return S.render_clip(spec, S.speak(spec))


def _centre_frames(clip, names):
    return [(int((s0 + s1) / 2 * FPS), s1 - s0) for s0, s1, p in
            zip(clip["phone_starts"], clip["phone_ends"], clip["phone_names"]) if p in names]


def test_every_observed_espeak_phoneme_has_a_viseme():
    for name in OBSERVED:
        visemes, how = S.phoneme_visemes(name)
        assert how == "known", name
        assert all(v in S.VISEMES for v in visemes)
    assert S.phoneme_visemes("Q9")[1] == "unknown"  # counted, never dropped
    assert S.phoneme_visemes("t#2")[1] == "approx"


def test_espeak_phoneme_events_are_ordered_and_cover_the_audio(utterance):
    starts, ends = utterance["phone_starts"], utterance["phone_ends"]
    assert np.all(np.diff(starts) >= 0) and np.all(ends >= starts)
    assert ends[-1] == pytest.approx(len(utterance["audio"]) / SAMPLE_RATE, abs=1e-3)
    assert {"p", "b", "m"} <= set(utterance["phone_names"].tolist())


def test_lips_close_during_bilabials_and_jaw_opens_during_open_vowels(utterance):
    m = utterance["motion"]  # (K, T, 52)
    close, jaw = ARKIT_INDEX["mouthClose"], ARKIT_INDEX["jawOpen"]
    bil = _centre_frames(utterance, BILABIALS)
    opn = _centre_frames(utterance, OPEN_VOWELS)
    assert len(bil) >= 6 and len(opn) >= 2
    for f, _ in bil:  # every take: lips closed, jaw nearly shut
        assert m[:, f, close].min() > 0.4
        assert m[:, f, jaw].max() < 0.2
    vowel_jaw = np.array([m[:, f, jaw] for f, _ in opn])  # (V, K)
    assert vowel_jaw.mean() > 0.3
    assert vowel_jaw.min() > 2 * max(m[:, f, jaw].mean() for f, _ in bil)
    # speech moves the jaw a lot; leading silence keeps the mouth at rest
    lead = int(0.3 * FPS)
    assert m[:, :lead, jaw].max() < 0.02 and m[:, :lead, close].max() < 0.02
    assert m[:, :, jaw].std(axis=1).min() > 0.1


def test_values_in_range_and_shapes(utterance):
    m = utterance["motion"]
    assert m.shape == (4, num_frames(len(utterance["audio"])), len(ARKIT_52)) and m.dtype == np.float32
    assert np.all(np.isfinite(m)) and m.min() >= 0.0 and m.max() <= 1.0


def test_takes_differ_in_blinks_and_articulation(utterance):
    m = utterance["motion"]
    blink = m[:, :, ARKIT_INDEX["eyeBlinkLeft"]]
    assert any(not np.allclose(blink[0], blink[k]) for k in range(1, 4))
    jaw = m[:, :, ARKIT_INDEX["jawOpen"]]
    assert not np.allclose(jaw[0], jaw[1])
    assert np.corrcoef(jaw[0], jaw[1])[0, 1] > 0.8  # same speech, same overall articulation


def test_speaker_style_changes_the_motion():
    a, b = S.make_speakers(2)[0]
    assert (a.voice, a.pitch, a.rate) != (b.voice, b.pitch, b.rate)
    segs, _ = S.phones_to_segments([S.Phone(0.0, 0.2, "_"), S.Phone(0.2, 0.4, "A:"), S.Phone(0.4, 0.6, "_")])
    t = (np.arange(18) + 0.5) / FPS
    ja = S.articulate(segs, t, a, np.random.default_rng(0))[:, ARKIT_INDEX["jawOpen"]]
    jb = S.articulate(segs, t, b, np.random.default_rng(0))[:, ARKIT_INDEX["jawOpen"]]
    assert not np.allclose(ja, jb)


def test_generator_is_deterministic_and_splits_by_sentence(tmp_path):
    kw = dict(speakers=2, clips_per_speaker=3, seed=7, heldout_speakers=1, takes=2, progress=False)
    stats = S.generate_dataset(str(tmp_path / "a"), workers=1, **kw)
    S.generate_dataset(str(tmp_path / "b"), workers=2, **kw)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.npz"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.npz"))
    assert files_a == files_b and len(files_a) == 6 + 2 + 1  # clips + held-out + norm.npz
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["speakers"] == ["ava", "ben"] and meta["heldout_speakers"] == ["quinn"]
    assert stats["clips"] == 8 and stats["unknown_phoneme_count"] == 0 and stats["clips_per_second"] > 0
    text_split = {}
    for f in (tmp_path / "a").glob("*/*.npz"):
        clip = read_clip(f)
        assert 2.0 <= len(clip["audio"]) / SAMPLE_RATE <= 8.5
        if f.parent.name != "test_heldout":
            assert text_split.setdefault(clip["text"], f.parent.name) == f.parent.name
    with np.load(tmp_path / "a" / "norm.npz", allow_pickle=False) as norm:
        assert norm["mean"].shape == (52,) and norm["std"].min() >= 1e-3
    ds = ClipDataset(tmp_path / "a", "test_heldout", window=None)
    assert int(ds[0]["speaker"]) == -1  # held-out speaker is not in the training identity list


def test_sentences_are_seeded_and_varied():
    a = [S.make_sentence(np.random.default_rng(1)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(2)
    many = {S.make_sentence(rng) for _ in range(50)}
    assert len(many) > 45 and all(4 <= len(s.split()) <= 16 for s in many)
