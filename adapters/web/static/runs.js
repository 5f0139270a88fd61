/* The runs list: find a run by id as you type; start a run of one of the server's workflows. */
(function () {
  "use strict";
  var search = document.getElementById("search");
  if (search) search.addEventListener("input", function () {
    var q = search.value.trim().toLowerCase();
    var rows = document.querySelectorAll("#runs tbody tr[data-run]");
    for (var i = 0; i < rows.length; i++) rows[i].hidden = q && rows[i].getAttribute("data-run").toLowerCase().indexOf(q) < 0;
  });
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
