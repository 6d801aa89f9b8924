// chenxing-edge console: the pure logic of "add a device without YAML" (no DOM, no requests),
// shared by config.js and its unit tests (tests/gateway/test_console_js.py runs it in Node).
// It turns the wizard's form, a scan's or a browse's answer and the ticked rows into the
// config API's bodies (docs/console.md, /work/notes/CONFIG_API.md).
"use strict";

(() => {
  // the config's name rules (gateway/config/types.py: Name, TagName)
  const DEVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
  const TAG_NAME = /^[A-Za-z0-9][A-Za-z0-9_\-/]*$/;

  // a name the config accepts, made from what a browse or a scan called the point
  function tagName(raw, fallback = "tag") {
    let name = String(raw ?? "").normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
      .replace(/[^A-Za-z0-9_\-/]+/g, "_").replace(/_+/g, "_").replace(/^[^A-Za-z0-9]+/, "")
      .replace(/[_/-]+$/, "").slice(0, 128);
    if (!name) name = fallback;
    return name;
  }
  // names unique within the list: a second "temp" becomes "temp_2"
  function uniqueNames(names, taken = []) {
    const used = new Set(taken);
    return names.map((n) => {
      let name = n;
      for (let i = 2; used.has(name); i++) name = `${n}_${i}`;
      used.add(name);
      return name;
    });
  }

  // the form's strings as the device's settings: numbers where the protocol's schema says so
  function deviceFromForm(protocol, name, fields, schema = {}) {
    const props = (schema && schema.properties) || {};
    const device = { name: String(name).trim(), protocol };
    for (const [key, raw] of Object.entries(fields)) {
      const text = String(raw ?? "").trim();
      if (text === "") continue;
      const prop = props[key] || {};  // {type} or {anyOf: [{type}, ...]} (pydantic's schema)
      const kinds = [].concat(prop.type || [], ...(prop.anyOf || []).map((a) => a.type || []));
      if (kinds.includes("integer") && /^-?\d+$/.test(text)) device[key] = Number(text);
      else if (kinds.includes("number") && text !== "" && Number.isFinite(Number(text))) device[key] = Number(text);
      else if (kinds.includes("boolean") && /^(true|false)$/i.test(text)) device[key] = /^true$/i.test(text);
      else device[key] = text;
    }
    return device;
  }
  // what is wrong with the wizard's first step, in words (empty: nothing)
  function deviceProblems(device, existing = []) {
    const problems = [];
    if (!device.name) problems.push("the device needs a name");
    else if (!DEVICE_NAME.test(device.name) || device.name.length > 64) {
      problems.push(`device name ${JSON.stringify(device.name)}: letters, digits, '_' and '-', starting with a letter or digit`);
    } else if (existing.includes(device.name)) problems.push(`a device ${device.name} exists already`);
    if (!device.protocol) problems.push("choose a protocol");
    return problems;
  }

  // a Modbus scan's rows (POST /api/scan: {rows: [{address, register, as: {"uint16": v,
  // "float32 ABCD": v, ...}}]}, a register the device refused: {address, exception}) as
  // candidates, one per address and view; the view's byte order goes into the tag
  function scanCandidates(rows, table) {
    const out = [];
    for (const row of rows || []) {
      for (const [view, value] of Object.entries(row.as || {})) {
        const [type, order] = view.split(" ");
        const tag = { name: tagName(`${table}_${row.address}_${type}${order ? "_" + order : ""}`),
          table, address: row.address, type };
        if (order) tag.byte_order = order;
        out.push({ key: `${table}:${row.address}:${view}`, label: `${table} ${row.address} ${view}`,
          value, tag });
      }
    }
    return out;
  }
  // a browse's nodes (POST /api/browse: {nodes: [{node_id, name, path, data_type, writable,
  // tag?, children?}]}) as candidates: the nodes with a tag entry (variables a tag can read)
  function browseCandidates(nodes) {
    const out = [];
    const walk = (list) => {
      for (const node of list || []) {
        if (node.tag) {
          const label = node.path || node.name;
          out.push({ key: node.node_id, label, value: node.value,
            tag: { ...node.tag, name: tagName(node.tag.name || label) } });
        }
        walk(node.children);
      }
    };
    walk(nodes);
    return out;
  }

  // the ticked candidates with the engineer's names, units and scaling as the tags to add
  function tagsFromTicked(ticked, edits = {}) {
    const names = uniqueNames(ticked.map((c) => tagName((edits[c.key] || {}).name || c.tag.name)));
    return ticked.map((c, i) => {
      const e = edits[c.key] || {};
      const tag = { ...c.tag, name: names[i] };
      if (e.unit) tag.unit = String(e.unit).trim();
      for (const key of ["scale", "offset"]) {
        const text = String(e[key] ?? "").trim();
        if (text !== "" && Number.isFinite(Number(text))) {
          const n = Number(text);
          if (!((key === "scale" && n === 1) || (key === "offset" && n === 0))) tag[key] = n;
        }
      }
      if (e.description) tag.description = String(e.description).trim();
      return tag;
    });
  }
  function tagProblems(tags) {
    const problems = [];
    const seen = new Set();
    for (const tag of tags) {
      if (!TAG_NAME.test(tag.name) || tag.name.length > 128) problems.push(`tag name ${JSON.stringify(tag.name)} is not allowed`);
      if (seen.has(tag.name)) problems.push(`tag ${tag.name} twice`);
      seen.add(tag.name);
      if (tag.scale === 0) problems.push(`tag ${tag.name}: a scale of 0 would make every value 0`);
    }
    return problems;
  }

  // a unified diff as lines to colour: {kind: "add"|"del"|"hunk"|"ctx", text}
  function diffLines(diff) {
    return String(diff || "").split("\n").filter((l, i, all) => l !== "" || i < all.length - 1)
      .map((text) => ({
        kind: text.startsWith("+++") || text.startsWith("---") ? "head"
          : text.startsWith("@@") ? "hunk" : text.startsWith("+") ? "add"
            : text.startsWith("-") ? "del" : "ctx",
        text,
      }));
  }
  // an API refusal's problems in the `validate` wording: "file:line: key: message"
  function problemLines(body) {
    const problems = (body && body.problems) || [];
    if (!problems.length) return [String((body && (body.reason || body.error)) || "refused")];
    return problems.map((p) => [p.file && (p.line ? `${p.file}:${p.line}` : p.file), p.key, p.message]
      .filter(Boolean).join(": "));
  }

  const api = { tagName, uniqueNames, deviceFromForm, deviceProblems, scanCandidates,
    browseCandidates, tagsFromTicked, tagProblems, diffLines, problemLines };
  if (typeof window !== "undefined") window.ChxWizard = api;
  if (typeof module !== "undefined") module.exports = api;
})();
