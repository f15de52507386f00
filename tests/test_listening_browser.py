"""The listening page in a real headless browser (Debian's chromium): a listener enters a name,
plays a trial, answers it, the row is in SQLite, and a reload resumes at the next clip.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in NUL on file descriptors 3 and 4), so no websocket library is needed. The test
skips where no chromium is installed (``apt-get install chromium``). Set ``LISTENING_SCREENSHOT``
to a PNG path to keep the mid-trial screenshot (docs/figures/listening_test.png is made so).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_listening import audiogen_command, make_sets, secrets_of

from audiogen.listening import load_answers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CLIP_SECONDS = 3.0
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")


def _fd_above_9(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class PipeDevTools:
    """A minimal DevTools protocol client over chromium's debugging pipe.

    Args:
        chromium: the browser executable.
        profile: an empty folder for the browser profile (its ``chromium.log`` keeps the browser's stderr).
        timeout: seconds to wait for any one answer once the browser is up.
        startup_timeout: seconds to wait for the first answer: a cold chromium on a busy 2-core
            machine has taken over 20 s to open its first page.
    """

    def __init__(self, chromium: str, profile: Path, timeout: float = 20.0, startup_timeout: float = 120.0) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the browser's ends above 9, so that putting them on 3 and 4 cannot overwrite one another
        to_browser_r, from_browser_w = (_fd_above_9(fd) for fd in (to_browser_r, from_browser_w))
        flags = ["--headless", "--no-sandbox", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--disable-gpu", "--no-first-run",
                 "--disable-extensions", "--window-size=900,580", "about:blank"]
        # the browser reads commands on fd 3 and writes answers on fd 4: bash puts our pipes there
        # (dash, Debian's sh, takes one-digit descriptors only)
        self.log = profile / "chromium.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', chromium, *flags],
                pass_fds=(to_browser_r, from_browser_w), stdout=subprocess.DEVNULL, stderr=log)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self._next_id = 0
        self._answers: dict[int, dict] = {}
        self._answers_seen = False
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.session: str | None = None

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_browser, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                data = json.loads(message)
                if "id" in data:  # events (no id) are not needed here
                    with self._arrived:
                        self._answers[data["id"]] = data
                        self._arrived.notify_all()

    def send(self, method: str, params: dict | None = None, browser: bool = False) -> dict:
        """Send one command (to the attached page unless ``browser``) and wait for its result."""
        timeout = self.timeout if self._answers_seen else self.startup_timeout
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._next_id in self._answers, timeout):
                raise TimeoutError(f"no answer to {method} in {timeout} s; {self._state()}")
            answer = self._answers.pop(self._next_id)
        self._answers_seen = True
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def _state(self) -> str:
        """Whether the browser still runs, and the end of what it wrote to stderr, for a failure message."""
        exited = self.proc.poll()
        tail = self.log.read_text(errors="replace").strip().splitlines()[-5:] if self.log.exists() else []
        status = "chromium is still running" if exited is None else f"chromium exited with {exited}"
        return status + (": " + " | ".join(tail) if tail else ", nothing on its stderr")

    def open_page(self, width: int = 900, height: int = 580) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 browser=True)["sessionId"]
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0):
        """Poll until the expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"still false after {timeout} s: {expression}")

    def type_into(self, selector: str, text: str) -> None:
        """Focus a field and type into it as a keyboard would (Input.insertText)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", {"text": text})

    def click(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

    def close(self) -> None:
        try:
            if not self._answers_seen:  # it never came up: do not wait for it to answer a close
                raise TimeoutError("chromium never answered")
            self.send("Browser.close", browser=True)
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait(timeout=10)
        finally:
            os.close(self._to_browser)


@pytest.fixture()
def server(tmp_path):
    real, generated = make_sets(tmp_path, n_real=2, n_generated=2, seconds=CLIP_SECONDS)
    db = tmp_path / "results.sqlite"
    proc = subprocess.Popen(audiogen_command() + ["listen", "--real", str(real), "--generated", str(generated),
                                                  "--db", str(db), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        url = next((word for word in lines[1].split() if word.startswith("http://")), None)
        assert url, f"no address in {lines!r}"
        yield {"url": url, "db": db, "root": tmp_path}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _started_browser(tmp_path_factory, attempts: int = 2) -> PipeDevTools:
    """A browser with a page open. A start that hangs is retried once with a fresh profile: the
    failure under test is the page's, not chromium's start-up on a loaded machine."""
    for attempt in range(1, attempts + 1):
        devtools = PipeDevTools(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
        try:
            devtools.open_page()
            return devtools
        except TimeoutError:
            devtools.close()
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


@pytest.fixture()
def browser(tmp_path_factory):
    devtools = _started_browser(tmp_path_factory)
    try:
        yield devtools
    finally:
        devtools.close()


def test_a_trial_played_and_answered_in_chromium_lands_in_sqlite(server, browser, tmp_path):
    page = browser
    page.send("Page.navigate", {"url": server["url"]})
    page.wait_for("document.readyState === 'complete' && !!document.getElementById('listener')")
    page.type_into("#listener", "ann")
    page.click("#start")
    page.wait_for("!document.getElementById('trial').hidden")
    assert page.evaluate("document.getElementById('progress').textContent") == "Clip 1 of 4"

    # the clip loads and plays; answering is refused until it has been played
    assert page.evaluate("document.getElementById('submit').disabled")
    page.evaluate("document.getElementById('player').play().then(() => true)")
    page.wait_for("document.getElementById('player').currentTime > 1")  # a second of it has played
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(CLIP_SECONDS, abs=0.01)
    page.click("input[name=score][value='4']")
    page.click("input[name=answer][value='generated']")
    page.wait_for("!document.getElementById('submit').disabled")

    leaks = secrets_of(server["root"])
    dom = page.evaluate("document.documentElement.outerHTML")
    assert not [word for word in leaks if word in dom]
    shot = page.screenshot()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 5000
    (tmp_path / "listening_test.png").write_bytes(shot)
    if os.environ.get("LISTENING_SCREENSHOT"):
        Path(os.environ["LISTENING_SCREENSHOT"]).write_bytes(shot)

    page.click("#submit")
    page.wait_for("document.getElementById('progress').textContent.startsWith('Clip 2 of 4')")
    (row,) = load_answers(server["db"])
    assert (row["listener"], row["score"], row["answer"], row["trial_number"]) == ("ann", 4, "generated", 1)
    assert row["played_seconds"] > 0

    # a reload (the tab closed and opened again) resumes at the next clip, the name remembered
    page.evaluate("window.beforeReload = true")
    page.send("Page.reload")
    page.wait_for("!window.beforeReload && document.readyState === 'complete'"
                  " && document.getElementById('listener').value === 'ann'")
    page.click("#start")
    page.wait_for("!document.getElementById('trial').hidden")
    assert page.evaluate("document.getElementById('progress').textContent") == "Clip 2 of 4 (1 answered)"
