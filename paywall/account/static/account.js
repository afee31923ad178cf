// A mailed sign-in link ends in #paywall_signin=TOKEN. The fragment never reaches the server, so
// this script takes it out of the address bar (and so out of history) and posts it to
// /account/link. Without scripts, the code in the same mail signs in just as well.
(function () {
  "use strict";
  var match = /^#paywall_signin=([A-Za-z0-9_-]{10,200})$/.exec(window.location.hash);
  if (!match) {
    return;
  }
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  var form = document.getElementById("paywall-link");
  if (!form) {
    return;
  }
  form.elements.token.value = match[1];
  form.submit();
})();
