"""Time-series transform (files, NaN, padding) and encoders (padding invariance, registry)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalign.data.transforms.timeseries import TimeSeriesTransform
from modalign.encoders import build_encoder, encoder_kwargs
from modalign.encoders.timeseries import TimeSeriesConv, TimeSeriesGRU
from modalign.errors import DataError
from modalign.registry import lookup


def test_load_list_npy_csv(tmp_path):
    t = TimeSeriesTransform()
    assert t.load([1, 2, 3], tmp_path).shape == (3, 1)
    assert t.load([[1, 2], [3, 4]], tmp_path).shape == (2, 2)
    np.save(tmp_path / "s.npy", np.arange(12.0).reshape(6, 2))
    x = t.load("s.npy", tmp_path)
    assert x.shape == (6, 2) and float(x[5, 1]) == 11.0
    (tmp_path / "s.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    torch.testing.assert_close(t.load(str(tmp_path / "s.csv"), "/"), torch.tensor([[1.0, 2], [3, 4], [5, 6]]))
    assert TimeSeriesTransform(max_length=2).load([1, 2, 3], tmp_path).shape == (2, 1)


def test_bad_payloads_raise_data_errors(tmp_path):
    t = TimeSeriesTransform(channels=1)
    with pytest.raises(DataError) as e:
        t.load([1.0, float("nan"), 2.0], tmp_path)
    assert e.value.reason == "nan" and "step 1" in str(e.value)
    with pytest.raises(DataError) as e:
        t.load("nope.npy", tmp_path)
    assert e.value.reason == "missing_file" and "nope.npy" in str(e.value)
    (tmp_path / "bad.csv").write_text("x,y\nfoo,bar\n")
    with pytest.raises(DataError, match="cannot read"):
        t.load("bad.csv", tmp_path)
    (tmp_path / "s.txt").write_text("1\n")
    with pytest.raises(DataError, match="unsupported"):
        t.load("s.txt", tmp_path)
    np.save(tmp_path / "nan.npy", np.array([1.0, np.inf]))
    with pytest.raises(DataError, match="NaN/inf"):
        t.load("nan.npy", tmp_path)
    with pytest.raises(DataError, match="channels"):
        t.load([[1, 2]], tmp_path)
    with pytest.raises(DataError, match="empty"):
        t.load([], tmp_path)


def test_collate_pads_and_masks():
    t = TimeSeriesTransform()
    xs = [torch.ones(3, 2), torch.ones(1, 2) * 2]
    batch = t.collate(xs)
    assert batch.shape == (2, 3, 2) and torch.isnan(batch[1, 1:]).all()
    assert t.mask(xs).tolist() == [[True, True, True], [True, False, False]]
    assert float(TimeSeriesTransform(pad_value=0.0).collate(xs)[1, 2, 0]) == 0.0
    with pytest.raises(DataError):
        t.collate([torch.ones(2, 1), torch.ones(2, 2)])


@pytest.mark.parametrize("cls", [TimeSeriesConv, TimeSeriesGRU])
def test_padded_batch_equals_each_sequence_alone(cls):
    torch.manual_seed(0)
    enc = cls(in_channels=2, output_dim=5, hidden=8, layers=2).eval()
    t = TimeSeriesTransform()
    seqs = [torch.randn(n, 2) for n in (7, 3, 1, 5)]
    with torch.no_grad():
        by_nan = enc(t.collate(seqs))
        by_mask = enc(TimeSeriesTransform(pad_value=0.0).collate(seqs), t.mask(seqs))
        alone = torch.cat([enc(s[None]) for s in seqs])
    torch.testing.assert_close(by_nan, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(by_mask, alone, atol=1e-5, rtol=1e-5)


def test_registered_with_presets_that_params_override():
    assert lookup("encoder", "timeseries_conv") is TimeSeriesConv
    assert lookup("encoder", "timeseries_gru") is TimeSeriesGRU
    kw = encoder_kwargs("timeseries_gru", "tiny", {"output_dim": 4, "bidirectional": True}, {})
    enc = build_encoder("timeseries_gru", kw)
    assert enc.kind == "timeseries" and enc.output_dim == 4 and enc.gru.hidden_size == 32
    assert enc(torch.randn(2, 4, 1)).shape == (2, 4)
    # the user's encoder_params win over the preset (hidden 128 builds a 128-wide net)
    wide = build_encoder("timeseries_conv", encoder_kwargs("timeseries_conv", "tiny", {"hidden": 128}, {}))
    assert wide.out.in_features == 128 and len(wide.convs) == 2
