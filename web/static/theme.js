// Theme: follows the system unless the operator picked one with the toggle (kept in
// localStorage). Loaded in <head> so the page never flashes the wrong theme. Also marks
// the page as scripted (shows .js-only controls) and shows <time> values in local time.
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");
  var saved = null;
  try { saved = localStorage.getItem("tbm-theme"); } catch (e) { /* private mode */ }
  if (saved === "light" || saved === "dark") { root.setAttribute("data-theme", saved); }

  function current() {
    var t = root.getAttribute("data-theme");
    if (t) { return t; }
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function localTimes(scope) {
    var nodes = (scope || document).querySelectorAll("time[datetime][data-local]");
    for (var i = 0; i < nodes.length; i++) {
      var d = new Date(nodes[i].getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        nodes[i].title = nodes[i].getAttribute("datetime");
        var sameYear = d.getFullYear() === new Date().getFullYear();
        nodes[i].textContent = d.toLocaleString(undefined, {
          year: sameYear ? undefined : "numeric", month: "short", day: "numeric",
          hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
        });
      }
    }
  }
  window.tbmLocalTimes = localTimes;

  // Charts wider than the screen (a phone) scroll sideways: start at the right end,
  // where the newest hours and days are.
  function newestInView(scope) {
    var boxes = (scope || document).querySelectorAll(".chart-box");
    for (var i = 0; i < boxes.length; i++) {
      boxes[i].scrollLeft = boxes[i].scrollWidth;
    }
  }
  window.tbmNewestInView = newestInView;

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    newestInView(document);
    // On a phone the navigation scrolls sideways: keep the current page's link in view.
    var here = document.querySelector(".nav [aria-current]");
    var nav = here && here.parentNode;
    if (nav && nav.scrollWidth > nav.clientWidth) {
      nav.scrollLeft = here.offsetLeft - (nav.clientWidth - here.offsetWidth) / 2;
    }
    var button = document.getElementById("theme-toggle");
    if (!button) { return; }
    function label() {
      var next = current() === "dark" ? "light" : "dark";
      button.textContent = next === "dark" ? "Dark theme" : "Light theme";
      button.setAttribute("aria-label", "Switch to the " + next + " theme");
    }
    label();
    button.addEventListener("click", function () {
      var next = current() === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("tbm-theme", next); } catch (e) { /* private mode */ }
      label();
    });
  });
})();
