// The listening test page. The server names a trial only by an opaque id: nothing here, in the
// DOM or in a URL says which clip, folder or set a trial plays.
"use strict";

const $ = (id) => document.getElementById(id);
let listener = null;
let trial = null;
let played = false;

function show(section) {
  for (const id of ["welcome", "trial", "done"]) $(id).hidden = id !== section;
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function chosen(name) {
  const input = document.querySelector(`input[name="${name}"]:checked`);
  return input ? input.value : null;
}

function updateSubmit() {
  $("submit").disabled = !(played && chosen("score") && chosen("answer"));
}

function playedSeconds() {
  const ranges = $("player").played;
  let total = 0;
  for (let i = 0; i < ranges.length; i++) total += ranges.end(i) - ranges.start(i);
  return total;
}

function showState(state) {
  listener = state.listener;
  trial = state.trial;
  if (!trial) {
    show("done");
    return;
  }
  for (const input of document.querySelectorAll("#trial input")) input.checked = false;
  played = false;
  $("progress").textContent = `Clip ${trial.number} of ${state.total}` +
    (state.answered ? ` (${state.answered} answered)` : "");
  $("player").src = `/audio/${encodeURIComponent(trial.id)}`;
  updateSubmit();
  show("trial");
}

$("start-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say("");
  try {
    const state = await post("/api/start", {listener: $("listener").value});
    localStorage.setItem("audiogen-listener", state.listener);
    showState(state);
  } catch (err) {
    say(err.message, true);
  }
});

$("submit").addEventListener("click", async () => {
  $("submit").disabled = true;
  try {
    const state = await post("/api/answer", {
      listener, trial: trial.id, score: Number(chosen("score")), answer: chosen("answer"),
      played_seconds: playedSeconds(),
    });
    say(`Saved: ${state.answered} of ${state.total} answered.`);
    showState(state);
  } catch (err) {
    say(`Not saved: ${err.message}. Try again.`, true);
    updateSubmit();
  }
});

$("player").addEventListener("play", () => { played = true; updateSubmit(); });
for (const input of document.querySelectorAll("#trial input")) input.addEventListener("change", updateSubmit);

$("listener").value = localStorage.getItem("audiogen-listener") || "";
