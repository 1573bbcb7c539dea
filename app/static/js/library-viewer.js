/* Process library: read-only diagrams (bpmn-js NavigatedViewer from node_modules, no CDN).
 * Every .lib-canvas[data-source] gets the BPMN XML from its JSON endpoint; markers for the
 * diff pages come from <script id="lib-markers"> ({canvas id: {element id: css class}}). */
(function () {
  "use strict";

  function markersFor(id) {
    var holder = document.getElementById("lib-markers");
    if (!holder) { return {}; }
    try { return JSON.parse(holder.textContent)[id] || {}; } catch (e) { return {}; }
  }

  function show(container) {
    var viewer = new window.BpmnJS({ container: container });
    container.bpmnViewer = viewer;
    fetch(container.getAttribute("data-source"), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("diagram request failed: " + response.status); }
        return response.json();
      })
      .then(function (data) { return viewer.importXML(data.xml); })
      .then(function () {
        var canvas = viewer.get("canvas");
        var registry = viewer.get("elementRegistry");
        var markers = markersFor(container.id);
        Object.keys(markers).forEach(function (id) {
          if (registry.get(id)) { canvas.addMarker(id, markers[id]); }
        });
        canvas.zoom("fit-viewport");
        container.setAttribute("data-ready", "true");
      })
      .catch(function (error) {
        if (window.console) { window.console.warn(error); }
        container.textContent = container.getAttribute("data-failed") || "";
      });
  }

  function start() {
    if (typeof window.BpmnJS !== "function" || !window.fetch) { return; }
    Array.prototype.forEach.call(document.querySelectorAll(".lib-canvas[data-source]"), show);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
