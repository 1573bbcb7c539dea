/* The case's process diagram (bpmn-js NavigatedViewer, served from node_modules by
 * app/vendor.py — no CDN). Marks completed (green), current (orange) and waiting
 * (dashed blue) elements. Without JavaScript the page lists the same steps as text. */
(function () {
  "use strict";

  function start() {
    var container = document.getElementById("case-diagram");
    if (!container || typeof window.BpmnJS !== "function" || !window.fetch) {
      return;
    }
    container.hidden = false;
    var viewer = new window.BpmnJS({ container: container });

    function failed() {
      viewer.destroy();
      container.textContent = container.getAttribute("data-failed") || "";
      container.classList.add("failed");
    }

    fetch(container.getAttribute("data-source"), {
      headers: { Accept: "application/json" },
      credentials: "same-origin"
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("diagram request failed: " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        return viewer.importXML(data.xml).then(function () {
          var canvas = viewer.get("canvas");
          var overlays = viewer.get("overlays");
          var registry = viewer.get("elementRegistry");
          var marked = [];

          function mark(id, css) {
            if (registry.get(id)) {
              canvas.addMarker(id, css);
              marked.push([id, css]);
              return true;
            }
            return false;
          }

          // Marks one set of markers, removing the previous ones: the audit replay calls it
          // again (container.gcShowMarkers) for each event it steps to.
          function show(markers) {
            marked.forEach(function (pair) { canvas.removeMarker(pair[0], pair[1]); });
            marked = [];
            overlays.remove({ type: "gc-count" });
            (markers.completed || []).forEach(function (entry) {
              if (mark(entry.id, "gc-completed") && entry.count > 1) {
                var badge = document.createElement("span");
                badge.className = "gc-count";
                badge.textContent = "\u00d7" + entry.count;
                overlays.add(entry.id, "gc-count", { position: { top: -8, right: 8 }, html: badge });
              }
            });
            (markers.waiting || []).forEach(function (id) { mark(id, "gc-waiting"); });
            (markers.current || []).forEach(function (id) { mark(id, "gc-current"); });
          }

          show(data);
          canvas.zoom("fit-viewport");
          container.gcShowMarkers = show;
          container.dispatchEvent(new CustomEvent("gc-diagram-ready", { bubbles: true }));
        });
      })
      .catch(function (error) {
        if (window.console) { window.console.warn(error); }
        failed();
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
