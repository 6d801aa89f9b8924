// chenxing-edge console: numbers, times and ages as the rest of the gateway writes them.
// Values as `chenxing-gateway tail` prints them (Python's "%.6g"; integers and 64-bit integers
// exactly, as BigInt); dates ISO-like in local time (2026-12-05 07:01:13), never US order.
"use strict";

(() => {
  // Python's format(v, ".6g")
  function g6(v) {
    if (Number.isNaN(v)) return "nan";
    if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
    if (v === 0) return Object.is(v, -0) ? "-0" : "0";
    const [mant, expText] = v.toExponential(5).split("e");
    const exp = Number(expText);
    if (exp >= -4 && exp < 6) return strip(v.toFixed(5 - exp));
    const e = Math.abs(exp);
    return `${strip(mant)}e${exp < 0 ? "-" : "+"}${e < 10 ? "0" : ""}${e}`;
  }
  function strip(text) {
    return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
  }

  function value(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "bigint") return v.toString();  // an integer in the JSON: exact
    if (typeof v === "boolean") return v ? "true" : "false";
    if (typeof v === "number") return g6(v);
    return String(v);
  }

  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function time(ms) {
    if (!ms) return "-";
    const d = new Date(Number(ms));
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function clock(ms) {
    const d = new Date(Number(ms));
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  // an age as `tail` shows it: seconds with a tenth below 2 minutes, then minutes, hours, days
  function age(seconds) {
    if (!Number.isFinite(seconds)) return "-";
    const s = Math.max(0, seconds);
    if (s < 120) return `${s.toFixed(1)} s`;
    if (s < 7200) return `${Math.floor(s / 60)} min`;
    if (s < 172800) return `${Math.floor(s / 3600)} h`;
    return `${Math.floor(s / 86400)} d`;
  }
  // a duration in whole seconds below 2 minutes ("down for 12 s")
  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return s < 120 ? `${s} s` : age(s);
  }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
  }
  function rate(n) {
    return Number.isInteger(n) ? String(n) : n.toFixed(1);
  }

  // JSON.parse with a reviver: a tag's value (keys "value", "v", "gv") that is an integer in
  // the JSON text stays exact as a BigInt (a uint64 beyond 2^53 would round as a JS number); a
  // float in the text ("72.0") stays a number. Needs JSON.parse source access (Chromium 114+).
  const VALUE_KEYS = new Set(["value", "v", "gv"]);
  function parse(text) {
    return JSON.parse(text, (key, v, context) => {
      if (typeof v === "number" && VALUE_KEYS.has(key) && context
          && /^-?\d+$/.test(context.source)) {
        return BigInt(context.source);
      }
      return v;
    });
  }
  // a value as a number for charts and sorting (a BigInt beyond 2^53 is rounded: a picture)
  function num(v) {
    if (typeof v === "bigint") return Number(v);
    if (typeof v === "boolean") return v ? 1 : 0;
    return typeof v === "number" ? v : NaN;
  }

  window.ChxFormat = { g6, value, time, clock, age, duration, bytes, rate, parse, num };
})();
