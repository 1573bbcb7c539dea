/* Small conveniences on the workspace pages; everything works without them.
 * - filter forms marked data-autosubmit apply a choice as soon as it is made;
 * - a submitted form's buttons are disabled, so a double tap does not send it twice. */
(function () {
  "use strict";

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-autosubmit]"), function (form) {
      form.addEventListener("change", function (event) {
        if (event.target && (event.target.tagName === "SELECT" || event.target.type === "checkbox")) {
          form.submit();
        }
      });
    });
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form || (form.method || "").toLowerCase() !== "post") { return; }
      window.setTimeout(function () {
        Array.prototype.forEach.call(form.querySelectorAll("button[type=submit]"), function (button) {
          button.disabled = true;
        });
      }, 0);
    });
  }

  // Coming back to a page from the browser's cache: its buttons work again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    Array.prototype.forEach.call(document.querySelectorAll("form button[type=submit][disabled]"), function (button) {
      button.disabled = false;
    });
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
