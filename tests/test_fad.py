"""Fréchet distance against closed forms and scipy, FAD∞, the bootstrap over pieces, the report's flags, and
embedding of file sets (cache, decode errors, list files, .npz round trip) with the weight-free mel embedding."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from audiogen import embeddings
from audiogen.audio import AudioError, save_audio
from audiogen.distances import (
    PieceKernelSums,
    embedding_stats,
    fad_from_embeddings,
    fad_inf,
    frechet_distance,
    kad,
    median_bandwidth,
)
from audiogen.embeddings import EmbeddedSet, MelEmbedder, embed_files, list_audio_files, load_npz, save_npz
from audiogen.intervals import bootstrap_distances, weighted_stats
from audiogen.scoring import report_flags, score_sets


def random_spd(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# --- Fréchet distance -----------------------------------------------------------------------


def test_equal_sets_give_zero():
    x = np.random.default_rng(0).standard_normal((500, 32)) * 3 + 1
    assert fad_from_embeddings(x, x) == pytest.approx(0.0, abs=1e-9)


def test_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(1)
    d = 16
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + ((mu1 - mu2) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_scaled_covariance_closed_form():
    # S2 = c^2 S1 commutes with S1: FAD = |mu diff|^2 + (1 - c)^2 Tr(S1)
    rng = np.random.default_rng(2)
    s1 = random_spd(24, rng)
    mu = rng.standard_normal(24)
    c = 1.7
    expected = (mu**2).sum() + (1 - c) ** 2 * np.trace(s1)
    assert frechet_distance(np.zeros(24), s1, mu, c**2 * s1) == pytest.approx(expected, rel=1e-9)


def scipy_fad(x: np.ndarray, y: np.ndarray) -> float:
    """The classic formula with scipy's sqrtm of the non-symmetric product."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_scipy_sqrtm(seed):
    rng = np.random.default_rng(seed)
    d = 64
    x = rng.standard_normal((400, d)) @ rng.standard_normal((d, d)) * 0.3
    y = rng.standard_normal((300, d)) @ rng.standard_normal((d, d)) * 0.3 + 0.5
    assert fad_from_embeddings(x, y) == pytest.approx(scipy_fad(x, y), rel=1e-7)


def test_unbiased_covariance():
    x = np.random.default_rng(3).standard_normal((50, 5))
    mu, sigma = embedding_stats(x)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False, ddof=1), atol=1e-12)
    np.testing.assert_allclose(mu, x.mean(0))


def test_fewer_embeddings_than_dimensions_is_finite_and_exact():
    # n < d: both covariances are singular. Tr((S1 S2)^1/2) then equals the nuclear norm of
    # A B^T with S1 = A^T A, S2 = B^T B (A, B the centred data over sqrt(n - 1)).
    rng = np.random.default_rng(4)
    d = 128
    x = rng.standard_normal((20, d))
    y = rng.standard_normal((30, d)) * 1.5 + 0.2
    value = fad_from_embeddings(x, y)
    a = (x - x.mean(0)) / np.sqrt(19)
    b = (y - y.mean(0)) / np.sqrt(29)
    trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    expected = ((x.mean(0) - y.mean(0)) ** 2).sum() + (a**2).sum() + (b**2).sum() - 2 * trace_sqrt
    assert np.isfinite(value)
    assert value == pytest.approx(expected, rel=1e-9)
    assert fad_from_embeddings(x, x) == pytest.approx(0.0, abs=1e-9)


def test_needs_two_embeddings_and_matching_shapes():
    with pytest.raises(ValueError, match="at least 2"):
        embedding_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --- FAD∞ and bootstrap ---------------------------------------------------------------------


def test_fad_inf_removes_sample_size_bias():
    # equal covariances and a mean shift of squared length 1: the population FAD is exactly 1,
    # while FAD on n samples is biased upward by about c / n
    rng = np.random.default_rng(5)
    d = 16
    shift = np.zeros(d)
    shift[0] = 1.0
    background = rng.standard_normal((40000, d))
    evaluation = rng.standard_normal((2000, d)) + shift
    small = fad_from_embeddings(background, evaluation[:200])
    result = fad_inf(background, evaluation, n_min=100, steps=20, seed=0)
    assert small > 1.3  # the bias FAD∞ has to remove
    assert result.value == pytest.approx(1.0, abs=0.1)
    assert result.slope > 0
    assert result.ns[0] == 100 and result.ns[-1] == 2000
    assert 0.0 <= result.r2 <= 1.0


def test_fad_inf_needs_enough_embeddings():
    x = np.random.default_rng(6).standard_normal((10, 4))
    with pytest.raises(ValueError, match="FAD∞"):
        fad_inf(x, x[:3])


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(7)
    background = [rng.standard_normal((10, 8)) for _ in range(30)]
    evaluation = [rng.standard_normal((10, 8)) * 1.3 + 0.3 for _ in range(30)]
    point = fad_from_embeddings(np.concatenate(background), np.concatenate(evaluation))
    result = bootstrap_distances(background, evaluation, n=100, seed=0)["fad"]
    assert result.low < point < result.high
    assert result.unit == {"background": "piece", "eval": "piece"}
    # reproducible with a seed, and the single-piece side falls back to embeddings
    again = bootstrap_distances(background, evaluation, n=100, seed=0)["fad"]
    np.testing.assert_array_equal(result.values, again.values)
    one = bootstrap_distances([np.concatenate(background)], evaluation, n=20, seed=0)["fad"]
    assert one.unit["background"] == "embedding"


def test_bootstrap_weights_equal_repeating_the_rows():
    # a bootstrap draw weights each row by how often it was drawn (0 for about a third of them);
    # the fast weighted statistics must equal those of the rows actually repeated
    rng = np.random.default_rng(8)
    x = rng.standard_normal((50, 6)) * 3.0 + 1.0
    weights = rng.multinomial(50, np.full(50, 1 / 50))
    assert (weights == 0).any()
    mu, sigma = weighted_stats(x, weights)
    repeated = np.repeat(x, weights, axis=0)
    np.testing.assert_allclose(mu, repeated.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(repeated, rowvar=False), atol=1e-12)


def pieced_sets(correlated: bool, seed: int, pieces: int = 24, clips: int = 8, d: int = 4):
    """Background and evaluation pieces of ``clips`` embeddings (d,): with ``correlated``, each piece's
    clips share a random offset much larger than their own spread (as clips of one recording share its sound)."""
    rng = np.random.default_rng(seed)

    def side(shift: float) -> list[np.ndarray]:
        spread = 0.2 if correlated else 1.0
        return [(rng.standard_normal(d) if correlated else 0.0) + shift + spread * rng.standard_normal((clips, d))
                for _ in range(pieces)]

    return side(0.0), side(0.5)


def interval_widths(background, evaluation, unit_is_piece: bool) -> dict[str, float]:
    if not unit_is_piece:  # every clip its own piece: what resampling clips would give
        background = [row[None, :] for piece in background for row in piece]
        evaluation = [row[None, :] for piece in evaluation for row in piece]
    x, y = np.concatenate(background), np.concatenate(evaluation)
    sums = PieceKernelSums.from_pieces(background, evaluation, bandwidth=median_bandwidth(x))
    results = bootstrap_distances(background, evaluation, n=150, seed=0, kernel_sums=sums)
    assert sums.kad() == pytest.approx(kad(x, y), rel=1e-9)
    return {metric: r.high - r.low for metric, r in results.items()}


def test_piece_intervals_are_wider_when_the_clips_of_a_piece_are_alike():
    by_piece = interval_widths(*pieced_sets(correlated=True, seed=9), unit_is_piece=True)
    by_clip = interval_widths(*pieced_sets(correlated=True, seed=9), unit_is_piece=False)
    for metric in ("fad", "kad"):
        assert by_piece[metric] > 1.8 * by_clip[metric], (metric, by_piece, by_clip)


def test_piece_and_clip_intervals_agree_when_the_clips_are_independent():
    by_piece = interval_widths(*pieced_sets(correlated=False, seed=10), unit_is_piece=True)
    by_clip = interval_widths(*pieced_sets(correlated=False, seed=10), unit_is_piece=False)
    for metric in ("fad", "kad"):
        assert 0.6 < by_piece[metric] / by_clip[metric] < 1.6, (metric, by_piece, by_clip)


def test_score_sets_resamples_the_pieces_the_set_names():
    # the clips of each file share a piece: the report resamples 6 pieces, not 24 clips
    rng = np.random.default_rng(11)
    identity = {"model": "mel", "framing": "torchvggish", "comparable_to_published": False}
    clips = [rng.standard_normal((5, 3)) for _ in range(24)]
    bg = EmbeddedSet("bg", [f"a{i}" for i in range(24)], clips, identity, pieces=[f"p{i // 4}" for i in range(24)])
    ev = EmbeddedSet("ev", [f"b{i}" for i in range(24)], [c + 0.3 for c in clips], identity)
    report = score_sets(bg, ev, n_bootstrap=20)
    assert report["bootstrap"]["units"] == {"background": 6, "eval": 24}
    assert report["bootstrap"]["unit"] == {"background": "piece", "eval": "piece"}
    assert report["background"]["pieces"] == 6 and report["background"]["files"] == 24
    assert report["kad"] == pytest.approx(kad(bg.stacked(), ev.stacked()), rel=1e-9)
    assert report["kad_bandwidth"] == pytest.approx(median_bandwidth(bg.stacked()))
    with pytest.raises(ValueError, match="2 piece names for 24 entries"):
        EmbeddedSet("x", bg.names, clips, identity, pieces=["a", "b"])


def flag_codes(report: dict) -> list[tuple[str, str]]:
    return [(f["flag"], f["about"]) for f in report_flags(report)]


def a_report(**changes) -> dict:
    """A report that raises no flag, with ``changes`` applied (``side__key`` changes a side's summary)."""
    report = {"fad": 2.0, "fad_ci": [1.5, 3.0], "kad": 0.5, "kad_ci": [0.2, 0.9], "fad_inf": 1.0, "dim": 8,
              "bootstrap": {"level": 0.95, "unit": {"background": "piece", "eval": "piece"}},
              "background": {"embeddings": 100}, "eval": {"embeddings": 50}}
    for key, value in changes.items():
        if "__" in key:
            side, field = key.split("__")
            report[side] = dict(report[side], **{field: value})
        else:
            report[key] = value
    return report


def test_each_flag_is_raised_by_its_condition_alone():
    assert flag_codes(a_report()) == []
    assert flag_codes(a_report(fad=1.2)) == [("interval_excludes_estimate", "fad")]
    assert flag_codes(a_report(kad=1.0)) == [("interval_excludes_estimate", "kad")]
    assert flag_codes(a_report(fad_inf=-0.1)) == [("negative_fad_inf", "fad_inf")]
    assert flag_codes(a_report(fad_inf=None, kad_ci=[None, None])) == []  # nothing computed, nothing to flag
    assert flag_codes(a_report(eval__embeddings=8)) == [("singular_covariance", "eval")]  # n <= d
    assert flag_codes(a_report(eval__embeddings=9)) == []
    one_piece = a_report(bootstrap={"level": 0.95, "unit": {"background": "embedding", "eval": "piece"}})
    assert flag_codes(one_piece) == [("one_piece", "background")]
    messages = [f["message"] for f in report_flags(a_report(fad=1.2, fad_inf=-0.25))]
    assert "FAD 1.2 lies outside its own 95% interval 1.5–3" in messages[0] and "FAD∞ -0.25" in messages[1]


def test_score_sets_report():
    rng = np.random.default_rng(8)
    identity = {"model": "mel", "framing": "torchvggish", "comparable_to_published": False}
    bg = EmbeddedSet("bg", [f"a{i}" for i in range(10)], [rng.standard_normal((20, 4)) for _ in range(10)], identity)
    ev = EmbeddedSet("ev", [f"b{i}" for i in range(5)], [rng.standard_normal((20, 4)) for _ in range(5)], identity)
    report = score_sets(bg, ev, n_bootstrap=20)
    assert report["fad"] == pytest.approx(fad_from_embeddings(bg.stacked(), ev.stacked()))
    assert report["fad_ci"][0] <= report["fad_ci"][1]
    assert report["background"]["files"] == 10 and report["eval"]["embeddings"] == 100
    assert report["fad_inf"] is not None
    assert any("NOT comparable" in w for w in report["warnings"])
    other = EmbeddedSet("x", ["c"], [rng.standard_normal((20, 4))], dict(identity, framing="google-reference"))
    with pytest.raises(ValueError, match="embedded differently"):
        score_sets(bg, other)


# --- file sets ------------------------------------------------------------------------------


def write_clips(folder, count: int, seconds: float = 1.5, seed: int = 0, sr: int = 22050):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        t = np.arange(int(seconds * sr)) / sr
        freq = rng.uniform(100, 1000)
        audio = 0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-2 * t) + 0.01 * rng.standard_normal(t.shape)
        path = folder / f"clip{i}.wav"
        save_audio(path, audio.astype(np.float32), sr)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def mel_embedder():
    return MelEmbedder()


def test_mel_embedder_shapes(mel_embedder):
    audio = np.random.default_rng(0).standard_normal(22050 * 3).astype(np.float32) * 0.1
    emb = mel_embedder.embed(audio)
    assert emb.shape == (3, 160) and emb.dtype == np.float32
    assert MelEmbedder(framing="google-reference").embed(audio).shape == (5, 160)
    assert mel_embedder.identity()["comparable_to_published"] is False


def test_second_score_decodes_nothing(tmp_path, monkeypatch, mel_embedder):
    files = write_clips(tmp_path / "set", 4)
    calls = []
    real_load = embeddings.load_audio

    def counting_load(path, sample_rate=None):
        calls.append(path)
        return real_load(path, sample_rate=sample_rate)

    monkeypatch.setattr(embeddings, "load_audio", counting_load)
    cache = tmp_path / "cache"
    first = embed_files(files, mel_embedder, workers=1, cache_dir=cache, progress=False)
    assert first.decoded == 4 and first.cached == 0 and len(calls) == 4
    second = embed_files(files, mel_embedder, workers=1, cache_dir=cache, progress=False)
    assert second.decoded == 0 and second.cached == 4 and len(calls) == 4
    for a, b in zip(first.embeddings, second.embeddings, strict=True):
        np.testing.assert_array_equal(a, b)
    # another framing is another cache entry
    third = embed_files(files, MelEmbedder(framing="google-reference"), workers=1, cache_dir=cache, progress=False)
    assert third.decoded == 4
    # changed content misses the cache even under the same name
    write_clips(tmp_path / "set", 1, seed=9)
    fourth = embed_files(files, mel_embedder, workers=1, cache_dir=cache, progress=False)
    assert fourth.decoded == 1 and fourth.cached == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_file_fails_naming_it(tmp_path, mel_embedder, workers):
    files = write_clips(tmp_path / "set", 2)
    bad = tmp_path / "set" / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(AudioError, match="broken.wav"):
        embed_files(files + [bad], mel_embedder, workers=workers, use_cache=False, progress=False)


def test_parallel_workers_match_in_process(tmp_path, mel_embedder):
    files = write_clips(tmp_path / "set", 3)
    serial = embed_files(files, mel_embedder, workers=1, use_cache=False, progress=False)
    parallel = embed_files(files, mel_embedder, workers=2, use_cache=False, progress=False)
    for a, b in zip(serial.embeddings, parallel.embeddings, strict=True):
        np.testing.assert_array_equal(a, b)


def test_too_short_file_is_an_error(tmp_path, mel_embedder):
    path = tmp_path / "short.wav"
    save_audio(path, np.zeros(2000, dtype=np.float32), 22050)
    with pytest.raises(AudioError, match="short.wav: too short"):
        embed_files([path], mel_embedder, workers=1, use_cache=False, progress=False)


def test_list_audio_files(tmp_path):
    write_clips(tmp_path / "root" / "a", 2)
    write_clips(tmp_path / "root" / "b" / "c", 1)
    (tmp_path / "root" / "notes.txt").write_text("not audio")
    found = list_audio_files(tmp_path / "root")
    assert [p.relative_to(tmp_path / "root").as_posix() for p in found] == [
        "a/clip0.wav",
        "a/clip1.wav",
        "b/c/clip0.wav",
    ]
    listing = tmp_path / "root" / "set.lst"
    listing.write_text("# a comment\na/clip1.wav\n\n" + str(found[2]) + "\n")
    assert list_audio_files(listing) == [tmp_path / "root" / "a" / "clip1.wav", found[2]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        list_audio_files(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        list_audio_files(tmp_path / "absent")


def test_npz_round_trip(tmp_path, mel_embedder):
    files = write_clips(tmp_path / "set", 2)
    embedded = embed_files(files, mel_embedder, workers=1, use_cache=False, progress=False)
    keys = save_npz(embedded, tmp_path / "out.npz")
    assert sorted(keys) == ["clip0", "clip1"]
    loaded = load_npz(tmp_path / "out.npz")
    assert loaded.identity == embedded.identity
    for name, arr in zip(loaded.names, loaded.embeddings, strict=True):
        np.testing.assert_array_equal(arr, embedded.embeddings[files.index(tmp_path / "set" / f"{name}.wav")])
    # clips that share a piece keep it through the sidecar; files of a folder need none
    assert loaded.pieces is None
    clips = EmbeddedSet("c", ["c0", "c1", "c2"], [np.ones((1, 2))] * 3, None, pieces=["p", "p", "q"])
    save_npz(clips, tmp_path / "clips.npz")
    assert load_npz(tmp_path / "clips.npz").pieces == ["p", "p", "q"]
    dup = EmbeddedSet("x", ["a/x.wav", "b/x.flac"], [np.zeros((1, 2))] * 2, None)
    with pytest.raises(ValueError, match="same basename 'x'"):
        save_npz(dup, tmp_path / "dup.npz")


def test_a_cache_that_cannot_be_written_warns_once_and_embeds_everything(tmp_path, mel_embedder):
    files = write_clips(tmp_path / "set", 3)
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder would go\n")  # ENOTDIR even for root
    warnings: list[str] = []
    embedded = embed_files(files, mel_embedder, workers=1, cache_dir=not_a_folder, progress=False,
                           warn=warnings.append)
    assert embedded.decoded == 3 and all(e.shape[0] >= 1 and e.shape[1] == 160 for e in embedded.embeddings)
    assert len(warnings) == 1 and str(not_a_folder) in warnings[0] and "Not a directory" in warnings[0]
    assert not_a_folder.read_text().startswith("a file")  # left as it was


def test_score_settings_out_of_range_are_refused_naming_them():
    rng = np.random.default_rng(0)
    sets = [EmbeddedSet(str(i), ["a", "b"], [rng.standard_normal((40, 4))] * 2, None) for i in range(2)]
    for settings, name in [({"n_bootstrap": 1}, "n_bootstrap"), ({"n_bootstrap": 0}, "n_bootstrap"),
                           ({"level": 1.0}, "level"), ({"level": 0.0}, "level"), ({"level": 2.0}, "level"),
                           ({"fad_inf_steps": 2}, "fad_inf_steps")]:
        with pytest.raises(ValueError, match=f"^{name}: "):
            score_sets(*sets, **settings)
    assert score_sets(*sets, n_bootstrap=2, level=0.5, fad_inf_steps=3)["fad"] >= 0


def test_npz_and_its_sidecar_follow_the_umask(tmp_path, mel_embedder):
    import os

    embedded = EmbeddedSet("x", ["a.wav", "b.wav"], [np.zeros((2, 160), np.float32)] * 2, mel_embedder.identity())
    old = os.umask(0o027)
    try:
        save_npz(embedded, tmp_path / "out.npz")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"out.npz": 0o640, "out.npz.json": 0o640}  # nothing else left beside them
