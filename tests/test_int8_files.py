"""Integer inference of model files (issue #35): Lab 3's weights used exactly, float models
re-quantized per channel, and the activation ranges an ``.mtc`` file can carry."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from minitorch_compress.compression import calibration
from minitorch_compress.compression.masks import weight_layers
from minitorch_compress.errors import CheckpointError, MinitorchError
from minitorch_compress.io import mtc
from minitorch_compress.models.int8_resnet import Codes, fold_batch_norm, integer_conv
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import ResNet20
from minitorch_compress.nn import BatchNorm2d

MODELS = Path(__file__).resolve().parents[1] / "results" / "models"
X_CODES, OUT_CODES = Codes(0.02, 0), Codes(0.05, 3)


def conv_bns(model: ResNet20) -> list[tuple[str, object]]:
    """(name, ConvBN) of every conv + batch norm, head first."""
    out = [("head_conv", model.head_conv)]
    for i, block in enumerate(model.body_op):
        out += [(f"body_op.{i}.conv1", block.conv1), (f"body_op.{i}.conv2", block.conv2)]
        if block.id_mapping is not None:
            out.append((f"body_op.{i}.id_mapping", block.id_mapping))
    return out


def real_weights(layer, x: Codes, out: Codes) -> np.ndarray:
    """The real weights (K, C, kh, kw) an integer layer computes with, batch norm's factor
    included, read back from its codes and fixed-point multipliers:
    ``a w = codes * (a step) + mask * (a beta)`` with ``a step = M_A s_out / s_x``."""
    a_step = layer.scale_a.real() * out.scale / x.scale
    w = layer.weight.astype(np.float64) * a_step[:, None, None, None]
    if layer.mask is not None:
        a_beta = layer.scale_b.real() * out.scale / x.scale
        w = w + layer.mask * a_beta[:, None, None, None]
    return w


def random_float_model(seed: int) -> ResNet20:
    rng = np.random.default_rng(seed)
    model = ResNet20(rng=rng)
    for _, module in model.named_modules():
        if isinstance(module, BatchNorm2d):
            module.weight.data[...] = rng.uniform(0.5, 1.5, module.num_features)
            module.running_var[...] = rng.uniform(0.5, 2.0, module.num_features)
    return model.eval()


# ------------------------------------------------------------------ weights
@pytest.mark.parametrize("name,bits", [("lab3_c_2bit", 2), ("lab3_d_3bit", 3), ("lab3_e", 4),
                                       ("lab3_d_naive_4bit", 4), ("lab3_d_4bit_folded", 4)])
def test_a_lab3_file_runs_on_its_trained_weights_unchanged(name, bits):
    """Every body conv keeps its grid: its codes and two multipliers give back the trained
    weights (times batch norm's factor) to the multipliers' 31-bit precision, and every
    pruned weight stays exactly 0 (mask)."""
    model = load_pretrained(MODELS / f"{name}.mtc")
    for layer_name, layer in conv_bns(model)[1:]:  # Lab 3 keeps the head conv float
        int_layer, kind = integer_conv(layer, X_CODES, OUT_CODES, relu=True)
        assert kind.startswith("grid") and int(kind[4:]) <= bits, (layer_name, kind)
        w, a, _ = fold_batch_norm(layer)
        expected = w * a[:, None, None, None]
        got = real_weights(int_layer, X_CODES, OUT_CODES)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7 * scale, err_msg=layer_name)
        np.testing.assert_array_equal(int_layer.mask, w != 0)  # zeros stay zeros
        assert np.abs(int_layer.weight).max() <= 2**bits - 1


def test_a_float_model_gets_symmetric_int8_per_output_channel():
    model = random_float_model(3)
    for layer_name, layer in conv_bns(model):
        int_layer, kind = integer_conv(layer, X_CODES, OUT_CODES, relu=True)
        assert kind == "s8" and int_layer.mask is None and int_layer.scale_b is None
        codes = int_layer.weight.reshape(len(int_layer.weight), -1)
        # each channel's largest weight is the code +-127: one step per channel, not per tensor
        np.testing.assert_array_equal(np.abs(codes).max(axis=1), 127)
        w, a, _ = fold_batch_norm(layer)
        expected = w * a[:, None, None, None]
        steps = np.abs(expected).reshape(len(a), -1).max(axis=1) / 127
        assert len(np.unique(np.round(steps, 12))) > 1, layer_name
        got = real_weights(int_layer, X_CODES, OUT_CODES)
        assert (np.abs(got - expected) <= 0.5 * steps[:, None, None, None] * (1 + 1e-6)).all()


# ------------------------------------------------------------------ activation ranges in a file
def model_and_ranges(seed: int = 4) -> tuple[ResNet20, mtc.ActivationRanges]:
    """A small random model (narrow blocks: files are written in a second) and its ranges."""
    rng = np.random.default_rng(seed)
    model = ResNet20(rng=rng, mid_channels=[2, 3, 2, 4, 2, 3, 4, 2, 3]).eval()
    images = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    return model, calibration.calibrated_ranges(model, images, "minmax")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model, ranges, the file without ranges, the file with them); weights stored dense
    (``compress=()``) to keep the writing fast."""
    model, ranges = model_and_ranges()
    folder = tmp_path_factory.mktemp("int8_files")
    plain, with_ranges = folder / "plain.mtc", folder / "ranges.mtc"
    mtc.save(plain, model, compress=())
    mtc.save(with_ranges, model, compress=(), activation_ranges=ranges)
    return model, ranges, plain, with_ranges


def test_activation_ranges_round_trip_through_an_mtc_file(saved):
    model, ranges, plain, with_ranges = saved
    assert mtc.load(plain).activation_ranges is None
    loaded = mtc.load(with_ranges)
    assert loaded.activation_ranges.ranges == ranges.ranges  # float64, exactly
    assert loaded.activation_ranges.calibration == {**ranges.calibration}
    assert list(loaded.activation_ranges.ranges) == calibration.tensor_names(model)
    for name, value in mtc.load(plain).state.items():  # the weights do not change
        np.testing.assert_array_equal(loaded.state[name], value)
    # the integer model from the file is the one built from the ranges in memory
    x = np.random.default_rng(5).normal(0, 1, (2, 3, 32, 32)).astype(np.float32)
    from_file = calibration.int8_from_ranges(mtc.load_model(with_ranges),
                                             loaded.activation_ranges)
    in_memory = calibration.int8_from_ranges(model, ranges)
    np.testing.assert_array_equal(from_file.codes(x), in_memory.codes(x))


def test_the_committed_model_files_carry_no_ranges_and_read_as_before():
    for path in sorted(MODELS.glob("lab3_*.mtc"))[:3]:
        loaded = mtc.load(path)
        assert loaded.activation_ranges is None
        assert "activation_ranges" not in loaded.header


def _with_header(path: Path, out: Path, change) -> Path:
    """`path` with its header edited and its CRC fixed (so the edit is what gets read)."""
    blob = path.read_bytes()
    magic, version, length, _ = struct.unpack_from("<8sHII", blob)
    header = mtc.decode_header(blob[18:18 + length])
    change(header)
    packed = mtc.encode_header(header)
    out.write_bytes(struct.pack("<8sHII", magic, version, len(packed), zlib.crc32(packed))
                    + packed + blob[18 + length:])
    return out


@pytest.mark.parametrize("change,message", [
    (lambda h: h["activation_ranges"].update(input=[1.0, -1.0]), "low > high"),
    (lambda h: h["activation_ranges"].update(input=[0.0, float("nan")]), "not finite"),
    (lambda h: h["activation_ranges"].update(input="wide"), r"not \[low, high\]"),
    (lambda h: h.update(activation_ranges=[1, 2]), "must map"),
    (lambda h: h.update(calibration="x"), "calibration"),
])
def test_damaged_activation_ranges_are_one_line_errors(saved, tmp_path, change, message):
    bad = _with_header(saved[3], tmp_path / "bad.mtc", change)
    with pytest.raises(CheckpointError, match=message) as info:
        mtc.load(bad)
    assert "\n" not in str(info.value)


def test_ranges_of_another_architecture_are_refused(saved):
    model, ranges = saved[:2]
    fewer = mtc.ActivationRanges({k: v for k, v in ranges.ranges.items()
                                  if k != "body_op.3.id_mapping"})
    with pytest.raises(MinitorchError, match="missing body_op.3.id_mapping"):
        calibration.int8_from_ranges(model, fewer)
    assert len(weight_layers(model)) == 22  # 21 convs and the linear layer
