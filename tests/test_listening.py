"""The listening test: clip sets, seeded plans, SQLite storage and resume, blindness of what the
server sends (over HTTP, from `audiogen listen` as users type it), the report's statistics against
a hand computation, and the command's one-line errors."""

from __future__ import annotations

import io
import itertools
import json
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiogen.cli import EXIT_OK, EXIT_USAGE
from audiogen.cli.listen import main as listen_main
from audiogen.listening import (
    Clip,
    ListeningSession,
    blind_wav,
    cluster_bootstrap,
    find_clips,
    load_answers,
    normalize_listener,
    open_results,
    plan_trials,
    record_answer,
    split_trials,
    summarize,
)

pytest.importorskip("starlette")  # a core dependency; the skip only guards a broken install


def write_clip(path: Path, seconds: float = 0.2, sr: int = 8000, freq: float = 440.0, comment: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as handle:
        if comment is not None:
            handle.comment = comment
        handle.write((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))


def make_sets(root: Path, n_real: int = 3, n_generated: int = 3, seconds: float = 0.2) -> tuple[Path, Path]:
    """Folders whose names, file names and formats would give the set away if anything leaked."""
    real, generated = root / "realclips", root / "generatedclips"
    for i in range(n_real):
        write_clip(real / f"real_take_{i}.flac", seconds, sr=16000, freq=300 + 50 * i)
    for i in range(n_generated):
        write_clip(generated / f"gen_sample_{i}.wav", seconds, sr=8000, freq=500 + 50 * i,
                   comment='{"audiogen": "tags"}')
    return real, generated


def fake_clips(kind: str, n: int) -> list[Clip]:
    return [Clip(f"/clips/{kind}/{i:02d}.wav", kind) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Clip sets and plans


def test_find_clips_takes_wav_and_flac_recursively(tmp_path):
    write_clip(tmp_path / "a.wav")
    write_clip(tmp_path / "sub" / "b.FLAC")
    (tmp_path / "notes.txt").write_text("not audio")
    clips = find_clips(tmp_path, "real")
    assert [Path(c.path).name for c in clips] == ["a.wav", "b.FLAC"]
    assert {c.set for c in clips} == {"real"}


def test_find_clips_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="--real .*no such folder"):
        find_clips(tmp_path / "missing", "real")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--generated .*no WAV or FLAC"):
        find_clips(tmp_path / "empty", "generated")
    write_clip(tmp_path / "file.wav")
    with pytest.raises(ValueError, match="not a folder"):
        find_clips(tmp_path / "file.wav", "real")


def test_plan_is_fixed_by_the_listener_and_differs_between_listeners():
    real, generated = fake_clips("real", 10), fake_clips("generated", 10)
    ann = plan_trials(real, generated, "ann")
    assert plan_trials(list(reversed(real)), generated[::-1], "ann") == ann  # input order does not matter
    assert sorted(ann, key=lambda c: c.path) == sorted(real + generated, key=lambda c: c.path)
    bob = plan_trials(real, generated, "bob")
    assert bob != ann and sorted(bob, key=lambda c: c.path) == sorted(ann, key=lambda c: c.path)
    # the sets are mixed, not one block after the other
    first_half = [c.set for c in ann[:10]]
    assert 0 < first_half.count("real") < 10


@pytest.mark.parametrize(("trials", "n_real", "n_generated", "expected"), [
    (None, 3, 5, (3, 5)), (10, 20, 20, (5, 5)), (11, 20, 20, (5, 6)), (10, 3, 20, (3, 7)), (10, 20, 3, (7, 3)),
    (100, 3, 4, (3, 4)),
])
def test_split_trials_balances_the_sets(trials, n_real, n_generated, expected):
    assert split_trials(trials, n_real, n_generated) == expected


def test_plan_with_fewer_trials_takes_half_from_each_set():
    plan = plan_trials(fake_clips("real", 10), fake_clips("generated", 10), "ann", trials=6)
    assert len(plan) == len(set(plan)) == 6
    assert [c.set for c in plan].count("real") == 3


def test_clips_are_served_in_one_format_cut_to_the_seconds_asked(tmp_path):
    write_clip(tmp_path / "a.wav", seconds=0.5, sr=8000, comment="secret provenance")
    audio, sr = sf.read(io.BytesIO(blind_wav(tmp_path / "a.wav", 16000)))
    assert (sr, len(audio)) == (16000, 8000)  # resampled, same duration
    assert b"secret provenance" not in blind_wav(tmp_path / "a.wav", 16000)
    audio, sr = sf.read(io.BytesIO(blind_wav(tmp_path / "a.wav", 16000, seconds=0.1)))
    assert len(audio) == 1600


def test_listener_names():
    assert normalize_listener("  Ann   Lee ") == "Ann Lee"
    for bad in ("", "   ", "x" * 81, "ann\x07"):
        with pytest.raises(ValueError):
            normalize_listener(bad)


# ---------------------------------------------------------------------------------------------
# Storage and resume


def test_answers_are_rows_written_at_once(tmp_path):
    db = tmp_path / "results.sqlite"
    open_results(db)
    clip = Clip("/clips/a.wav", "generated")
    assert record_answer(db, "ann", clip, 4, "real", trial_number=1, played_seconds=2.5)
    assert not record_answer(db, "ann", clip, 1, "generated", trial_number=1)  # a second click: first stands
    (row,) = load_answers(db)
    assert (row["listener"], row["clip_path"], row["clip_set"], row["score"], row["answer"]) == \
        ("ann", "/clips/a.wav", "generated", 4, "real")
    assert row["played_seconds"] == 2.5 and row["answered_at"].endswith("+00:00")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for score, answer in ((0, "real"), (6, "real"), (True, "real"), (3.5, "real"), (3, "maybe")):
        with pytest.raises(ValueError):
            record_answer(db, "ann", Clip("/clips/b.wav", "real"), score, answer, trial_number=2)


def test_a_foreign_database_is_refused(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, just some text that is long enough" * 20)
    with pytest.raises(ValueError, match="not an audiogen listening-test results database"):
        open_results(text)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE answers (x)")
    with pytest.raises(ValueError, match="not an audiogen"):
        open_results(other)
    with pytest.raises(ValueError, match="not an audiogen"):
        load_answers(other)
    assert open_results(tmp_path / "new.sqlite")["kind"] == open_results(tmp_path / "new.sqlite")["kind"]


def test_a_listener_resumes_where_they_stopped_and_never_hears_a_clip_twice(tmp_path):
    real, generated = make_sets(tmp_path)
    db = tmp_path / "results.sqlite"
    session = ListeningSession(find_clips(real, "real"), find_clips(generated, "generated"), db)
    state = session.state("ann")
    assert (state["answered"], state["total"], state["trial"]["number"]) == (0, 6, 1)
    first = state["trial"]["id"]
    state = session.answer("ann", first, 5, "real")
    state = session.answer("ann", state["trial"]["id"], 2, "generated")
    with pytest.raises(ValueError, match="no such trial"):
        session.answer("bob", first, 3, "real")  # another listener's trial

    # the tab closed, the server restarted: a new session on the same db continues at trial 3
    again = ListeningSession(find_clips(real, "real"), find_clips(generated, "generated"), db)
    resumed = again.state("ann")
    assert (resumed["answered"], resumed["trial"]["number"]) == (2, 3)
    assert resumed["trial"]["id"] == state["trial"]["id"]  # same order, same opaque ids
    while resumed["trial"] is not None:
        resumed = again.answer("ann", resumed["trial"]["id"], 3, "real")
    assert resumed["answered"] == resumed["total"] == 6
    paths = [row["clip_path"] for row in load_answers(db)]
    assert len(paths) == len(set(paths)) == 6
    assert [row["trial_number"] for row in load_answers(db)] == list(range(1, 7))


def test_overlapping_sets_are_refused(tmp_path):
    real, _ = make_sets(tmp_path)
    with pytest.raises(ValueError, match="in both --real and --generated"):
        ListeningSession(find_clips(real, "real"), find_clips(tmp_path, "generated"), tmp_path / "r.sqlite")


# ---------------------------------------------------------------------------------------------
# Blindness, over HTTP from the command as users type it


def audiogen_command() -> list[str]:
    script = Path(sys.executable).parent / "audiogen"
    return [str(script)] if script.exists() else [sys.executable, "-m", "audiogen"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("listen")
    real, generated = make_sets(root)
    db = root / "results.sqlite"
    proc = subprocess.Popen(audiogen_command() + ["listen", "--real", str(real), "--generated", str(generated),
                                                  "--db", str(db), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        url = next((word for word in lines[1].split() if word.startswith("http://")), None)
        assert url, f"no address in {lines!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield {"url": url, "db": db, "root": root, "announce": lines}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fetch(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={**(headers or {}), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def secrets_of(root: Path) -> list[str]:
    """Every word that would give a clip or its set away."""
    words = {"realclips", "generatedclips", str(root)}
    for path in root.rglob("*.*"):
        words |= {path.name, path.stem}
    return sorted(words)


def test_nothing_the_browser_receives_names_a_clip_or_its_set(server):
    url = server["url"]
    assert "3 real and 3 generated clips, 6 trials per listener" in server["announce"][0]
    leaks = secrets_of(server["root"])
    for page in ("", "static/listen.js", "static/listen.css"):
        status, _, body = fetch(url + page)
        assert status == 200 and not [w for w in leaks if w in body.decode()]
    status, _, body = fetch(url + "api/start", {"listener": "ann"})
    responses = [body.decode()]
    state = json.loads(body)
    formats = set()
    while state["trial"] is not None:
        status, headers, audio = fetch(url + f"audio/{state['trial']['id']}")
        assert status == 200 and headers["content-type"] == "audio/wav"
        info = sf.info(io.BytesIO(audio))
        formats.add((info.samplerate, info.channels, info.subtype))
        assert b"audiogen" not in audio  # the generated clips' tags are not served
        status, _, body = fetch(url + "api/answer", {"listener": "ann", "trial": state["trial"]["id"], "score": 3,
                                                     "answer": "real", "played_seconds": 0.2})
        assert status == 200
        responses.append(body.decode())
        state = json.loads(body)
    assert formats == {(16000, 1, "PCM_16")}  # one format for both sets (they were FLAC 16 kHz and WAV 8 kHz)
    for text in responses:
        assert not [w for w in leaks + ["real", "generated", "gen_"] if w in text], text
    rows = load_answers(server["db"])
    assert len(rows) == 6 and {r["clip_set"] for r in rows} == {"real", "generated"}


def test_the_server_refuses_bad_answers_and_unknown_trials(server):
    url = server["url"]
    trial = json.loads(fetch(url + "api/start", {"listener": "cat"})[2])["trial"]["id"]
    assert fetch(url + "api/answer", {"listener": "cat", "trial": trial, "score": 9, "answer": "real"})[0] == 400
    assert fetch(url + "api/answer", {"listener": "cat", "trial": "0" * 24, "score": 3, "answer": "real"})[0] == 400
    assert fetch(url + "api/start", {"listener": ""})[0] == 400
    assert fetch(url + "audio/" + "0" * 24)[0] == 404
    status, headers, part = fetch(url + f"audio/{trial}", headers={"Range": "bytes=0-43"})
    assert status == 206 and len(part) == 44 and part[:4] == b"RIFF"
    assert not [r for r in load_answers(server["db"]) if r["listener"] == "cat"]


# ---------------------------------------------------------------------------------------------
# The report's statistics, against a hand computation


# (listener, set, score, answer): four listeners of unequal answer counts
FABRICATED = [
    ("ann", "real", 5, "real"), ("ann", "real", 4, "real"), ("ann", "generated", 2, "generated"),
    ("ann", "generated", 4, "real"),
    ("bob", "real", 3, "generated"), ("bob", "generated", 1, "generated"), ("bob", "generated", 2, "generated"),
    ("bob", "generated", 3, "real"),
    ("cy", "real", 4, "real"), ("cy", "real", 5, "real"), ("cy", "real", 2, "generated"),
    ("cy", "generated", 5, "real"),
    ("dee", "real", 1, "real"), ("dee", "generated", 3, "generated"),
]


@pytest.fixture()
def fabricated_db(tmp_path) -> Path:
    db = tmp_path / "results.sqlite"
    open_results(db)
    for i, (listener, clip_set, score, answer) in enumerate(FABRICATED):
        record_answer(db, listener, Clip(f"/clips/{clip_set}/{i}.wav", clip_set), score, answer, trial_number=i + 1)
    return db


def exact_bootstrap_quantiles(rows: list[tuple[str, float]], quantiles: list[float]) -> np.ndarray:
    """Every equally likely draw of listeners with replacement, enumerated: the exact distribution
    that the report's random draws sample."""
    listeners = sorted({name for name, _ in rows})
    sums = np.array([sum(v for n, v in rows if n == name) for name in listeners])
    counts = np.array([sum(1 for n, _ in rows if n == name) for name in listeners])
    means = [sums[list(draw)].sum() / counts[list(draw)].sum()
             for draw in itertools.product(range(len(listeners)), repeat=len(listeners))]
    return np.quantile(means, quantiles)


def test_report_statistics_match_a_hand_computation(fabricated_db):
    summary = summarize(load_answers(fabricated_db), draws=40000, seed=1)
    assert (summary["answers"], summary["listeners"]) == (14, 4)
    for clip_set, fooled_key in (("real", "real_judged_generated"), ("generated", "generated_judged_real")):
        rows = [r for r in FABRICATED if r[1] == clip_set]
        scores = [(r[0], float(r[2])) for r in rows]
        fooled = [(r[0], float(r[3] != clip_set)) for r in rows]
        mos = summary["sets"][clip_set]
        assert mos["value"] == pytest.approx(np.mean([s for _, s in scores]))
        assert (mos["answers"], mos["listeners"], mos["resampled"]) == (len(rows), 4, "listeners")
        rate = summary["fooled"][fooled_key]
        assert rate["value"] == pytest.approx(np.mean([f for _, f in fooled]))
        for estimate, values in ((mos, scores), (rate, fooled)):
            # the 2.5 % and 97.5 % percentiles of 40000 draws lie within a percent of the exact ones
            low_lo, low_hi, high_lo, high_hi = exact_bootstrap_quantiles(values, [0.015, 0.035, 0.965, 0.985])
            assert low_lo - 1e-9 <= estimate["interval"][0] <= low_hi + 1e-9
            assert high_lo - 1e-9 <= estimate["interval"][1] <= high_hi + 1e-9
    assert summary["fooled"]["generated_judged_real"]["value"] == pytest.approx(3 / 7)


def test_one_listener_intervals_resample_answers_and_say_so():
    estimate = cluster_bootstrap([1, 2, 3, 4, 5], ["ann"] * 5, draws=2000)
    assert estimate.resampled == "answers" and estimate.low < 3 < estimate.high
    assert summarize([])["sets"] == {"real": None, "generated": None}


def test_report_command_prints_and_writes_json(fabricated_db, capsys):
    assert listen_main(["--report", str(fabricated_db), "--draws", "2000"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "14 answers from 4 listener(s)" in text and "generated judged real" in text
    assert f"{np.mean([r[2] for r in FABRICATED if r[1] == 'real']):.2f}" in text
    assert listen_main(["--report", str(fabricated_db), "--json", "--draws", "2000"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["fooled"]["generated_judged_real"]["answers"] == 7
    assert report["interval"]["method"] == "percentile bootstrap over listeners"


# ---------------------------------------------------------------------------------------------
# One-line errors


def one_line_error(argv: list[str], capsys) -> str:
    assert listen_main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("audiogen listen: error: "), err
    return err


def test_cli_errors_are_one_line(tmp_path, capsys):
    real, generated = make_sets(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    db = str(tmp_path / "r.sqlite")
    serve = ["--real", str(real), "--generated", str(generated), "--db", db]
    assert "no such folder" in one_line_error(serve[:1] + [str(tmp_path / "nope")] + serve[2:], capsys)
    assert "no WAV or FLAC" in one_line_error(serve[:3] + [str(tmp_path / "empty")] + serve[4:], capsys)
    assert "no WAV or FLAC" in one_line_error(serve[:1] + [str(tmp_path / "texts")] + serve[2:], capsys)
    foreign = tmp_path / "foreign.sqlite"
    foreign.write_bytes(b"\x00not sqlite" * 100)
    assert "not an audiogen" in one_line_error(serve[:5] + [str(foreign)], capsys)
    assert "not an audiogen" in one_line_error(["--report", str(foreign)], capsys)
    assert "no such results database" in one_line_error(["--report", str(tmp_path / "none.sqlite")], capsys)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert "is in use" in one_line_error(serve + ["--port", str(taken.getsockname()[1])], capsys)
    for argv in (["--report", db, "--real", str(real)], ["--report", db, "--trials", "4"], serve[:4],
                 ["--port", "-1"] + serve, serve + ["--json"], serve + ["--draws", "500"]):
        with pytest.raises(SystemExit) as exit_info:
            listen_main(argv)
        assert exit_info.value.code == EXIT_USAGE
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith("audiogen listen: error: ")


def test_a_port_in_use_is_one_line_as_users_type_it(tmp_path):
    real, generated = make_sets(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        done = subprocess.run(audiogen_command() + ["listen", "--real", str(real), "--generated", str(generated),
                                                    "--db", str(tmp_path / "r.sqlite"), "--port",
                                                    str(taken.getsockname()[1])],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.strip().count("\n") == 0 and "is in use" in done.stderr
