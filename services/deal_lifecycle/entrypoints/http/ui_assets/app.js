// The ops dashboard's core: the token, the JSON API, the live stream, DOM helpers and the page router.
// Everything shown comes from the API with the caller's token; every value is inserted as text
// (createElement/textContent), never as markup. No dependency, no build step.
"use strict";

(function () {
  const TOKEN_KEY = "dealflow.token";
  const STAGES = ["prospect", "letter_of_intent", "transition_meeting", "contract_signed", "walked_away"];
  const STAGE_LABELS = {
    prospect: "Prospect",
    letter_of_intent: "Letter of intent",
    transition_meeting: "Transition meeting",
    contract_signed: "Signed",
    walked_away: "Walked away",
  };
  const WRITE_ROLES = ["emitter", "admin"];
  const STREAM_ROLES = ["ops", "auditor", "admin"];
  const POLL_MS = 3000;

  // -- DOM ---------------------------------------------------------------------------------------

  function append(element, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  // h("a", {href: "/ui", class: "x", onclick: fn}, "text", otherNode): attributes as attributes, text as text.
  function h(tag, attrs, ...children) {
    const element = document.createElement(tag);
    setAttributes(element, attrs);
    return append(element, children);
  }

  function setAttributes(element, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (typeof value === "function" && name.startsWith("on")) {
        element.addEventListener(name.slice(2), value);
      } else {
        element.setAttribute(name, value === true ? "" : String(value));
      }
    }
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const element = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, String(value));
    return append(element, children);
  }

  function clear(element) {
    while (element.firstChild) element.removeChild(element.firstChild);
    return element;
  }

  function replaceChildren(element, ...children) {
    clear(element);
    return append(element, children);
  }

  // -- words and times -----------------------------------------------------------------------------

  function words(code) {
    return String(code).replace(/_/g, " ");
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // A moment in the reader's local time, minute precision: 2026-11-23 09:15.
  function formatWhen(iso) {
    if (!iso) return "";
    const moment = new Date(iso);
    if (Number.isNaN(moment.getTime())) return String(iso);
    return `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())} ${pad(moment.getHours())}:${pad(moment.getMinutes())}`;
  }

  function when(iso) {
    return h("time", { datetime: iso || "", title: iso || "" }, formatWhen(iso));
  }

  function daysSince(iso) {
    const moment = new Date(iso).getTime();
    if (Number.isNaN(moment)) return null;
    return Math.max(0, Math.floor((Date.now() - moment) / 86400000));
  }

  // A value from the API, as short text: numbers and words as they are, objects as key=value.
  function valueText(value) {
    if (value === null || value === undefined) return "none";
    if (Array.isArray(value)) return value.map(valueText).join(", ");
    if (typeof value === "object") {
      return Object.entries(value).map(([k, v]) => `${k}=${valueText(v)}`).join(", ");
    }
    return String(value);
  }

  function truncate(text, length) {
    const s = String(text);
    return s.length > length ? s.slice(0, length - 1) + "…" : s;
  }

  // -- the token -----------------------------------------------------------------------------------

  function base64UrlDecode(part) {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const binary = atob(base64);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  }

  // The claims a token says it carries: shown, and used to choose what to offer; never trusted (the API judges).
  function decodeClaims(token) {
    try {
      const payload = JSON.parse(base64UrlDecode(token.split(".")[1] || ""));
      return payload && typeof payload === "object" ? payload : null;
    } catch (error) {
      return null;
    }
  }

  const session = {
    token: null,
    claims: null,
    get roles() {
      const roles = this.claims && Array.isArray(this.claims.roles) ? this.claims.roles : [];
      return roles.map(String);
    },
    get sub() {
      return this.claims && this.claims.sub ? String(this.claims.sub) : "unknown";
    },
    hasAnyRole(roles) {
      return this.roles.some((role) => roles.includes(role));
    },
    get canWrite() {
      return this.hasAnyRole(WRITE_ROLES);
    },
    get canStream() {
      return this.hasAnyRole(STREAM_ROLES);
    },
  };

  function setToken(token) {
    session.token = token;
    session.claims = decodeClaims(token);
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch (error) {
      // Storage refused (private mode): the token lives as long as the page.
    }
  }

  function forgetToken() {
    session.token = null;
    session.claims = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (error) {
      // nothing stored
    }
  }

  // #token=... from `dealflow up`'s link: kept in this tab, and taken out of the address at once.
  function tokenFromAddress() {
    const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
    const token = fragment.get("token");
    if (token) {
      history.replaceState(null, "", location.pathname + location.search);
      return token.trim();
    }
    return null;
  }

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (error) {
      return null;
    }
  }

  function expired(claims) {
    return claims && typeof claims.exp === "number" && claims.exp * 1000 <= Date.now();
  }

  // -- the API -------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `the service answered ${status}`);
      this.status = status;
      this.body = body || {};
      this.code = this.body.code || "http_" + status;
    }
  }

  let signedOut = false;

  async function api(path, options) {
    const opts = options || {};
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (session.token) headers.Authorization = "Bearer " + session.token;
    const init = { method: opts.method || "GET", headers, cache: "no-store", signal: opts.signal };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    const response = await fetch(path, init);
    let body = null;
    const text = await response.text();
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (error) {
        body = { code: "not_json", message: truncate(text, 200) };
      }
    }
    if (response.status === 401) {
      unauthenticated(body && body.message);
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return { body, headers: response.headers, status: response.status };
  }

  function unauthenticated(message) {
    if (signedOut) return;
    signedOut = true;
    forgetToken();
    stopAll();
    showTokenForm(message ? `The service refused the token: ${message}` : "The service refused the token.");
  }

  function idempotencyKey() {
    if (window.crypto && typeof crypto.randomUUID === "function") return "ui-" + crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return "ui-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Every page of a listing (next_cursor), as one list.
  async function listAll(path) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < 1000; page += 1) {
      const separator = path.includes("?") ? "&" : "?";
      const url = path + separator + "limit=500" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const { body } = await api(url);
      items.push(...body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return items;
  }

  // At most `width` of `work` (functions returning promises) at a time.
  async function limited(work, width) {
    const results = new Array(work.length);
    let next = 0;
    async function worker() {
      while (next < work.length) {
        const index = next;
        next += 1;
        try {
          results[index] = await work[index]();
        } catch (error) {
          results[index] = error;
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(width, work.length) }, worker));
    return results;
  }

  // -- live: the stream for those who may watch it, polling for the others ----------------------

  const running = new Set();

  function stopAll() {
    for (const stop of Array.from(running)) stop();
  }

  function setMode(mode) {
    const indicator = document.getElementById("live-indicator");
    if (!indicator) return;
    const text = {
      live: "live",
      polling: `polling every ${POLL_MS / 1000} s`,
      connecting: "connecting…",
      reconnecting: "reconnecting…",
      off: "offline",
    }[mode] || mode;
    indicator.textContent = text;
    indicator.dataset.mode = mode;
  }

  // Reads Server-Sent Events from a fetch() body (EventSource cannot send the Authorization header).
  async function readEvents(body, onMessage) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      let text = buffer + decoder.decode(value, { stream: true });
      let held = "";
      if (text.endsWith("\r")) {
        held = "\r";
        text = text.slice(0, -1);
      }
      buffer = text.replace(/\r\n?/g, "\n") + held;
      let boundary;
      while ((boundary = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        const message = { id: null, event: "message", data: [] };
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let fieldValue = colon < 0 ? "" : line.slice(colon + 1);
          if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
          if (field === "data") message.data.push(fieldValue);
          else if (field === "id") message.id = fieldValue;
          else if (field === "event") message.event = fieldValue;
        }
        if (message.data.length) onMessage({ id: message.id, event: message.event, data: message.data.join("\n") });
      }
    }
  }

  // onEvent(event view) for each event (of `deal`, when given); poll() every 3 s while not streaming.
  function startLive({ deal, onEvent, poll }) {
    let stopped = false;
    let controller = null;
    let lastId = null;
    let timer = null;
    let wait = 1000;

    function startPolling() {
      if (timer !== null || stopped) return;
      setMode("polling");
      timer = setInterval(() => {
        Promise.resolve(poll()).catch(() => {});
      }, POLL_MS);
    }

    function stopPolling() {
      if (timer !== null) clearInterval(timer);
      timer = null;
    }

    async function follow() {
      setMode("connecting");
      while (!stopped) {
        controller = new AbortController();
        let retry = true;
        try {
          const headers = { Accept: "text/event-stream", Authorization: "Bearer " + session.token };
          if (lastId) headers["Last-Event-ID"] = lastId;
          const query = deal ? "?deal=" + encodeURIComponent(deal) : "";
          const response = await fetch("/stream" + query, { headers, cache: "no-store", signal: controller.signal });
          if (response.status === 401) {
            unauthenticated();
            return;
          }
          if (response.status === 403) {
            startPolling();
            return;
          }
          if (response.status === 400) lastId = null; // a position this service no longer knows: start afresh
          if (response.ok && response.body) {
            stopPolling();
            setMode("live");
            wait = 1000;
            // Catch up on what happened while the stream was not open.
            if (timer === null) Promise.resolve(poll()).catch(() => {});
            await readEvents(response.body, (message) => {
              if (message.id) lastId = message.id;
              try {
                onEvent(JSON.parse(message.data));
              } catch (error) {
                // a message that is not an event view: nothing to show
              }
            });
          }
        } catch (error) {
          retry = !stopped;
        }
        if (stopped || !retry) return;
        setMode("reconnecting");
        startPolling();
        await new Promise((resolve) => setTimeout(resolve, wait));
        wait = Math.min(wait * 2, 15000);
      }
    }

    function stop() {
      stopped = true;
      stopPolling();
      if (controller) controller.abort();
      running.delete(stop);
      setMode("off");
    }

    running.add(stop);
    if (session.canStream) follow();
    else startPolling();
    return stop;
  }

  // -- the page --------------------------------------------------------------------------------------

  function showTokenForm(message) {
    const panel = document.getElementById("token-panel");
    const view = document.getElementById("view");
    clear(view);
    document.getElementById("token-message").textContent = message || "Give a bearer token to see the pipeline.";
    panel.hidden = false;
    document.getElementById("sign-out").hidden = true;
    document.getElementById("who").textContent = "Not signed in";
    setMode("off");
    document.getElementById("token-input").focus();
  }

  function showWho() {
    const who = document.getElementById("who");
    const roles = session.roles.length ? session.roles.join(", ") : "no roles";
    const until = session.claims && typeof session.claims.exp === "number" ? new Date(session.claims.exp * 1000).toISOString() : null;
    replaceChildren(
      who,
      h("span", { class: "who-sub", "data-testid": "who-sub" }, session.sub),
      " · ",
      h("span", { class: "who-roles", "data-testid": "who-roles" }, roles),
      until ? [" · until ", when(until)] : null
    );
    document.getElementById("sign-out").hidden = false;
  }

  function markNavigation(page) {
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === page) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  function route() {
    const path = location.pathname.replace(/\/+$/, "");
    const deal = path.match(/^\/ui\/deals\/([0-9a-fA-F-]{36})$/);
    if (deal) return { page: "deal", arg: deal[1].toLowerCase() };
    if (path === "/ui/alerts") return { page: "alerts", arg: null };
    return { page: "pipeline", arg: null };
  }

  function start() {
    stopAll();
    signedOut = false;
    document.getElementById("token-panel").hidden = true;
    const view = clear(document.getElementById("view"));
    showWho();
    const { page, arg } = route();
    markNavigation(page === "deal" ? "pipeline" : page);
    const render = pages[page];
    if (render) render(view, arg);
  }

  function boot() {
    const fromAddress = tokenFromAddress();
    if (fromAddress) setToken(fromAddress);
    else {
      const stored = storedToken();
      if (stored) setToken(stored);
    }
    document.getElementById("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = document.getElementById("token-input");
      const token = input.value.trim().replace(/^Bearer\s+/i, "");
      if (!token) return;
      input.value = "";
      setToken(token);
      if (!session.claims) {
        forgetToken();
        showTokenForm("That does not look like a JWT (three parts separated by dots).");
        return;
      }
      start();
    });
    document.getElementById("sign-out").addEventListener("click", () => {
      forgetToken();
      stopAll();
      showTokenForm("Signed out. Give a token to sign in again.");
    });
    // A link with another token, followed while this page is open (only the fragment changes: no reload).
    window.addEventListener("hashchange", () => {
      const token = tokenFromAddress();
      if (token) {
        setToken(token);
        if (expired(session.claims)) {
          forgetToken();
          stopAll();
          showTokenForm("The token has expired: give a fresh one.");
        } else start();
      }
    });
    if (!session.token) {
      showTokenForm();
    } else if (expired(session.claims)) {
      forgetToken();
      showTokenForm("The token has expired: give a fresh one.");
    } else {
      start();
    }
  }

  const pages = {};

  window.Dealflow = {
    STAGES,
    STAGE_LABELS,
    POLL_MS,
    ApiError,
    api,
    append,
    clear,
    daysSince,
    formatWhen,
    h,
    idempotencyKey,
    limited,
    listAll,
    pages,
    replaceChildren,
    session,
    startLive,
    svg,
    truncate,
    valueText,
    when,
    words,
  };

  document.addEventListener("DOMContentLoaded", boot);
})();
