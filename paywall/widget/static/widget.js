/*
 * paywall widget: the footer appeal and the gate. No framework, no third-party code, no cookies.
 *
 * Server mode (the site asked POST /v1/access and rendered only the excerpt when not allowed):
 *   <script src="PUBLIC_URL/support/widget.js" data-token="ACCESS_TOKEN" async></script>
 * Client mode (no backend; a soft paywall: the text is in the HTML, readable with scripts off):
 *   <script src="PUBLIC_URL/support/widget.js" data-mode="client" data-article="ID"
 *           data-level="metered" async></script>   and   <div data-paywall-body>...article...</div>
 *
 * The server decides everything (GET /support/appeal answers the appeal, the meter line and the
 * gate); nothing here grants access. Kept in the site's localStorage: a random browser id
 * (paywall:browser), the reader token once signed in (paywall:reader-token), and how long Close
 * hides the appeal. A mailed link or /thanks comes back with #paywall_signin=ONE_TIME_TOKEN, which
 * is taken out of the address and exchanged for a reader token. Nothing above the article moves
 * for a reader who may read: the appeal is inserted after the article, with no space reserved.
 *
 * Measurement (POST /support/events): each answer carries a signed "ask" per channel (footer,
 * gate); the widget reports `view` when the answer arrives, `impression` once the box is at least
 * half on screen, `click` (subscribe, donate, signin, register) and `close`, in batches sent with
 * navigator.sendBeacon: a click or close at once, an impression a second later (with the view
 * before it), a view alone only when the page is hidden or left; so a page sends one beacon in the
 * common case. They go to the answer's `events_url` (the service's beacon intake) when it names
 * one, else to this script's own origin. A staff preview link (#paywall_preview=TOKEN) shows a
 * variant and reports nothing.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) return;
  var base = script.src.replace(/\/support\/widget\.js(\?.*)?$/, "");
  var client = script.getAttribute("data-mode") === "client";
  var KEY_HIDDEN = "paywall:appeal-hidden-until";
  var KEY_BROWSER = "paywall:browser";
  var KEY_READER = "paywall:reader-token";
  var DENIED = { meter_exhausted: 1, supporters_only: 1, registration_required: 1 };
  var placed = { appeal: null, gate: null, account: null, hidden: [] };
  var previewToken = fromHash("paywall_preview");

  // ----- storage and ids ------------------------------------------------------------------------

  // Storage disabled (private mode, a policy): nothing kept here; the server-side state still holds.
  function load(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }

  function save(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) { /* see load */ }
  }

  function hiddenUntil() {
    return parseInt(load(KEY_HIDDEN) || "0", 10) || 0;
  }

  function browserId() {
    var id = load(KEY_BROWSER);
    if (id && /^[A-Za-z0-9_-]{16,64}$/.test(id)) return id;
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    id = window.btoa(String.fromCharCode.apply(null, bytes))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    save(KEY_BROWSER, id);
    return id;
  }

  // Take one `name=value` out of the address bar's #fragment (and history), and return the value.
  function fromHash(name) {
    var re = new RegExp("(^#|&)" + name + "=([^&]*)");
    var match = re.exec(window.location.hash);
    if (!match) return "";
    var rest = window.location.hash.replace(re, "$1").replace(/^#&/, "#").replace(/&$/, "");
    window.history.replaceState(null, "", window.location.pathname + window.location.search + (rest === "#" ? "" : rest));
    return decodeURIComponent(match[2]);
  }

  function pageUrl() {
    return window.location.href.split("#")[0];
  }

  // ----- talking to the service -----------------------------------------------------------------

  function post(path, body) {
    return window
      .fetch(base + path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
        credentials: "omit"
      })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          return { ok: resp.ok, data: data || {} };
        });
      });
  }

  function askAppeal(token) {
    var query = "?token=" + encodeURIComponent(token) + "&return_to=" + encodeURIComponent(pageUrl());
    if (previewToken) query += "&preview=" + encodeURIComponent(previewToken);
    return window
      .fetch(base + "/support/appeal" + query, { credentials: "omit", headers: { Accept: "application/json" } })
      .then(function (resp) { return resp.ok ? resp.json() : null; });
  }

  // ----- events (POST /support/events) ---------------------------------------------------------

  var events = { queue: [], timer: null, once: {}, muted: false, url: base + "/support/events" };

  // Queue one event for an ask; `view` and `impression` at most once per ask.
  function report(ask, type, action) {
    if (!ask || events.muted) return;
    if (type === "view" || type === "impression") {
      if (events.once[type + ask]) return;
      events.once[type + ask] = 1;
    }
    var item = { ask: ask, type: type };
    if (action) item.action = action;
    events.queue.push(item);
    // A click usually leaves the page: send it now. A view waits for what follows it (the
    // impression, a click) or for the page to go: each beacon is a request the server pays for,
    // so a page sends one in the common case. Anything else goes shortly, in one batch.
    if (type === "click" || type === "close" || events.queue.length >= 50) flush();
    else if (type !== "view") {
      window.clearTimeout(events.timer);
      events.timer = window.setTimeout(flush, 1000);
    }
  }

  function flush() {
    window.clearTimeout(events.timer);
    if (!events.queue.length) return;
    var json = JSON.stringify({ events: events.queue.splice(0, 50) });
    var url = events.url;
    var sent = false;
    // text/plain: a "simple" request (no preflight), which the browser sends even as the page goes.
    try { sent = navigator.sendBeacon(url, new Blob([json], { type: "text/plain" })); } catch (e) { sent = false; }
    if (!sent) {
      window.fetch(url, {
        method: "POST", headers: { "Content-Type": "text/plain" }, body: json, credentials: "omit", keepalive: true
      }).catch(function () {});
    }
    if (events.queue.length) flush();
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush();
  });
  window.addEventListener("pagehide", flush);

  // `impression` once the box is at least half on screen (or fills half the screen, if taller).
  function watch(box, ask) {
    if (!ask || events.muted || !window.IntersectionObserver) return;
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        var seen = entry.intersectionRatio >= 0.5 ||
          (entry.rootBounds && entry.intersectionRect.height >= entry.rootBounds.height / 2);
        if (!entry.isIntersecting || !seen) return;
        report(ask, "impression");
        observer.disconnect();
      });
    }, { threshold: [0, 0.25, 0.5, 0.75, 1] });
    observer.observe(box);
    return observer;
  }

  function tracked(node, ask, action) {
    node.addEventListener("click", function () { report(ask, "click", action); });
    return node;
  }

  var styles = null;
  function withStyles() {
    // Script-inserted stylesheets never block rendering; wait for it so nothing flashes unstyled.
    styles = styles || new Promise(function (resolve) {
      var link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = base + "/support/widget.css";
      link.onload = resolve;
      link.onerror = resolve;
      document.head.appendChild(link);
    });
    return styles;
  }

  // ----- building blocks ------------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function uid(prefix) {
    return prefix + Math.random().toString(36).slice(2, 8);
  }

  function link(className, text, href) {
    var a = el("a", className, text);
    a.href = href;
    return a;
  }

  function articleBody() {
    return document.querySelector("[data-paywall-body]");
  }

  // Where the appeal goes: right after the tag when it sits in the page, else after the article.
  function insertAfterTag(node) {
    var parent = script.parentNode;
    var body = articleBody();
    if (parent && parent !== document.head && !(client && body && body.contains(script))) {
      parent.insertBefore(node, script.nextSibling);
    } else if (body && body.parentNode) {
      body.parentNode.insertBefore(node, body.nextSibling);
    } else {
      document.body.appendChild(node);
    }
  }

  function accountForm() {
    var token = load(KEY_READER);
    if (!token) return null;
    var form = el("form", "pw-account");
    form.method = "post";
    form.action = base + "/account/session";
    var field = el("input");
    field.type = "hidden";
    field.name = "reader_token";
    field.value = token;
    var button = el("button", "pw-account__button", script.getAttribute("data-account-label") || "Your account");
    button.type = "submit";
    form.appendChild(field);
    form.appendChild(button);
    return form;
  }

  function placeAccount() {
    if (placed.account && placed.account.parentNode) placed.account.parentNode.removeChild(placed.account);
    placed.account = accountForm();
    if (!placed.account) return;
    var host = placed.appeal || placed.gate;
    if (host) host.appendChild(placed.account);
    else insertAfterTag(placed.account);
  }

  // ----- the footer appeal ----------------------------------------------------------------------

  function renderAppeal(data, token) {
    var id = uid("pw-appeal-");
    var box = el("section", "pw-appeal");
    box.setAttribute("role", "region");
    box.setAttribute("aria-labelledby", id);
    box.setAttribute("data-paywall-appeal", "");
    var headline = el("h2", "pw-appeal__headline", data.headline);
    headline.id = id;
    box.appendChild(el("span", "pw-appeal__label", data.region_label));
    box.appendChild(headline);
    if (data.meter_text) box.appendChild(el("p", "pw-appeal__meter", data.meter_text));
    box.appendChild(el("p", "pw-appeal__text", data.text));
    if (data.goal_text) box.appendChild(el("p", "pw-appeal__goal", data.goal_text));
    var actions = el("div", "pw-appeal__actions");
    // No subscribe_url while no plan is on offer: then Donate is the only button.
    if (data.subscribe_url) {
      actions.appendChild(tracked(link("pw-appeal__button pw-appeal__button--primary", data.subscribe_label, data.subscribe_url), data.ask, "subscribe"));
    }
    actions.appendChild(tracked(link("pw-appeal__button" + (data.subscribe_url ? "" : " pw-appeal__button--primary"), data.donate_label, data.donate_url), data.ask, "donate"));
    box.appendChild(actions);
    box.appendChild(closeButton(box, data, token));
    insertAfterTag(box);
    placed.appeal = box;
    placed.appealSeen = watch(box, data.ask);
  }

  function closeButton(box, data, token) {
    var close = el("button", "pw-appeal__close");
    close.type = "button";
    close.setAttribute("aria-label", data.close_label);
    var cross = el("span", "", "\u00d7");
    cross.setAttribute("aria-hidden", "true");
    close.appendChild(cross);
    close.addEventListener("click", function () {
      report(data.ask, "close");
      if (placed.appealSeen) placed.appealSeen.disconnect();
      // Close hides the appeal only; a gate, if any, is a separate element and stays.
      save(KEY_HIDDEN, String(Date.now() + data.dismiss_days * 86400000));
      var next = box.nextElementSibling;
      box.parentNode.removeChild(box);
      placed.appeal = null;
      if (placed.account && !placed.gate) insertAfterTag(placed.account);
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
    return close;
  }

  // ----- the gate -------------------------------------------------------------------------------

  // Client mode: keep the first `keep` paragraphs of the article body, hide everything after.
  function truncate(keep) {
    var body = articleBody();
    if (!body) return null;
    var seen = 0;
    var first = null;
    Array.prototype.forEach.call(body.children, function (child) {
      if (seen >= keep && child.getAttribute("data-paywall-gate") === null) {
        placed.hidden.push([child, child.style.getPropertyValue("display"), child.style.getPropertyPriority("display")]);
        child.style.setProperty("display", "none", "important");
        first = first || child;
      } else if (child.tagName === "P") {
        seen += 1;
      }
    });
    if (window.performance && performance.mark) performance.mark("paywall:cut");
    return { body: body, before: first };
  }

  function reveal() {
    placed.hidden.forEach(function (item) {
      item[0].style.setProperty("display", item[1], item[2]);
    });
    var first = placed.hidden.length ? placed.hidden[0][0] : null;
    placed.hidden = [];
    return first;
  }

  function removeGate() {
    if (placed.gateSeen) placed.gateSeen.disconnect();
    if (placed.gate && placed.gate.parentNode) placed.gate.parentNode.removeChild(placed.gate);
    placed.gate = null;
  }

  function renderGate(gate) {
    removeGate();
    var id = uid("pw-gate-");
    var box = el("section", "pw-gate");
    box.setAttribute("role", "region");
    box.setAttribute("aria-labelledby", id);
    box.setAttribute("data-paywall-gate", "");
    var headline = el("h2", "pw-gate__headline", gate.headline);
    headline.id = id;
    headline.tabIndex = -1;
    box.appendChild(headline);
    box.appendChild(el("p", "pw-gate__text", gate.text));
    var actions = el("div", "pw-gate__actions");
    if (gate.subscribe_url) actions.appendChild(tracked(link("pw-gate__button pw-gate__button--primary", gate.subscribe_label, gate.subscribe_url), gate.ask, "subscribe"));
    actions.appendChild(tracked(link("pw-gate__button" + (gate.subscribe_url ? "" : " pw-gate__button--primary"), gate.donate_label, gate.donate_url), gate.ask, "donate"));
    box.appendChild(actions);
    box.appendChild(signinBlock(gate));
    if (client) reveal(); // a gate shown again (signed in, still denied) starts from the whole body
    var spot = client ? truncate(gate.preview_paragraphs) : null;
    var body = articleBody();
    if (spot) spot.body.insertBefore(box, spot.before);
    else if (body && !body.contains(script)) body.appendChild(box);
    else insertAfterTag(box);
    placed.gate = box;
    report(gate.ask, "view");
    placed.gateSeen = watch(box, gate.ask);
    if (window.performance && performance.mark) performance.mark("paywall:gate");
    headline.focus();
  }

  function signinBlock(gate) {
    var copy = gate.copy || {};
    var wrap = el("div", "pw-gate__signin");
    var status = el("p", "pw-gate__status");
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    var emailForm = makeForm(copy.email_label, "email", copy.send_label, copy.cancel_label);
    var codeForm = makeForm(copy.code_label, "code", copy.code_submit, copy.cancel_label);
    var starters = el("p", "pw-gate__starters");
    function open(heading) {
      emailForm.heading.textContent = heading;
      starters.hidden = true;
      emailForm.form.hidden = false;
      emailForm.input.focus();
    }
    starters.appendChild(tracked(starter(gate.signin_label, function () { open(copy.signin_heading); }), gate.ask, "signin"));
    if (gate.register) starters.appendChild(tracked(starter(gate.register_label, function () { open(copy.register_heading); }), gate.ask, "register"));
    function cancel() {
      emailForm.form.hidden = true;
      codeForm.form.hidden = true;
      starters.hidden = false;
      status.textContent = "";
      starters.firstChild.focus();
    }
    emailForm.cancel.addEventListener("click", cancel);
    codeForm.cancel.addEventListener("click", cancel);
    wireSignin(copy, emailForm, codeForm, status);
    wrap.appendChild(starters);
    wrap.appendChild(emailForm.form);
    wrap.appendChild(codeForm.form);
    wrap.appendChild(status);
    return wrap;
  }

  function starter(text, onClick) {
    var button = el("button", "pw-gate__link", text);
    button.type = "button";
    button.addEventListener("click", onClick);
    return button;
  }

  function makeForm(labelText, kind, submitText, cancelText) {
    var form = el("form", "pw-gate__form");
    form.hidden = true;
    form.noValidate = true;
    var heading = el("h3", "pw-gate__form-heading");
    var input = el("input", "pw-gate__input");
    input.id = uid("pw-" + kind + "-");
    input.name = kind;
    input.required = true;
    if (kind === "email") {
      input.type = "email";
      input.autocomplete = "email";
    } else {
      input.type = "text";
      input.inputMode = "numeric";
      input.autocomplete = "one-time-code";
      input.maxLength = 6;
    }
    var label = el("label", "pw-gate__label", labelText);
    label.htmlFor = input.id;
    var submit = el("button", "pw-gate__button pw-gate__button--primary", submitText);
    submit.type = "submit";
    var cancel = el("button", "pw-gate__link", cancelText);
    cancel.type = "button";
    var row = el("div", "pw-gate__row");
    row.appendChild(input);
    row.appendChild(submit);
    row.appendChild(cancel);
    if (kind === "email") form.appendChild(heading);
    form.appendChild(label);
    form.appendChild(row);
    return { form: form, heading: heading, input: input, submit: submit, cancel: cancel };
  }

  function problemText(result, fallback) {
    var data = result.data || {};
    var errors = data.errors || {};
    for (var field in errors) {
      if (errors[field] && errors[field][0]) return errors[field][0];
    }
    return data.detail || fallback;
  }

  // One sign-in step: post the form's body, say so in the live region, and on a refusal say why.
  function step(parts, status, busy, failed, path, body, done) {
    parts.form.addEventListener("submit", function (event) {
      event.preventDefault();
      parts.submit.disabled = true;
      status.textContent = busy;
      post(path, body()).then(function (result) {
        parts.submit.disabled = false;
        if (result.ok) return done(result.data);
        status.textContent = problemText(result, failed);
        parts.input.focus();
      }, function () {
        parts.submit.disabled = false;
        status.textContent = failed;
      });
    });
  }

  function wireSignin(copy, emailForm, codeForm, status) {
    var email = "";
    step(emailForm, status, copy.sending, copy.failed, "/support/signin", function () {
      email = emailForm.input.value.trim();
      return { email: email, return_url: pageUrl() };
    }, function () {
      emailForm.form.hidden = true;
      codeForm.form.hidden = false;
      status.textContent = (copy.sent || "").replace("{email}", email);
      codeForm.input.focus();
    });
    step(codeForm, status, copy.checking, copy.failed, "/support/signin/exchange", function () {
      var body = { email: email, code: codeForm.input.value.trim() };
      if (client) body.anonymous_reader = browserId();
      return body;
    }, function (data) {
      save(KEY_READER, data.reader_token);
      status.textContent = copy.signed_in;
      signedIn(copy, status);
    });
  }

  function signedIn(copy, status) {
    document.dispatchEvent(new CustomEvent("paywall:signedin"));
    if (client) {
      // Ask again as the reader: a supporter reads on, without a reload.
      checkAccess().then(function (data) {
        var current = placed.gate && placed.gate.querySelector(".pw-gate__status");
        if (data && !data.allowed && current) current.textContent = copy.signed_in_no_access;
      });
      return;
    }
    // Server mode: the site's backend must learn the reader; it does from a one-time token.
    post("/support/handoff", { reader_token: load(KEY_READER), return_to: pageUrl() }).then(function (result) {
      if (result.ok && result.data.url) window.location.assign(result.data.url);
      else placeAccount();
    });
  }

  // ----- the flows ------------------------------------------------------------------------------

  function showFor(token, denied) {
    // Closed on this device: not even a request, unless the answer may be a gate (never hidden).
    var hidden = !previewToken && hiddenUntil() > Date.now();
    if (hidden && !denied) return withStyles().then(placeAccount);
    return askAppeal(token).then(function (data) {
      // A staff preview is never counted.
      if (data && data.preview) events.muted = true;
      if (data && data.events_url) events.url = data.events_url.replace(/\/+$/, "") + "/support/events";
      return withStyles().then(function () {
        if (placed.appeal) {
          if (placed.appealSeen) placed.appealSeen.disconnect();
          placed.appeal.parentNode.removeChild(placed.appeal);
          placed.appeal = null;
        }
        if (data && data.gate) renderGate(data.gate);
        else {
          // Allowed now (signed in), or the gate could not be fetched: the whole article again.
          var hadGate = !!placed.gate;
          removeGate();
          var first = reveal();
          if (hadGate && first) {
            first.tabIndex = -1;
            first.focus();
          }
        }
        if (!data) return placeAccount();
        if (data.hidden_until) save(KEY_HIDDEN, String(data.hidden_until));
        // One ask at a time: with the gate up, the footer appeal stays away.
        else if (!data.gate && !hidden) {
          // Shown, or held back (an ask with show: false): the view counts either way.
          report(data.ask, "view");
          if (data.show) renderAppeal(data, token);
        }
        placeAccount();
      });
    });
  }

  function deniedClaim(token) {
    // Only to decide whether a request is needed; the server checks the token itself.
    try {
      var part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return !!DENIED[JSON.parse(window.atob(part)).reason];
    } catch (e) {
      return true;
    }
  }

  function checkAccess() {
    var body = { anonymous_reader: browserId(), article: script.getAttribute("data-article") || "" };
    var reader = load(KEY_READER);
    if (reader) body.reader_token = reader;
    var level = script.getAttribute("data-level");
    if (level) body.level = level;
    return post("/support/access", body).then(function (result) {
      if (!result.ok) return null;
      var data = result.data;
      if (reader && data.signed_in === false) save(KEY_READER, null); // ended or expired: forget it
      // Denied: cut the text now, one round trip before the gate arrives ([gate] preview_paragraphs
      // then sets the final cut; data-preview says what the site configured, 2 by default).
      if (!data.allowed && !placed.hidden.length) truncate(parseInt(script.getAttribute("data-preview") || "2", 10));
      return showFor(data.token, !data.allowed).then(function () { return data; });
    });
  }

  function signinFromLink() {
    var match = /(?:^#|&)paywall_signin=([^&]+)/.exec(window.location.hash);
    if (!match) return Promise.resolve();
    // Out of the address bar (and history) before anything else: it is single use anyway.
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    var body = { token: decodeURIComponent(match[1]) };
    if (client) body.anonymous_reader = browserId();
    return post("/support/signin/exchange", body).then(function (result) {
      if (result.ok && result.data.reader_token) save(KEY_READER, result.data.reader_token);
    }, function () {});
  }

  var ready = signinFromLink();
  if (client) {
    ready.then(checkAccess).catch(function () {});
  } else {
    var token = script.getAttribute("data-token");
    if (token) ready.then(function () { return showFor(token, deniedClaim(token)); }).catch(function () {});
  }
})();
