// Live log tail for the Logs page: new entries arrive over server-sent events
// (/api/events, the session cookie authenticates) and are put on top of the table
// when they match the page's filters. Pause keeps them aside; Resume shows them.
// Rows are built with textContent only (no HTML from the server's data).
(function () {
  "use strict";
  var MAX_ROWS = 500;
  var HEAD = 240; // characters shown before "more", as on the server (MESSAGE_HEAD)

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }

  function levelClass(level) {
    return level === "error" ? "bad" : level === "warn" ? "warn" : level === "info" ? "info" : "";
  }

  function isoOf(ns) {
    var d = new Date(Math.floor(ns / 1e6));
    return isNaN(d.getTime()) ? "" : d.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function start() {
    var table = document.getElementById("log-table");
    if (!table || table.getAttribute("data-live") !== "true" || !window.EventSource) { return; }
    var body = table.querySelector("tbody");
    var state = document.getElementById("live-state");
    var dot = document.getElementById("live-dot");
    var toggle = document.getElementById("live-toggle");
    var pendingNote = document.getElementById("live-pending");
    var emptyRow = document.getElementById("log-empty");
    var f = {
      level: table.getAttribute("data-level") || "",
      kind: table.getAttribute("data-kind") || "",
      q: (table.getAttribute("data-q") || "").toLowerCase(),
      execution: table.getAttribute("data-execution") || ""
    };
    var seen = {};
    var maxId = 0;
    var rows = body.querySelectorAll("tr[data-id]");
    for (var i = 0; i < rows.length; i++) {
      var id = Number(rows[i].getAttribute("data-id"));
      seen[id] = true;
      if (id > maxId) { maxId = id; }
    }
    var paused = false;
    var pending = [];

    function matches(e) {
      if (f.level && (e.level || "") !== f.level) { return false; }
      if (f.kind && e.kind !== f.kind) { return false; }
      if (f.execution && e.execution_id !== f.execution) { return false; }
      if (f.q && String(e.message || "").toLowerCase().indexOf(f.q) < 0) { return false; }
      return true;
    }

    function row(e) {
      var tr = el("tr", "new lvl-" + (e.level || "none"));
      tr.setAttribute("data-id", String(e.id));
      var td = el("td", "when");
      var t = el("time", null, isoOf(e.time_ns).replace("T", " ").replace("Z", ""));
      t.setAttribute("datetime", isoOf(e.time_ns));
      t.setAttribute("data-local", "");
      td.appendChild(t);
      tr.appendChild(td);
      td = el("td");
      td.appendChild(el("span", "badge " + levelClass(e.level), e.level || "—"));
      tr.appendChild(td);
      tr.appendChild(el("td", null, e.kind));
      td = el("td");
      if (e.execution_id) {
        var a = el("a", "mono", e.execution_id.slice(0, 8) + "…");
        a.href = "/tasks/" + encodeURIComponent(e.execution_id);
        a.title = e.execution_id;
        td.appendChild(a);
      }
      tr.appendChild(td);
      var msg = String(e.message || "");
      if (msg.length > HEAD) {
        var cell = el("td", "msg");
        var details = el("details");
        details.appendChild(el("summary", null, msg.slice(0, HEAD) + "…"));
        details.appendChild(document.createTextNode(msg));
        cell.appendChild(details);
        tr.appendChild(cell);
      } else {
        tr.appendChild(el("td", "msg", msg));
      }
      return tr;
    }

    function show(list) {
      list.sort(function (a, b) { return a.id - b.id; });
      for (var i = 0; i < list.length; i++) {
        var e = list[i];
        if (seen[e.id]) { continue; }
        seen[e.id] = true;
        if (e.id > maxId) { maxId = e.id; }
        if (!matches(e)) { continue; }
        if (emptyRow) { emptyRow.remove(); emptyRow = null; }
        var tr = row(e);
        body.insertBefore(tr, body.firstChild);
        if (window.tbmLocalTimes) { window.tbmLocalTimes(tr); }
      }
      while (body.rows.length > MAX_ROWS) { body.deleteRow(body.rows.length - 1); }
    }

    function setState(text, on) {
      state.textContent = text;
      dot.className = "dot " + (on ? "on" : "off");
    }

    function notePending() {
      pendingNote.textContent = pending.length ? pending.length + " new while paused" : "";
    }

    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.textContent = paused ? "Resume" : "Pause";
      toggle.setAttribute("aria-pressed", paused ? "true" : "false");
      if (!paused) { show(pending); pending = []; }
      notePending();
      setState(paused ? "Paused" : "Live", !paused);
    });

    // Lines written between rendering and connecting: fetched once the stream is open.
    function catchUp() {
      var params = new URLSearchParams();
      params.set("limit", "200");
      if (f.level) { params.set("level", f.level); }
      if (f.kind) { params.set("kind", f.kind); }
      if (f.execution) { params.set("execution_id", f.execution); }
      var q = table.getAttribute("data-q");
      if (q) { params.set("q", q); }
      fetch("/api/logs?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : { items: [] }; })
        .then(function (page) {
          var fresh = page.items.filter(function (e) { return e.id > maxId; });
          if (paused) { pending = pending.concat(fresh); notePending(); } else { show(fresh); }
        })
        .catch(function () { /* the stream still delivers new lines */ });
    }

    var source = new EventSource("/api/events");
    source.addEventListener("open", function () {
      setState(paused ? "Paused" : "Live", !paused);
      catchUp();
    });
    source.addEventListener("error", function () { setState("Reconnecting…", false); });
    source.addEventListener("entry", function (m) {
      var e;
      try { e = JSON.parse(m.data); } catch (err) { return; }
      if (paused) { pending.push(e); notePending(); } else { show([e]); }
    });
    source.addEventListener("skipped", function () {
      setState("Some lines were skipped (too many at once); reload for all", true);
    });
    source.addEventListener("lagged", function () {
      setState("Fell behind; reconnecting…", false);
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
