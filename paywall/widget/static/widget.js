/*
 * paywall appeal widget. Embed where the appeal should appear (after the article):
 *   <script src="PUBLIC_URL/support/widget.js" data-token="TOKEN" async></script>
 * It asks PUBLIC_URL/support/appeal whether to show (the server checks the token's signature and
 * its "appeal" claim; nothing is decoded here), then inserts the appeal right after this tag.
 * Nothing is reserved before the answer, and nothing above the tag ever moves. Close hides it for
 * the server's dismiss_days, in localStorage and on the server (POST /support/dismiss).
 * No framework, no third-party code, no cookies.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) return;
  var token = script.getAttribute("data-token");
  if (!token) return;
  var base = script.src.replace(/\/support\/widget\.js(\?.*)?$/, "");
  var KEY = "paywall:appeal-hidden-until";

  function hiddenUntil() {
    try {
      return parseInt(window.localStorage.getItem(KEY) || "0", 10) || 0;
    } catch (e) {
      return 0;
    }
  }

  function hide(until) {
    try {
      window.localStorage.setItem(KEY, String(until));
    } catch (e) {
      /* storage disabled: the server-side dismissal still holds */
    }
  }

  if (hiddenUntil() > Date.now()) return;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function render(data) {
    var id = "pw-appeal-" + Math.random().toString(36).slice(2, 8);
    var box = el("section", "pw-appeal");
    box.setAttribute("role", "region");
    box.setAttribute("aria-labelledby", id);
    box.setAttribute("data-paywall-appeal", "");

    var headline = el("h2", "pw-appeal__headline", data.headline);
    headline.id = id;
    var label = el("span", "pw-appeal__label", data.region_label);
    var text = el("p", "pw-appeal__text", data.text);
    var actions = el("div", "pw-appeal__actions");
    // No subscribe_url while no plan is on offer: then Donate is the only button.
    if (data.subscribe_url) {
      var subscribe = el("a", "pw-appeal__button pw-appeal__button--primary", data.subscribe_label);
      subscribe.href = data.subscribe_url;
      actions.appendChild(subscribe);
    }
    var donate = el("a", "pw-appeal__button" + (data.subscribe_url ? "" : " pw-appeal__button--primary"), data.donate_label);
    donate.href = data.donate_url;
    actions.appendChild(donate);

    var close = el("button", "pw-appeal__close");
    close.type = "button";
    close.setAttribute("aria-label", data.close_label);
    var cross = el("span", "", "\u00d7");
    cross.setAttribute("aria-hidden", "true");
    close.appendChild(cross);
    close.addEventListener("click", function () {
      hide(Date.now() + data.dismiss_days * 86400000);
      var next = box.nextElementSibling;
      box.parentNode.removeChild(box);
      // Keep keyboard users where they were instead of dropping focus to the top of the page.
      if (next && typeof next.focus === "function" && next.tabIndex >= 0) next.focus();
      window.fetch(base + "/support/dismiss", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: token }),
        credentials: "omit",
        keepalive: true
      }).catch(function () {});
    });

    box.appendChild(label);
    box.appendChild(headline);
    box.appendChild(text);
    box.appendChild(actions);
    box.appendChild(close);

    var parent = script.parentNode;
    if (parent && parent !== document.head) {
      parent.insertBefore(box, script.nextSibling);
    } else {
      document.body.appendChild(box);
    }
  }

  function withStyles(then) {
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = base + "/support/widget.css";
    // Script-inserted stylesheets never block rendering; wait for it so the appeal never flashes unstyled.
    link.onload = then;
    link.onerror = function () {};
    document.head.appendChild(link);
  }

  window
    .fetch(base + "/support/appeal?token=" + encodeURIComponent(token), {
      credentials: "omit",
      headers: { Accept: "application/json" }
    })
    .then(function (resp) {
      return resp.ok ? resp.json() : null;
    })
    .then(function (data) {
      if (!data) return;
      if (!data.show) {
        if (data.hidden_until) hide(data.hidden_until);
        return;
      }
      withStyles(function () {
        render(data);
      });
    })
    .catch(function () {});
})();
