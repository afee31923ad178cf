/*
 * The staff preview page's loader (GET /support/preview). The widget is loaded only when the page
 * was opened with a preview link (`paywall experiments preview` puts #paywall_preview=TOKEN in the
 * URL's hash), in which mode it shows the previewed variant and reports nothing. Opened without
 * one, the page loads no widget at all: otherwise it would run for real in client mode, spend a
 * meter read and record appeal events for whoever opened it. A link pasted into the same tab
 * later (only the hash changes: no reload) loads it then. Loaded from the same origin (the page's
 * Content-Security-Policy allows no inline script).
 */
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me) return;
  var note = document.getElementById("paywall-preview-missing");
  var loaded = false;

  function load() {
    if (loaded) return;
    if (!/(^#|&)paywall_preview=[^&]+/.test(window.location.hash)) {
      if (note) note.hidden = false;
      return;
    }
    loaded = true;
    if (note) note.hidden = true;
    var widget = document.createElement("script");
    widget.src = me.getAttribute("data-widget");
    widget.setAttribute("data-mode", "client");
    widget.setAttribute("data-article", "paywall-preview");
    widget.setAttribute("data-level", "free");
    widget.async = true;
    // Right after this tag, where the widget's own tag used to be: the appeal goes after it.
    me.parentNode.insertBefore(widget, me.nextSibling);
  }

  load();
  if (!loaded) window.addEventListener("hashchange", load);
})();
