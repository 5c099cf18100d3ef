// The live parts of the dashboard, over server-sent events (/api/events; the session
// cookie authenticates):
// - Logs page: new entries go on top of the table when they match the page's filters.
//   Pause keeps them aside; Resume shows them.
// - Overview: the health cards (container, Docker, slots, last log line) follow the
//   node's status and the age of its last line; the counts, charts and latest tasks
//   (the page's [data-refresh] blocks) are fetched again when a task or invoice is
//   stored, at most every 5 s, and every minute (hours and days roll over).
// Text is set with textContent only (no HTML from the server's data).
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
    source.addEventListener("removed", function (m) {
      // Shorter versions of entries the node went on printing after a pause; the longer
      // ones come as entry events.
      var r;
      try { r = JSON.parse(m.data); } catch (err) { return; }
      var ids = r.entry_ids || [];
      pending = pending.filter(function (e) { return ids.indexOf(e.id) < 0; });
      for (var i = 0; i < ids.length; i++) {
        var tr = body.querySelector('tr[data-id="' + Number(ids[i]) + '"]');
        if (tr) { tr.remove(); }
      }
      notePending();
    });
    source.addEventListener("skipped", function () {
      setState("Some lines were skipped (too many at once); reload for all", true);
    });
    source.addEventListener("lagged", function () {
      setState("Fell behind; reconnecting…", false);
    });
  }

  function age(secs) {
    if (secs < 2) { return "just now"; }
    if (secs < 120) { return secs + " s ago"; }
    if (secs < 7200) { return Math.floor(secs / 60) + " min ago"; }
    if (secs < 172800) { return Math.floor(secs / 3600) + " h ago"; }
    return Math.floor(secs / 86400) + " days ago";
  }

  // Re-renders the page's [data-refresh] blocks from a fresh copy of the page (the
  // server renders them; nothing is built here from the server's data). Returns the
  // function that asks for a refresh: at most one every MIN_GAP ms.
  function refresher() {
    var MIN_GAP = 5000;
    if (!document.querySelector("[data-refresh]") || !window.fetch || !window.DOMParser) {
      return function () {};
    }
    var timer = null;
    var last = 0;
    function refresh() {
      timer = null;
      last = Date.now();
      fetch(location.pathname + location.search, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var doc = new DOMParser().parseFromString(html, "text/html");
          var blocks = document.querySelectorAll("[data-refresh]");
          for (var i = 0; i < blocks.length; i++) {
            var fresh = doc.getElementById(blocks[i].id);
            if (!fresh) { continue; }
            var node = document.importNode(fresh, true);
            blocks[i].parentNode.replaceChild(node, blocks[i]);
            if (window.tbmLocalTimes) { window.tbmLocalTimes(node); }
            if (window.tbmNewestInView) { window.tbmNewestInView(node); }
          }
        })
        .catch(function () { /* the next event or minute tries again */ });
    }
    return function soon() {
      if (timer) { return; }
      timer = setTimeout(refresh, Math.max(500, MIN_GAP - (Date.now() - last)));
    };
  }

  function overview() {
    var section = document.querySelector("[data-live-overview]");
    if (!section || !window.EventSource) { return; }
    var soon = refresher();
    setInterval(soon, 60000);
    // The server's clock, so ages are right even if this computer's clock is not.
    var skewMs = Number(section.getAttribute("data-now-ns")) / 1e6 - Date.now();
    var lastNs = Number(section.getAttribute("data-last-ns")) || 0;
    function card(key, value, detail, state) {
      var box = section.querySelector('[data-card="' + key + '"]');
      if (!box) { return; }
      var v = box.querySelector(".value");
      if (v && value !== null) { v.textContent = value; }
      var d = box.querySelector(".detail");
      if (d && detail !== null) { d.textContent = detail; }
      if (state !== null) { box.className = "card " + state; }
    }
    function tick() {
      if (!lastNs) { return; }
      var secs = Math.max(0, Math.floor((Date.now() + skewMs - lastNs / 1e6) / 1000));
      card("last_line", age(secs), null, secs > 600 ? "warn" : "ok");
    }
    setInterval(tick, 1000);
    var source = new EventSource("/api/events");
    source.addEventListener("task", soon);
    source.addEventListener("invoice", soon);
    source.addEventListener("entry", function (m) {
      try {
        var e = JSON.parse(m.data);
        if (e.time_ns > lastNs) { lastNs = e.time_ns; tick(); }
      } catch (err) { /* ignore a malformed event */ }
    });
    source.addEventListener("status", function (m) {
      var s;
      try { s = JSON.parse(m.data); } catch (err) { return; }
      var node = s.node;
      if (node && node.slots_used !== null && node.slots_used !== undefined) {
        var total = node.slots_total === null || node.slots_total === undefined ? 4 : node.slots_total;
        card("slots", node.slots_used + "/" + total, null, null);
      }
      var src = s.source;
      if (!src || src.kind !== "docker") { return; }
      var c = src.container || {};
      if (c.state === "running") { card("container", "Running", c.name, "ok"); }
      if (c.state === "stopped") {
        card("container", "Stopped", c.name + (c.exit_code === null || c.exit_code === undefined ? "" : ", exit code " + c.exit_code), "bad");
      }
      if (c.state === "missing") { card("container", "Not found", "no container named " + c.name, "bad"); }
      if (c.state === "created") { card("container", "Not started", c.name + ", created but never started", "bad"); }
      var conn = src.connection || {};
      if (conn.state === "connected") { card("docker", "Connected", "Docker " + conn.version, "ok"); }
      if (conn.state === "connecting") { card("docker", "Connecting", "", "warn"); }
      if (conn.state === "unreachable") { card("docker", "Unreachable", conn.reason, "bad"); }
    });
  }

  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("DOMContentLoaded", overview);
})();
