"""A blind listening test: clip sets, trial plans, the SQLite results store, and the report.

A listener hears real and generated clips in an order fixed by a seed derived from their
listener id, gives each a 1-5 opinion score (ACR: bad, poor, fair, good, excellent) and says
whether they think it is real or generated. Every answer is one row of an SQLite database,
written in its own transaction as soon as it is given, so a closed tab loses nothing and a
listener who comes back continues with the first clip of their order they have not answered.

Blindness: a trial is named by an opaque token (an HMAC of the listener and the clip path under a
secret kept in the database), and :func:`blind_wav` serves every clip in one format (mono 16-bit
WAV at one sample rate, without tags), so neither a URL, a header nor the file's metadata tells
the sets apart.

The report gives the mean opinion score (MOS) of each set and the rates at which listeners were
fooled (generated judged real, real judged generated), each with a percentile bootstrap interval
that resamples *listeners* (a listener's answers are not independent of one another).

The web page lives in :mod:`audiogen.listening_web`; this module has no web dependency.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

AUDIO_SUFFIXES = (".wav", ".flac")
SETS = ("real", "generated")
SCORES = (1, 2, 3, 4, 5)
DB_KIND = "audiogen listening test"
DB_SCHEMA = "1"
MAX_LISTENER_LENGTH = 80

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    listener TEXT NOT NULL,
    clip_path TEXT NOT NULL,
    clip_set TEXT NOT NULL CHECK (clip_set IN ('real', 'generated')),
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    answer TEXT NOT NULL CHECK (answer IN ('real', 'generated')),
    trial_number INTEGER NOT NULL,
    played_seconds REAL,
    answered_at TEXT NOT NULL,
    UNIQUE (listener, clip_path)
);
"""


# ---------------------------------------------------------------------------------------------
# Clips and trial plans


@dataclass(frozen=True)
class Clip:
    """One audio file of the test: its resolved path and the set it belongs to ("real" or "generated")."""

    path: str
    set: str


def find_clips(folder: str | Path, clip_set: str) -> list[Clip]:
    """The WAV and FLAC files under ``folder`` (searched recursively), sorted by path.

    Raises:
        ValueError: the folder is missing, is not a folder, or holds no WAV/FLAC file.
    """
    folder = Path(folder)
    option = f"--{clip_set}"
    if not folder.exists():
        raise ValueError(f"{option} {folder}: no such folder")
    if not folder.is_dir():
        raise ValueError(f"{option} {folder}: not a folder")
    paths = sorted(p.resolve() for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise ValueError(f"{option} {folder}: no WAV or FLAC files in this folder")
    return [Clip(str(p), clip_set) for p in paths]


def check_disjoint(real: Sequence[Clip], generated: Sequence[Clip]) -> None:
    """A file in both sets would be scored as both; refuse it (e.g. one folder inside the other)."""
    shared = sorted({c.path for c in real} & {c.path for c in generated})
    if shared:
        raise ValueError(f"{len(shared)} file(s) are in both --real and --generated, e.g. {shared[0]}")


def normalize_listener(name: str) -> str:
    """The listener id for a typed name: surrounding and repeated whitespace dropped.

    Raises:
        ValueError: empty, longer than MAX_LISTENER_LENGTH, or holding control characters.
    """
    listener = " ".join(str(name).split())
    if not listener:
        raise ValueError("enter a listener name")
    if len(listener) > MAX_LISTENER_LENGTH:
        raise ValueError(f"a listener name has at most {MAX_LISTENER_LENGTH} characters")
    if any(not ch.isprintable() for ch in listener):
        raise ValueError("a listener name cannot hold control characters")
    return listener


def listener_seed(listener: str) -> int:
    """A 64-bit seed from the listener id: the same listener always gets the same order."""
    return int.from_bytes(hashlib.sha256(listener.encode("utf-8")).digest()[:8], "little")


def split_trials(trials: int | None, n_real: int, n_generated: int) -> tuple[int, int]:
    """How many real and generated clips a plan of ``trials`` holds: half each where both sets
    have enough, the other set filling in where one runs short; None means every clip."""
    if trials is None:
        return n_real, n_generated
    take_real = min(n_real, max(trials - n_generated, trials // 2))
    return take_real, min(n_generated, trials - take_real)


def plan_trials(real: Sequence[Clip], generated: Sequence[Clip], listener: str,
                trials: int | None = None) -> list[Clip]:
    """The listener's trial order: a seeded choice of clips from each set, shuffled together.

    Args:
        real, generated: the two sets (any order; they are sorted by path first, so the plan
            depends only on which files there are).
        listener: the listener id; the seed comes from it (:func:`listener_seed`).
        trials: clips per listener, balanced between the sets (:func:`split_trials`); None: all.

    Returns:
        The clips in the order the listener hears them.
    """
    rng = np.random.default_rng(listener_seed(listener))
    real = sorted(real, key=lambda c: c.path)
    generated = sorted(generated, key=lambda c: c.path)
    take_real, take_generated = split_trials(trials, len(real), len(generated))
    chosen = [real[i] for i in rng.permutation(len(real))[:take_real]]
    chosen += [generated[i] for i in rng.permutation(len(generated))[:take_generated]]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def trial_token(secret: str, listener: str, clip_path: str) -> str:
    """The opaque name of a trial in URLs and the page: says nothing about the clip or its set."""
    message = f"{listener}\0{clip_path}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:24]


def serving_rate(sample_rates: Sequence[int]) -> int:
    """One sample rate for every served clip: the highest of the files' (so nothing is band-limited
    further than its file already is, and the rate does not tell the sets apart)."""
    return max(sample_rates)


def blind_wav(path: str | Path, sample_rate: int, seconds: float | None = None) -> bytes:
    """A clip as mono 16-bit WAV bytes at ``sample_rate``, without tags (a generated clip's
    provenance comment must not reach the listener), the first ``seconds`` only if given."""
    from audiogen.audio import encode_audio, load_audio

    audio, rate = load_audio(path, sample_rate=sample_rate, seconds=seconds)
    if seconds is not None:
        audio = audio[: int(round(seconds * rate))]
    return encode_audio(np.clip(audio, -1.0, 1.0), rate, format="WAV")


# ---------------------------------------------------------------------------------------------
# The results database


def _connect(path: str | Path) -> sqlite3.Connection:
    # a listener's answer waits up to 10 s for another's write instead of failing
    conn = sqlite3.connect(str(path), timeout=10.0)
    conn.row_factory = sqlite3.Row
    return conn


def _not_ours(path: str | Path) -> ValueError:
    return ValueError(f"{path}: not an audiogen listening-test results database")


def _read_meta(conn: sqlite3.Connection, path: str | Path) -> dict[str, str]:
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:  # "file is not a database"
        raise _not_ours(path) from err
    if not {"meta", "answers"} <= tables:
        raise _not_ours(path)
    meta = {row[0]: row[1] for row in conn.execute("SELECT key, value FROM meta")}
    if meta.get("kind") != DB_KIND:
        raise _not_ours(path)
    if meta.get("schema") != DB_SCHEMA:
        raise ValueError(f"{path}: results database schema {meta.get('schema')!r}; this audiogen reads {DB_SCHEMA!r}")
    return meta


def open_results(path: str | Path) -> dict[str, str]:
    """Create the results database, or check an existing one; returns its meta table.

    The database is put in WAL mode (readers, such as ``--report`` during a test, never block
    the writer) with full sync, so an answer the page was told is saved survives a crash.

    Raises:
        ValueError: the file exists and is not an audiogen results database (or its folder is missing).
    """
    path = Path(path)
    if not path.parent.exists():
        raise ValueError(f"--db {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"--db {path}: is a folder")
    conn = _connect(path)
    try:
        try:
            tables = list(conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        except sqlite3.DatabaseError as err:
            raise _not_ours(path) from err
        if not tables:
            conn.execute("PRAGMA journal_mode = WAL")
            with conn:
                conn.executescript(_SCHEMA)
                created = datetime.now(timezone.utc).isoformat(timespec="seconds")
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                 [("kind", DB_KIND), ("schema", DB_SCHEMA), ("secret", secrets.token_hex(16)),
                                  ("created_at", created)])
        return _read_meta(conn, path)
    finally:
        conn.close()


def read_meta(path: str | Path) -> dict[str, str]:
    """The meta table of an existing results database (never creates one).

    Raises:
        ValueError: no such file, or not an audiogen results database.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such results database")
    conn = _connect(path)
    try:
        return _read_meta(conn, path)
    finally:
        conn.close()


def record_answer(db: str | Path, listener: str, clip: Clip, score: int, answer: str, trial_number: int,
                  played_seconds: float | None = None) -> bool:
    """Store one answer in its own transaction; True if stored, False if that listener had
    already answered that clip (a double click, a second tab): the first answer stands.

    Raises:
        ValueError: a score outside 1-5 or an answer other than "real"/"generated".
    """
    if isinstance(score, bool) or not isinstance(score, int) or score not in SCORES:
        raise ValueError(f"a score is one of {', '.join(map(str, SCORES))}, got {score!r}")
    if answer not in SETS:
        raise ValueError(f"an answer is 'real' or 'generated', got {answer!r}")
    answered_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    conn = _connect(db)
    try:
        conn.execute("PRAGMA synchronous = FULL")
        with conn:
            cursor = conn.execute(
                "INSERT INTO answers (listener, clip_path, clip_set, score, answer, trial_number, played_seconds,"
                " answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (listener, clip_path) DO NOTHING",
                (listener, clip.path, clip.set, score, answer, trial_number, played_seconds, answered_at))
        return cursor.rowcount == 1
    finally:
        conn.close()


def answered_paths(db: str | Path, listener: str) -> set[str]:
    """The clip paths this listener has answered."""
    conn = _connect(db)
    try:
        return {row[0] for row in conn.execute("SELECT clip_path FROM answers WHERE listener = ?", (listener,))}
    finally:
        conn.close()


def load_answers(db: str | Path) -> list[dict]:
    """Every answer of a results database, in the order given, as dicts of the row's columns.

    Raises:
        ValueError: no such file, or not an audiogen results database.
    """
    read_meta(db)
    conn = _connect(db)
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM answers ORDER BY id")]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class Estimate:
    """A pooled mean over answers with its percentile bootstrap interval.

    ``resampled`` is "listeners", or "answers" where only one listener gave any (resampling one
    listener would give an interval of zero width).
    """

    value: float
    low: float
    high: float
    answers: int
    listeners: int
    resampled: str

    def to_dict(self) -> dict:
        return {"value": self.value, "interval": [self.low, self.high], "answers": self.answers,
                "listeners": self.listeners, "resampled": self.resampled}


def cluster_bootstrap(values: Sequence[float], groups: Sequence[str], draws: int = 10000, level: float = 0.95,
                      seed: int = 0) -> Estimate:
    """Mean of ``values`` with a percentile bootstrap interval that resamples whole groups.

    Each draw picks as many groups as there are, with replacement, and takes the mean over all
    the values of the groups picked (a group picked twice counts twice): the pooled mean, the
    same statistic as the estimate.

    Args:
        values: one number per answer (a score, or 1/0 for "fooled").
        groups: the listener of each answer.
        draws: bootstrap draws.
        level: coverage of the interval.
        seed: seed of the draws (the report is reproducible).

    Raises:
        ValueError: no values, or values and groups of different lengths.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no answers to estimate from")
    if len(groups) != values.size:
        raise ValueError("one group per value")
    names, index = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    if len(names) > 1:
        sums = np.bincount(index, weights=values)
        counts = np.bincount(index).astype(np.float64)
        picks = rng.integers(0, len(names), size=(draws, len(names)))
        means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
        resampled = "listeners"
    else:
        picks = rng.integers(0, values.size, size=(draws, values.size))
        means = values[picks].mean(axis=1)
        resampled = "answers"
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(float(values.mean()), float(low), float(high), int(values.size), len(names), resampled)


def summarize(answers: Sequence[dict], draws: int = 10000, level: float = 0.95, seed: int = 0) -> dict:
    """The report of a test as a JSON-ready dict.

    Returns:
        ``answers`` and ``listeners`` (totals); ``sets``: for "real" and "generated", the MOS
        :class:`Estimate` (or None without answers); ``fooled``: "generated_judged_real" (the
        share of answers on generated clips that said real) and "real_judged_generated";
        ``interval``: how the intervals were made.
    """
    by_set = {name: [a for a in answers if a["clip_set"] == name] for name in SETS}
    other = {"real": "generated", "generated": "real"}

    def estimate(rows: list[dict], value) -> dict | None:
        if not rows:
            return None
        return cluster_bootstrap([value(a) for a in rows], [a["listener"] for a in rows], draws, level, seed).to_dict()

    return {
        "answers": len(answers),
        "listeners": len({a["listener"] for a in answers}),
        "sets": {name: estimate(rows, lambda a: a["score"]) for name, rows in by_set.items()},
        "fooled": {f"{name}_judged_{other[name]}": estimate(rows, lambda a, n=name: float(a["answer"] != n))
                   for name, rows in (("generated", by_set["generated"]), ("real", by_set["real"]))},
        "interval": {"method": "percentile bootstrap over listeners", "level": level, "draws": draws, "seed": seed},
    }


def format_report(summary: dict, source: str) -> list[str]:
    """The report as console lines."""
    level = round(summary["interval"]["level"] * 100)
    lines = [f"{source}: {summary['answers']} answers from {summary['listeners']} listener(s)"]
    if not summary["answers"]:
        return lines + ["no answers yet"]
    lines += ["", f"{'set':<10} {'MOS':>5}  {f'{level} % interval':<14} {'answers':>7} {'listeners':>9}"]
    for name, est in summary["sets"].items():
        if est is None:
            lines.append(f"{name:<10} {'-':>5}  {'':<14} {0:>7} {0:>9}")
            continue
        low, high = est["interval"]
        lines.append(f"{name:<10} {est['value']:>5.2f}  {f'{low:.2f}-{high:.2f}':<14} {est['answers']:>7} "
                     f"{est['listeners']:>9}")
    lines += ["", "listeners fooled:"]
    for key, label in (("generated_judged_real", "generated judged real"),
                       ("real_judged_generated", "real judged generated")):
        est = summary["fooled"][key]
        if est is None:
            lines.append(f"  {label:<22} -  (no answers)")
            continue
        low, high = est["interval"]
        lines.append(f"  {label:<22} {est['value'] * 100:5.1f} %  ({low * 100:.1f}-{high * 100:.1f} %)"
                     f"  of {est['answers']} answers")
    draws = summary["interval"]["draws"]
    lines += ["", f"intervals: {level} % percentile bootstrap over listeners ({draws} draws)"]
    single = [name for name, est in summary["sets"].items() if est and est["resampled"] == "answers"]
    if single:
        lines.append(f"note: only one listener answered {' and '.join(single)} clips; those intervals resample "
                     "answers and say nothing about other listeners")
    return lines


# ---------------------------------------------------------------------------------------------
# A running test: what the web page asks for, without the web


class ListeningSession:
    """The clip sets, the results database and the listeners' plans of one running test.

    Safe to call from several threads (the web server's worker pool): plans are built under a
    lock, and SQLite serialises the writes.

    Args:
        real, generated: the two sets (:func:`find_clips`).
        db: the results database (created if missing; :func:`open_results`).
        trials: clips per listener (None: every clip of both sets).
        seconds: serve only the first ``seconds`` of each clip (None: whole clips).

    Raises:
        ValueError: overlapping sets, an unreadable clip, or a db that is not a results database.
    """

    def __init__(self, real: Sequence[Clip], generated: Sequence[Clip], db: str | Path,
                 trials: int | None = None, seconds: float | None = None) -> None:
        import threading

        from audiogen.audio import audio_info

        check_disjoint(real, generated)
        self.real, self.generated = list(real), list(generated)
        self.db = Path(db)
        self.secret = open_results(self.db)["secret"]
        self.trials = trials
        self.seconds = seconds
        self.sample_rate = serving_rate([audio_info(c.path)[0] for c in self.real + self.generated])
        # the browser may fetch a clip in several byte ranges: decode each clip once, not per range
        self._wav = functools.lru_cache(maxsize=16)(blind_wav)
        self._lock = threading.Lock()
        self._plans: dict[str, list[tuple[str, Clip]]] = {}
        self._tokens: dict[str, tuple[str, Clip, int]] = {}  # token: (listener, clip, trial number)

    def plan(self, listener: str) -> list[tuple[str, Clip]]:
        """The listener's trials in order, as (token, clip)."""
        with self._lock:
            if listener not in self._plans:
                clips = plan_trials(self.real, self.generated, listener, self.trials)
                plan = [(trial_token(self.secret, listener, c.path), c) for c in clips]
                self._plans[listener] = plan
                for number, (token, clip) in enumerate(plan, start=1):
                    self._tokens[token] = (listener, clip, number)
            return self._plans[listener]

    def state(self, listener: str) -> dict:
        """Where the listener stands, as the page sees it: nothing names a clip or its set.

        Returns:
            ``{"listener", "answered", "total", "trial"}``, where ``trial`` is ``{"id", "number"}``
            for the first clip of the plan not yet answered, or None when all are.
        """
        plan = self.plan(listener)
        done = answered_paths(self.db, listener)
        answered = sum(clip.path in done for _, clip in plan)
        upcoming = next(((n, token) for n, (token, clip) in enumerate(plan, start=1) if clip.path not in done), None)
        trial = None if upcoming is None else {"id": upcoming[1], "number": upcoming[0]}
        return {"listener": listener, "answered": answered, "total": len(plan), "trial": trial}

    def answer(self, listener: str, token: str, score: int, answer: str, played_seconds: float | None = None) -> dict:
        """Store the listener's answer to a trial and return their new :meth:`state`.

        Raises:
            ValueError: a trial that is not in this listener's plan, or a bad score or answer.
        """
        self.plan(listener)
        entry = self._tokens.get(token)
        if entry is None or entry[0] != listener:
            raise ValueError("no such trial for this listener")
        _, clip, number = entry
        record_answer(self.db, listener, clip, score, answer, number, played_seconds)
        return self.state(listener)

    def audio(self, token: str) -> bytes | None:
        """The blind WAV bytes of a trial, or None for a token no plan holds."""
        entry = self._tokens.get(token)
        return None if entry is None else self._wav(entry[1].path, self.sample_rate, self.seconds)
