/* The runs list: find a run by id as you type; start a run of one of the server's workflows; the
   list follows the store (new runs appear, statuses change) without a reload. */
(function () {
  "use strict";
  var POLL_MS = 2000;
  var search = document.getElementById("search");
  var body = document.querySelector("#runs tbody");

  function filterRows() {
    var q = search ? search.value.trim().toLowerCase() : "";
    var rows = document.querySelectorAll("#runs tbody tr[data-run]");
    for (var i = 0; i < rows.length; i++) rows[i].hidden = !!q && rows[i].getAttribute("data-run").toLowerCase().indexOf(q) < 0;
  }
  if (search) search.addEventListener("input", filterRows);

  function clock(t) {
    if (typeof t !== "number") return "";
    var d = new Date(t * 1000), p = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function took(r) {
    if (typeof r.started_at !== "number" || typeof r.finished_at !== "number") return "";
    var s = r.finished_at - r.started_at;
    return s < 120 ? s.toFixed(2) + " s" : (s / 60).toFixed(1) + " min";
  }
  function cell(text, cls) { var td = document.createElement("td"); if (cls) td.className = cls; td.textContent = text; return td; }
  function row(r) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-run", r.run_id);
    var link = document.createElement("a");
    link.href = "/runs/" + encodeURIComponent(r.run_id);
    link.textContent = r.run_id;
    var first = document.createElement("td");
    first.appendChild(link);
    var status = document.createElement("td"), badge = document.createElement("span");
    status.appendChild(badge);
    tr.appendChild(first); tr.appendChild(cell(r.workflow)); tr.appendChild(status);
    tr.appendChild(cell("", "muted")); tr.appendChild(cell("", "num muted"));
    return tr;
  }
  function fill(tr, r) {
    var badge = tr.children[2].firstChild;
    badge.className = "badge s-" + r.status;
    badge.textContent = r.status;
    tr.children[3].textContent = clock(r.started_at);
    tr.children[4].textContent = took(r);
  }

  function poll() {
    var params = new URLSearchParams(window.location.search), query = new URLSearchParams();
    ["status", "workflow"].forEach(function (k) { if (params.get(k)) query.set(k, params.get(k)); });
    query.set("limit", String(body.querySelectorAll("tr[data-run]").length + 50));
    fetch("/api/runs?" + query.toString(), { credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.json() : []; })
      .then(function (runs) {
        var known = {};
        var rows = body.querySelectorAll("tr[data-run]");
        for (var i = 0; i < rows.length; i++) known[rows[i].getAttribute("data-run")] = rows[i];
        runs.forEach(function (r) {  // oldest first: each new one goes on top
          var tr = known[r.run_id];
          if (!tr) {
            tr = row(r);
            body.insertBefore(tr, body.firstChild);
            var empty = body.querySelector("td.empty");
            if (empty) empty.parentNode.remove();
          }
          fill(tr, r);
        });
        filterRows();
      })
      .catch(function () {})
      .then(function () { setTimeout(poll, POLL_MS); });
  }
  if (body) setTimeout(poll, POLL_MS);

  var form = document.getElementById("start-form");
  if (form) form.addEventListener("submit", function (e) {
    e.preventDefault();
    var message = document.getElementById("start-message");
    var name = document.getElementById("start-workflow").value;
    var text = document.getElementById("start-trigger").value.trim(), trigger = null;
    if (text) { try { trigger = JSON.parse(text); } catch (err) { message.textContent = "the trigger is not JSON: " + err.message; message.className = "message bad"; return; } }
    fetch("/api/workflows/" + encodeURIComponent(name) + "/runs", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ trigger: trigger }) })
      .then(function (res) { return res.json().then(function (json) {
        if (res.status === 201) window.location = "/runs/" + encodeURIComponent(json.run_id);
        else { message.textContent = json.detail || ("failed (" + res.status + ")"); message.className = "message bad"; }
      }); });
  });
})();
