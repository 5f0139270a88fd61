/* The run page: draws the timeline, the node panel and the waiting list from the run's data (JSON in
   the page), and on a live page follows the run's server-sent events and sends answers and cancels.
   Plain JavaScript, no library: the page must work from a file with no network (flowcore report). */
var FlowcoreRun = (function () {
  "use strict";
  var data, live = false, selected = null, source = null;
  var ENDED = { succeeded: 1, failed: 1, cancelled: 1 };
  var OPEN = { pending: 1, running: 1, waiting: 1 };
  var MAX_ROWS_IN_PANEL = 50;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "cls") node.className = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]);
      else node.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function secs(s) {
    if (s === null || s === undefined || isNaN(s)) return "";
    if (s < 1) return (s * 1000).toFixed(0) + " ms";
    if (s < 120) return s.toFixed(2) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function clock(t) {
    if (typeof t !== "number") return "";
    var d = new Date(t * 1000), p = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function pretty(value) {
    var text = JSON.stringify(value, null, 2);
    return text === undefined ? String(value) : text;
  }

  function nowSeconds() { return live ? Date.now() / 1000 : data.now; }

  function badge(status) { return el("span", { cls: "badge s-" + status, text: status }); }

  // -- header ------------------------------------------------------------------------------------

  function renderHead() {
    var run = data.run;
    var st = $("run-status");
    st.className = "badge big s-" + run.status;
    st.textContent = run.status;
    $("run-started").textContent = run.started_at ? "started " + clock(run.started_at) : "not started yet";
    $("run-took").textContent = run.finished_at && run.started_at ? "took " + secs(run.finished_at - run.started_at) : "";
    var err = $("run-error");
    if (run.error) {
      err.hidden = false;
      err.className = "error" + (run.error.type === "cancelled" ? " cancelled" : "");
      err.textContent = run.error.type === "cancelled" && !run.error.node ? "Cancelled: " + run.error.message
        : (run.error.node || "run") + ": " + run.error.type + ": " + run.error.message;
    } else err.hidden = true;
    var cancel = $("cancel-run");
    if (cancel) cancel.hidden = !!ENDED[run.status];
    var liveMark = $("live");
    if (liveMark && ENDED[run.status]) { liveMark.textContent = "● ended"; liveMark.className = "ended"; }
  }

  // -- graph -------------------------------------------------------------------------------------

  function renderGraph() {
    var byId = {};
    data.graph.nodes.forEach(function (n) { byId[n.id] = n; });
    var groups = document.querySelectorAll("#graph .node");
    for (var i = 0; i < groups.length; i++) {
      var g = groups[i], n = byId[g.getAttribute("data-node")];
      if (!n) continue;
      g.setAttribute("class", "node s-" + n.status + (n.id === selected ? " selected" : ""));
      var count = g.querySelector(".ncount");
      count.textContent = n.instances > 1 ? (n.counts.succeeded || 0) + "/" + n.instances : n.status;
      var title = g.querySelector("title") || g.appendChild(document.createElementNS("http://www.w3.org/2000/svg", "title"));
      title.textContent = n.id + " (" + n.type + "): " + Object.keys(n.counts).map(function (s) {
        return n.counts[s] + " " + s; }).join(", ");
    }
  }

  // -- waiting for an answer ---------------------------------------------------------------------

  // An instance still waiting keeps its entry from one update to the next, so what a person typed
  // there, the focus and a "sending…" survive the redraws while the rest of the run goes on.
  function renderWaiting() {
    var box = $("waiting"), list = $("waiting-list");
    var waiting = live ? data.waiting : [];
    box.hidden = waiting.length === 0;
    var shown = {}, entries = list.querySelectorAll(".ask");
    for (var i = 0; i < entries.length; i++) shown[entries[i].getAttribute("data-waiting")] = entries[i];
    var wanted = waiting.slice(0, 20).map(function (w) { return shown[w.name] || askEntry(w); });
    wanted.forEach(function (entry, i) {
      if (list.children[i] !== entry) list.insertBefore(entry, list.children[i] || null);
    });
    while (list.children.length > wanted.length) list.removeChild(list.lastChild);
    if (waiting.length > 20) list.appendChild(el("p", { cls: "muted", text: (waiting.length - 20) + " more wait for answers." }));
  }

  function askEntry(w) {
    var note = el("input", { cls: "note", placeholder: w.choices && w.choices.length ? "the answer, as JSON or text (empty: the choice's name)" : "the input, as JSON or text", spellcheck: "false" });
    var message = el("span", { cls: "message", role: "status" });
    var buttons = el("div", { cls: "choices" });
    function send(port, button) {
      var text = note.value.trim(), input = port;
      if (text) { try { input = JSON.parse(text); } catch (e) { input = text; } }
      var body = { node: w.node, item: w.item, input: input };
      if (port) body.port = port;
      button.disabled = true;
      message.textContent = "sending…";
      post("/answers", body, message, function () { button.disabled = false; }, "answered");
    }
    if (w.choices && w.choices.length) {
      w.choices.forEach(function (choice, i) {
        var b = el("button", { cls: i === 0 ? "primary" : (/^(reject|deny|no|decline|cancel)/i.test(choice) ? "danger" : ""),
          "data-choice": choice, text: choice });
        b.addEventListener("click", function () { send(choice, b); });
        buttons.appendChild(b);
      });
    } else {
      var b = el("button", { cls: "primary", text: "Send" });
      b.addEventListener("click", function () { send(null, b); });
      buttons.appendChild(b);
    }
    return el("div", { cls: "ask", "data-waiting": w.name },
      el("div", { cls: "ask-head" }, el("strong", { text: w.name }), " ", el("span", { cls: "muted", text: w.type })),
      w.prompt ? el("p", { cls: "prompt", text: w.prompt }) : null,
      el("div", { cls: "ask-row" }, note, buttons), message);
  }

  // -- timeline ----------------------------------------------------------------------------------

  function renderTimeline() {
    var box = $("timeline"), run = data.run;
    box.textContent = "";
    var bars = data.attempts;
    var t0 = run.started_at, t1 = run.finished_at || nowSeconds();
    bars.forEach(function (b) { if (t0 === null || (b.started_at !== null && b.started_at < t0)) t0 = b.started_at; });
    var note = $("timeline-note");
    note.textContent = data.attempts_total > bars.length ? "(the first " + bars.length + " of " + data.attempts_total + " bars)" : "";
    if (!bars.length || t0 === null) {
      box.appendChild(el("p", { cls: "muted", text: run.status === "queued" ? "The run has not started yet." : "Nothing has run yet." }));
      return;
    }
    var tries = {};
    bars.forEach(function (b) { if (b.kind === "attempt") tries[b.name] = (tries[b.name] || 0) + 1; });
    var span = Math.max(t1 - t0, 0.001);
    var axis = el("div", { cls: "axis" }, el("span", { text: "0" }), el("span", { text: secs(span / 2) }), el("span", { text: secs(span) }));
    box.appendChild(el("div", { cls: "trow axis-row" }, el("div", { cls: "tlabel" }), axis));
    bars.forEach(function (b) {
      var end = b.finished_at === null ? t1 : b.finished_at;
      var left = (b.started_at - t0) / span * 100, width = Math.max((end - b.started_at) / span * 100, 0.4);
      var label = b.kind === "wait" ? b.name + " · waits" : b.name + (b.attempt > 1 || tries[b.name] > 1 ? " #" + b.attempt : "");
      var tip = label + ": " + b.status + ", " + secs(end - b.started_at) + (b.finished_at === null ? " so far" : "") +
        (b.error ? " — " + b.error.type + ": " + b.error.message : "") + (b.kind === "wait" ? " (waits for " + b.waits_for + ")" : "");
      var bar = el("div", { cls: "bar s-" + b.status + (b.kind === "wait" ? " wait" : "") + (b.finished_at === null ? " open" : ""),
        style: "left:" + left.toFixed(3) + "%;width:" + Math.min(width, 100 - left).toFixed(3) + "%", title: tip,
        "data-kind": b.kind });
      var row = el("div", { cls: "trow" + (b.node === selected ? " selected" : ""), "data-node": b.node },
        el("div", { cls: "tlabel", title: label, text: label }), el("div", { cls: "track" }, bar),
        el("div", { cls: "tdur", text: secs(end - b.started_at) }));
      row.addEventListener("click", function () { select(b.node); });
      box.appendChild(row);
    });
  }

  // -- node panel --------------------------------------------------------------------------------

  function section(title, body) { return el("div", { cls: "psec" }, el("h4", { text: title }), body); }

  function renderPanel() {
    var body = $("panel-body"), title = $("panel-title");
    if (!selected) return;
    var node = data.graph.nodes.filter(function (n) { return n.id === selected; })[0];
    if (!node) return;
    title.textContent = node.id;
    body.className = "";
    body.textContent = "";
    var records = data.run.nodes.filter(function (r) { return r.node === selected; });
    var head = el("div", { cls: "phead" }, el("span", { cls: "muted", text: node.type }), " ", badge(node.status),
      records.length > 1 ? el("span", { cls: "muted", text: " " + records.length + " instances" }) : null);
    body.appendChild(head);
    var open = records.some(function (r) { return OPEN[r.status]; });
    var actions = nodeActions(node.id, live && open && !ENDED[data.run.status]);
    if (actions) body.appendChild(actions);
    records.slice(0, MAX_ROWS_IN_PANEL).forEach(function (r) {
      var name = r.node + (r.item ? r.item.map(function (i) { return "[" + i + "]"; }).join("") : "");
      var inst = data.instances[name] || {};
      var box = el("div", { cls: "instance" });
      box.appendChild(el("div", { cls: "ihead" }, el("strong", { text: name }), " ", badge(r.status),
        el("span", { cls: "muted", text: " " + r.attempts + " attempt" + (r.attempts === 1 ? "" : "s") +
          (r.started_at && r.finished_at ? " · " + secs(r.finished_at - r.started_at) : "") })));
      if (r.child_run) box.appendChild(section("Child run", childLink(r.child_run)));
      if (inst.has_input) box.appendChild(section("Input", el("pre", { text: pretty(inst.input) })));
      if (r.ports && Object.keys(r.ports).length) {
        var ports = Object.keys(r.ports);
        box.appendChild(section(ports.length === 1 && ports[0] === "result" ? "Output" : "Output (by port)",
          el("pre", { text: pretty(ports.length === 1 && ports[0] === "result" ? r.output : r.ports) })));
      }
      if (r.error) {
        box.appendChild(section(r.error.type === "cancelled" ? "Cancelled" : "Error", el("div", { cls: "errbox" + (r.error.type === "cancelled" ? " cancelled" : "") },
          el("div", { text: r.error.type === "cancelled" ? r.error.message : r.error.type + ": " + r.error.message }),
          r.error.traceback ? el("pre", { cls: "tb", text: r.error.traceback }) : null)));
      }
      // every attempt from the record's history: an earlier attempt's error (and traceback), and a
      // result that came after its attempt was cancelled or timed out ("late": it changed nothing else)
      var tries = r.history || [];
      if (tries.length) {
        var table = el("table", { cls: "attempts" }, el("tr", {}, el("th", { text: "#" }), el("th", { text: "status" }),
          el("th", { text: "started" }), el("th", { text: "took" }), el("th", { text: "error / output" })));
        tries.forEach(function (a) {
          var said = a.error ? a.error.type + ": " + a.error.message
            : a.ports ? pretty(Object.keys(a.ports).length === 1 && "result" in a.ports ? a.ports.result : a.ports) : "";
          var detail = el("td", { cls: "muted" }, el("div", { text: said }),
            a.error && a.error.traceback && (a.late || a.attempt !== r.attempts || r.status !== "failed") ?
              el("details", {}, el("summary", { text: "traceback" }), el("pre", { cls: "tb", text: a.error.traceback })) : null);
          table.appendChild(el("tr", { cls: a.late ? "late" : "" }, el("td", { text: String(a.attempt) }),
            el("td", {}, badge(a.status), a.late ? el("span", { cls: "muted", text: " late" }) : null),
            el("td", { text: a.started_at ? "+" + secs(a.started_at - data.run.started_at) : "" }),
            el("td", { text: a.finished_at && a.started_at ? secs(a.finished_at - a.started_at) : "…" }),
            detail));
        });
        box.appendChild(section("Attempts", table));
      }
      if (inst.logs && inst.logs.length) box.appendChild(section("Log", el("pre", { cls: "log", text: inst.logs.join("\n") })));
      body.appendChild(box);
    });
    if (records.length > MAX_ROWS_IN_PANEL) body.appendChild(el("p", { cls: "muted", text: (records.length - MAX_ROWS_IN_PANEL) + " more instances." }));
  }

  // The node's "Cancel node" button and what became of a cancel, kept while the same node stays
  // selected: a live update between the button's two clicks, or the one a cancel brings, redraws
  // the panel without forgetting the first click or the outcome.
  var kept = { node: null, actions: null };

  function nodeActions(id, cancellable) {
    if (kept.node !== id) {
      var message = el("span", { cls: "message", role: "status" });
      var cancel = el("button", { cls: "danger small", id: "cancel-node", text: "Cancel node" });
      confirming(cancel, "Cancel node", function () {
        post("/cancel", { node: id }, message, function () { cancel.disabled = false; }, "node cancelled");
      });
      kept = { node: id, actions: el("div", { cls: "pactions" }, cancel, message) };
    }
    var said = kept.actions.querySelector(".message").textContent !== "";
    kept.actions.querySelector("#cancel-node").hidden = !cancellable;
    return cancellable || said ? kept.actions : null;
  }

  // A child run's page, where it is answered and followed (a report is one file: the id only).
  function childLink(runId) {
    if (!live) return el("code", { text: runId });
    return el("a", { cls: "child-run", href: "/runs/" + runId.split("/").map(encodeURIComponent).join("/") }, el("code", { text: runId }));
  }

  function select(id) {
    selected = id;
    renderGraph();
    renderPanel();
    var rows = document.querySelectorAll("#timeline .trow");
    for (var i = 0; i < rows.length; i++) rows[i].classList.toggle("selected", rows[i].getAttribute("data-node") === id);
  }

  // -- actions -----------------------------------------------------------------------------------

  function confirming(button, label, action) {
    var timer = null;
    button.addEventListener("click", function () {
      if (!button.classList.contains("confirm")) {
        button.classList.add("confirm");
        button.textContent = "Click again to confirm";
        timer = setTimeout(function () { button.classList.remove("confirm"); button.textContent = label; }, 4000);
        return;
      }
      clearTimeout(timer);
      button.classList.remove("confirm");
      button.textContent = label;
      button.disabled = true;
      action();
    });
  }

  function post(path, body, message, done, doneText) {
    var url = "/api/runs/" + encodeURIComponent(data.run.run_id) + path;
    fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), credentials: "same-origin" })
      .then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (json) {
          if (res.status === 200) { message.textContent = doneText; if (json.run) update({ run: json.run }); }
          else if (res.status === 202) message.textContent = "sent: it is applied when a worker drives the run";
          else message.textContent = (json.detail || ("failed (" + res.status + ")"));
          message.className = "message" + (res.status >= 400 ? " bad" : " good");
          done();
        });
      })
      .catch(function (e) { message.textContent = "could not reach the server: " + e; message.className = "message bad"; done(); });
  }

  // -- updates -----------------------------------------------------------------------------------

  function update(fresh) {
    if (fresh.graph) data = fresh;
    else if (fresh.run) data.run = fresh.run;
    renderAll();
  }

  function renderAll() {
    renderHead();
    renderGraph();
    renderWaiting();
    renderTimeline();
    renderPanel();
  }

  function follow() {
    if (!window.EventSource || ENDED[data.run.status]) return;
    source = new EventSource("/api/runs/" + encodeURIComponent(data.run.run_id) + "/events");
    source.addEventListener("run", function (e) { update(JSON.parse(e.data)); });
    source.addEventListener("end", function () { source.close(); });
    source.onerror = function () { var m = $("live"); if (m && !ENDED[data.run.status]) m.textContent = "● reconnecting"; };
    source.onopen = function () { var m = $("live"); if (m && !ENDED[data.run.status]) m.textContent = "● live"; };
  }

  function start(isLive) {
    live = isLive;
    data = JSON.parse($("run-data").textContent);
    var nodes = document.querySelectorAll("#graph .node");
    for (var i = 0; i < nodes.length; i++) {
      (function (g) {
        g.addEventListener("click", function () { select(g.getAttribute("data-node")); });
        g.addEventListener("keydown", function (e) { if (e.key === "Enter") select(g.getAttribute("data-node")); });
      })(nodes[i]);
    }
    var cancel = $("cancel-run");
    if (cancel) {
      var message = el("span", { cls: "message", role: "status" });
      cancel.parentNode.appendChild(message);
      confirming(cancel, "Cancel run", function () { post("/cancel", {}, message, function () { cancel.disabled = false; }, "run cancelled"); });
    }
    var first = data.waiting.length ? data.waiting[0].node : (data.run.error && data.run.error.node) || null;
    if (first) selected = first;
    renderAll();
    if (live) {
      follow();
      setInterval(function () { if (!ENDED[data.run.status]) renderTimeline(); }, 1000);  // open bars grow
    }
  }

  return { start: start };
})();
