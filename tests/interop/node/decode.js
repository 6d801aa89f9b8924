// Decode Sparkplug B payloads with Eclipse Tahu's JavaScript codec (sparkplug-payload),
// as a second opinion on the gateway's bytes. Reads one hex payload per line on stdin and
// prints one JSON object per line: {timestamp, seq, metrics: [{name, alias, type, value}]}.
// 64-bit values (long.js Longs) are printed as decimal strings so that nothing is rounded.
"use strict";
const readline = require("readline");
const Long = require("long");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

function plain(value) {
  if (Long.isLong(value)) return value.toString();
  if (value === undefined) return null;
  return value;
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  let out;
  try {
    const payload = sparkplug.decodePayload(Buffer.from(line.trim(), "hex"));
    out = {
      timestamp: plain(payload.timestamp),
      seq: plain(payload.seq),
      metrics: (payload.metrics || []).map((m) => ({
        name: m.name === undefined ? null : m.name,
        alias: plain(m.alias),
        type: m.type === undefined ? null : m.type,
        value: plain(m.value),
      })),
    };
  } catch (err) {
    out = { error: String(err) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});
