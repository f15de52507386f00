"""VGGish: input pipeline against a numpy transcription of the TF reference, checkpoint layout
and flatten order against a numpy forward pass, weights resolution and the checksum download."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from audiogen import vggish
from audiogen.download import (
    VGGISH_URL_ENV,
    ChecksumError,
    DownloadError,
    download_vggish_weights,
    sha256_file,
)
from audiogen.vggish import (
    FRAMINGS,
    VGGish,
    VGGishEmbedder,
    WeightsError,
    WeightsNotFoundError,
    load_vggish,
    resolve_weights,
    vggish_mel_matrix,
    vggish_patches,
)

# The key layout of torchvggish's vggish-10086976.pth, written out from torchvggish's
# make_layers()/VGG (convs at Sequential indices 0, 3, 6, 8, 11, 13; fc at 0, 2, 4) and the TF
# checkpoint's variable shapes (conv1..conv4_2, fc1_1 12288x4096, fc1_2, fc2 4096x128).
TORCHVGGISH_LAYOUT = {
    "features.0.weight": (64, 1, 3, 3),
    "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3),
    "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3),
    "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3),
    "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3),
    "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3),
    "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288),
    "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096),
    "embeddings.4.bias": (128,),
}


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in torchvggish's layout, He-scaled so activations stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in TORCHVGGISH_LAYOUT.items():
        if key.endswith("weight"):
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    return state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("weights") / "vggish-random.pth"
    state = random_state_dict()
    torch.save(state, path)
    return path, {k: v.numpy() for k, v in state.items()}


# --- numpy transcription of the TF reference (mel_features.py, vggish_input.py) -------------


def ref_mel_matrix() -> np.ndarray:
    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    bins_mel = mel(np.linspace(0.0, 8000.0, 257))
    edges = np.linspace(mel(125.0), mel(7500.0), 64 + 2)
    weights = np.empty((257, 64))
    for i in range(64):
        lower, center, upper = edges[i : i + 3]
        for j in range(257):
            rising = (bins_mel[j] - lower) / (center - lower)
            falling = (upper - bins_mel[j]) / (upper - center)
            weights[j, i] = max(0.0, min(rising, falling))
    weights[0, :] = 0.0
    return weights


def ref_frame(data: np.ndarray, window: int, hop: int) -> np.ndarray:
    count = 1 + (data.shape[0] - window) // hop
    return (
        np.stack([data[i * hop : i * hop + window] for i in range(max(count, 0))])
        if count > 0
        else (np.zeros((0, window) + data.shape[1:]))
    )


def ref_log_mel(samples: np.ndarray) -> np.ndarray:
    frames = ref_frame(samples.astype(np.float64), 400, 160)
    window = 0.5 - 0.5 * np.cos(2 * np.pi / 400 * np.arange(400))
    spectrum = np.abs(np.fft.rfft(frames * window, 512))
    return np.log(spectrum @ ref_mel_matrix() + 0.01)


def ref_examples_torchvggish(samples: np.ndarray) -> np.ndarray:
    return ref_frame(ref_log_mel(samples), 96, 96)


def ref_examples_google(samples: np.ndarray) -> np.ndarray:
    samples = samples.astype(np.float64)
    samples = samples / np.maximum(0.1, np.amax(samples))
    examples = []
    for start in range(0, samples.shape[0] - 16000 + 1, 8000):
        examples.append(ref_frame(ref_log_mel(samples[start : start + 16000]), 96, 96))
    return np.concatenate(examples) if examples else np.zeros((0, 96, 64))


# --- numpy forward pass in TensorFlow's order (NHWC, HWIO kernels) ---------------------------


def np_conv3x3_same(x: np.ndarray, weight_oihw: np.ndarray, bias: np.ndarray) -> np.ndarray:
    kernel = weight_oihw.transpose(2, 3, 1, 0).astype(np.float64)  # (kh, kw, in, out) as TensorFlow stores it
    b, h, w, c = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((b * h * w, kernel.shape[3]), dtype=np.float64)
    for dy in range(3):
        for dx in range(3):
            # the shifted window as a contiguous (pixels, in) matrix, so the product runs in BLAS
            window = np.ascontiguousarray(padded[:, dy : dy + h, dx : dx + w, :]).reshape(-1, c)
            out += window @ kernel[dy, dx]
    return out.reshape(b, h, w, -1) + bias


def np_maxpool2(x: np.ndarray) -> np.ndarray:
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def np_vggish(examples: np.ndarray, w: dict[str, np.ndarray], flatten: str = "nhwc") -> np.ndarray:
    relu = functools.partial(np.maximum, 0.0)
    x = examples[..., None].astype(np.float64)  # (B, 96, 64, 1): time = height, mel = width
    x = np_maxpool2(relu(np_conv3x3_same(x, w["features.0.weight"], w["features.0.bias"])))  # conv1, pool1
    x = np_maxpool2(relu(np_conv3x3_same(x, w["features.3.weight"], w["features.3.bias"])))  # conv2, pool2
    x = relu(np_conv3x3_same(x, w["features.6.weight"], w["features.6.bias"]))  # conv3_1
    x = np_maxpool2(relu(np_conv3x3_same(x, w["features.8.weight"], w["features.8.bias"])))  # conv3_2, pool3
    x = relu(np_conv3x3_same(x, w["features.11.weight"], w["features.11.bias"]))  # conv4_1
    x = np_maxpool2(relu(np_conv3x3_same(x, w["features.13.weight"], w["features.13.bias"])))  # conv4_2, pool4
    # the fc layers run in float32 (float64 copies of the 12288x4096 matrix cost seconds)
    if flatten == "nhwc":
        x = x.reshape(x.shape[0], -1)  # TensorFlow's flatten of (B, 6, 4, 512)
    else:
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # a channel-first flatten: the wrong one
    x = relu(x.astype(np.float32) @ w["embeddings.0.weight"].T + w["embeddings.0.bias"])  # fc1_1
    x = relu(x @ w["embeddings.2.weight"].T + w["embeddings.2.bias"])  # fc1_2
    return x @ w["embeddings.4.weight"].T + w["embeddings.4.bias"]  # fc2, no ReLU


def make_signal(seconds: float, seed: int = 0, peak: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = np.sin(2 * np.pi * (220 + 600 * t) * t) * np.exp(-0.3 * t) + 0.3 * np.sin(2 * np.pi * 1760 * t)
    signal = tone + 0.05 * rng.standard_normal(t.shape)
    return (peak * signal / np.abs(signal).max()).astype(np.float32)


# --- input pipeline -------------------------------------------------------------------------


def test_mel_matrix_matches_reference():
    ours = vggish_mel_matrix()
    assert ours.shape == (257, 64)
    np.testing.assert_allclose(ours, ref_mel_matrix(), rtol=0, atol=1e-12)
    assert (ours[0] == 0).all()
    # no weight outside 125..7500 Hz
    bins_hz = np.linspace(0, 8000, 257)
    assert ours[(bins_hz < 125) | (bins_hz > 7500)].max() == 0


@pytest.mark.parametrize("framing", ["torchvggish", "google-reference"])
def test_log_mel_patches_match_reference(framing):
    samples = make_signal(3.3, peak=0.05)  # quiet: google-reference divides by max(0.1, peak)=0.1
    ours = vggish_patches(samples, framing)[:, 0].numpy()
    ref = ref_examples_torchvggish(samples) if framing == "torchvggish" else ref_examples_google(samples)
    assert ours.shape == ref.shape
    assert ours.shape[0] == (3 if framing == "torchvggish" else 5)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-4)


@pytest.mark.parametrize("num_samples", [399, 15599, 15600, 30959, 30960, 16000, 23999, 24000, 40000])
def test_patch_counts_match_reference(num_samples):
    samples = make_signal(num_samples / 16000, seed=1)[:num_samples]
    for name, ref in (("torchvggish", ref_examples_torchvggish), ("google-reference", ref_examples_google)):
        expected = ref(samples).shape[0] if num_samples >= 400 else 0
        assert FRAMINGS[name].num_patches(num_samples, 16000) == expected, name
        assert vggish_patches(samples, name).shape == (expected, 1, 96, 64)


def test_google_reference_framing_is_gain_invariant_above_the_floor():
    samples = make_signal(2.0, peak=0.4)
    a = vggish_patches(samples, "google-reference")
    b = vggish_patches(samples * 2.0, "google-reference")
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
    # the torchvggish framing does not normalise: a gain changes its input
    c = vggish_patches(samples, "torchvggish")
    d = vggish_patches(samples * 2.0, "torchvggish")
    assert np.abs(c.numpy() - d.numpy()).max() > 0.1


# --- checkpoint layout, layer order and flatten order ---------------------------------------


def test_module_keys_are_torchvggish_layout():
    with torch.device("meta"):
        model = VGGish()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == TORCHVGGISH_LAYOUT


def test_checkpoint_embeddings_match_numpy_tf_order(checkpoint):
    path, weights = checkpoint
    model = load_vggish(path)
    samples = make_signal(2.5, seed=3)
    examples = ref_examples_torchvggish(samples)  # (2, 96, 64) from the numpy reference
    expected = np_vggish(examples, weights)
    with torch.inference_mode():
        ours = model(torch.from_numpy(examples).float().unsqueeze(1)).numpy()
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4 * scale)
    # the comparison pins the flatten order: a channel-first flatten gives other embeddings
    wrong = np_vggish(examples, weights, flatten="nchw")
    assert np.abs(wrong - expected).max() > 0.05 * scale


def test_embedder_end_to_end_matches_reference(checkpoint):
    path, weights = checkpoint
    embedder = VGGishEmbedder.from_weights(path, framing="google-reference")
    assert embedder.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    samples = make_signal(2.2, seed=4, peak=0.7)
    ours = embedder.embed(samples)
    expected = np_vggish(ref_examples_google(samples), weights)
    assert ours.dtype == np.float32 and ours.shape == (3, 128)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    # negative values survive: there is no final ReLU
    assert (ours < 0).any()
    assert embedder.embed(samples[:15000]).shape == (0, 128)


@pytest.mark.gpu
def test_embedder_on_gpu_matches_cpu(checkpoint):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    path, _ = checkpoint
    samples = make_signal(3.0, seed=5)
    cpu = VGGishEmbedder.from_weights(path).embed(samples)
    gpu = VGGishEmbedder.from_weights(path, device="cuda").embed(samples)
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-3 * np.abs(cpu).max())


class NotATensor:
    pass


def test_loader_errors_name_the_problem(tmp_path, checkpoint):
    _, weights = checkpoint
    small = {k: torch.from_numpy(v) for k, v in weights.items() if not k.startswith("embeddings.0")}
    torch.save(small, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing embeddings.0.bias, embeddings.0.weight"):
        load_vggish(tmp_path / "missing.pth")

    bad_shape = {k: torch.from_numpy(v) for k, v in weights.items()}
    bad_shape["embeddings.4.weight"] = torch.zeros(128, 2048)
    torch.save(bad_shape, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match=r"embeddings.4.weight has shape \(128, 2048\)"):
        load_vggish(tmp_path / "shape.pth")

    torch.save({"features.0.weight": NotATensor()}, tmp_path / "pickle.pth")
    with pytest.raises(WeightsError, match="not a loadable tensor-only"):
        load_vggish(tmp_path / "pickle.pth")

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth"):
        load_vggish(tmp_path / "garbage.pth")

    with pytest.raises(WeightsNotFoundError, match="download-weights"):
        load_vggish(tmp_path / "nowhere.pth")


def test_postprocessor_keys_are_ignored(tmp_path, checkpoint):
    _, weights = checkpoint
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    state["pproc.pca_matrix"] = torch.eye(128)
    state["pproc.pca_means"] = torch.zeros(128, 1)
    torch.save(state, tmp_path / "full.pth")
    model = load_vggish(tmp_path / "full.pth")
    assert torch.equal(model.embeddings[4].bias, state["embeddings.4.bias"])


# --- weights resolution and download --------------------------------------------------------


def test_weights_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("AUDIOGEN_VGGISH_WEIGHTS", raising=False)
    monkeypatch.setenv("AUDIOGEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights()
    message = str(info.value)
    assert "audiogen-fad download-weights" in message and "--embedding mel" in message

    cached = tmp_path / "cache" / "vggish-10086976.pth"
    cached.parent.mkdir()
    cached.write_bytes(b"c")
    assert resolve_weights() == cached
    env = tmp_path / "env.pth"
    env.write_bytes(b"e")
    monkeypatch.setenv("AUDIOGEN_VGGISH_WEIGHTS", str(env))
    assert resolve_weights() == env
    explicit = tmp_path / "arg.pth"
    explicit.write_bytes(b"a")
    assert resolve_weights(explicit) == explicit
    with pytest.raises(WeightsNotFoundError, match="--vggish-weights"):
        resolve_weights(tmp_path / "absent.pth")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_folder(tmp_path):
    """A folder served on 127.0.0.1 by http.server in a thread; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_good_file(http_folder, tmp_path, monkeypatch):
    folder, base = http_folder
    payload = np.random.default_rng(0).bytes(300_000)
    (folder / "w.pth").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "cache"
    monkeypatch.setenv(VGGISH_URL_ENV, f"{base}/w.pth")  # the URL comes from the environment
    path = download_vggish_weights(cache_dir=dest, sha256=digest, progress=False)
    assert path == dest / "vggish-10086976.pth"
    assert path.read_bytes() == payload
    assert sorted(p.name for p in dest.iterdir()) == ["vggish-10086976.pth"]
    # a verified file is not fetched again (the server would now answer 404)
    (folder / "w.pth").unlink()
    assert download_vggish_weights(cache_dir=dest, sha256=digest[:8], progress=False) == path


def test_download_checksum_refusal_leaves_nothing(http_folder, tmp_path):
    folder, base = http_folder
    (folder / "w.pth").write_bytes(b"x" * 100_000)
    dest = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        # default expectation: the official prefix 10086976, which these bytes do not have
        download_vggish_weights(cache_dir=dest, url=f"{base}/w.pth", progress=False)
    assert list(dest.iterdir()) == []
    with pytest.raises(DownloadError, match="404"):
        download_vggish_weights(cache_dir=dest, url=f"{base}/absent.pth", progress=False)
    assert list(dest.iterdir()) == []


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    assert sha256_file(path) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_how_to_message_names_the_release_url():
    assert "harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth" in vggish.how_to_get_weights()
