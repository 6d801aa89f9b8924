// chenxing-edge status page: polls the gateway's read-only local API about once a second.
// Polling (not Server-Sent Events) because a poll carries the bearer token in a header
// (EventSource cannot), holds no connection open on a small edge box, and recovers by
// itself after a gateway restart or through an ssh tunnel. Data is put in the page with
// textContent only, never as HTML.
"use strict";

(() => {
  const POLL_MS = 1000;
  const RETRY_MS = 2000;
  const TIMEOUT_MS = 5000;
  const MAX_TAG_ROWS = 1000;
  const TOKEN_KEY = "chenxing-gateway-token";

  const $ = (id) => document.getElementById(id);
  const state = { tags: [], tagsNow: 0, sortKey: "tag", sortDir: 1, lastOk: 0, stopped: false };

  // --- formatting -------------------------------------------------------------------------
  function fmtValue(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "bigint") return v.toString();  // a 64-bit integer, exact
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e9)) return v.toExponential(4);
    return String(Number(v.toFixed(4)));
  }
  function fmtAge(seconds) {
    if (!Number.isFinite(seconds)) return "—";
    if (seconds < 0) seconds = 0;
    if (seconds < 60) return seconds.toFixed(1) + " s";
    if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
    if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }
  function fmtTime(ms) {
    if (!ms) return "—";
    return new Date(ms).toLocaleString(undefined, { hour12: false });
  }
  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function tagAge(t, nowNs) {
    return t.ts_ns > 0 ? (nowNs - t.ts_ns) / 1e9 : NaN;
  }

  // --- DOM helpers --------------------------------------------------------------------------
  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    return td;
  }
  function fillBody(table, rows) {
    const body = $(table).tBodies[0];
    const frag = document.createDocumentFragment();
    for (const row of rows) frag.appendChild(row);
    body.replaceChildren(frag);
  }
  function row(cells, data) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c);
    if (data) for (const [k, v] of Object.entries(data)) tr.dataset[k] = v;
    return tr;
  }
  function setText(id, text, cls) {
    const el = $(id);
    el.textContent = text;
    if (cls !== undefined) el.className = cls;
  }

  // --- tag filter and sort --------------------------------------------------------------------
  function tagMatcher(text) {
    const f = text.trim().toLowerCase();
    if (!f) return () => true;
    if (/[*?]/.test(f)) {  // a glob, like `tail --tag`
      const re = new RegExp("^" + f.replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
      return (t) => re.test(t.tag.toLowerCase());
    }
    return (t) => t.tag.toLowerCase().includes(f);
  }
  function sortValue(t, key, nowNs) {
    if (key === "age") return tagAge(t, nowNs);
    if (key === "value") {
      if (typeof t.value === "bigint") return Number(t.value);  // order only
      return typeof t.value === "number" ? t.value : NaN;
    }
    return String(t[key] ?? "");
  }
  function compare(a, b) {
    const an = typeof a === "number", bn = typeof b === "number";
    if (an && bn) {
      if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
      if (Number.isNaN(b)) return -1;
      return a - b;
    }
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function renderTags() {
    const nowNs = state.tagsNow;
    const match = tagMatcher($("tag-filter").value);
    const { sortKey, sortDir } = state;
    const shown = state.tags.filter(match);
    shown.sort((a, b) => {
      const c = compare(sortValue(a, sortKey, nowNs), sortValue(b, sortKey, nowNs));
      return c !== 0 ? c * sortDir : a.tag.localeCompare(b.tag);
    });
    const rows = shown.slice(0, MAX_TAG_ROWS).map((t) => row([
      cell(t.tag, "tag"),
      cell(fmtValue(t.value), "num value"),
      cell(t.unit, "unit"),
      cell(t.quality, "quality q-" + t.quality),
      cell(fmtAge(tagAge(t, nowNs)), "num age"),
    ], { tag: t.tag }));
    fillBody("tags", rows);
    setText("tag-count", `${shown.length} of ${state.tags.length}`);
    const more = $("tags-more");
    more.hidden = shown.length <= MAX_TAG_ROWS;
    more.textContent = `showing the first ${MAX_TAG_ROWS}; narrow the filter to see the rest`;
  }

  function setupSorting() {
    for (const th of document.querySelectorAll("#tags th[data-sort]")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        state.sortDir = state.sortKey === key ? -state.sortDir : 1;
        state.sortKey = key;
        for (const other of document.querySelectorAll("#tags th[data-sort]")) {
          other.removeAttribute("aria-sort");
        }
        th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
        renderTags();
      });
    }
    $("tag-filter").addEventListener("input", renderTags);
  }

  // --- status ---------------------------------------------------------------------------------
  function renderStatus(s) {
    const gw = s.gateway;
    setText("gw-id", gw.id);
    document.title = `${gw.id} · chenxing-edge`;
    setText("gw-where", [gw.site, gw.line, gw.description].filter(Boolean).join(" · "));
    setText("status", s.status, "badge " + s.status);
    setText("version", gw.version);
    setText("uptime", fmtAge(gw.uptime_s));
    const b = s.broker;
    setText("broker", b.connected ? `connected (${b.url})`
      : `disconnected${b.last_error ? ": " + b.last_error : ""}`, b.connected ? "q-good" : "q-bad");
    const sp = s.spool;
    setText("spool", `${sp.queued + sp.inflight} messages, ${fmtBytes(sp.bytes)} (${sp.kind})` +
      (sp.dropped ? `, ${sp.dropped} dropped` : ""));
    setText("spool-age", sp.oldest_age_s > 0 ? fmtAge(sp.oldest_age_s) : "empty");

    fillBody("devices", s.devices.map((d) => row([
      cell(d.name, "name"),
      cell(d.protocol),
      cell(d.state, "state s-" + d.state),
      cell(fmtTime(d.since_ms)),
      cell(d.samples_read, "num samples"),
      cell(d.errors, "num"),
      cell(d.last_error || ""),
    ], { device: d.name, state: d.state })));

    renderModels(s.models, s.now_ns);

    fillBody("errors", s.errors.map((e) => row([
      cell(fmtTime(e.ts_ms)), cell(e.level, "l-" + e.level), cell(e.logger), cell(e.message),
      cell(e.count, "num"),
    ])));
    setText("errors-total", s.errors_total ? `(${s.errors_total} since start)` : "(none)");
  }

  function renderModels(m, nowNs) {
    $("models-off").hidden = m.enabled;
    $("models-on").hidden = !m.enabled;
    if (!m.enabled) return;
    fillBody("model-files", m.files.map((f) => row([
      cell(f.name || "—"), cell(f.role || ""), cell(f.version || ""), cell(f.file),
      cell(f.loaded ? "yes" : "no", f.loaded ? "q-good" : "q-bad"), cell(f.last_error || ""),
    ])));
    fillBody("model-outputs", m.outputs.map((o) => row([
      cell(o.tag), cell(fmtValue(o.value), "num value"), cell(o.unit),
      cell(o.quality, "q-" + o.quality), cell(fmtAge(tagAge(o, nowNs)), "num age"),
    ], { tag: o.tag })));
    fillBody("alarms", m.alarms.map((a) => row([
      cell(a.tag), cell(a.model),
      cell(a.active ? "ACTIVE" : "clear", "alarm-state " + (a.active ? "a-active" : "a-clear")),
      cell(a.active ? fmtTime(a.since_ms) : ""),
    ], { tag: a.tag, active: String(a.active) })));
    fillBody("alarm-events", m.events.map((e) => row([
      cell(fmtTime(e.ts)), cell(e.tag), cell(e.state, e.state === "raised" ? "a-active" : "a-clear"),
      cell(fmtValue(e.value), "num"),
    ])));
  }

  // --- polling ----------------------------------------------------------------------------------
  class Unauthorized extends Error {}

  // A tag's value beyond 2^53 (a uint64 counter, all-ones "not available") is a JSON integer
  // that a JS number would round: keep it exact as a BigInt, read from the source text
  // (JSON.parse source access). Only "value" keys: times stay numbers for arithmetic.
  function exactValues(key, value, context) {
    if (key === "value" && typeof value === "number" && !Number.isSafeInteger(value)
        && context && /^-?\d+$/.test(context.source)) {
      return BigInt(context.source);
    }
    return value;
  }

  async function getJson(path) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
    try {
      const resp = await fetch(path, { headers, cache: "no-store", signal: ctrl.signal });
      if (resp.status === 401) throw new Unauthorized();
      if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
      return JSON.parse(await resp.text(), exactValues);
    } finally {
      clearTimeout(timer);
    }
  }

  function showBanner(text) {
    const el = $("banner");
    el.hidden = !text;
    el.textContent = text || "";
  }

  function askForToken(wrong) {
    state.stopped = true;
    $("content").hidden = true;
    $("token-form").hidden = false;
    setText("status", "login required", "badge unreachable");
    showBanner(wrong ? "The token was refused or the session ended; log in again." : "");
    $("login-user").focus();
  }

  async function poll() {
    if (state.stopped) return;
    let delay = POLL_MS;
    try {
      const [status, tags] = await Promise.all([getJson("api/status"), getJson("api/tags")]);
      state.tags = tags.tags;
      state.tagsNow = tags.now_ns;
      renderStatus(status);
      renderTags();
      state.lastOk = Date.now();
      setText("updated", new Date().toLocaleTimeString(undefined, { hour12: false }));
      showBanner("");
    } catch (err) {
      if (err instanceof Unauthorized) {
        askForToken(Boolean(sessionStorage.getItem(TOKEN_KEY)));
        sessionStorage.removeItem(TOKEN_KEY);
        return;
      }
      delay = RETRY_MS;
      setText("status", "unreachable", "badge unreachable");
      const since = state.lastOk ? ` (last update ${fmtTime(state.lastOk)})` : "";
      showBanner(`Cannot reach the gateway: ${err.message || err}${since}. Retrying…`);
    }
    setTimeout(poll, delay);
  }

  // a user's login: the session token it answers, or null with the reason in the banner
  async function login(user, password) {
    try {
      const resp = await fetch("api/login", {
        method: "POST", cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ user, password }),
      });
      const body = await resp.json().catch(() => ({}));
      if (resp.ok && typeof body.token === "string") return body.token;
      showBanner(`Login refused: ${body.error || "HTTP " + resp.status}`);
    } catch (err) {
      showBanner(`Cannot reach the gateway: ${err.message || err}`);
    }
    return null;
  }

  function setupToken() {
    $("token-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const user = $("login-user").value.trim();
      let token = $("token-input").value.trim();
      if (user) {
        token = await login(user, $("login-password").value);
        $("login-password").value = "";
        if (!token) return;
      }
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token-input").value = "";
      $("token-form").hidden = true;
      $("content").hidden = false;
      showBanner("");
      state.stopped = false;
      poll();
    });
  }

  setupSorting();
  setupToken();
  poll();
})();
