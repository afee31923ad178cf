/*
 * The /signin page: the mailed link carries its one-time token in the fragment
 * (#paywall_signin=TOKEN), which never reaches a server, a log or a Referer. This copies it into
 * the form, takes it out of the address bar, and shows the one-press form. Nothing is sent until
 * the reader presses the button (mail scanners that open links use nothing).
 */
(function () {
  "use strict";
  var match = /(?:^#|&)paywall_signin=([A-Za-z0-9_-]{1,200})/.exec(window.location.hash);
  if (!match) return;
  var form = document.getElementById("link-form");
  var input = document.getElementById("link-token");
  if (!form || !input) return;
  input.value = match[1];
  if (window.history && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  form.hidden = false;
  var button = form.querySelector("button");
  if (button) button.focus();
})();
