"""`audiogen app`: the Gradio page, called end to end through gradio_client over HTTP."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import soundfile as sf
from helpers import piano_like

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

SR = 22050

# gradio's queue (6.31) calls pandas options that pandas 3 deprecates: its warnings, not ours
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    """The app over the tiny models, served on a free local port: (client, results folder)."""
    from audiogen.api import Generator
    from audiogen.app import build_app, launch

    root = tmp_path_factory.mktemp("app")
    demo = build_app(Generator.from_pretrained(models["model"], models["vocoder"]), root)
    url = launch(demo, "127.0.0.1", free_port())
    assert url.startswith("http://127.0.0.1:")
    try:
        yield gradio_client.Client(url, verbose=False, download_files=str(root / "downloads")), root
    finally:
        demo.close()


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "clip.wav"
    sf.write(path, piano_like(1.5, SR), SR)
    return path


def test_generate_endpoint_returns_the_wav_the_seed_makes(served):
    client, _ = served
    outputs = client.predict(2.0, 5, 1.0, 2, api_name="/generate")
    *players, picture, line = outputs
    assert len(players) == 4
    assert players[2:] == [None, None]  # two clips asked for
    audio = []
    for path in players[:2]:
        data, rate = sf.read(path, dtype="float32")
        assert rate == SR and data.shape == (2 * SR,)
        audio.append(data)
    assert sf.info(players[0]).subtype == "PCM_16"
    assert open(picture, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "Seed 5 to 6" in line and "--seed 5" in line
    # the same seed, the same clip, through the page as through the API
    again = client.predict(2.0, 6, 1.0, 1, api_name="/generate")[0]
    np.testing.assert_array_equal(sf.read(again, dtype="float32")[0], audio[1])


def test_upload_tabs_end_to_end(served, clip_file):
    client, _ = served
    upload = gradio_client.handle_file(str(clip_file))
    path, picture, line = client.predict(upload, 0.5, 2.0, 3, 1.0, api_name="/variation")
    assert sf.info(path).samplerate == SR and sf.info(path).frames == 2 * SR
    assert "--variation 0.5 --seed 3" in line
    path, picture, line = client.predict(upload, upload, 0, True, 0.25, api_name="/morph")
    assert sf.info(path).frames == int(1.5 * SR) and "--at 0.25" in line
    line, path, latents, picture = client.predict(upload, api_name="/codec")
    assert sf.info(path).frames == int(1.5 * SR)
    assert "smaller** than 16-bit PCM" in line
    with np.load(latents) as stored:  # the file `audiogen decode` reads
        assert stored["latents"].dtype == np.float16 and int(stored["samples"]) == int(1.5 * SR)


def test_a_bad_request_is_one_line_in_the_page(served, tmp_path):
    client, _ = served
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    with pytest.raises(Exception, match="not readable as audio") as caught:
        client.predict(gradio_client.handle_file(str(not_audio)), api_name="/codec")
    assert "Traceback" not in str(caught.value)


def test_cli_refuses_a_busy_port_in_one_line(capsys):
    from audiogen.cli import main as audiogen

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = audiogen(["app", "--port", str(taken.getsockname()[1])])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("audiogen app: error: --host 127.0.0.1 --port") and err.count("\n") == 1


def test_generate_reports_progress_as_it_streams(models, tmp_path):
    from audiogen.api import Generator
    from audiogen.app import STREAM_CHUNK_SECONDS, generate_clips

    reports = []
    gen = Generator.from_pretrained(models["model"], models["vocoder"])
    paths, _, _ = generate_clips(gen, tmp_path, 6.0, 1, 1.0, 2, lambda done, desc: reports.append((done, desc)))
    fractions = [done for done, _ in reports]
    assert len(paths) == 2
    assert len(reports) >= 2 * 6.0 / STREAM_CHUNK_SECONDS  # a report per streamed piece of each clip
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] == 1.0
    assert fractions[len(fractions) // 2 - 1] <= 0.5  # the first clip fills the first half


def test_a_long_upload_is_refused_before_it_is_decoded(models, clip_file, monkeypatch):
    import audiogen.app as app
    from audiogen.api import Generator

    gen = Generator.from_pretrained(models["model"], models["vocoder"])
    assert len(app.load_upload(gen, str(clip_file), "a clip")) == int(1.5 * SR)
    monkeypatch.setattr(app, "MAX_UPLOAD_SECONDS", 1.0)
    with pytest.raises(ValueError, match="a clip is 2 s long; the app takes clips up to 1 s"):
        app.load_upload(gen, str(clip_file), "a clip")
    with pytest.raises(ValueError, match="upload a clip first"):
        app.load_upload(gen, None, "a clip")
