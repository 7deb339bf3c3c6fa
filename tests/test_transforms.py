"""Per-kind transforms: decoding, shapes, resampling, tokenizer, standardisation and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from modalign.data.transforms.audio import AudioTransform, mel_filterbank, resample
from modalign.data.transforms.image import ImageTransform
from modalign.data.transforms.tabular import TabularTransform
from modalign.data.transforms.text import TextTransform
from modalign.errors import ConfigError, DataError

# --- image ---------------------------------------------------------------------------------


def test_image_resize_crop_grey_and_rgb(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, 10:30] = 255  # white centre band: what the centre crop must keep
    Image.fromarray(arr).save(tmp_path / "a.png")
    rgb = ImageTransform(size=10, channels=3, mean=(0.0,), std=(1.0,)).load("a.png", tmp_path)
    grey = ImageTransform(size=10, channels=1, mean=(0.5,), std=(0.5,)).load("a.png", tmp_path)
    assert rgb.shape == (3, 10, 10) and grey.shape == (1, 10, 10)
    assert rgb.min() > 0.9  # a 20x40 image scaled to 10x20, cropped to the middle 10 columns
    assert grey.max() == pytest.approx(1.0, abs=1e-3)  # (1 - 0.5) / 0.5


def test_image_accepts_arrays_and_pil_like_files(tmp_path: Path) -> None:
    t = ImageTransform(size=4, channels=1, mean=(0.0,), std=(1.0,))
    arr = np.full((4, 4), 255, dtype=np.uint8)
    assert torch.allclose(t.load(arr, tmp_path), torch.ones(1, 4, 4))
    assert torch.allclose(t.load(Image.fromarray(arr), tmp_path), torch.ones(1, 4, 4))


def test_image_bad_files(tmp_path: Path) -> None:
    t = ImageTransform(size=8, channels=1)
    with pytest.raises(DataError) as e:
        t.load("missing.png", tmp_path)
    assert e.value.reason == "missing_file" and "missing.png" in str(e.value)
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError) as e:
        t.load("junk.png", tmp_path)
    assert e.value.reason == "bad_image"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "full.png"
    )
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as e:
        t.load("cut.png", tmp_path)
    assert e.value.reason == "bad_image" and "cut.png" in str(e.value)


def test_image_decompression_bomb_guard(tmp_path: Path) -> None:
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    with pytest.raises(DataError) as e:
        ImageTransform(size=8, channels=1, max_pixels=10_000).load("big.png", tmp_path)
    assert e.value.reason == "image_too_large"


# --- audio ---------------------------------------------------------------------------------


def test_mel_filterbank_is_triangular_and_covers_the_band() -> None:
    fb = mel_filterbank(n_fft=256, n_mels=20, sample_rate=8000, f_min=0.0, f_max=4000.0)
    assert fb.shape == (20, 129)
    assert float(fb.max()) <= 1.0 + 1e-6 and float(fb.min()) >= 0.0
    peaks = fb.argmax(1)
    assert bool((peaks[1:] > peaks[:-1]).all())  # centres increase with the filter index


def test_resampler_is_anti_aliased() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    low = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    high = np.sin(2 * np.pi * 6000 * t).astype(np.float32)  # above the new Nyquist (4 kHz)
    low8, high8 = resample(low, rate, 8000), resample(high, rate, 8000)
    assert low8.shape == (8000,)
    assert np.sqrt(np.mean(low8[200:-200] ** 2)) == pytest.approx(1 / math.sqrt(2), rel=0.02)
    # naive decimation would alias 6 kHz to 2 kHz at full power; a proper filter removes it
    assert np.sqrt(np.mean(high8[200:-200] ** 2)) < 0.01


def test_audio_mono_pad_crop_and_features(tmp_path: Path) -> None:
    stereo = np.stack([np.ones(4000), -np.ones(4000)], axis=1) * 0.5
    sf.write(tmp_path / "st.wav", stereo.astype(np.float32), 8000)
    t = AudioTransform(sample_rate=8000, max_seconds=1.0, n_fft=256, hop_length=80, n_mels=20)
    wave = t.waveform("st.wav", tmp_path)
    assert np.allclose(wave, 0.0, atol=1e-4)  # channels cancel in the mono mix-down
    x = t.load(np.sin(np.arange(16000) / 3).astype(np.float32), tmp_path)  # 2 s: cropped to 1 s
    assert x.shape == (20, t.n_frames) == (20, 101)
    short = t.load(np.sin(np.arange(800) / 3).astype(np.float32), tmp_path)  # 0.1 s: padded
    assert short.shape == x.shape
    assert float(short[:, -10:].max()) == pytest.approx(math.log(1e-6), abs=1e-3)  # silence
    flac = tmp_path / "a.flac"
    sf.write(flac, np.sin(np.arange(8000) / 5).astype(np.float32) * 0.3, 16000)
    assert t.load("a.flac", tmp_path).shape == x.shape  # 16 kHz FLAC resampled


def test_audio_bad_input(tmp_path: Path) -> None:
    t = AudioTransform(sample_rate=8000, max_seconds=0.5, n_fft=128, hop_length=64, n_mels=8)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(DataError) as e:
        t.load("empty.wav", tmp_path)
    assert e.value.reason == "empty_audio"
    sf.write(tmp_path / "ok.wav", np.zeros(4000, dtype=np.float32), 8000)
    data = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as e:
        t.load("cut.wav", tmp_path)
    assert e.value.reason == "bad_audio" and "cut.wav" in str(e.value)
    (tmp_path / "junk.wav").write_bytes(b"RIFFjunk")
    with pytest.raises(DataError) as e:
        t.load("junk.wav", tmp_path)
    assert e.value.reason == "bad_audio"
    with pytest.raises(DataError) as e:
        t.load(np.array([0.0, np.nan], dtype=np.float32), tmp_path)
    assert e.value.reason == "non_finite"


# --- text ----------------------------------------------------------------------------------


def test_text_tokenizer_is_trained_saved_and_restored(tmp_path: Path) -> None:
    t = TextTransform(vocab_size=60, max_length=6)
    t.fit(["a red circle", "a blue square", "the red square", "circle"])
    ids = t.load("A Red Circle", tmp_path)
    assert ids.shape == (6,) and ids.dtype == torch.long
    assert torch.equal(ids, t.load("a red circle", tmp_path))  # lower-cased
    assert int((ids != 0).sum()) == 3  # three words, each one token after BPE merges
    t.save_state(tmp_path, "caption")
    u = TextTransform(vocab_size=60, max_length=6)
    u.load_state(tmp_path, "caption")
    assert torch.equal(u.load("the blue circle", tmp_path), t.load("the blue circle", tmp_path))
    long = t.load("red " * 20, tmp_path)
    assert int((long != 0).sum()) == 6  # truncated to max_length


def test_text_bad_input(tmp_path: Path) -> None:
    t = TextTransform(vocab_size=30, max_length=4)
    t.fit(["abc"])
    for bad, reason in (("   ", "empty_text"), (3, "wrong_type")):
        with pytest.raises(DataError) as e:
            t.load(bad, tmp_path)
        assert e.value.reason == reason


# --- tabular -------------------------------------------------------------------------------


def test_tabular_standardises_with_training_statistics(tmp_path: Path) -> None:
    t = TabularTransform(numeric=("age", "bmi"), categorical=("site",))
    train = [
        {"age": 20, "bmi": 20.0, "site": "a"},
        {"age": 40, "bmi": None, "site": "b"},
        {"age": 60, "bmi": 30.0, "site": "a"},
    ]
    t.fit(train)
    x = t.load({"age": 40, "bmi": float("nan"), "site": "zzz"}, tmp_path)
    assert x is not None
    std_age = math.sqrt(((20 - 40) ** 2 + 0 + (60 - 40) ** 2) / 3)
    assert x[0].item() == pytest.approx((40 - 40) / std_age)
    assert x.tolist()[1:] == [0.0, 0.0, 1.0, 0.0]  # bmi missing: z=0, flag=1; unseen site -> 0
    y = t.load({"age": 60, "bmi": 30.0, "site": "b"}, tmp_path)
    assert y is not None and y[0].item() == pytest.approx(20 / std_age) and y[1].item() == pytest.approx(1.0)
    assert y[-1].item() == 2.0  # sorted vocabulary: a=1, b=2
    assert t.load({"age": None, "bmi": float("nan"), "site": ""}, tmp_path) is None  # all missing
    with pytest.raises(DataError) as e:
        t.load({"age": "old", "bmi": 1.0, "site": "a"}, tmp_path)
    assert e.value.reason == "wrong_type"
    with pytest.raises(DataError) as e:
        t.load({"age": float("inf"), "bmi": 1.0, "site": "a"}, tmp_path)
    assert e.value.reason == "non_finite"
    t.save_state(tmp_path, "record")
    u = TabularTransform(numeric=("age", "bmi"), categorical=("site",))
    u.load_state(tmp_path, "record")
    assert torch.equal(u.load(train[1], tmp_path), t.load(train[1], tmp_path))  # type: ignore[arg-type]


def test_image_random_shift_translates_with_replicated_edges() -> None:
    t = ImageTransform(size=5, channels=1, random_shift=1)
    x = torch.arange(2 * 25, dtype=torch.float32).view(2, 1, 5, 5)
    torch.manual_seed(0)
    out = t.augment(x)
    torch.manual_seed(0)
    offsets = torch.randint(0, 3, (2, 2)).tolist()  # the draw augment makes, as (dy, dx) + 1
    for i, (dy, dx) in enumerate(offsets):
        rows = [min(max(r + dy - 1, 0), 4) for r in range(5)]
        cols = [min(max(c + dx - 1, 0), 4) for c in range(5)]
        want = x[i, 0][rows][:, cols]
        assert torch.equal(out[i, 0], want)
    assert ImageTransform(size=5, channels=1).augment(x) is x  # off by default


def test_image_crop_pct_resizes_the_shorter_side_to_size_over_pct_then_crops_the_centre() -> None:
    # timm's evaluation crop (the peer comparison is tests/vision/test_timm.py)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60), dtype=np.uint8)  # (H, W)
    t = ImageTransform(size=16, channels=1, mean=(0.0,), std=(1.0,), interpolation="bilinear", crop_pct=0.8)
    # shorter side to 16 / 0.8 = 20 (longer 30), then the 16 x 16 centre
    resized = np.asarray(Image.fromarray(img).resize((30, 20), Image.Resampling.BILINEAR))
    want = resized[2:18, 7:23].astype(np.float32) / 255.0
    torch.testing.assert_close(t.load(img, Path()), torch.from_numpy(want)[None])
    square = img[:16, :16]  # already size x size: still resized to 20 and cropped, not passed through
    want = np.asarray(Image.fromarray(square).resize((20, 20), Image.Resampling.BILINEAR))[2:18, 2:18]
    want = want.astype(np.float32) / 255.0
    torch.testing.assert_close(t.load(square, Path()), torch.from_numpy(want)[None])
    assert t.settings()["crop_pct"] == 0.8
    with pytest.raises(ConfigError, match="crop_pct"):
        ImageTransform(size=16, crop_pct=0.0)
