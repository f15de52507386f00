"""``audiogen-fad`` as users type it (subprocesses): embed/score round trips with the mel
embedding and with a random-weight VGGish checkpoint, the cache, errors, download-weights.

Bad numbers (:data:`BAD_NUMBERS`, 20 of them over 6 options, plus a device torch lacks and 2
outputs that are folders) are refused in one line naming the option, status 2; outputs follow
the umask; a full or read-only disk under the cache is warned about once and never fails the
command; a full disk under the output ends in one line with status 3."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import piano_like
from test_tool_errors import assert_help_shows_defaults, refusal

from audiogen.audio import RESAMPLER, save_audio
from audiogen.distances import kad
from audiogen.embeddings import EmbeddedSet, MelEmbedder, save_npz
from audiogen.scoring import flag_label
from audiogen.vggish import VGGish


def audiogen_fad() -> list[str]:
    script = Path(sys.executable).parent / "audiogen-fad"
    return [str(script)] if script.exists() else [sys.executable, "-m", "audiogen.cli.fad"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(audiogen_fad() + args, env=env, capture_output=True, text=True, timeout=300)


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    """In-process run of main() (same code path without the interpreter start-up)."""
    from audiogen.cli.fad import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def write_set(folder: Path, count: int, seed: int, seconds: float = 2.0, sr: int = 22050) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        t = np.arange(int(seconds * sr)) / sr
        notes = sum(np.sin(2 * np.pi * rng.uniform(80, 1500) * t) * np.exp(-rng.uniform(1, 4) * t) for _ in range(3))
        audio = 0.2 * notes + 0.005 * rng.standard_normal(t.shape)
        path = folder / f"{folder.name}_{i}.flac"
        save_audio(path, audio.astype(np.float32), sr)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("fadcli")
    write_set(root / "real", 6, seed=0)
    write_set(root / "fake", 5, seed=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOGEN_")}
    env["AUDIOGEN_CACHE"] = str(root / "cache")
    return root, env


@pytest.fixture
def same_env(workspace, monkeypatch):
    """The subprocess environment, applied to this process for in-process runs."""
    root, env = workspace
    for key in [k for k in os.environ if k.startswith("AUDIOGEN_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AUDIOGEN_CACHE", env["AUDIOGEN_CACHE"])
    return root


@pytest.fixture(scope="module")
def random_weights(workspace) -> Path:
    root, _ = workspace
    torch.manual_seed(0)
    model = VGGish()  # PyTorch's default init, saved in torchvggish's key layout
    path = root / "vggish-random.pth"
    torch.save(model.state_dict(), path)
    return path


def test_score_command_prints_json_last(workspace):
    """What a user types, in a subprocess: the last stdout line is the JSON report."""
    root, env = workspace
    out_json = root / "score_mel.json"
    scored = run(
        ["score", "--background", str(root / "real"), "--eval", str(root / "fake"), "--embedding", "mel"]
        + ["--json", str(out_json), "--workers", "2", "--bootstrap", "20", "--no-cache"],
        env,
    )
    assert scored.returncode == 0, scored.stderr
    report = last_json(scored.stdout)
    assert report == json.loads(out_json.read_text())
    for key in ("fad", "fad_inf", "fad_ci", "kad", "kad_ci", "flags", "embedding_model", "weights_sha256", "framing",
                "resampler"):
        assert key in report
    assert report["embedding_model"] == "mel" and report["resampler"] == RESAMPLER
    assert report["background"]["files"] == 6 and report["background"]["embeddings"] == 12
    assert report["eval"]["files"] == 5 and report["eval"]["embeddings"] == 10
    assert report["fad"] > 0 and report["fad_ci"][0] <= report["fad_ci"][1]
    assert report["kad_ci"][0] <= report["kad_ci"][1]
    assert f"KAD {report['kad']:.4f}" in scored.stdout  # printed, not only in the JSON
    assert report["bootstrap"]["unit"] == {"background": "piece", "eval": "piece"}  # each file a piece
    assert report["background"]["pieces"] == 6
    # 12 and 10 mel embeddings of 160 dimensions: flagged on the console as in the JSON
    assert [(f["flag"], f["about"]) for f in report["flags"]][-2:] == [("singular_covariance", "background"),
                                                                        ("singular_covariance", "eval")]
    for flag in report["flags"]:
        assert f"flag ({flag['flag']}): {flag['message']}" in scored.stdout.splitlines()
    assert "NOT comparable to published FAD" in scored.stdout
    assert scored.stderr == ""  # no progress bars when stderr is not a terminal


def test_corrupt_file_is_one_line_error_without_traceback(workspace):
    root, env = workspace
    broken = root / "broken"
    write_set(broken, 2, seed=3)
    (broken / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage")
    result = run(["score", "--background", str(broken), "--eval", str(root / "fake"), "--embedding", "mel"], env)
    assert result.returncode != 0
    assert "corrupt.wav" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_mel_embed_and_score_round_trip(same_env, capsys):
    root = same_env
    files = sorted((root / "real").glob("*.flac"))
    code, out, err = cli(["embed", *map(str, files), "--out", str(root / "real.npz"), "--embedding", "mel"], capsys)
    assert code == 0, err
    with np.load(root / "real.npz") as data:
        assert sorted(data.files) == sorted(f.stem for f in files)
        assert all(data[k].dtype == np.float32 and data[k].shape == (2, 160) for k in data.files)

    args = ["score", "--background", str(root / "real"), "--eval", str(root / "fake"), "--bootstrap", "20"]
    code, out, err = cli(args + ["--embedding", "mel"], capsys)
    assert code == 0, err
    report = last_json(out)
    # the .npz from embed scores the same; its sidecar says it is a mel embedding
    code, out, err = cli(["score", "--background", str(root / "real.npz"), "--eval", str(root / "fake")], capsys)
    assert code == 0, err
    again = last_json(out)
    assert again["embedding_model"] == "mel"
    assert again["fad"] == pytest.approx(report["fad"], rel=1e-6)
    assert again["eval"]["decoded"] == 0  # cached by the first score


def test_vggish_embed_and_score_with_random_checkpoint(same_env, random_weights, capsys, monkeypatch):
    root = same_env
    digest = hashlib.sha256(random_weights.read_bytes()).hexdigest()
    files = sorted((root / "fake").glob("*.flac"))[:2]
    code, out, err = cli(
        ["embed", *map(str, files), "--out", str(root / "v.npz"), "--vggish-weights", str(random_weights)], capsys
    )
    assert code == 0, err
    with np.load(root / "v.npz") as data:
        assert sorted(data.files) == ["fake_0", "fake_1"]
        assert data["fake_0"].shape == (2, 128) and data["fake_0"].dtype == np.float32

    monkeypatch.setenv("AUDIOGEN_VGGISH_WEIGHTS", str(random_weights))  # weights from the environment
    write_set(root / "small_real", 3, seed=5)
    write_set(root / "small_fake", 3, seed=6)
    args = ["score", "--background", str(root / "small_real"), "--eval", str(root / "small_fake")]
    args += ["--bootstrap", "20"]
    args += ["--framing", "google-reference", "--workers", "1"]
    code, out, err = cli(args, capsys)
    assert code == 0, err
    report = last_json(out)
    assert report["embedding_model"] == "vggish" and report["weights_sha256"] == digest
    assert report["framing"] == "google-reference" and report["embedding"]["official_weights"] is False
    assert report["background"]["embeddings"] == 3 * 3  # 2 s → 1 s windows at 0, 0.5 and 1 s
    assert report["comparable_to_published_fad"] is True and np.isfinite(report["fad"])
    code, out, err = cli(args, capsys)
    assert code == 0, err
    cached = last_json(out)
    assert cached["background"]["decoded"] == 0 and cached["eval"]["decoded"] == 0
    assert cached["fad"] == report["fad"]


def test_bad_inputs_give_clear_errors(same_env, random_weights, capsys):
    root = same_env
    code, _, err = cli(["score", "--background", str(root / "real"), "--eval", str(root / "fake")], capsys)
    assert code != 0 and "audiogen-fad download-weights" in err and len(err.strip().splitlines()) == 1

    code, _, err = cli(["embed", str(root / "absent.wav"), "--out", str(root / "x.npz"), "--embedding", "mel"], capsys)
    assert code != 0 and "absent.wav" in err

    code, _, err = cli(["score", "--background", str(root / "nowhere"), "--eval", str(root / "fake")], capsys)
    assert code != 0 and "nowhere" in err

    # an .npz of mel embeddings cannot be scored against VGGish embeddings
    mel_set = EmbeddedSet("m", ["a.wav", "b.wav"], [np.ones((2, 160), np.float32)] * 2, MelEmbedder().identity())
    save_npz(mel_set, root / "mel.npz")
    args = ["score", "--background", str(root / "mel.npz"), "--eval", str(root / "fake")]
    code, _, err = cli(args + ["--vggish-weights", str(random_weights), "--embedding", "vggish"], capsys)
    assert code != 0 and "embedded differently" in err

    assert cli(["score", "--background", str(root / "real")], capsys)[0] == 2  # argparse usage error


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_weights_command(tmp_path, capsys):
    served = tmp_path / "served"
    served.mkdir()
    payload = os.urandom(200_000)
    (served / "vggish.pth").write_bytes(payload)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/vggish.pth"
    digest = hashlib.sha256(payload).hexdigest()
    try:
        code, out, err = cli(
            ["download-weights", "--url", url, "--cache-dir", str(tmp_path / "c1"), "--quiet", "--sha256", digest],
            capsys,
        )
        assert code == 0, err
        assert (tmp_path / "c1" / "vggish-10086976.pth").read_bytes() == payload
        assert last_json(out)["sha256"] == digest

        code, _, err = cli(["download-weights", "--url", url, "--cache-dir", str(tmp_path / "c2"), "--quiet"], capsys)
        assert code != 0 and "checksum mismatch" in err
        assert not (tmp_path / "c2").exists() or list((tmp_path / "c2").iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()


def load_benchmark_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "fad_benchmark.py"
    spec = importlib.util.spec_from_file_location("fad_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class FakeGenerator:
    """Stands in for audiogen.generation's generator: tones from seeds, noisy copy-synthesis."""

    def __init__(self):
        from audiogen.frontend import MelFrontend

        self.frontend = MelFrontend()
        self.sample_rate = self.frontend.config.sample_rate

    def generate(self, seconds: float, seed: int, temperature: float = 1.0) -> np.ndarray:
        t = np.arange(int(seconds * self.sample_rate)) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t)).astype(np.float32)

    def vocode(self, log_mel: np.ndarray) -> np.ndarray:
        frames = log_mel.shape[-1]
        return np.random.default_rng(frames).standard_normal((frames - 1) * 256).astype(np.float32) * 0.1

    def encode(self, audio: np.ndarray):
        import torch

        return torch.from_numpy(np.asarray(audio, dtype=np.float32)).view(1, 1, -1)  # latents: the audio itself

    def render(self, latents, samples: int):
        for z in latents:  # a lossy codec: the clip at half its level
            yield 0.5 * z.numpy().reshape(-1)[:samples]


class FakeCodebooks:
    """A token prior's codebooks for FakeGenerator's "latents": the audio rounded to steps of 1/32."""

    def encode(self, frames):
        return (frames * 32).round().long()

    def decode(self, codes):
        return codes.float() / 32


class FakeTokenGenerator(FakeGenerator):
    def __init__(self):
        super().__init__()
        self.prior = type("FakeTokenPrior", (), {"codebooks": FakeCodebooks()})()


def test_fad_benchmark_runs_baselines_and_model_rows(tmp_path, monkeypatch, capsys):
    bench = load_benchmark_script()
    write_set(tmp_path / "ref" / "a", 2, seed=0, seconds=7.0)
    write_set(tmp_path / "ref" / "b", 2, seed=1, seconds=7.0)
    save_audio(tmp_path / "ref" / "silent.flac", np.zeros(int(4.5 * 22050), dtype=np.float32), 22050)
    args = ["--reference", str(tmp_path / "ref"), "--num", "4", "--seconds", "1.5", "--embedding", "mel"]
    args += ["--bootstrap", "10", "--griffin-lim-iters", "4", "--keep-clips", "1"]

    # without loadable models the model rows are skipped with the reason
    monkeypatch.setattr(bench, "load_models", lambda *a: (None, "no models here"))
    assert bench.main(args + ["--out", str(tmp_path / "r1")]) == 0
    report = json.loads((tmp_path / "r1" / "fad_benchmark.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["model"]["skipped"] == "no models here" and rows["vocoder"]["skipped"] == "no models here"
    assert rows["noise (ceiling)"]["fad"] > rows["real (floor)"]["fad"]
    # the clips cut from one piece share it, copy-synthesis keeps it, and noise clips are each their own
    real, noise = rows["real (floor)"], rows["noise (ceiling)"]
    assert real["pieces"] < real["clips"]
    assert real["bootstrap_unit"]["eval"] == ("piece" if real["pieces"] >= 2 else "embedding")
    assert (real["pieces"] == 1) == (("one_piece", "eval") in {(f["flag"], f["about"]) for f in real["flags"]})
    assert rows["griffin-lim"]["pieces"] == real["pieces"] and noise["pieces"] == noise["clips"]
    table = (tmp_path / "r1" / "fad_benchmark.md").read_text()
    assert "NOT comparable to published FAD" in table and "| model |" in table
    assert "| KAD | 95% CI | flags |" in table and "bootstrap draws over pieces" in table
    for row in (r for r in report["rows"] if not r.get("skipped")):  # every row's KAD and flags are in its line
        line = next(t for t in table.splitlines() if t.startswith(f"| {row['name']} |"))
        assert f"| {bench._fmt(row['kad'])} | {bench._interval(row['kad_ci'])} |" in line
        assert all(flag_label(f) in line and f["message"] in table for f in row["flags"])
    assert any(r.get("flags") for r in report["rows"])  # 4 clips of 160-d mel embeddings: singular, flagged
    assert (tmp_path / "r1" / "fad_benchmark.png").stat().st_size > 0
    assert (tmp_path / "r1" / "spectrograms.png").stat().st_size > 1000

    # the silent piece's 3 clips are left out of whichever half they fell in, and counted
    dropped = report["reference"]["silent_clips_dropped"]
    assert dropped["background"] + dropped["eval"] == 3
    assert "Digital silence left out" in table

    # with a generator every row is scored on the same number of clips, and described
    monkeypatch.setattr(bench, "load_models", lambda *a: (FakeGenerator(), None))
    long_args = ["--long-seconds", "3", "--long-num", "3"]
    assert bench.main(args + long_args + ["--out", str(tmp_path / "r2")]) == 0
    report = json.loads((tmp_path / "r2" / "fad_benchmark.json").read_text())
    assert [r["name"] for r in report["rows"]] == list(bench.ROWS)
    skipped = {r["name"]: r.get("skipped") for r in report["rows"]}
    assert "no codebooks" in skipped.pop("codebook round trip") and set(skipped.values()) == {None}
    assert len({r["clips"] for r in report["rows"] if not r.get("skipped")}) == 1
    assert (tmp_path / "r2" / "clips" / "model" / "00.wav").exists()
    rows = {r["name"]: r for r in report["rows"]}
    # the fake codec halves the level: its round trip is the real clips, quieter
    assert rows["vae round trip"]["fad"] > rows["real (floor)"]["fad"]
    # pure tones (the fake model) have far fewer pitch classes and onsets than the reference
    assert rows["model"]["descriptors"]["chroma_entropy"] < report["background_descriptors"]["chroma_entropy"]
    assert rows["noise (ceiling)"]["descriptors"]["spectral_flatness"] > 10 * rows["model"]["descriptors"][
        "spectral_flatness"]
    assert rows["real (floor)"]["vs_reference"]["pitch_class_js"] < rows["model"]["vs_reference"]["pitch_class_js"]
    table = (tmp_path / "r2" / "fad_benchmark.md").read_text()
    assert "| vae round trip |" in table and "Music descriptors" in table and "| background |" in table

    # long form: 3 s clips in two 1.5 s windows, scored per window position for model and real
    long = report["long_form"]
    assert set(long["sets"]) == {"real", "model"}
    for data in long["sets"].values():
        assert [w["start"] for w in data["windows"]] == [0.0, 1.5]
        assert all(w["fad"] > 0 and w["descriptors"]["clips"] == w["clips"] for w in data["windows"])
    assert long["sets"]["model"]["clips"] == 3
    assert long["sets"]["model"]["washed_clips"] == 0  # steady tones are not a wash
    assert "Long form" in table and "Drift (model)" in table
    assert "covariance is singular" in table  # so few embeddings per window: the report says so
    assert (tmp_path / "r2" / "long_form.png").stat().st_size > 1000
    assert (tmp_path / "r2" / "long_spectrograms.png").stat().st_size > 1000

    # a token prior's codebooks get their own round trip: the codec's, on the codebooks' words
    monkeypatch.setattr(bench, "load_models", lambda *a: (FakeTokenGenerator(), None))
    assert bench.main(args + ["--out", str(tmp_path / "r3")]) == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "r3" / "fad_benchmark.json").read_text())["rows"]}
    assert not rows["codebook round trip"].get("skipped") and rows["codebook round trip"]["fad"] > 0
    assert "| codebook round trip |" in (tmp_path / "r3" / "fad_benchmark.md").read_text()
    from audiogen.audio import load_audio

    quantised, _ = load_audio(tmp_path / "r3" / "clips" / "codebook" / "00.wav")
    plain, _ = load_audio(tmp_path / "r3" / "clips" / "vae" / "00.wav")
    # the words lie on a 1/32 grid: a few dozen sample values (peak-normalised), against thousands
    assert len(np.unique(quantised)) < 64 < 1000 < len(np.unique(plain))
    capsys.readouterr()


# ------------------------------------------------------------------------------ bad numbers, file modes, caches


BAD_NUMBERS = [  # (subcommand, option, value): each refused before any work, naming the option
    *[("score", "--bootstrap", v) for v in ("0", "-1", "1", "x")],
    *[("score", "--confidence", v) for v in ("2", "0", "1", "-0.5", "nan")],
    *[("score", "--fad-inf-steps", v) for v in ("0", "2")],
    ("score", "--seed", "-1"),
    *[(command, "--batch-size", v) for command in ("score", "embed") for v in ("0", "-1")],
    *[(command, "--workers", v) for command in ("score", "embed") for v in ("0", "-1")],
]


@pytest.mark.parametrize(("command", "option", "value"), BAD_NUMBERS)
def test_bad_numbers_are_refused_in_one_line_naming_the_option(workspace, command, option, value):
    root, env = workspace
    sets = ["--background", str(root / "real"), "--eval", str(root / "fake")] if command == "score" else [
        str(root / "real"), "--out", str(root / "never.npz")]
    result = run([command, *sets, "--embedding", "mel", "--no-cache", option, value], env)
    refusal(result, f"audiogen-fad {command}: error: argument {option}:", repr(value))
    assert not (root / "never.npz").exists()


def test_a_device_torch_lacks_and_outputs_that_are_folders_are_refused(workspace):
    root, env = workspace
    mel = ["--embedding", "mel", "--no-cache", "--quiet", "--workers", "1"]
    refusal(run(["embed", str(root / "real"), "--out", str(root / "d.npz"), *mel, "--device", "bogus"], env),
            "--device 'bogus'", "not a torch device")
    refusal(run(["embed", str(root / "real"), "--out", str(root / "real"), *mel], env), "--out", "is a folder")
    score = ["score", "--background", str(root / "real"), "--eval", str(root / "fake"), *mel]
    refusal(run([*score, "--json", str(root)], env), "--json", "is a folder")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_embed_and_score_outputs_follow_the_umask(workspace, tmp_path, umask):
    """mkstemp makes files 0600; what a user asked for gets the mode of any new file (0666 less the umask)."""
    root, env = workspace
    cache = tmp_path / "cache"
    common = ["--embedding", "mel", "--quiet", "--workers", "1", "--cache-dir", str(cache)]
    embedded = subprocess.run(audiogen_fad() + ["embed", str(root / "real"), "--out", str(tmp_path / "r.npz"),
                                                *common], env=env, capture_output=True, text=True, umask=umask)
    assert embedded.returncode == 0, embedded.stderr
    scored = subprocess.run(audiogen_fad() + ["score", "--background", str(tmp_path / "r.npz"), "--eval",
                                              str(root / "fake"), "--json", str(tmp_path / "r.json"),
                                              "--bootstrap", "5", *common],
                            env=env, capture_output=True, text=True, umask=umask)
    assert scored.returncode == 0, scored.stderr
    written = [tmp_path / "r.npz", tmp_path / "r.npz.json", tmp_path / "r.json", *cache.rglob("*.npy")]
    inputs = len(list((root / "real").glob("*.flac"))) + len(list((root / "fake").glob("*.flac")))
    assert len(written) == 3 + inputs  # the cache holds one entry per input file
    assert {oct(path.stat().st_mode & 0o777) for path in written} == {oct(0o666 & ~umask)}
    assert not list(tmp_path.rglob("*.part"))


def mounted_tmpfs(path: Path, options: str) -> Path:
    """A tmpfs at ``path`` (root only; the caller unmounts): a real full or read-only disk."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    return path


def fill(folder: Path) -> None:
    """Write zeros into ``folder`` until its file system refuses with ENOSPC."""
    import errno

    with pytest.raises(OSError) as full, open(folder / "filler", "wb") as handle:  # noqa: PT012
        while True:
            handle.write(bytes(4096))
            handle.flush()
            os.fsync(handle.fileno())
    assert full.value.errno == errno.ENOSPC


@pytest.fixture
def full_disk(tmp_path):
    folder = mounted_tmpfs(tmp_path / "full", "size=64k")
    try:
        fill(folder)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def read_only_disk(tmp_path):
    folder = mounted_tmpfs(tmp_path / "ro", "ro,size=64k")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_under_the_cache_is_warned_about_once_and_the_score_goes_on(workspace, full_disk, tmp_path):
    root, env = workspace
    args = ["score", "--background", str(root / "real"), "--eval", str(root / "fake"), "--embedding", "mel",
            "--quiet", "--workers", "1", "--bootstrap", "5", "--json", str(tmp_path / "s.json")]
    cached = run([*args, "--cache-dir", str(full_disk / "cache")], env)
    assert cached.returncode == 0, cached.stderr
    assert cached.stderr.splitlines() == [cached.stderr.strip()], cached.stderr  # one line, said once
    assert "warning: embedding cache" in cached.stderr and "No space left on device" in cached.stderr
    uncached = run([*args, "--no-cache", "--force"], env)  # the same --json again
    assert uncached.returncode == 0 and uncached.stderr == "", uncached.stderr
    assert last_json(cached.stdout)["fad"] == last_json(uncached.stdout)["fad"]
    assert not [p for p in full_disk.rglob("*") if p.is_file() and p.name != "filler"]


def test_a_read_only_cache_is_warned_about_and_embed_writes_its_output(workspace, read_only_disk, tmp_path):
    root, env = workspace
    result = run(["embed", str(root / "real"), "--out", str(tmp_path / "e.npz"), "--embedding", "mel", "--quiet",
                  "--workers", "1", "--cache-dir", str(read_only_disk)], env)
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Read-only file system" in result.stderr, result.stderr
    assert last_json(result.stdout)["files"] == len(list((root / "real").glob("*.flac")))
    assert (tmp_path / "e.npz").is_file()


def test_a_full_disk_under_the_output_ends_in_one_line_with_status_3(workspace, full_disk):
    root, env = workspace
    out = full_disk / "e.npz"
    result = run(["embed", str(root / "real"), "--out", str(out), "--embedding", "mel", "--quiet", "--workers", "1",
                  "--no-cache"], env)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [f"audiogen-fad: error: no space left on the device writing {out}"]
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # nothing half-written left behind


def test_help_shows_every_default():
    from audiogen.cli.fad import build_parser

    assert_help_shows_defaults(build_parser())
    for command in ("embed", "score", "download-weights"):
        shown = subprocess.run(audiogen_fad() + [command, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0 and "default" in shown.stdout


# ------------------------------------------------------------------------------ the mel FAD, recomputed by hand


def mel_embeddings_by_hand(path: Path) -> np.ndarray:
    """The mel embedding written out: 0.975 s patches every 0.96 s, per-band mean and std of their log-mel."""
    from audiogen.audio import load_audio
    from audiogen.frontend import FrontendConfig, MelFrontend

    config = FrontendConfig()
    audio, _ = load_audio(path, sample_rate=config.sample_rate)
    segment, hop = round(15600 / 16000 * config.sample_rate), round(15360 / 16000 * config.sample_rate)
    frontend = MelFrontend(config)
    rows = []
    for start in range(0, len(audio) - segment + 1, hop):
        log_mel = frontend.log_mel_numpy(audio[start : start + segment]).astype(np.float64)  # (n_mels, F)
        rows.append(np.concatenate([log_mel.mean(axis=1), log_mel.std(axis=1)]))
    return np.array(rows)


def frechet_by_svd(x: np.ndarray, y: np.ndarray) -> float:
    """FAD with Tr((S_x S_y)^1/2) as the nuclear norm of A B^T (S_x = A^T A): exact for singular covariances."""
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    return float(((x.mean(0) - y.mean(0)) ** 2).sum() + (a**2).sum() + (b**2).sum() - 2 * trace_sqrt)


def test_mel_fad_equals_the_distance_computed_by_hand(same_env, capsys):
    root = same_env
    by_hand = {label: np.concatenate([mel_embeddings_by_hand(p) for p in sorted((root / label).glob("*.flac"))])
               for label in ("real", "fake")}
    code, out, err = cli(["score", "--background", str(root / "real"), "--eval", str(root / "fake"), "--embedding",
                          "mel", "--bootstrap", "5", "--no-cache", "--quiet", "--workers", "1"], capsys)
    assert code == 0, err
    report = last_json(out)
    assert report["fad"] == pytest.approx(frechet_by_svd(by_hand["real"], by_hand["fake"]), rel=1e-6)
    assert report["kad"] == pytest.approx(kad(by_hand["real"], by_hand["fake"]), rel=1e-5)  # kad: see test_kad


def test_one_file_a_set_is_flagged_on_the_console_and_in_the_json(tmp_path, capsys):
    """The case of the issue: one performance a side gave FAD below its own interval and a negative FAD∞, unflagged.

    Here 10 s of synthetic piano against the same notes backwards: the sets are alike, and tiny."""
    performance = piano_like(10.0, 22050, seed=0)
    for name, audio in (("first", performance), ("second", performance[::-1].copy())):
        (tmp_path / name).mkdir()
        save_audio(tmp_path / name / f"{name}.flac", audio, 22050)
    code, out, err = cli(["score", "--background", str(tmp_path / "first"), "--eval", str(tmp_path / "second"),
                          "--embedding", "mel", "--no-cache", "--quiet", "--workers", "1"], capsys)
    assert code == 0, err
    report = last_json(out)
    codes = {(f["flag"], f["about"]) for f in report["flags"]}
    assert {("singular_covariance", "background"), ("singular_covariance", "eval"), ("one_piece", "background"),
            ("one_piece", "eval")} <= codes
    assert report["bootstrap"]["unit"] == {"background": "embedding", "eval": "embedding"}
    # whichever of the other two flags these numbers call for is raised, and printed
    assert (("interval_excludes_estimate", "fad") in codes) == (not report["fad_ci"][0] <= report["fad"]
                                                                <= report["fad_ci"][1])
    assert (("negative_fad_inf", "fad_inf") in codes) == (report["fad_inf"] < 0)
    assert ("interval_excludes_estimate", "fad") in codes and ("negative_fad_inf", "fad_inf") in codes
    printed = out.splitlines()
    assert all(f"flag ({f['flag']}): {f['message']}" in printed for f in report["flags"])


def test_existing_outputs_are_refused_without_force(same_env, capsys, tmp_path):
    root = same_env
    files = [str(f) for f in sorted((root / "real").glob("*.flac"))]
    out = tmp_path / "set.npz"
    assert cli(["embed", *files, "--out", str(out), "--embedding", "mel", "--quiet"], capsys)[0] == 0
    first = out.read_bytes()
    code, _, err = cli(["embed", *files[:1], "--out", str(out), "--embedding", "mel", "--quiet"], capsys)
    assert code == 2 and "already exists; pass --force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == first  # untouched
    assert cli(["embed", *files[:1], "--out", str(out), "--embedding", "mel", "--quiet", "--force"], capsys)[0] == 0
    assert out.read_bytes() != first
    report = tmp_path / "score.json"
    report.write_text("{}")
    args = ["score", "--background", str(out), "--eval", str(out), "--embedding", "mel", "--json", str(report)]
    code, _, err = cli(args, capsys)
    assert code == 2 and "--json" in err and report.read_text() == "{}"
