// chenxing-edge console: the Configure tab (admin): devices and tags without YAML through the
// config API (docs/console.md). Every change is previewed first (the API's dry run: the diff
// of the YAML and its problems in the `validate` wording) and applied only on a second click;
// the API keeps the version history, from which one click rolls back.
"use strict";

(() => {
  const { t } = window.ChxI18n;
  const W = window.ChxWizard;
  const F = window.ChxFormat;
  const $ = (id) => document.getElementById(id);
  // the tab's words in zh-CN (keyed by the English)
  const ZH = {"Devices": "设备", "device": "设备", "protocol": "协议", "tags": "点位", "enabled": "启用", "Add a device": "添加设备", "1. protocol, address, connection test": "1. 协议、地址、连接测试", "name": "名称", "test connection": "测试连接", "2. browse or scan, tick tags": "2. 浏览或扫描，勾选点位", "browse / scan": "浏览 / 扫描", "point": "数据点", "value": "值", "unit": "单位", "scale": "比例", "3. preview the change, apply": "3. 预览变更并应用", "preview": "预览", "Change": "变更", "apply": "应用", "History": "历史", "version": "版本", "time": "时间", "author": "作者", "summary": "摘要", "remove": "删除", "save": "保存", "export CSV": "导出 CSV", "export XLSX": "导出 XLSX", "import": "导入", "merge": "合并", "replace": "替换", "diff": "差异", "roll back to this": "回滚到此版本", "table": "寄存器表", "start": "起始", "count": "数量", "address": "地址", "type": "类型", "edit": "编辑", "settings": "设置", "browse, then tick a tag to test with": "请先浏览并勾选一个点位再测试", "tag": "点位"};
  function w(text) { return window.ChxI18n.lang === "zh-CN" ? (ZH[text] || text) : text; }
  const cfg = { version: null, devices: [], protocols: [], candidates: [], device: null, loaded: false };
  window.ChxConfig = cfg;

  function api(path, options) { return window.ChxApi.api(path, options); }
  function send(method, path, body) {
    return api(path, { method, headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body) });
  }
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") e.textContent = String(v);
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function say(id, lines, cls = "") {
    const box = $(id);
    box.className = "say " + cls;
    box.replaceChildren(...[].concat(lines).map((l) => el("div", { text: l })));
  }

  // --- the tab's skeleton ------------------------------------------------------------------------
  function build() {
    const tab = $("tab-config");
    tab.replaceChildren(
      el("h2", { text: w("Devices") }),
      el("table", { id: "cfg-devices", class: "grid" },
        el("thead", {}, el("tr", {}, ...["device", "protocol", "tags", "enabled", ""].map((h) => el("th", { text: w(h) })))),
        el("tbody")),
      el("div", { id: "cfg-device-tags" }),
      el("h2", { text: w("Add a device") }),
      el("div", { class: "wizard", id: "cfg-wizard" },
        el("fieldset", {}, el("legend", { text: w("1. protocol, address, connection test") }),
          el("label", {}, w("protocol"), el("select", { id: "wz-protocol", onchange: fields })),
          el("label", {}, w("name"), el("input", { id: "wz-name", autocomplete: "off", spellcheck: "false" })),
          el("span", { id: "wz-fields" }),
          el("button", { type: "button", id: "wz-test", onclick: testConnection, text: w("test connection") }),
          el("div", { id: "wz-test-result", class: "say" })),
        el("fieldset", {}, el("legend", { text: w("2. browse or scan, tick tags") }),
          el("span", { id: "wz-scan-fields" }),
          el("button", { type: "button", id: "wz-discover", onclick: discover, text: w("browse / scan") }),
          el("div", { id: "wz-discover-result", class: "say" }),
          el("table", { id: "wz-candidates", class: "grid" },
            el("thead", {}, el("tr", {}, ...["", "point", "value", "name", "unit", "scale"].map((h) => el("th", { text: w(h) })))),
            el("tbody"))),
        el("fieldset", {}, el("legend", { text: w("3. preview the change, apply") }),
          el("button", { type: "button", id: "wz-preview", onclick: previewDevice, text: w("preview") }))),
      el("h2", { text: w("Change") }),
      el("div", { id: "cfg-change" },
        el("div", { id: "cfg-change-say", class: "say" }),
        el("pre", { id: "cfg-diff", class: "diff", hidden: "" }),
        el("button", { type: "button", id: "cfg-apply", hidden: "", onclick: applyPending, text: w("apply") })),
      el("h2", { text: w("History") }),
      el("table", { id: "cfg-history", class: "grid" },
        el("thead", {}, el("tr", {}, ...["version", "time", "author", "summary", ""].map((h) => el("th", { text: w(h) })))),
        el("tbody")));
  }

  // --- reading ----------------------------------------------------------------------------------
  async function load() {
    if (!cfg.loaded) { build(); cfg.loaded = true; }
    const [devices, protocols] = await Promise.all([api("api/config/devices"), api("api/config/protocols")]);
    if (!devices.ok) {
      say("cfg-change-say", [`the config API answered ${devices.status}: ${devices.body.error || ""}`], "q-bad");
      return;
    }
    cfg.version = devices.body.version;
    cfg.devices = devices.body.devices;
    cfg.protocols = protocols.ok ? (protocols.body.protocols || protocols.body) : [];
    $("cfg-devices").tBodies[0].replaceChildren(...cfg.devices.map((d) => el("tr", { "data-device": d.name },
      el("td", { class: "nowrap", text: d.name }), el("td", { text: d.protocol }),
      el("td", { class: "num", text: d.tags }), el("td", { text: d.enabled === false ? "no" : "yes" }),
      el("td", {}, el("button", { type: "button", class: "small", text: w("edit"), onclick: () => editDevice(d.name) }),
        " ", el("button", { type: "button", class: "small", text: w("tags"), onclick: () => deviceTags(d.name) }),
        " ", el("button", { type: "button", class: "small", text: w("remove"),
          onclick: () => preview("DELETE", `api/config/devices/${encodeURIComponent(d.name)}?version=${cfg.version}`) })))));
    const select = $("wz-protocol");
    const chosen = select.value;
    select.replaceChildren(...cfg.protocols.map((p) => el("option", { value: p.protocol, text: p.title || p.protocol })));
    if (chosen) select.value = chosen;
    fields();
    await history();
  }
  function protocol() { return cfg.protocols.find((p) => p.protocol === $("wz-protocol").value) || {}; }
  const SKIP = new Set(["name", "protocol", "tags", "description", "enabled"]);
  function fields() {
    const p = protocol();
    const props = (p.fields && p.fields.properties) || { host: { type: "string" }, port: { type: "integer" } };
    const required = new Set((p.fields && p.fields.required) || []);
    const keys = Object.keys(props).filter((k) => !SKIP.has(k) && (required.has(k) || ["host", "port", "endpoint", "unit_id", "rack", "slot", "poll_interval"].includes(k)));
    $("wz-fields").replaceChildren(...keys.map((k) => el("label", {}, k,
      el("input", { "data-field": k, autocomplete: "off", spellcheck: "false",
        placeholder: props[k].default !== undefined ? String(props[k].default) : "" }))));
    $("wz-scan-fields").replaceChildren(...(p.scan ? [
      el("label", {}, w("table"), el("select", { id: "wz-table" }, ...["holding", "input", "coil", "discrete"].map((x) => el("option", { value: x, text: x })))),
      el("label", {}, w("start"), el("input", { id: "wz-start", value: "0", inputmode: "numeric" })),
      el("label", {}, w("count"), el("input", { id: "wz-count", value: "20", inputmode: "numeric" }))] : []));
  }
  function wizardDevice() {
    const values = {};
    for (const input of document.querySelectorAll("#wz-fields input")) values[input.dataset.field] = input.value;
    return W.deviceFromForm($("wz-protocol").value, $("wz-name").value, values, protocol().fields);
  }

  // --- the wizard ---------------------------------------------------------------------------------
  async function testConnection() {
    const device = wizardDevice();
    const problems = W.deviceProblems(device, cfg.devices.map((d) => d.name));
    if (problems.length) return say("wz-test-result", problems, "q-bad");
    // the check reads tags: the ticked ones, else (Modbus) one register where the scan starts
    let tags = cfg.candidates.length ? tickedTags() : [];
    if (!tags.length && $("wz-table")) {
      const table = $("wz-table").value;
      tags = [{ name: "probe", table, address: Number($("wz-start").value) || 0,
        type: table === "coil" || table === "discrete" ? "bool" : "uint16" }];
    }
    if (!tags.length) return say("wz-test-result", [w("browse, then tick a tag to test with")], "q-bad");
    say("wz-test-result", ["…"]);
    const r = await send("POST", "api/config/test-connection", { device: { ...device, tags } });
    const b = r.body;
    say("wz-test-result", [`${b.ok ? "OK" : "FAILED"}: ${b.reason || b.error || r.status}`,
      b.identity ? `identity: ${typeof b.identity === "string" ? b.identity : JSON.stringify(b.identity)}` : null].filter(Boolean),
    b.ok ? "q-good" : "q-bad");
  }
  async function discover() {
    const device = { ...wizardDevice(), tags: [] };
    const p = protocol();
    let r;
    if (p.scan && $("wz-table")) {
      r = await send("POST", "api/scan", { device, table: $("wz-table").value,
        start: Number($("wz-start").value), count: Number($("wz-count").value) });
      cfg.candidates = r.ok ? W.scanCandidates(r.body.rows, $("wz-table").value) : [];
    } else {
      r = await send("POST", "api/browse", { device, builtin: false });
      cfg.candidates = r.ok ? W.browseCandidates(r.body.nodes) : [];
    }
    if (!r.ok) return say("wz-discover-result", W.problemLines(r.body), "q-bad");
    say("wz-discover-result", [`${cfg.candidates.length} points`]);
    $("wz-candidates").tBodies[0].replaceChildren(...cfg.candidates.map((c) => el("tr", { "data-key": c.key },
      el("td", {}, el("input", { type: "checkbox", "data-tick": c.key })),
      el("td", { class: "nowrap", text: c.label, title: c.label }),
      el("td", { class: "num", text: F.value(c.value) }),
      el("td", {}, el("input", { "data-edit": "name", value: c.tag.name, spellcheck: "false" })),
      el("td", {}, el("input", { "data-edit": "unit", size: "6" })),
      el("td", {}, el("input", { "data-edit": "scale", size: "6", inputmode: "decimal" })))));
  }
  function tickedTags() {
    const ticked = [];
    const edits = {};
    for (const tr of $("wz-candidates").tBodies[0].rows) {
      const key = tr.dataset.key;
      if (!tr.querySelector("[data-tick]").checked) continue;
      ticked.push(cfg.candidates.find((c) => c.key === key));
      edits[key] = Object.fromEntries([...tr.querySelectorAll("[data-edit]")].map((i) => [i.dataset.edit, i.value]));
    }
    return W.tagsFromTicked(ticked, edits);
  }
  function previewDevice() {
    const device = wizardDevice();
    const tags = tickedTags();
    const problems = [...W.deviceProblems(device, cfg.devices.map((d) => d.name)), ...W.tagProblems(tags)];
    if (!tags.length) problems.push("tick at least one tag");
    if (problems.length) return say("cfg-change-say", problems, "q-bad");
    preview("POST", "api/config/devices", { version: cfg.version, device: { ...device, tags } });
  }

  // --- a device's settings: its keys as fields, sent whole with its tags (PUT) ----------------------
  async function editDevice(name) {
    const box = $("cfg-device-tags");
    const path = `api/config/devices/${encodeURIComponent(name)}`;
    const r = await api(path);
    if (!r.ok) return say("cfg-change-say", W.problemLines(r.body), "q-bad");
    const device = r.body.device;
    const schema = (cfg.protocols.find((p) => p.protocol === device.protocol) || {}).fields;
    const plain = Object.entries(device).filter(([k, v]) => k !== "tags" && k !== "protocol"
      && (v === null || typeof v !== "object"));
    const inputs = plain.map(([k, v]) => el("input", { "data-setting": k, value: String(v ?? ""),
      spellcheck: "false", autocomplete: "off" }));
    box.replaceChildren(el("h3", { text: `${name}: ${w("settings")}` }),
      el("div", { class: "wizard", id: "cfg-device-form" },
        ...plain.map(([k], i) => el("label", {}, k, inputs[i])),
        el("button", { type: "button", id: "cfg-device-preview", text: w("preview"), onclick: () => {
          const values = Object.fromEntries(inputs.map((i) => [i.dataset.setting, i.value]));
          const typed = W.deviceFromForm(device.protocol, values.name ?? name, values, schema);
          preview("PUT", path, { version: cfg.version, device: { ...device, ...typed } });
        } })));
  }

  // --- a device's tags ------------------------------------------------------------------------------
  async function deviceTags(name) {
    const box = $("cfg-device-tags");
    const path = `api/config/devices/${encodeURIComponent(name)}/tags`;
    const r = await api(path);
    if (!r.ok) return say("cfg-change-say", W.problemLines(r.body), "q-bad");
    const file = el("input", { type: "file", accept: ".csv,.xlsx", id: "cfg-import-file" });
    const mode = el("select", { id: "cfg-import-mode" }, el("option", { value: "merge", text: w("merge") }), el("option", { value: "replace", text: w("replace") }));
    box.replaceChildren(el("h3", { text: `${name}: tags` }),
      el("div", { class: "toolbar" },
        el("button", { type: "button", id: "cfg-export-csv", text: w("export CSV"), onclick: () => download(`${path}.csv`, `${name}-tags.csv`) }),
        el("button", { type: "button", id: "cfg-export-xlsx", text: w("export XLSX"), onclick: () => download(`${path}.xlsx`, `${name}-tags.xlsx`) }),
        file, mode,
        el("button", { type: "button", id: "cfg-import", text: w("import"), onclick: () => importFile(path, file, mode.value) })),
      el("table", { class: "grid", id: "cfg-tags" },
        el("thead", {}, el("tr", {}, ...["tag", "address", "type", "unit", "scale", ""].map((h) => el("th", { text: w(h) })))),
        el("tbody", {}, ...r.body.tags.map((tag) => {
          const unit = el("input", { value: tag.unit || "", size: "6" });
          const scale = el("input", { value: tag.scale ?? "", size: "6", inputmode: "decimal" });
          const tagPath = `${path}/${encodeURIComponent(tag.name)}`;
          return el("tr", { "data-tag": tag.name },
            el("td", { class: "nowrap", text: tag.name }),
            el("td", { class: "nowrap", text: tag.node_id || [tag.table, tag.address].filter((x) => x !== undefined).join(" ") }),
            el("td", { text: tag.type || "" }), el("td", {}, unit), el("td", {}, scale),
            el("td", {},
              el("button", { type: "button", class: "small", text: w("save"), onclick: () => {
                const edited = { ...tag, unit: unit.value.trim() };
                if (scale.value.trim() === "") delete edited.scale; else edited.scale = Number(scale.value);
                preview("PUT", tagPath, { version: cfg.version, tag: edited });
              } }), " ",
              el("button", { type: "button", class: "small", text: w("remove"),
                onclick: () => preview("DELETE", `${tagPath}?version=${cfg.version}`) })));
        }))));
  }
  async function download(path, name) {
    const token = sessionStorage.getItem("chenxing-gateway-token");
    const resp = await fetch(location.pathname.replace(/console\/.*$/, "") + path,
      { headers: token ? { Authorization: "Bearer " + token } : {}, cache: "no-store" });
    if (!resp.ok) return say("cfg-change-say", [`export: HTTP ${resp.status}`], "q-bad");
    const url = URL.createObjectURL(await resp.blob());
    const a = el("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  async function importFile(path, input, mode) {
    const file = input.files && input.files[0];
    if (!file) return say("cfg-change-say", ["choose a .csv or .xlsx file"], "q-bad");
    const ext = file.name.toLowerCase().endsWith(".xlsx") ? "xlsx" : "csv";
    const type = ext === "xlsx" ? "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" : "text/csv";
    pending = { method: "POST", path: `${path}.${ext}?mode=${mode}&version=${cfg.version}`, raw: await file.arrayBuffer(), type };
    await runPreview();
  }

  // --- preview, apply ---------------------------------------------------------------------------
  let pending = null;
  function withDryRun(path) { return path + (path.includes("?") ? "&" : "?") + "dry_run=1"; }
  async function call(p, dry) {
    const path = dry ? withDryRun(p.path) : p.path;
    if (p.raw) return api(path, { method: p.method, headers: { "Content-Type": p.type }, body: p.raw });
    return send(p.method, path, p.body);
  }
  async function preview(method, path, body) {
    pending = { method, path, body };
    await runPreview();
  }
  async function runPreview() {
    const r = await call(pending, true);
    const b = r.body;
    const ok = r.ok && b.outcome !== "invalid";
    showDiff(b.diff);
    say("cfg-change-say", ok ? [`preview: ${b.summary || b.outcome || "valid"}`] : W.problemLines(b), ok ? "" : "q-bad");
    $("cfg-apply").hidden = !ok;
  }
  function showDiff(diff) {
    const pre = $("cfg-diff");
    pre.hidden = !diff;
    pre.replaceChildren(...W.diffLines(diff).map((l) => el("span", { class: l.kind, text: l.text + "\n" })));
  }
  async function applyPending() {
    if (!pending) return;
    $("cfg-apply").hidden = true;
    const r = await call(pending, false);
    const b = r.body;
    pending = null;
    say("cfg-change-say", r.ok ? [`${b.outcome}: version ${b.version}${b.summary ? " · " + b.summary : ""}`] : W.problemLines(b),
      r.ok && b.outcome !== "rolled_back" ? "q-good" : "q-bad");
    await load();
  }

  // --- history, rollback --------------------------------------------------------------------------
  async function history() {
    const r = await api("api/config/history?last=20");
    if (!r.ok) return;
    $("cfg-history").tBodies[0].replaceChildren(...(r.body.versions || []).map((v) => el("tr", { "data-version": String(v.version) },
      el("td", { class: "num", text: v.version }), el("td", { class: "nowrap", text: F.time(v.time_ms || v.ts_ms || Date.parse(v.time)) }),
      el("td", { class: "nowrap", text: `${v.author || ""} (${v.source || ""})` }),
      el("td", { text: [v.status, v.summary, v.reason].filter(Boolean).join(": ") }),
      el("td", {},
        el("button", { type: "button", class: "small", text: w("diff"), onclick: async () => {
          const d = await api(`api/config/versions/${v.version}/diff`);
          showDiff(d.ok ? d.body.diff : "");
          say("cfg-change-say", [`version ${v.version}`]);
        } }), " ",
        v.version === cfg.version ? null : el("button", { type: "button", class: "small", text: w("roll back to this"),
          onclick: () => preview("POST", "api/config/rollback", { version: cfg.version, to: v.version }) })))));
  }

  document.addEventListener("chx-tab", (e) => { if (e.detail === "config") load(); });
  document.addEventListener("chx-lang", () => {
    if (!cfg.loaded) return;
    cfg.loaded = false;  // built again in the new language when shown
    if (!$("tab-config").hidden) load();
  });
})();
