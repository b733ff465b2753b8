// The runs page, reloaded when the list changes; a run's page, kept up to date from the
// views its WebSocket sends (see live.py). Text from the task or the model is only ever set
// with textContent: it never becomes HTML.
"use strict";

// The runs page: read the list now and then, and reload when a run starts, moves on or ends.
(function () {
  const body = document.body;
  if (body.dataset.runs === undefined) return;
  setInterval(function () {
    fetch("/api/runs", { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (rows) {
        if (!rows) return;
        const signature = rows.map(function (row) {
          return row.thread_id + ":" + row.status + ":" + row.steps_done;
        }).join(",");
        if (signature !== body.dataset.runs) location.reload();
      })
      .catch(function () {}); // the server is away: try again at the next tick
  }, 3000);
})();

(function () {
  const body = document.body;
  const thread = body.dataset.thread;
  if (!thread) return;

  let delay = 1000;
  let reloading = false;
  let pictureTimer = null;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/runs/" + encodeURIComponent(thread) + "/ws");
    const connection = document.getElementById("connection");
    socket.onopen = function () {
      delay = 1000;
      connection.textContent = "live";
      connection.className = "connection live";
    };
    socket.onmessage = function (message) {
      if (reloading) return;
      const data = JSON.parse(message.data);
      if (data.type === "error") {
        showError(data.error);
      } else if (data.type === "view") {
        show(data.view);
      }
    };
    socket.onclose = function (closing) {
      if (reloading) return;
      connection.className = "connection down";
      if (closing.code === 4404) { // no such run: nothing to wait for
        connection.textContent = "no such run";
        return;
      }
      connection.textContent = "reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  function show(view) {
    if (view.controls !== body.dataset.controls) {
      // The buttons and forms depend on the status and the questions: the server draws them.
      reloading = true;
      location.reload();
      return;
    }
    setText("task", view.task);
    setText("status", view.status);
    document.getElementById("status").className = "status status-" + view.status.replace(/ /g, "-");
    setText("progress", view.steps_done + "/" + view.planned + " steps");
    showError(view.error);
    const answered = view.answer || view.summary;
    document.getElementById("answer-section").hidden = !answered;
    setText("summary", view.summary);
    setText("answer", view.answer);
    showSteps(view.steps);
    const done = view.updated_at + "|" + view.steps_done;
    if (done !== body.dataset.drawn) {
      body.dataset.drawn = done;
      clearTimeout(pictureTimer); // the store has the step a moment after its event
      pictureTimer = setTimeout(function () {
        const picture = document.getElementById("picture");
        const url = new URL(picture.src);
        url.searchParams.set("v", done);
        picture.src = url.toString();
      }, 500);
    }
  }

  function showSteps(steps) {
    const list = document.getElementById("steps");
    const items = steps.map(function (step) {
      const item = element("li", "step step-" + step.status.replace(/ /g, "-"));
      item.dataset.number = step.number;
      const head = element("div", "step-head");
      head.append(element("span", "description", step.description), " ");
      head.append(element("span", "step-status", step.status));
      if (step.duration_ms !== null) head.append(" ", element("span", "duration", duration(step.duration_ms)));
      if (step.cut_short) head.append(" ", element("span", "cut", "cut short"));
      item.append(head);
      if (step.failure) item.append(element("p", "failure", "failed first: " + step.failure));
      if (step.tool_calls.length) {
        const calls = element("ul", "tools");
        step.tool_calls.forEach(function (call) {
          const line = element("li", "");
          line.append(element("code", "", call.tool), " ", element("span", "args", call.args), " → ");
          line.append(element("span", "call-status", call.status));
          if (call.duration_ms !== null) line.append(", " + call.duration_ms + " ms");
          if (call.result) line.append(": ", element("span", "text", call.result));
          calls.append(line);
        });
        item.append(calls);
      }
      if (step.result) item.append(element("pre", "result", step.result));
      return item;
    });
    if (!items.length) items.push(element("li", "empty", "No plan yet."));
    list.replaceChildren.apply(list, items);
  }

  function showError(text) {
    const error = document.getElementById("error");
    error.hidden = !text;
    error.textContent = text || "";
  }

  function setText(id, text) {
    const node = document.getElementById(id);
    if (node.textContent !== text) node.textContent = text;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // As drawing.format_duration writes it: 850 ms, 1.2 s, 2 min 5 s.
  function duration(ms) {
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    const seconds = Math.round(ms / 1000);
    return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
  }

  connect();
})();
