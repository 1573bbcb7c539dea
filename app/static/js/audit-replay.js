/* Audit replay: step through a case's events on the diagram without reloading.
 * The page works without JavaScript (every control is a link to ?seq=N); this script
 * re-marks the diagram drawn by case-diagram.js (container.gcShowMarkers) with the
 * markers the page embeds for every event, and keeps the controls and list in step. */
(function () {
  "use strict";

  function start() {
    var stepper = document.querySelector(".stepper");
    var dataNode = document.getElementById("audit-markers");
    if (!stepper || !dataNode) { return; }
    var markers = JSON.parse(dataNode.textContent || "{}");
    var events = Array.prototype.slice.call(document.querySelectorAll(".audit-timeline .event"));
    var seqs = events.map(function (li) { return li.getAttribute("data-seq"); });
    var container = document.getElementById("case-diagram");
    var select = document.getElementById("step-select");
    var label = stepper.querySelector(".step-label");
    var position = stepper.querySelector(".step-position");
    var current = stepper.getAttribute("data-selected");

    function describe(seq) {
      var li = document.getElementById("event-" + seq);
      if (!li) { return "#" + seq; }
      var kind = li.querySelector(".event-kind");
      var summary = li.querySelector(".event-summary");
      return "#" + seq + " " + (kind ? kind.textContent : "") + (summary ? " " + summary.textContent : "");
    }

    function show(seq, push) {
      var index = seqs.indexOf(String(seq));
      if (index < 0) { return; }
      current = String(seq);
      stepper.setAttribute("data-selected", current);
      events.forEach(function (li) { li.classList.toggle("selected", li.getAttribute("data-seq") === current); });
      if (label) { label.textContent = describe(current); }
      if (position && position.firstChild && position.firstChild.nodeType === 3) {
        position.firstChild.textContent = position.firstChild.textContent.replace(/\d+(\D+)\d+/, (index + 1) + "$1" + seqs.length);
      }
      if (select) { select.value = current; }
      var links = { first: seqs[0], prev: seqs[Math.max(0, index - 1)], next: seqs[Math.min(seqs.length - 1, index + 1)], last: seqs[seqs.length - 1] };
      Object.keys(links).forEach(function (key) {
        var a = stepper.querySelector("[data-step=" + key + "]");
        if (a) {
          a.setAttribute("href", "?seq=" + links[key] + "#replay");
          a.setAttribute("aria-disabled", String(links[key] === current));
        }
      });
      if (container && typeof container.gcShowMarkers === "function" && markers[current]) {
        container.gcShowMarkers(toDiagram(markers[current]));
      }
      container && container.setAttribute("data-shown", current);
      if (push && window.history && window.history.replaceState) {
        window.history.replaceState(null, "", "?seq=" + current + "#replay");
      }
      renderSteps(markers[current] || {});
    }

    function toDiagram(m) {
      var completed = Object.keys(m.completed || {}).map(function (id) { return { id: id, count: m.completed[id] }; });
      return { completed: completed, current: m.current || [], waiting: m.waiting || [] };
    }

    // The text list of steps (for reading without the drawing), rebuilt for the event shown.
    function renderSteps(m) {
      var list = document.getElementById("audit-steps");
      var names = JSON.parse((document.getElementById("audit-names") || {}).textContent || "{}");
      if (!list || !names.order) { return; }
      var words = { completed: list.getAttribute("data-completed"), current: list.getAttribute("data-current"), waiting: list.getAttribute("data-waiting") };
      list.textContent = "";
      names.order.forEach(function (id) {
        var status = (m.current || []).indexOf(id) >= 0 ? "current" : (m.waiting || []).indexOf(id) >= 0 ? "waiting" : (m.completed || {})[id] ? "completed" : "";
        if (!status) { return; }
        var li = document.createElement("li");
        li.className = "step " + status;
        li.setAttribute("data-id", id);
        var swatch = document.createElement("span");
        swatch.className = "swatch " + status;
        li.appendChild(swatch);
        li.appendChild(document.createTextNode(names.names[id] || id));
        var note = document.createElement("span");
        note.className = "muted";
        var count = (m.completed || {})[id] || 0;
        note.textContent = " " + words[status] + (count > 1 ? " \u00d7" + count : "");
        li.appendChild(note);
        list.appendChild(li);
      });
      if (!list.firstChild) {
        var empty = document.createElement("li");
        empty.className = "muted";
        empty.textContent = list.getAttribute("data-empty");
        list.appendChild(empty);
      }
    }

    stepper.addEventListener("click", function (event) {
      var a = event.target.closest("[data-step]");
      if (!a) { return; }
      event.preventDefault();
      var match = /seq=(\d+)/.exec(a.getAttribute("href"));
      if (match) { show(match[1], true); }
    });
    document.addEventListener("click", function (event) {
      var a = event.target.closest(".show-step");
      if (!a) { return; }
      event.preventDefault();
      show(a.getAttribute("data-seq"), true);
      document.getElementById("replay").scrollIntoView();
    });
    if (select) {
      select.addEventListener("change", function () { show(select.value, true); });
    }
    document.addEventListener("gc-diagram-ready", function () { show(current, false); });
    document.addEventListener("keydown", function (event) {
      if (event.target.closest("input, select, textarea")) { return; }
      var index = seqs.indexOf(current);
      if (event.key === "ArrowLeft" && index > 0) { show(seqs[index - 1], true); }
      if (event.key === "ArrowRight" && index < seqs.length - 1) { show(seqs[index + 1], true); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
