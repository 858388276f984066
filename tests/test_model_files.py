"""The .mtc model file, Deep Compression's stages, and the PyTorch export (no torch needed)."""

from __future__ import annotations

import lzma
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitorch_compress import Tensor, cli, no_grad
from minitorch_compress.compression.pipeline import compress_model, write_model_file
from minitorch_compress.errors import CheckpointError
from minitorch_compress.io import mtc
from minitorch_compress.io.torch_checkpoint import load_torch_state_dict
from minitorch_compress.io.torch_export import write_torch_state_dict
from minitorch_compress.models import resnet20


def _model(prune=0.8, bits=4, mode="masked", mid_channels=None, seed=0):
    model = resnet20(rng=np.random.default_rng(seed), mid_channels=mid_channels)
    rng = np.random.default_rng(seed + 1)
    for name, buffer in model.named_buffers():
        if name.endswith("running_var"):
            buffer[:] = rng.uniform(0.5, 2.0, buffer.shape)
    return compress_model(model.eval(), prune, bits, mode)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("mtc") / "m.mtc"
    model = _model()
    return model, path, write_model_file(model, path)


def test_the_file_decodes_to_exactly_what_the_model_computes_with(saved):
    model, path, sizes = saved
    loaded = mtc.load(path)
    expected = mtc.inference_state(model)
    assert list(loaded.state) == list(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(loaded.state[name], value, err_msg=name)
        assert loaded.state[name].dtype == value.dtype
    x = Tensor(np.random.default_rng(3).standard_normal((4, 3, 32, 32)).astype(np.float32))
    with no_grad():
        np.testing.assert_array_equal(mtc.load_model(path)(x).data, model(x).data)
    assert sizes["bytes"] == path.stat().st_size
    assert sizes["stages"]["sparse+quantized+huffman"] < sizes["stages"]["sparse+quantized"]
    assert sizes["stages"]["sparse+quantized"] < sizes["stages"]["sparse"]
    assert sizes["ratio"] > 10


@settings(deadline=None, max_examples=12)
@given(prune=st.sampled_from([None, 0.3, 0.9, 0.99]), bits=st.sampled_from([None, 2, 3, 8]),
       mode=st.sampled_from(["masked", "asymmetric", "symmetric"]), seed=st.integers(0, 5))
def test_any_pruning_and_quantization_round_trips_exactly(tmp_path_factory, prune, bits, mode,
                                                           seed):
    model = _model(prune, bits, mode, seed=seed)
    path = tmp_path_factory.mktemp("any") / "m.mtc"
    mtc.save(path, model)
    loaded = mtc.load(path)
    for name, value in mtc.inference_state(model).items():
        np.testing.assert_array_equal(loaded.state[name], value, err_msg=name)


def test_a_channel_pruned_architecture_is_carried_by_the_file(tmp_path):
    mids = [4, 8, 16, 8, 16, 32, 16, 32, 64]
    model = _model(mid_channels=mids)
    mtc.save(tmp_path / "small.mtc", model)
    again = mtc.load_model(tmp_path / "small.mtc")
    assert again.mid_channels == tuple(mids)
    assert again.state_dict()["body_op.0.conv1.0.conv.weight"].shape == (4, 16, 3, 3)


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8])
def test_the_relative_index_with_fillers_inverts(width):
    positions = np.array([0, 1, 5, 300, 301, 999])
    symbols = mtc.gaps_of(positions, width)
    assert symbols.max() < 1 << width
    np.testing.assert_array_equal(mtc.positions_of(symbols, width, 1000), positions)


@settings(deadline=None, max_examples=40)
@given(words=st.lists(st.integers(0, 2**32 - 1), max_size=300),
       repeat=st.integers(1, 4))
def test_every_float_codec_restores_the_exact_bits(words, repeat):
    data = np.array(words * repeat, dtype="<u4").tobytes()  # any bits: NaNs, denormals
    codec, packed = mtc.pack_floats(data)
    assert len(packed) <= len(data)  # "raw" is always a candidate
    assert mtc.unpack_floats(codec, packed, len(data), "x") == data
    for other in ("raw", "lzma", "planes"):  # each codec inverts, not only the chosen one
        if other == codec:
            continue
        if other == "raw":
            encoded = data
        elif other == "lzma":
            encoded = lzma.compress(data)
        else:
            planes = np.frombuffer(data, dtype=np.uint8).reshape(-1, 4).T.tobytes()
            encoded = lzma.compress(planes, format=lzma.FORMAT_RAW,
                                    filters=mtc._RAW_LZMA2)
        assert mtc.unpack_floats(other, encoded, len(data), "x") == data


def test_byte_planes_beat_plain_lzma_on_batch_norm_like_floats():
    rng = np.random.default_rng(0)  # a few thousand values of like magnitude, as batch norm
    data = rng.uniform(0.5, 2.0, 3000).astype("<f4").tobytes()
    codec, packed = mtc.pack_floats(data)
    assert codec == "planes" and len(packed) < len(lzma.compress(data, preset=9))


def _dense_entries(draw_floats, counters):
    """(name, array) dense tensors as a ResNet's: per batch norm weight, bias, mean, var
    (float32) and an int64 counter, then a linear bias."""
    entries = []
    for i, values in enumerate(draw_floats):
        for kind, shift in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.1),
                            ("running_var", 2.0)):
            entries.append((f"bn{i}.{kind}", np.asarray(values, "<f4") + np.float32(shift)))
        entries.append((f"bn{i}.num_batches_tracked", np.asarray([counters], "<i8")))
    return entries + [("fc.bias", np.asarray(draw_floats[0][:3], "<f4"))]


@settings(deadline=None, max_examples=40)
@given(channels=st.lists(st.lists(st.floats(width=32), min_size=1, max_size=40),
                         min_size=1, max_size=5),
       counter=st.integers(0, 2**62))
def test_the_grouped_dense_codec_restores_every_tensor_in_state_order(channels, counter):
    entries = _dense_entries(channels, counter)
    layout = [(name, value.dtype, value.size) for name, value in entries]
    flat = b"".join(value.tobytes() for _, value in entries)
    grouped = lzma.compress(mtc._grouped_bytes(entries), format=lzma.FORMAT_RAW,
                            filters=mtc._RAW_LZMA2)
    assert mtc.unpack_dense("grouped", grouped, layout, "x") == flat
    codec, packed = mtc.pack_dense(entries)  # whichever codec wins, it inverts
    assert mtc.unpack_dense(codec, packed, layout, "x") == flat
    with pytest.raises(CheckpointError, match="expected"):
        mtc.unpack_dense("grouped", grouped, layout[:-1], "x")


def test_grouped_order_puts_like_tensors_together_in_their_own_order():
    names = ["a.weight", "a.bias", "a.running_mean", "b.weight", "b.bias", "b.running_mean",
             "fc.bias"]
    assert mtc.grouped_order(names) == ["a.weight", "b.weight", "a.bias", "b.bias", "fc.bias",
                                        "a.running_mean", "b.running_mean"]


def test_grouping_batch_norm_tensors_by_kind_saves_bytes():
    rng = np.random.default_rng(1)  # like values per kind, unlike across kinds, as batch norm
    channels = [rng.uniform(-0.2, 0.2, 64).astype(np.float32) for _ in range(10)]
    entries = _dense_entries(channels, 41857)
    codec, packed = mtc.pack_dense(entries)
    assert codec == "grouped"
    flat = b"".join(value.tobytes() for _, value in entries)
    assert len(packed) < len(mtc.pack_floats(flat)[1])


@settings(deadline=None, max_examples=30)
@given(header=st.dictionaries(st.text(max_size=8), st.lists(st.integers(0, 2**32), max_size=8)))
def test_a_header_decodes_as_it_was_encoded(header):
    assert mtc.decode_header(mtc.encode_header(header)) == header
    with pytest.raises(CheckpointError, match="not valid compressed JSON"):
        mtc.decode_header(b"\x00garbage")


def test_a_float_stream_of_the_wrong_size_is_a_one_line_error():
    codec, packed = mtc.pack_floats(np.arange(100, dtype="<f4").tobytes())
    for wrong in (396, 404):  # a header that declares more or fewer entries than stored
        with pytest.raises(CheckpointError, match=f"{wrong} expected") as info:
            mtc.unpack_floats(codec, packed, wrong, "x")
        assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="unknown float codec"):
        mtc.unpack_floats("zstd", packed, 400, "x")


@settings(deadline=None, max_examples=40)
@given(lengths=st.dictionaries(st.integers(0, 40), st.integers(1, 24), min_size=1),
       extra=st.integers(0, 3))
def test_code_length_tables_take_half_a_byte_a_symbol_when_lengths_fit(lengths, extra):
    alphabet = max(lengths) + 1 + extra
    table = mtc._huffman_table(lengths, alphabet)
    fits = max(lengths.values()) <= 15 and alphabet >= 2
    assert len(table) == (-(-alphabet // 2) if fits else alphabet)
    if len(lengths) == 1 or sum(2.0 ** -n for n in lengths.values()) <= 1:
        assert mtc._lengths_from_table(table, alphabet) == lengths


@pytest.mark.parametrize("old_version", [1, 2, 3, 5])
def test_a_file_of_another_format_version_is_refused_naming_both(saved, tmp_path,
                                                                  old_version):
    _, path, _ = saved  # an older file's preamble in front of a current header and payload
    older = _damaged(path, tmp_path, lambda b: b.__setitem__(
        slice(8, 10), struct.pack("<H", old_version)))
    with pytest.raises(CheckpointError) as info:
        mtc.load(older)
    message = str(info.value)
    assert f"format version {old_version}; this code reads version {mtc.VERSION}" in message
    assert "\n" not in message


def _damaged(path, tmp_path, edit):
    blob = bytearray(path.read_bytes())
    edit(blob)
    bad = tmp_path / "bad.mtc"
    bad.write_bytes(bytes(blob))
    return bad


@pytest.mark.parametrize("edit,message", [
    (lambda b: b.__setitem__(slice(0, 8), b"NOTMODEL"), "wrong magic"),
    (lambda b: b.__setitem__(slice(8, 10), struct.pack("<H", 99)), "format version 99"),
    (lambda b: b.__delitem__(slice(len(b) - 100, None)), "past the end"),
    (lambda b: b.__delitem__(slice(12, None)), "too short"),
    (lambda b: b.__setitem__(len(b) - 7, b[len(b) - 7] ^ 0x40), "CRC32"),
    (lambda b: b.__setitem__(30, b[30] ^ 1), "CRC32"),
    (lambda b: b.extend(b"appended"), "8 bytes follow the last section"),
])
def test_a_damaged_file_is_a_one_line_error(saved, tmp_path, edit, message):
    _, path, _ = saved
    with pytest.raises(CheckpointError, match=message) as info:
        mtc.load(_damaged(path, tmp_path, edit))
    assert "\n" not in str(info.value)


def _with_header(path, tmp_path, change):
    """The file with its header edited (and its CRC fixed, so the edit itself is read)."""
    blob = path.read_bytes()
    magic, version, length, _ = struct.unpack_from("<8sHII", blob)
    header = mtc.decode_header(blob[18:18 + length])
    change(header)
    packed = mtc.encode_header(header)
    bad = tmp_path / "edited.mtc"
    bad.write_bytes(struct.pack("<8sHII", magic, version, len(packed), zlib.crc32(packed))
                    + packed + blob[18 + length:])
    return bad


@pytest.mark.parametrize("change,message", [
    (lambda h: h["architecture"].update(mid_channels=[10**9] * 9), "mid_channels"),
    (lambda h: h["architecture"].update(name="vgg16"), "unknown architecture"),
    (lambda h: next(iter(h["tensors"].values())).update(count=10**12), "count"),
    (lambda h: h["sections"][0].__setitem__(1, 10**12), "past the end"),
    (lambda h: h["tensors"].update({"no.such.weight": {}}), "does not have"),
    (lambda h: next(iter(h["tensors"].values())).update(index=[1, 2]), "malformed"),
    (lambda h: next(iter(h["tensors"].values())).update(values="x"), "malformed"),
])
def test_sizes_that_do_not_add_up_are_refused_before_allocating(saved, tmp_path, change,
                                                                message):
    _, path, _ = saved
    with pytest.raises(CheckpointError, match=message):
        mtc.load(_with_header(path, tmp_path, change))


def test_the_cli_compresses_inspects_evaluates_and_exports(tmp_path, capsys,
                                                           synthetic_cifar10_dir,
                                                           random_resnet20_weights):
    out = tmp_path / "m.mtc"
    assert cli.main(["compress", "--weights", str(random_resnet20_weights), "--prune", "0.8",
                     "--bits", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sparse+quantized+huffman" in text and "lzma_of_float32" in text
    assert cli.main(["inspect", str(out)]) == 0
    assert "body_op.0.conv1.0.conv.weight" in capsys.readouterr().out
    assert cli.main(["evaluate", "--weights", str(out), "--data-dir", str(synthetic_cifar10_dir),
                     "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    pt = tmp_path / "m.pt"
    assert cli.main(["export", "--weights", str(out), "--format", "torch", "--out", str(pt)]) == 0
    back = load_torch_state_dict(pt, float_dtype=None)
    for name, value in mtc.load(out).state.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
        assert back[name].dtype == value.dtype
    for argv in (["compress", "--prune", "1.5", "--out", str(out)],
                 ["compress", "--bits", "9", "--out", str(out)],
                 ["compress", "--out", str(tmp_path / "m.npz")]):
        try:
            code = cli.main(argv)
        except SystemExit as stop:
            code = stop.code
        assert code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_exported_state_dict_loads_in_pytorch(tmp_path):
    """Optional: runs where torch is installed (the bench extra), skips elsewhere."""
    torch = pytest.importorskip("torch")
    model = _model()
    state = mtc.inference_state(model)
    write_torch_state_dict(tmp_path / "m.pt", state)
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    assert list(loaded) == list(state)
    for name, value in state.items():
        np.testing.assert_array_equal(loaded[name].numpy(), value, err_msg=name)


def _torch_resnet20(torch, mid_channels):
    """The course's ResNet-20 in PyTorch (its parameter names), for the interop test only."""
    nn = torch.nn

    class ConvLayer(nn.Module):
        def __init__(self, c_in, c_out, k, stride):
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)

        def forward(self, x):
            return self.conv(x)

    def conv_bn(c_in, c_out, k, stride):
        return nn.Sequential(ConvLayer(c_in, c_out, k, stride), nn.BatchNorm2d(c_out))

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride, mid):
            super().__init__()
            self.conv1, self.conv2 = conv_bn(c_in, mid, 3, stride), conv_bn(mid, c_out, 3, 1)
            self.id_mapping = (conv_bn(c_in, c_out, 1, stride)
                               if stride != 1 or c_in != c_out else None)

        def forward(self, x):
            short = x if self.id_mapping is None else self.id_mapping(x)
            return torch.relu(self.conv2(torch.relu(self.conv1(x))) + short)

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            return self.linear(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head_conv = conv_bn(3, 16, 3, 1)
            widths = [16] * 3 + [32] * 3 + [64] * 3
            blocks, c_in = [], 16
            for i, (c, mid) in enumerate(zip(widths, mid_channels, strict=True)):
                blocks.append(Block(c_in, c, 2 if i in (3, 6) else 1, mid))
                c_in = c
            self.body_op = nn.Sequential(*blocks)
            self.final_fc = Linear()

        def forward(self, x):
            x = self.body_op(torch.relu(self.head_conv(x)))
            return self.final_fc(x.mean(dim=(2, 3)))

    return Net()


def test_pytorch_computes_what_we_compute_from_the_exported_file(tmp_path):
    """Optional (torch installed): strict load into the course's PyTorch ResNet-20, same
    logits as our engine on the same images, for a pruned 4-bit channel-pruned model."""
    torch = pytest.importorskip("torch")
    mids = [8, 16, 16, 16, 32, 32, 32, 64, 40]
    model = _model(mid_channels=mids)
    write_torch_state_dict(tmp_path / "m.pt", mtc.inference_state(model))
    net = _torch_resnet20(torch, mids)
    net.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True), strict=True)
    x = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with no_grad():
        ours = model(Tensor(x)).data
    with torch.no_grad():
        theirs = net.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)


def test_models_writes_every_lab_model_on_disk_and_its_page(tmp_path, capsys,
                                                            synthetic_cifar10_dir):
    """`models` compresses the lab runs found, evaluates each from its file and renders
    compression.md; the 20x sentence follows the measured ratio."""
    import json

    from minitorch_compress.reports import compression

    model = _model(bits=None)
    _save_run(tmp_path / "runs", "lab2_c", model)
    out = tmp_path / "results"
    assert cli.main(["models", "--run-root", str(tmp_path / "runs"), "--out-dir", str(out),
                     "--data-dir", str(synthetic_cifar10_dir), "--no-progress"]) == 0
    result = json.loads((out / "compression.json").read_text())
    assert list(result["models"]) == ["lab2_c"] and "lab3_d_4bit" in result["missing"]
    assert (out / "models" / "lab2_c.mtc").stat().st_size == result["models"]["lab2_c"]["bytes"]
    page = (out / "compression.md").read_text()
    assert "has no file yet" in page and "accuracy_vs_size.png" in page
    entry = {**result["models"]["lab2_c"], "float32_bytes": 1_000_000, "accuracy": 0.89}
    assert "is met." in compression.target_sentence({"lab3_d_4bit": {**entry, "ratio": 20.5,
                                                                      "bytes": 48_780}})
    # a smoke or collapsed model is no evidence for the target, however small its file
    assert "is not judged: at accuracy 0.1556" in compression.target_sentence(
        {"lab3_d_4bit": {**entry, "ratio": 20.5, "bytes": 48_780, "accuracy": 0.1556}})
    assert "is not met, by 5,000 bytes" in compression.target_sentence(
        {"lab3_d_4bit": {**entry, "ratio": 18.2, "bytes": 55_000}})
    exact = compression.target_sentence({"lab3_d_4bit": {
        **entry, "ratio": 20.5, "bytes": 48_780, "accuracy": 0.8861, "table_accuracy": 0.8861}})
    assert "at accuracy 0.8861 from the file, the table's figure exactly" in exact
    assert "against the table's 0.8862" in compression.target_sentence({"lab3_d_4bit": {
        **entry, "ratio": 20.5, "bytes": 48_780, "accuracy": 0.8861, "table_accuracy": 0.8862}})
    proxy = {**entry, "about": "a stand-in", "command": "c", "accuracy": 0.5}
    assert "on it the 20x target is met." in compression.target_sentence(
        {}, {**proxy, "ratio": 20.1, "bytes": 49_000})
    assert "on it the 20x target is not met, by 1,000 bytes." in compression.target_sentence(
        {}, {**proxy, "ratio": 19.6, "bytes": 51_000})
    capsys.readouterr()


def test_the_entropy_bound_is_below_what_the_file_codes(saved):
    """Huffman codes can only approach the order-0 entropy from above (tables included)."""
    from minitorch_compress.compression.pipeline import entropy_bytes
    from minitorch_compress.reports.compression import entropy_lines

    _, path, sizes = saved
    bound = entropy_bytes(path)
    assert 0 < bound["index"] <= sizes["parts"]["index"]
    assert 0 < bound["codes"] <= sizes["parts"]["codes"]
    row = next(line for line in entropy_lines({"m": sizes}) if line.startswith("| `m`"))
    ideal = (sizes["bytes"] - sizes["parts"]["index"] - sizes["parts"]["codes"]
             + bound["index"] + bound["codes"])
    assert f"| {ideal:,} |" in row


def test_a_file_that_lzma_beats_is_named_with_its_reason_and_nothing_else_is():
    """The page names the files stdlib lzma beats, with the code stream's excess over its
    entropy and the size an entropy coder would reach, computed from the entry."""
    from minitorch_compress.reports.compression import lzma_beats_lines

    def entry(file_bytes, lzma, codes, bound):
        return {"bytes": file_bytes, "stages": {"lzma_of_float32": lzma},
                "parts": {"codes": codes}, "entropy": {"codes": bound}}

    lines = lzma_beats_lines({"beaten": entry(53_728, 51_488, 10_681, 1_615),
                              "ahead": entry(54_741, 68_900, 19_306, 18_861),
                              "close": entry(50_000, 49_000, 1_500, 1_000)})
    text = " ".join(lines)
    assert "`ahead`" not in text
    assert "`beaten`: stdlib lzma on the float32 bytes (51,488 bytes)" in text
    assert "10,681 bytes against an order-0 entropy of 1,615 (6.6x)" in text
    assert "would be 44,662 bytes, below lzma's." in text
    assert "would be 49,500 bytes, still above lzma's." in text


def test_the_figure_keeps_a_broken_model_off_the_scale_of_the_usable_ones(tmp_path):
    """A model far below the median is drawn on the axis floor (and the caption says so);
    otherwise the axis spans every model. The figure is written either way."""
    from minitorch_compress.reports.compression import off_scale, write_figure

    usable = {f"lab3_d_{b}bit": {"bytes": 50_000 + b, "accuracy": 0.88 - b / 100}
              for b in (2, 3, 4)}
    broken = {**usable, "lab3_d_naive_2bit": {"bytes": 30_000, "accuracy": 0.24}}
    assert off_scale(broken) and not off_scale(usable)
    for name, models in (("broken", broken), ("usable", usable)):
        assert write_figure(models, tmp_path / f"{name}.png").stat().st_size > 0


def test_models_evaluates_a_committed_file_again_when_its_run_is_gone(tmp_path, capsys,
                                                                       synthetic_cifar10_dir):
    """On a fresh machine the runs are gone but the committed files are not: `models` checks
    them again from the file (a kernel change must not change what they score), written again
    by today's writer; a file with no entry yet gets one; --only limits it to the named
    models."""
    import json
    import shutil


    model = _model(bits=None)
    runs, out = tmp_path / "runs", tmp_path / "results"
    _save_run(runs, "lab2_c", model)
    argv = ["models", "--run-root", str(runs), "--out-dir", str(out),
            "--data-dir", str(synthetic_cifar10_dir), "--no-progress"]
    assert cli.main(argv) == 0
    first = json.loads((out / "compression.json").read_text())["models"]["lab2_c"]
    shutil.rmtree(runs)  # the machine is new
    # a file a lab wrote when it finished, not yet listed in compression.json
    shutil.copy(out / "models" / "lab2_c.mtc", out / "models" / "lab3_e.mtc")
    assert cli.main(argv) == 0
    models = json.loads((out / "compression.json").read_text())["models"]
    again = models["lab2_c"]
    assert again["accuracy"] == first["accuracy"] and again["bytes"] == first["bytes"]
    assert models["lab3_e"]["accuracy"] == first["accuracy"]
    assert models["lab3_e"]["stages"] == first["stages"]  # sized again from the file itself
    assert "lab2_c: " in capsys.readouterr().out  # it was evaluated, not just copied
    assert cli.main([*argv, "--only", "lab3_e"]) == 0
    only = capsys.readouterr().out
    assert "lab2_c: " not in only and "lab3_e: " in only
    kept = json.loads((out / "compression.json").read_text())
    assert kept["models"]["lab2_c"] == again and "lab3_d_4bit" in kept["missing"]


def test_the_target_model_also_gets_an_inference_file_with_folded_batch_norm(
        tmp_path, capsys, synthetic_cifar10_dir):
    """Lab 3 (d)'s models also get ``<name>_folded.mtc``: smaller than the full file, the same
    prediction for every test image, and the target sentence reports both files."""
    import json

    from minitorch_compress.reports import compression

    model = _model(bits=None)  # 80 % pruned float weights: `models` quantizes like (d)
    runs, out = tmp_path / "runs", tmp_path / "results"
    _save_run(runs, "lab3_d_4bit", model)
    assert cli.main(["models", "--run-root", str(runs), "--out-dir", str(out), "--only",
                     "lab3_d_4bit", "--data-dir", str(synthetic_cifar10_dir),
                     "--no-progress"]) == 0
    entry = json.loads((out / "compression.json").read_text())["models"]["lab3_d_4bit"]
    folded = entry["inference_file"]
    assert folded["file"].endswith("models/lab3_d_4bit_folded.mtc")
    assert (out / "models" / "lab3_d_4bit_folded.mtc").stat().st_size == folded["bytes"]
    assert folded["bytes"] < entry["bytes"] and folded["ratio"] > entry["ratio"]
    assert folded["predictions_differing"] == 0 and folded["accuracy"] == entry["accuracy"]
    sentence = compression.target_sentence({"lab3_d_4bit": entry})
    assert "Its inference-only file" in sentence and "every prediction the full file's" in sentence
    assert sentence.count("20x target") == 2
    assert "lab3_d_4bit_folded (inference only)" in capsys.readouterr().out


def _save_run(run_root, name, model):
    """A finished run folder as the trainer leaves it: ``<run_root>/<name>/best.npz``."""
    from minitorch_compress.io.checkpoint import save_checkpoint

    (run_root / name).mkdir(parents=True)
    save_checkpoint(run_root / name / "best.npz",
                    {f"model.{k}": v for k, v in model.state_dict().items()}, {})


def test_models_rebuilds_lab4s_channel_pruned_runs(tmp_path, capsys, synthetic_cifar10_dir):
    """Lab 4 (b)'s runs hold the smaller model; `models` finds them from lab4_b.json's
    strengths and evaluates each from its file, architecture and all."""
    import json


    mids = [8, 16, 16, 16, 32, 32, 32, 64, 40]
    small = _model(prune=None, bits=None, mid_channels=mids)
    runs, out = tmp_path / "runs", tmp_path / "results"
    _save_run(runs, "lab4_b_1", small)
    out.mkdir()
    (out / "lab4_b.json").write_text(json.dumps(
        {"strengths": {"1": {"group_lasso": {"best_accuracy": 0.25},
                             "l1_filter": {"best_accuracy": 0.5}}}}))
    assert cli.main(["models", "--run-root", str(runs), "--out-dir", str(out), "--data-dir",
                     str(synthetic_cifar10_dir), "--no-progress", "--only", "lab4_b_1",
                     "lab4_b_l1_1"]) == 0
    result = json.loads((out / "compression.json").read_text())
    assert result["models"]["lab4_b_1"]["table_accuracy"] == 0.25
    assert "lab4_b_l1_1" in result["missing"]
    assert mtc.load_model(out / "models" / "lab4_b_1.mtc").mid_channels == tuple(mids)
    # Lab 4 (e)'s models, from lab4_e.json's budgets (the shared lasso phase is no model)
    _save_run(runs, "lab4_e_l1_kd_m60", small)
    (out / "lab4_e.json").write_text(json.dumps(
        {"budgets": {"0.6": {"l1_kd": {"best_accuracy": 0.125},
                             "lasso_phase": {"accuracy": 0.5}}}}))
    assert cli.main(["models", "--run-root", str(runs), "--out-dir", str(out), "--data-dir",
                     str(synthetic_cifar10_dir), "--no-progress", "--only",
                     "lab4_e_l1_kd_m60"]) == 0
    result = json.loads((out / "compression.json").read_text())
    assert result["models"]["lab4_e_l1_kd_m60"]["table_accuracy"] == 0.125
    assert not any("phase" in name for name in [*result["models"], *result["missing"]])
    capsys.readouterr()


def test_models_rebuilds_lab5s_mixed_precision_runs(tmp_path, capsys, synthetic_cifar10_dir):
    """Lab 5 (a)'s models, from lab5_a.json's targets: each layer quantized to the width
    recorded there (not one width for the body), evaluated from its file beside (a)'s table."""
    import json

    from minitorch_compress.compression import weight_layers

    model = _model(prune=None, bits=None)  # the run's float weights
    body = [name for name in weight_layers(model) if name.startswith("body_op.")]
    widths = {name: 2 if i % 2 else 4 for i, name in enumerate(body)}
    runs, out = tmp_path / "runs", tmp_path / "results"
    _save_run(runs, "lab5_a_c2", model)
    out.mkdir()
    (out / "lab5_a.json").write_text(json.dumps(
        {"targets": {"c2": {"mode": "asymmetric", "bits": widths, "best_accuracy": 0.125}}}))
    assert cli.main(["models", "--run-root", str(runs), "--out-dir", str(out), "--data-dir",
                     str(synthetic_cifar10_dir), "--no-progress", "--only", "lab5_a_c2"]) == 0
    entry = json.loads((out / "compression.json").read_text())["models"]["lab5_a_c2"]
    assert entry["table_accuracy"] == 0.125 and entry["quantizer"] == "asymmetric"
    tensors = mtc.load(out / "models" / "lab5_a_c2.mtc").header["tensors"]
    assert {name: mtc.stored_bits(tensors[f"{name}.weight"]) for name in body} == widths
    assert "lab5_a_c2: " in capsys.readouterr().out


def _logits(model, x):
    with no_grad():
        return model.eval()(Tensor(x)).data


def test_folding_batch_norm_computes_bit_for_bit_the_same(saved):
    """Folded to (a, b) with mean 0, var 1, eps 0, eval-mode batch norm yields the same
    float32 coefficients, so the logits are identical, not merely close."""
    from minitorch_compress.compression.what_if import fold_batch_norms

    _, path, _ = saved
    x = np.random.default_rng(3).standard_normal((4, 3, 32, 32)).astype(np.float32)
    before = _logits(mtc.load_model(path), x)
    np.testing.assert_array_equal(_logits(fold_batch_norms(mtc.load_model(path)), x), before)
    rounded = _logits(fold_batch_norms(mtc.load_model(path), half=True), x)
    assert not np.array_equal(rounded, before)  # float16 is lossy: it must show


def test_a_folded_file_is_smaller_and_gives_bit_identical_logits(saved, tmp_path):
    model, path, _ = saved
    folded = tmp_path / "folded.mtc"
    report = mtc.save(folded, model, fold_batch_norm=True)
    assert report.total == folded.stat().st_size
    assert struct.unpack_from("<H", folded.read_bytes(), 8) == (mtc.VERSION,)
    assert struct.unpack_from("<H", path.read_bytes(), 8) == (mtc.VERSION,)
    plain = mtc.load(path)
    # each batch norm's running mean and variance (float32) and counter (int64) are gone
    norms = mtc.batch_norm_names(model)
    modules = dict(model.named_modules())
    left_out = sum(8 * modules[n].num_features + 8 for n in norms)
    assert report.dense_raw == mtc.save(tmp_path / "again.mtc", model).dense_raw - left_out
    assert report.dense < len(plain.sections[plain.header["dense"]["section"]])
    x = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    loaded = mtc.load_model(folded)
    assert loaded.batch_norm_folded and not mtc.load_model(path).batch_norm_folded
    np.testing.assert_array_equal(_logits(loaded, x), _logits(mtc.load_model(path), x))
    # the compressed weights are untouched by the fold
    for name in plain.header["tensors"]:
        np.testing.assert_array_equal(mtc.load(folded).state[name], plain.state[name])
    # a batch-norm mode the reader does not know is refused, not read as stored
    def flag(header):
        header["batch_norm"] = "fused"
    with pytest.raises(CheckpointError, match="'fused', not 'stored' or 'folded'"):
        mtc.load(_with_header(path, tmp_path, flag))


def test_a_folded_file_is_for_inference_only(saved, tmp_path, capsys, synthetic_cifar10_dir):
    from minitorch_compress.errors import MinitorchError
    from minitorch_compress.models.pretrained import load_pretrained, pretrained_state_dict
    from minitorch_compress.training.trainer import Trainer

    model, _, _ = saved
    folded = tmp_path / "folded.mtc"
    mtc.save(folded, model, fold_batch_norm=True)
    empty = (np.zeros((0, 3, 32, 32), np.float32), np.zeros(0, np.int64))
    with pytest.raises(MinitorchError, match="inference only"):
        Trainer(load_pretrained(folded), empty, empty)
    with pytest.raises(CheckpointError, match="folded batch norm"):
        pretrained_state_dict(folded)
    assert cli.main(["evaluate", "--weights", str(folded), "--data-dir",
                     str(synthetic_cifar10_dir), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["export", "--weights", str(folded), "--format", "torch", "--out",
                     str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unfolded" in err[0]
    assert not (tmp_path / "m.pt").exists()


def test_compress_folds_batch_norm_on_request(tmp_path, capsys, random_resnet20_weights):
    plain, folded = tmp_path / "plain.mtc", tmp_path / "folded.mtc"
    for out, extra in ((plain, []), (folded, ["--fold-batch-norm"])):
        assert cli.main(["compress", "--weights", str(random_resnet20_weights), "--prune",
                         "0.8", "--bits", "4", "--out", str(out), *extra]) == 0
    capsys.readouterr()
    assert mtc.load(folded).folded and not mtc.load(plain).folded
    assert folded.stat().st_size < plain.stat().st_size


def test_what_if_options_are_measured_on_the_file(saved):
    from minitorch_compress.compression.what_if import dense_bytes, shrink_options
    from minitorch_compress.reports.compression import what_if_lines

    model, path, sizes = saved
    x = np.random.default_rng(4).standard_normal((6, 3, 32, 32)).astype(np.float32)
    labels = np.arange(6) % 10

    def predict_fn(m):
        return _logits(m, x).argmax(axis=1)

    out = shrink_options(path, predict_fn, labels)
    by = {o["option"]: o for o in out["options"]}
    assert out["bytes"] == sizes["bytes"]
    assert dense_bytes(model, folded=False) == sizes["parts"]["dense tensors"]
    fold = by["batch norm folded to (scale, shift), float32"]
    assert fold["same_predictions"] and fold["saved"] > 0
    assert by["batch norm folded, (scale, shift) in float16"]["saved"] > fold["saved"]
    assert by["header without its section table"]["saved"] > 0
    lines = what_if_lines({"m": {**sizes, "what_if": out}})
    total = sum(o["saved"] for o in out["options"] if o["exact"])
    row = next(line for line in lines if line.startswith("| `m`"))
    assert f"| {total:,} | {sizes['float32_bytes'] / (sizes['bytes'] - total):.2f}x |" in row
    assert any("exactly the file's predictions" in line for line in lines)
    assert any("--fold-batch-norm" in line for line in lines)


def test_a_quantizer_without_a_zero_level_is_indexed_around_its_commonest_level(tmp_path,
                                                                                 monkeypatch):
    # the plain quantizer moves every pruned weight onto one non-zero level: indexing around
    # that level (the "fill") stores ~20 % of the entries instead of all of them
    model = _model(prune=0.8, bits=4, mode="asymmetric")
    path = tmp_path / "naive.mtc"
    report = mtc.save(path, model)
    loaded = mtc.load(path)
    for name, value in mtc.inference_state(model).items():
        np.testing.assert_array_equal(loaded.state[name], value, err_msg=name)
    filled = {name: record for name, record in loaded.header["tensors"].items()
              if "fill" in record}
    assert filled, "no tensor was indexed around its commonest level"
    for name, record in filled.items():
        w = loaded.state[name]
        fill = mtc.fill_of(record)
        assert fill != 0 and np.count_nonzero(w != fill) == record["count"] < w.size // 2
        assert "around" in report.encodings[name]
    assert struct.unpack_from("<H", path.read_bytes(), 8) == (mtc.VERSION,)
    # without the fill (every tensor indexed around 0) the same model takes more bytes
    around_zero = tmp_path / "zero.mtc"
    real = mtc._encode_around
    with monkeypatch.context() as patch:
        patch.setattr(mtc, "_encode_around", lambda flat, fill: real(flat, np.float32(0.0)))
        assert mtc.save(around_zero, model).total > report.total


def _recorded_model_files(node):
    """Every {"file": "...mtc", "bytes": n} record anywhere in a result JSON."""
    if isinstance(node, dict):
        if str(node.get("file", "")).endswith(".mtc") and "bytes" in node:
            yield node["file"], node["bytes"]
        for value in node.values():
            yield from _recorded_model_files(value)
    elif isinstance(node, list):
        for value in node:
            yield from _recorded_model_files(value)


def test_every_committed_model_file_is_the_current_version_and_the_size_a_result_says():
    import json

    from minitorch_compress.paths import REPO_ROOT, RESULTS_DIR

    files = sorted((RESULTS_DIR / "models").glob("*.mtc"))
    assert files, "no committed model files under results/models"
    recorded: dict[str, set[int]] = {}  # a lab's own result keeps the size it wrote then;
    for result in sorted(RESULTS_DIR.glob("*.json")):  # compression.json, the latest file's
        for name, size in _recorded_model_files(json.loads(result.read_text())):
            recorded.setdefault(name, set()).add(size)
    for path in files:
        assert struct.unpack_from("<H", path.read_bytes(), 8) == (mtc.VERSION,), path.name
        mtc.load(path)  # every CRC, count and shape checked
        name = path.relative_to(REPO_ROOT).as_posix()
        assert path.stat().st_size in recorded.get(name, set()), name


def test_a_deeply_nested_header_is_a_one_line_error(saved, tmp_path):
    _, path, _ = saved
    deep = "[" * 100_000 + "]" * 100_000  # json.loads recurses once per bracket
    packed = lzma.compress(deep.encode(), format=lzma.FORMAT_RAW, filters=mtc._RAW_LZMA2)
    blob = path.read_bytes()
    magic, version, length, _ = struct.unpack_from("<8sHII", blob)
    bad = tmp_path / "deep.mtc"
    bad.write_bytes(struct.pack("<8sHII", magic, version, len(packed), zlib.crc32(packed))
                    + packed + blob[18 + length:])
    with pytest.raises(CheckpointError, match="not valid compressed JSON"):
        mtc.load(bad)


def test_inspect_refuses_a_device_in_one_line(capsys):
    from minitorch_compress.cli import main

    assert main(["inspect", "/dev/zero"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_models_never_publishes_a_smoke_run(tmp_path, capsys, synthetic_cifar10_dir,
                                            monkeypatch):
    """Issue #34: a smoke run in runs/lab2_c must not replace the published lab2_c.mtc; the
    refusal comes before any file is written. (The published folder is stood in for by a
    temporary one, so a failing test cannot touch the committed results.)"""
    from minitorch_compress.experiments import model_files
    from minitorch_compress.io.checkpoint import save_checkpoint

    model = _model(bits=None)
    (tmp_path / "runs" / "lab2_c").mkdir(parents=True)
    save_checkpoint(tmp_path / "runs" / "lab2_c" / "best.npz",
                    {f"model.{k}": v for k, v in model.state_dict().items()},
                    {"data": {"train_images": 1000, "test_images": 2000}})
    out = tmp_path / "published"
    monkeypatch.setattr(model_files, "is_published_dir", lambda folder: folder == out)
    assert cli.main(["models", "--run-root", str(tmp_path / "runs"), "--out-dir", str(out),
                     "--only", "lab2_c", "--data-dir", str(synthetic_cifar10_dir),
                     "--no-progress"]) == 2
    assert "is a smoke run (1000 training, 2000 test images)" in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*.mtc"))


def test_same_compares_the_file_and_the_table_on_the_same_images():
    """Issue #34, part 5: a smoke model was marked "same: no" because its file, evaluated on
    one number of test images, was compared with a table figure on another. The file is now
    compared on the table's own images (the first n) where it saw them, and not at all where
    the table saw more."""
    from minitorch_compress.experiments.model_files import like_for_like
    from minitorch_compress.reports.compression import _same

    predicted, labels = np.array([1, 1, 0, 0]), np.array([1, 1, 1, 1])
    assert like_for_like({"_meta": {"test_subset": 4}}, predicted, labels) == {}
    assert like_for_like({"_meta": {"test_subset": 2}}, predicted, labels) == {
        "table_test_images": 2, "accuracy_on_table_images": 1.0}
    assert like_for_like({"_meta": {"test_subset": None}}, predicted, labels) == {
        "table_test_images": 10_000}
    assert _same({"accuracy": 0.5, "table_accuracy": 1.0, "table_test_images": 2,
                  "accuracy_on_table_images": 1.0}) == "yes (first 2 images)"
    assert _same({"accuracy": 0.5, "table_accuracy": 0.9, "table_test_images": 2,
                  "accuracy_on_table_images": 1.0}) == "**no** (+0.1000, first 2 images)"
    assert _same({"accuracy": 0.5, "table_accuracy": 0.9, "table_test_images": 10_000}) == "—"
    assert _same({"accuracy": 0.9, "table_accuracy": 0.9}) == "yes"  # the committed pages
    assert _same({"accuracy": 0.9, "table_accuracy": 0.8}) == "**no** (+0.1000)"


def test_models_with_no_run_says_where_it_looked_and_what_to_pass(tmp_path, capsys,
                                                                  monkeypatch):
    """Issue #34, part 5: after a quick reproduce, `models` said "No lab model on disk yet"
    (it looks in runs/, the quick runs are in runs/quick/) and named a folder it never made.
    It now stops before reading any data, naming the folder it searched and the options."""
    from minitorch_compress.experiments import model_files
    from minitorch_compress.io.checkpoint import save_checkpoint

    runs = tmp_path / "runs"
    (runs / "quick" / "lab2_c").mkdir(parents=True)
    save_checkpoint(runs / "quick" / "lab2_c" / "best.npz",
                    {f"model.{k}": v for k, v in _model(bits=None).state_dict().items()}, {})
    monkeypatch.setattr(model_files, "RUNS_DIR", runs)
    out = tmp_path / "results"
    argv = ["models", "--run-root", str(runs), "--out-dir", str(out),
            "--data-dir", str(tmp_path / "no_data_needed")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"has a best.npz under {runs}" in err
    assert "pass --run-root runs/quick --out-dir results/quick" in err
    assert not out.exists()
    assert cli.main([*argv, "--only", "lab9_x"]) == 2
    assert "--only lab9_x: no lab model has that name" in capsys.readouterr().err


def test_every_committed_model_file_exported_to_pytorch_reads_back_to_the_same_logits(
        tmp_path, capsys):
    """Issue #34, part 4: every committed `.mtc` (channel-pruned ones included), exported with
    `export --format torch` and read back from the `.pt`, computes the logits the `.mtc`
    computes, bit for bit (so every accuracy is the same); a folded-batch-norm file is refused
    by the export in one line (inference only)."""
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.paths import RESULTS_DIR

    files = sorted((RESULTS_DIR / "models").glob("*.mtc"))
    assert files, "no committed model files under results/models"
    images = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    for path in files:
        exported = tmp_path / f"{path.stem}.pt"
        code = cli.main(["export", "--weights", str(path), "--out", str(exported)])
        if path.stem.endswith("_folded"):
            assert code == 2 and "folded batch norm" in capsys.readouterr().err, path.name
            continue
        assert code == 0, (path.name, capsys.readouterr().err)
        with no_grad():
            from_mtc = mtc.load_model(path).eval()(Tensor(images)).data
            from_pt = load_pretrained(exported).eval()(Tensor(images)).data
        np.testing.assert_array_equal(from_pt, from_mtc, err_msg=path.name)
    capsys.readouterr()
