// chenxing-edge console: the line at a glance, every tag, trends and setpoint writes.
// Live by server-sent events read with fetch() (EventSource cannot send the bearer token):
// one stream per tab, a status once a second and only the tags that changed. Data goes into
// the page with textContent only, never as HTML.
"use strict";

(() => {
  const { t } = window.ChxI18n;
  const F = window.ChxFormat;
  const ROOT = location.pathname.replace(/console\/.*$/, "");
  const TOKEN_KEY = "chenxing-gateway-token";  // the status page's: one login for both
  const RETRY_MS = 2000;
  const ROW_H = 30;  // px, the virtualised table's row height (console.css: .tagcols tr)
  const SPARK_MS = 5000;
  const CHART_MS = 2000;
  const Q = { GOOD: 0, UNCERTAIN: 1, BAD: 2, STALE: 3, NONE: 255 };

  const $ = (id) => document.getElementById(id);
  const state = {
    role: null, status: null, tags: [], byId: new Map(), values: new Map(), qualities: [],
    seq: 0, catalog: 0, shown: [], sortKey: "tag", sortDir: 1, dirty: true, chosen: [],
    sparks: new Map(), stream: null, lastOk: 0, nowMs: Date.now(),
  };
  window.ChxConsole = state;  // for config.js and the browser tests

  // --- requests -----------------------------------------------------------------------------
  class Unauthorized extends Error {}
  function authHeaders(extra = {}) {
    const headers = { Accept: "application/json", ...extra };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    return headers;
  }
  async function api(path, options = {}) {
    const resp = await fetch(ROOT + path, {
      cache: "no-store", ...options, headers: authHeaders(options.headers || {}) });
    if (resp.status === 401) throw new Unauthorized();
    const text = await resp.text();
    let body = {};
    try { body = text ? F.parse(text) : {}; } catch (e) { body = { error: text.slice(0, 200) }; }
    return { ok: resp.ok, status: resp.status, body };
  }
  async function getJson(path) {
    const r = await api(path);
    if (!r.ok) throw new Error(`${path}: ${r.body.error || "HTTP " + r.status}`);
    return r.body;
  }
  window.ChxApi = { api, getJson };

  function banner(text) {
    $("banner").hidden = !text;
    window.ChxFill($("banner"), text || "");
  }

  // --- login --------------------------------------------------------------------------------
  function askLogin(wrong) {
    stopStream();
    sessionStorage.removeItem(TOKEN_KEY);
    $("content").hidden = true;
    $("tabs").hidden = true;
    $("login").hidden = false;
    banner(wrong ? t("session_ended") : "");
    $("login-user").focus();
  }
  async function login(ev) {
    ev.preventDefault();
    const user = $("login-user").value.trim();
    let token = $("login-token").value.trim();
    if (user) {
      const resp = await fetch(ROOT + "api/login", {
        method: "POST", cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ user, password: $("login-password").value }),
      }).catch((e) => ({ ok: false, status: 0, json: async () => ({ error: String(e) }) }));
      $("login-password").value = "";
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok || typeof body.token !== "string") {
        banner(t("login_refused", body.error || "HTTP " + resp.status));
        return;
      }
      token = body.token;
    }
    if (!token) return;
    $("login-token").value = "";
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    banner("");
    start();
  }
  async function logout() {
    await api("api/logout", { method: "POST" }).catch(() => null);
    askLogin(false);
  }

  // --- status: summary, tiles, broker, models, warnings --------------------------------------
  // text into an element; a token with a hyphen or slash ("oven-meter-1", "mqtt://host")
  // goes in a span that does not wrap: browsers may break a line after "-" or "/", which
  // would cut a name in two ("meter-/1")
  function fill(e, text) {
    const s = String(text);
    if (!/[-/]/.test(s)) { e.textContent = s; return; }
    // a date and its time stay together too ("2026-12-05 07:01:13")
    e.replaceChildren(...s.split(/(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\s+)/).filter((tok) => tok)
      .map((tok) => {
      if (!/[-/]/.test(tok)) return document.createTextNode(tok);
      const span = document.createElement("span");
      span.className = "nw";
      span.textContent = tok;
      return span;
    }));
  }
  window.ChxFill = fill;
  function el(tag, cls, text, attrs) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) fill(e, text);
    if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }
  function setText(id, text, cls) {
    const e = $(id);
    fill(e, text);
    if (cls !== undefined) e.className = cls;
  }

  function deviceLine(d, nowMs) {
    const since = (nowMs - d.since_ms) / 1000;
    if (d.state === "up") return t("up_since", F.time(d.since_ms));
    if (d.state === "down") return t("down_for", F.duration(since));
    if (d.state === "starting") return t("starting_since", F.time(d.since_ms));
    return t("stopped");
  }

  // a driver's error in words: the common socket and protocol failures named, the
  // driver's own text kept in the tooltip (and shown as it is when not recognised)
  const ERRORS = [
    [/refused|connect call failed|errno 111/i, "err_refused"],
    [/timed? ?out|no answer|no response/i, "err_timeout"],
    [/no route to host|errno 113|network is unreachable|errno 101/i, "err_unreachable"],
    [/name or service not known|nodename nor servname|getaddrinfo|errno -2/i, "err_dns"],
    [/reset by peer|errno 104|broken pipe|connection lost|closed by/i, "err_reset"],
    [/exception code|illegal (data )?address|illegal function/i, "err_device_exception"],
    [/permission denied|errno 13/i, "err_permission"],
  ];
  function plainError(text) {
    for (const [re, key] of ERRORS) if (re.test(text)) return t(key);
    return text;
  }

  function tile(d, nowMs) {
    const box = el("article", "tile s-" + d.state, null,
      { "data-device": d.name, "data-state": d.state });
    const head = el("div", "tile-head");
    const state = t("state_" + d.state);
    head.append(el("span", "lamp s-" + d.state, null, { role: "img", "aria-label": state, title: state }),
      el("h3", "nowrap", d.name, { title: d.name }));
    box.append(head);
    box.append(el("p", "tile-state", `${d.protocol} · ${deviceLine(d, nowMs)}`));
    box.append(el("p", "tile-figures",
      `${t("samples_per_s", F.rate(d.samples_per_s))} · ${t("tags_of", d.tags, d.tags_bad)}`));
    const error = el("p", "tile-error" + (d.last_error && d.state !== "up" ? " has-error" : ""),
      d.last_error ? `${t("last_error")}: ${plainError(d.last_error)}` : t("no_error"));
    if (d.last_error) error.title = d.last_error;
    box.append(error);
    return box;
  }

  function renderStatus(s) {
    state.status = s;
    state.nowMs = s.now_ns / 1e6;
    const gw = s.gateway;
    setText("gw-id", gw.id);
    document.title = `${gw.id} · chenxing-edge`;
    setText("gw-where", [gw.site, gw.line, gw.description].filter(Boolean).join(" · "));
    $("line-lamp").className = "lamp " + (s.status === "ok" ? "s-up" : "s-down");
    const sum = s.summary;
    setText("sum-devices", `${sum.devices_up} / ${sum.devices}`,
      "v " + (sum.devices_up === sum.devices ? "q-good" : "q-bad"));
    setText("sum-bad", `${sum.tags_bad} / ${sum.tags}`, "v " + (sum.tags_bad ? "q-bad" : "q-good"));
    setText("sum-rate", t("messages_per_s", F.rate(sum.messages_per_s)));
    setText("sum-spool", String(sum.spool_depth), "v " + (sum.spool_depth > 100 ? "q-stale" : ""));
    const b = s.broker;
    setText("sum-broker", b.connected ? t("connected") : t("disconnected"),
      "v " + (b.connected ? "q-good" : "q-bad"));
    setText("sum-updated", F.clock(state.nowMs));

    $("tiles").replaceChildren(...s.devices.map((d) => tile(d, state.nowMs)));
    setText("broker", b.connected ? `${t("connected")} · ${b.url}`
      : `${t("disconnected")}${b.last_error ? " · " + b.last_error : ""}`,
      b.connected ? "q-good" : "q-bad");
    const sp = s.spool;
    setText("spool", t("messages", sp.queued + sp.inflight, F.bytes(sp.bytes)) + ` (${sp.kind})`);
    setText("spool-age", sp.oldest_age_s > 0 ? F.age(sp.oldest_age_s) : t("empty"));
    setText("spool-dropped", String(sp.dropped), sp.dropped ? "q-bad" : "");
    renderModels(s.models);
    $("errors").tBodies[0].replaceChildren(...s.errors.map((e) => {
      const tr = el("tr");
      tr.append(el("td", "nowrap", F.time(e.ts_ms)), el("td", "l-" + e.level, e.level),
        el("td", "nowrap", e.logger, { title: e.logger }), el("td", "msg", e.message),
        el("td", "num", e.count));
      return tr;
    }));
    setText("errors-note", s.errors_hidden ? t("hidden_lines", s.errors_hidden) : "");
    const writer = state.role === "operator" || state.role === "admin";
    state.canWrite = writer && s.writes_enabled;
  }

  function renderModels(m) {
    $("models-off").hidden = m.enabled;
    $("models").replaceChildren(...(m.files || []).map((f) => el("li", "",
      `${f.name || "-"} ${f.version || ""} · ${f.loaded ? t("model_loaded") : t("model_not_loaded")}` +
      (f.last_error ? ` · ${f.last_error}` : ""), { "data-model": f.name || "" })));
    $("alarms").replaceChildren(...(m.alarms || []).map((a) => {
      const li = el("li", a.active ? "a-active" : "a-clear", null,
        { "data-tag": a.tag, "data-active": String(a.active) });
      li.append(el("span", "lamp " + (a.active ? "s-down" : "s-up"), null, { "aria-hidden": "true" }),
        el("span", "", ` ${a.tag}: ${a.active ? t("alarm_active", F.time(a.since_ms)) : t("alarm_clear")}`));
      return li;
    }));
  }

  // --- tags: values, filter, sort, virtualised table -----------------------------------------
  function applyRows(rows) {
    for (const r of rows) state.values.set(r.i, r);
    if (state.sortKey !== "tag") state.dirty = true;
    scheduleTable();
  }
  function setCatalog(body) {
    state.tags = body.tags;
    state.byId = new Map(body.tags.map((tag) => [tag.id, tag]));
    state.qualities = body.qualities;
    state.values = new Map();
    state.seq = body.seq;
    state.catalog = body.catalog_version;
    applyRows(body.values.rows);
    state.dirty = true;
    const list = $("chart-options");
    list.replaceChildren(...body.tags.filter((x) => x.numeric).map((x) => el("option", "", null,
      { value: x.tag })));
    scheduleTable();
  }
  function qualityName(code) {
    return code === Q.NONE || code === undefined ? "none" : (state.qualities[code] || "none");
  }
  function usable(q) { return q === Q.GOOD || q === Q.UNCERTAIN; }

  function matcher(text) {
    const f = text.trim().toLowerCase();
    if (!f) return () => true;
    if (/[*?]/.test(f)) {  // a glob, like `tail --tag`
      const re = new RegExp("^" + f.replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
      return (tag) => re.test(tag.tag.toLowerCase());
    }
    return (tag) => tag.tag.toLowerCase().includes(f);
  }
  function sortValue(tag) {
    const r = state.values.get(tag.id);
    switch (state.sortKey) {
      case "value": return r ? F.num(usable(r.q) ? r.v : r.gv) : NaN;
      case "age": return r && r.t ? state.nowMs - (usable(r.q) ? r.t : r.gt) : NaN;
      case "quality": return r ? r.q : 255;
      default: return tag.tag;
    }
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") {
      if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
      if (Number.isNaN(b)) return -1;
      return a - b;
    }
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }
  function shownTags() {
    if (state.dirty) {
      const match = matcher($("tag-filter").value);
      const keyed = state.tags.filter(match).map((tag) => [sortValue(tag), tag]);
      keyed.sort((x, y) => compare(x[0], y[0]) * state.sortDir
        || x[1].tag.localeCompare(y[1].tag));
      state.shown = keyed.map((x) => x[1]);
      state.dirty = false;
      setText("tag-count", t("shown_of", state.shown.length, state.tags.length));
    }
    return state.shown;
  }

  let tableQueued = false;
  function scheduleTable() {
    if (tableQueued) return;
    tableQueued = true;
    requestAnimationFrame(() => { tableQueued = false; renderTable(); });
  }
  function visibleRange() {
    const box = $("vscroll");
    const first = Math.max(0, Math.floor(box.scrollTop / ROW_H) - 5);
    const count = Math.ceil((box.clientHeight || 600) / ROW_H) + 10;
    return [first, count];
  }
  function renderTable() {
    if ($("tab-tags").hidden) return;
    const shown = shownTags();
    $("vspace").style.height = `${shown.length * ROW_H}px`;
    const [first, count] = visibleRange();
    const table = $("tags");
    table.style.transform = `translateY(${first * ROW_H}px)`;
    const rows = shown.slice(first, first + count).map(tagRow);
    table.tBodies[0].replaceChildren(...rows);
    drawSparks();
  }
  function tagRow(tag) {
    const r = state.values.get(tag.id) || { q: Q.NONE };
    const tr = el("tr", null, null, { "data-tag": tag.tag, "data-id": String(tag.id) });
    const q = qualityName(r.q);
    const good = usable(r.q);
    const shownValue = good ? r.v : r.gv;
    const ageMs = good ? r.t : r.gt;
    const value = el("td", "num value" + (good ? "" : " last-good"), F.value(shownValue));
    if (!good && r.gt) value.title = t("last_good", F.value(r.gv), F.age((state.nowMs - r.gt) / 1000));
    tr.append(el("td", "tag nowrap", tag.tag, { title: tag.tag }), value,
      el("td", "unit nowrap", tag.unit), el("td", "quality q-" + q, t("q_" + q)),
      el("td", "num age" + (good ? "" : " last-good"),
        ageMs ? F.age((state.nowMs - ageMs) / 1000) : "-"));
    const spark = el("td", "spark");
    if (tag.numeric) {
      const canvas = el("canvas", null, null, { width: "96", height: "20", "data-spark": String(tag.id) });
      spark.append(canvas);
    }
    tr.append(spark);
    const act = el("td", "act");
    if (tag.writable && state.canWrite) {
      const b = el("button", "write small", t("write"), { type: "button" });
      b.addEventListener("click", () => openWrite(tag));
      act.append(b);
    }
    tr.append(act);
    return tr;
  }

  // sparklines: the trend ring's last minutes of the rows on screen, fetched every few seconds
  async function fetchSparks() {
    if ($("tab-tags").hidden || !state.tags.length) return;
    const [first, count] = visibleRange();
    const ids = shownTags().slice(first, first + count).filter((x) => x.numeric);
    if (!ids.length) return;
    const q = ids.map((x) => "tag=" + encodeURIComponent(x.tag)).join("&");
    try {
      const body = await getJson(`api/console/trend?${q}&points=60`);
      body.tags.forEach((path, i) => {
        const tag = ids.find((x) => x.tag === path);
        if (tag) state.sparks.set(tag.id, body.v[i]);
      });
      drawSparks();
    } catch (e) { /* the stream's banner says when the gateway is gone */ }
  }
  function drawSparks() {
    for (const canvas of document.querySelectorAll("canvas[data-spark]")) {
      const values = state.sparks.get(Number(canvas.dataset.spark));
      const ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      if (!values || values.length < 2) continue;
      const nums = values.filter((v) => v !== null).map(Number);
      if (!nums.length) continue;
      const lo = Math.min(...nums), hi = Math.max(...nums);
      const span = hi - lo || 1;
      const x = (i) => (i / (values.length - 1)) * (canvas.width - 2) + 1;
      const y = (v) => canvas.height - 2 - ((v - lo) / span) * (canvas.height - 4);
      ctx.strokeStyle = "#2563a8";
      ctx.lineWidth = 1.2;
      ctx.beginPath();
      let pen = false;
      values.forEach((v, i) => {
        if (v === null) { pen = false; return; }  // BAD or STALE: a gap
        if (pen) ctx.lineTo(x(i), y(Number(v))); else ctx.moveTo(x(i), y(Number(v)));
        pen = true;
      });
      ctx.stroke();
    }
  }

  function setupTable() {
    // the rows' table has the header's columns (two tables: the header stays while rows scroll)
    $("tags").prepend(document.querySelector(".vhead colgroup").cloneNode(true));
    $("vscroll").addEventListener("scroll", scheduleTable, { passive: true });
    $("tag-filter").addEventListener("input", () => { state.dirty = true; scheduleTable(); });
    for (const th of document.querySelectorAll(".vhead th[data-sort]")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        state.sortDir = state.sortKey === key ? -state.sortDir : 1;
        state.sortKey = key;
        for (const o of document.querySelectorAll(".vhead th[data-sort]")) o.removeAttribute("aria-sort");
        th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
        state.dirty = true;
        scheduleTable();
      });
    }
    window.addEventListener("resize", scheduleTable);
    setInterval(fetchSparks, SPARK_MS);
  }

  // --- writes (operator): check, confirm, POST /api/writes -------------------------------------
  let writing = null;
  function openWrite(tag) {
    writing = { tag, checked: null };
    const r = state.values.get(tag.id) || {};
    setText("write-tag", tag.tag + (tag.unit ? ` (${tag.unit})` : ""));
    setText("write-current", F.value(usable(r.q) ? r.v : r.gv));
    setText("write-range", tag.range ? `${tag.range[0]} … ${tag.range[1]}` : "-");
    $("write-value").value = "";
    $("write-confirm").hidden = true;
    setText("write-result", "");
    setText("write-ok", t("check_value"));
    $("write-dialog").showModal();
    $("write-value").focus();
  }
  function checkWrite() {
    const text = $("write-value").value.trim();
    const tag = writing.tag;
    let value;
    if (tag.type === "bool") value = /^(1|true|on)$/i.test(text);
    else if (tag.type === "string") value = text;
    else {
      value = Number(text);
      if (!text || !Number.isFinite(value)) return setText("write-result", t("write_not_number"), "q-bad");
      if (tag.range && (value < tag.range[0] || value > tag.range[1])) {
        return setText("write-result", t("write_out_of_range", `${tag.range[0]} … ${tag.range[1]}`), "q-bad");
      }
    }
    writing.checked = value;
    setText("write-confirm", t("confirm_text", tag.tag, text));
    $("write-confirm").hidden = false;
    setText("write-result", "");
    setText("write-ok", t("confirm_write"));
  }
  async function writeOk() {
    if (!writing) return;
    if (writing.checked === null || $("write-confirm").hidden) return checkWrite();
    const { tag, checked } = writing;
    try {
      const r = await api("api/writes", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ writes: [{ tag: tag.tag, value: checked }] }) });
      if (r.ok) setText("write-result", t("write_sent", r.body.status), "q-good");
      else setText("write-result", t("write_refused", r.body.reason || r.body.error || r.status), "q-bad");
    } catch (e) {
      setText("write-result", t("write_refused", e instanceof Unauthorized ? "401" : e.message), "q-bad");
    }
    writing.checked = null;
    $("write-confirm").hidden = true;
    setText("write-ok", t("check_value"));
  }
  function setupWrites() {
    $("write-ok").addEventListener("click", writeOk);
    $("write-value").addEventListener("input", () => {
      if (writing) { writing.checked = null; $("write-confirm").hidden = true; setText("write-ok", t("check_value")); }
    });
    $("write-cancel").addEventListener("click", () => { writing = null; $("write-dialog").close(); });
  }

  // --- trends: uPlot over the ring, BAD/STALE gaps shaded, alarm thresholds as bands -----------
  let chart = null;
  function chosenChips() {
    $("chart-chosen").replaceChildren(...state.chosen.map((path) => {
      const li = el("li", "chip", null, { "data-tag": path });
      const b = el("button", "link", "×", { type: "button", title: t("remove") });
      b.addEventListener("click", () => { state.chosen = state.chosen.filter((p) => p !== path); chosenChips(); refreshChart(); });
      li.append(el("span", "", path), b);
      return li;
    }));
  }
  function addChart() {
    const path = $("chart-add").value.trim();
    const tag = state.tags.find((x) => x.tag === path && x.numeric);
    if (!tag || state.chosen.includes(path)) return;
    state.chosen.push(path);
    $("chart-add").value = "";
    chosenChips();
    refreshChart();
  }
  const COLORS = ["#2563a8", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0e7490"];
  function shadePlugin() {
    return {
      hooks: {
        drawClear: (u) => {
          const body = u.chxBody;
          if (!body) return;
          const ctx = u.ctx;
          const { left, top, width, height } = u.bbox;
          ctx.save();
          // alarm bands: beyond each threshold of a charted model output
          body.tags.forEach((path, i) => {
            const tag = state.tags.find((x) => x.tag === path);
            for (const band of (tag && tag.bands) || []) {
              const yv = u.valToPos(band.above ?? band.below, "y", true);
              ctx.fillStyle = "rgba(198, 40, 40, 0.08)";
              if (band.above !== undefined) ctx.fillRect(left, top, width, Math.max(0, yv - top));
              else ctx.fillRect(left, yv, width, Math.max(0, top + height - yv));
              ctx.strokeStyle = "rgba(198, 40, 40, 0.6)";
              ctx.beginPath(); ctx.moveTo(left, yv); ctx.lineTo(left + width, yv); ctx.stroke();
            }
            // BAD (red) and STALE (amber) periods of this tag: shaded columns
            const q = body.q[i];
            for (let j = 0; j < q.length; j++) {
              if (q[j] !== Q.BAD && q[j] !== Q.STALE) continue;
              const x0 = u.valToPos(body.ts[j] / 1000, "x", true);
              const x1 = j + 1 < q.length ? u.valToPos(body.ts[j + 1] / 1000, "x", true) : left + width;
              ctx.fillStyle = q[j] === Q.BAD ? "rgba(198, 40, 40, 0.12)" : "rgba(161, 92, 0, 0.12)";
              ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
            }
          });
          ctx.restore();
        },
      },
    };
  }
  async function refreshChart() {
    const box = $("chart");
    if ($("tab-trends").hidden) return;
    if (!state.chosen.length) { if (chart) { chart.destroy(); chart = null; } box.replaceChildren(); return; }
    const seconds = $("chart-window").value;
    const q = state.chosen.map((p) => "tag=" + encodeURIComponent(p)).join("&");
    let body;
    try { body = await getJson(`api/console/trend?${q}&seconds=${seconds}`); } catch (e) { return; }
    const data = [body.ts.map((ms) => ms / 1000), ...body.v.map((col) => col.map((v) => (v === null ? null : Number(v))))];
    const width = Math.max(300, box.clientWidth || 800);
    const key = body.tags.join("\n") + "|" + width;
    if (chart && chart.chxKey === key) {
      chart.chxBody = body;
      chart.setData(data);
      return;
    }
    if (chart) chart.destroy();
    const opts = {
      width, height: 320,
      series: [{}, ...body.tags.map((path, i) => ({
        label: path, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
        value: (u, v) => (v === null ? "-" : F.g6(v)),
      }))],
      // whole seconds only between ticks (the labels are hh:mm:ss): no two alike
      axes: [{ incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600],
        values: (u, ticks) => ticks.map((s) => F.clock(s * 1000)) }, {}],
      plugins: [shadePlugin()],
    };
    chart = new window.uPlot(opts, data, box);
    chart.chxBody = body;
    chart.chxKey = key;
    chart.redraw(false);
    box.dataset.series = String(body.tags.length);
  }
  function setupTrends() {
    $("chart-add-button").addEventListener("click", addChart);
    $("chart-add").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addChart(); } });
    $("chart-window").addEventListener("change", () => { if (chart) chart.chxKey = null; refreshChart(); });
    setInterval(refreshChart, CHART_MS);
  }

  // --- messages: what the gateway published, decoded (polled once a second while shown) ----------
  const MESSAGES_MS = 1000;
  const MESSAGES_KEPT = 100;
  const msg = { seq: 0, list: [], filter: "" };
  async function fetchMessages() {
    if ($("tab-messages").hidden) return;
    const filter = $("msg-filter").value.trim();
    if (filter !== msg.filter) { msg.filter = filter; msg.seq = 0; msg.list = []; }
    let body;
    try {
      body = await getJson(`api/console/messages?since=${msg.seq}&filter=${encodeURIComponent(filter)}`);
    } catch (e) { return; }
    msg.seq = body.seq;
    msg.list = body.messages.reverse().concat(msg.list).slice(0, MESSAGES_KEPT);
    $("messages").tBodies[0].replaceChildren(...msg.list.map((m) => {
      const samples = m.samples.slice(0, 8).map((x) => `${x.tag} = ${F.value(x.value)}`)
        .join(" · ") + (m.samples.length > 8 ? ` · … (${m.samples.length})` : "");
      const tr = el("tr", null, null, { "data-kind": m.kind, "data-topic": m.topic });
      tr.append(el("td", "nowrap", F.clock(m.ts_ms)),
        el("td", "nowrap", m.msg_seq === null ? m.kind : `${m.kind} #${m.msg_seq}`),
        el("td", "nowrap", m.topic, { title: m.topic }),
        el("td", "msg", samples || m.note || `${m.bytes} B`));
      return tr;
    }));
  }
  setInterval(fetchMessages, MESSAGES_MS);

  // --- tabs ---------------------------------------------------------------------------------------
  function showTab() {
    const name = (location.hash || "#overview").slice(1);
    const known = ["overview", "tags", "trends", "messages", "config"];
    const tab = known.includes(name) && !(name === "config" && state.role !== "admin") ? name : "overview";
    for (const k of known) $("tab-" + k).hidden = k !== tab;
    for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("on", a.dataset.tab === tab);
    if (tab === "tags") { scheduleTable(); fetchSparks(); }
    if (tab === "trends") refreshChart();
    if (tab === "messages") fetchMessages();
    document.dispatchEvent(new CustomEvent("chx-tab", { detail: tab }));
  }

  // --- the event stream ---------------------------------------------------------------------------
  function stopStream() {
    if (state.stream) state.stream.abort();
    state.stream = null;
  }
  function dispatch(event, data) {
    if (event === "status") {
      const s = F.parse(data);
      if (!s.gateway) return;  // the first tick of a stream has not come yet
      renderStatus(s);
      scheduleTable();
    } else if (event === "tags") {
      const body = F.parse(data);
      state.seq = body.seq;
      applyRows(body.rows);
    } else if (event === "catalog") {
      resync();
    }
  }
  async function stream() {
    const ctrl = new AbortController();
    state.stream = ctrl;
    const resp = await fetch(`${ROOT}api/console/events?since=${state.seq}&catalog=${state.catalog}`,
      { headers: authHeaders({ Accept: "text/event-stream" }), cache: "no-store", signal: ctrl.signal });
    if (resp.status === 401) throw new Unauthorized();
    if (!resp.ok || !resp.body) throw new Error(`api/console/events: HTTP ${resp.status}`);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) {
          dispatch(event, data.join("\n"));
          state.lastOk = Date.now();
          banner("");
        }
      }
    }
    // the gateway ends a stream every minute (and at the session's end): the next request
    // is checked again
  }
  async function resync() {
    setCatalog(await getJson("api/console/tags"));
  }
  async function run() {
    let fresh = true;  // the tag list is read again after a failure, not after a clean end
    for (;;) {
      try {
        const me = await getJson("api/me");
        state.role = me.role;
        setText("who", me.user ? `${me.user} · ${me.role}` : me.role);
        $("logout").hidden = me.via !== "session";
        document.querySelector('#tabs a[data-tab="config"]').hidden = me.role !== "admin";
        $("content").hidden = false;
        $("tabs").hidden = false;
        if (fresh) { showTab(); await resync(); }
        fresh = false;
        const opened = Date.now();
        await stream();
        if (Date.now() - opened < 1000) await new Promise((r) => setTimeout(r, RETRY_MS));
        continue;
      } catch (err) {
        if (err instanceof Unauthorized) { askLogin(Boolean(sessionStorage.getItem(TOKEN_KEY))); return; }
        if (err.name === "AbortError") return;
        const since = state.lastOk ? ` (${F.time(state.lastOk)})` : "";
        banner(t("unreachable", (err.message || String(err)) + since));
        $("line-lamp").className = "lamp s-stopped";
        fresh = true;
      }
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }
  function start() { stopStream(); run(); }

  function setupChrome() {
    window.ChxI18n.apply();
    $("lang").textContent = t("lang_switch");
    $("lang").addEventListener("click", () => {
      window.ChxI18n.toggle();
      $("lang").textContent = t("lang_switch");
      if (state.status) renderStatus(state.status);
      state.dirty = true;
      scheduleTable();
      document.dispatchEvent(new CustomEvent("chx-lang"));
    });
    $("login").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    window.addEventListener("hashchange", showTab);
  }

  setupChrome();
  setupTable();
  setupWrites();
  setupTrends();
  start();
})();
