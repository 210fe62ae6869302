// sluice dashboard: polls /status once a second and renders the job graph,
// key figures, a live throughput chart, checkpoint history and task table.
// Plain JavaScript, no libraries, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

function num(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(2) + " G";
  if (a >= 1e6) return (v / 1e6).toFixed(2) + " M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + " k";
  return v.toFixed(digits === undefined ? 0 : digits);
}
const pct = (v) => (v === null || v === undefined ? "–" : Math.round(v * 100) + " %");
function dur(s) {
  if (s === null || s === undefined) return "–";
  if (s < 120) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(0) + " d";
}
function utc(t) {
  if (t === null || t === undefined) return "–";
  return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
}
function bpClass(bp) { return bp > 0.5 ? "bad" : bp > 0.1 ? "warn" : "ok"; }

function kpis(s) {
  const j = s.job, c = s.checkpoints;
  const items = [
    ["events read", num(j.records_in)],
    ["events / s", num(j.in_rate)],
    ["rows written", num(j.records_out)],
    ["windows emitted", num(j.windows_emitted)],
    ["groups suppressed", num(j.groups_suppressed)],
    ["late records", num(j.late_records)],
    ["dead letters", num(j.dead_letters)],
    ["back pressure", pct(j.backpressure)],
    ["watermark", j.watermark ? utc(j.watermark).slice(11) : "–"],
    ["event-time lag", dur(j.event_time_lag_s)],
    ["checkpoints", c.enabled ? num(c.completed) + (c.failed ? " / " + c.failed + " failed" : "") : "off"],
    ["last checkpoint", c.enabled && c.completed ? c.last_ms + " ms" : "–"],
  ];
  $("kpis").innerHTML = items.map(([l, v]) =>
    `<div class="kpi"><div class="v">${esc(v)}</div><div class="l">${esc(l)}</div></div>`).join("");
}

function graph(s) {
  if (!s.stages.length) {
    $("graph").innerHTML = `<div class="muted">${s.job.state === "finished" ?
      "The job has finished." : "Waiting for the job to start (tables loading)…"}</div>`;
    return;
  }
  const parts = [];
  s.stages.forEach((st, i) => {
    if (i) {
      const prev = s.stages[i - 1];
      parts.push(`<div class="arrow">→<small>${esc(prev.output)}</small></div>`);
    }
    const ops = st.operators.split(" > ").map((o) => `<b>${esc(o)}</b>`).join("");
    const role = st.source ? "source stage" : st.sink ? "sink stage" : "stage";
    parts.push(`<div class="stage ${bpClass(st.backpressure)}" data-stage="${st.stage}">
      <div class="t">Stage ${st.stage} <span class="hint">${role} · ${st.tasks} task${st.tasks > 1 ? "s" : ""}</span></div>
      <div class="ops">${ops}</div>
      <div class="kv">
        <span>in</span><span class="rate-in">${num(st.in_rate)} /s</span>
        <span>out</span><span class="rate-out">${num(st.out_rate)} /s</span>
        <span>back pressure</span><span>${pct(st.backpressure)}</span>
        <span>busy</span><span>${pct(st.busy)}</span>
        <span>input queue</span><span>${st.source ? "–" : pct(st.queue_fill)}</span>
        <span>watermark</span><span>${st.watermark ? utc(st.watermark).slice(11) : "–"}</span>
      </div>
      <div class="bar" title="input queue fill"><i style="width:${Math.round((st.queue_fill || 0) * 100)}%"></i></div>
    </div>`);
  });
  $("graph").innerHTML = parts.join("");
}

function setupCanvas(cv) {
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth, h = cv.height / (cv._dpr || 1);
  if (!cv._h) cv._h = cv.height;
  cv.width = w * dpr; cv.height = cv._h * dpr; cv._dpr = dpr;
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [g, w, cv._h];
}

function chart(s) {
  const [g, w, h] = setupCanvas($("chart"));
  const H = s.history, L = 56, R = 40, T = 10, B = 22;
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui, sans-serif";
  let max = 1;
  for (const p of H) max = Math.max(max, p[1], p[2]);
  max *= 1.1;
  const t1 = H.length ? H[H.length - 1][0] : Date.now() / 1000;
  const span = Math.min(300, Math.max(60, H.length ? t1 - H[0][0] : 60));
  const t0 = t1 - span;
  const x = (t) => L + (w - L - R) * (t - t0) / span;
  const y = (v) => T + (h - T - B) * (1 - v / max);
  g.strokeStyle = "#e1e6ec"; g.fillStyle = "#6b7785"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4, yy = y(v);
    g.beginPath(); g.moveTo(L, yy); g.lineTo(w - R, yy); g.stroke();
    g.fillText(num(v), 4, yy + 4);
    g.fillText((i * 25) + "%", w - R + 6, yy + 4);
  }
  for (let m = 0; m <= 5; m++) {
    const ago = Math.round(span * (5 - m) / 5);
    g.fillText(ago ? "-" + (ago >= 120 ? Math.round(ago / 60) + " min" : ago + " s") : "now",
               x(t0 + span * m / 5) - 14, h - 6);
  }
  const line = (k, color, scale) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    H.forEach((p, i) => {
      const xx = x(p[0]), yy = scale ? T + (h - T - B) * (1 - p[k]) : y(p[k]);
      if (i) g.lineTo(xx, yy); else g.moveTo(xx, yy);
    });
    g.stroke();
  };
  line(3, "rgba(214,69,65,.55)", true);
  line(1, "#2f6fd6");
  line(2, "#16a085");
}

function checkpoints(s) {
  const c = s.checkpoints;
  $("ckhint").textContent = c.enabled ?
    `every ${c.interval_ms} ms · epoch ${c.epoch}` +
    (c.restored_epoch ? ` · restored from ${c.restored_epoch}` : "") +
    (c.age_s !== null ? ` · last ${dur(c.age_s)} ago` : "") : "disabled (no checkpoint.dir)";
  const [g, w, h] = setupCanvas($("ckchart"));
  g.clearRect(0, 0, w, h);
  const hist = c.history.slice(-40);
  let max = 1;
  for (const k of hist) max = Math.max(max, k.ms);
  const bw = Math.min(24, (w - 50) / Math.max(hist.length, 1) - 3);
  g.font = "11px system-ui, sans-serif"; g.fillStyle = "#6b7785";
  g.fillText(max + " ms", 2, 12);
  hist.forEach((k, i) => {
    const bh = (h - 20) * k.ms / max;
    g.fillStyle = k.failed ? "#d64541" : "#2f6fd6";
    g.fillRect(50 + i * (bw + 3), h - 4 - bh, bw, Math.max(bh, 1));
  });
  if (!hist.length) g.fillText("no checkpoint yet", 50, h / 2);
  const rows = hist.slice(-6).reverse().map((k) =>
    `<tr><td>${k.epoch}</td><td>${utc(k.t).slice(11)}</td><td>${k.failed ? "failed" : k.ms + " ms"}</td>
     <td>${num(k.bytes)}B</td><td>${k.pause_us} µs</td></tr>`).join("");
  $("cktable").innerHTML = `<tr><th>epoch</th><th>completed (UTC)</th><th>duration</th>
    <th>size</th><th>longest pause</th></tr>` + rows;
}

function side(s) {
  const types = Object.entries(s.counters || {})
    .filter(([k]) => k.startsWith("sluice_events_total"))
    .map(([k, v]) => [k.replace(/.*event_type="([^"]*)".*/, "$1"), v]);
  $("types").innerHTML = types.length ?
    types.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${num(v)}</td></tr>`).join("") :
    `<tr><td class="muted">not reported by this job</td></tr>`;
  const dead = Object.entries(s.dead_letters);
  $("dead").innerHTML = dead.length ?
    dead.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${num(v)}</td></tr>`).join("") :
    `<tr><td class="muted">none</td></tr>`;
  if (s.canaries) $("canaries").textContent = JSON.stringify(s.canaries);
}

function tasks(s) {
  const rows = s.tasks.map((t) => {
    const c = bpClass(t.backpressure);
    return `<tr><td>${t.stage}.${t.task}</td><td>${num(t.records_in)}</td><td>${num(t.in_rate)}</td>
      <td>${num(t.records_out)}</td><td>${num(t.out_rate)}</td><td>${pct(t.busy)}</td>
      <td class="bp-${c}">${pct(t.backpressure)}</td><td>${t.queue}/${t.queue_cap}</td>
      <td>${t.watermark ? utc(t.watermark).slice(11) : "–"}</td><td>${num(t.windows_emitted)}</td>
      <td>${num(t.groups_suppressed)}</td><td>${num(t.late_records)}</td></tr>`;
  }).join("");
  $("tasks").innerHTML = `<tr><th>task</th><th>records in</th><th>in/s</th><th>records out</th>
    <th>out/s</th><th>busy</th><th>back pressure</th><th>queue</th><th>watermark</th>
    <th>windows</th><th>suppressed</th><th>late</th></tr>` + rows;
}

// Venue reports (docs/venues.md): the business counters
// sluice_venue_subscribers{venue,age_band,gender} hold each group's last
// released (k-anonymous) count; one bar chart per venue, bands in order.
const BANDS = ["0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"];
function venues(s) {
  const re = /^sluice_venue_(subscribers|final)\{venue="([^"]*)",age_band="([^"]*)",gender="([^"]*)"\}$/;
  const v = {};
  for (const [k, n] of Object.entries(s.counters || {})) {
    const m = re.exec(k);
    if (!m) continue;
    const g = (v[m[2]] = v[m[2]] || { bands: {}, final: false });
    if (m[1] === "final") { g.final = g.final || n > 0; continue; }
    g.bands[m[3]] = (g.bands[m[3]] || 0) + n; // genders summed per band
  }
  const names = Object.keys(v).sort();
  $("venuecard").hidden = names.length === 0;
  if (!names.length) return;
  $("venues").innerHTML = names.map((name) => {
    const g = v[name];
    const total = Object.values(g.bands).reduce((a, b) => a + b, 0);
    const max = Math.max(1, ...Object.values(g.bands));
    const rows = BANDS.filter((b) => b in g.bands).map((b) => {
      const n = g.bands[b];
      return `<div class="vrow"><span class="vb">${esc(b)}</span>
        <span class="vbar"><i style="width:${(100 * n / max).toFixed(1)}%"></i></span>
        <span class="vn">${num(n)}</span><span class="vp">${pct(n / total)}</span></div>`;
    }).join("");
    return `<div class="venue" data-venue="${esc(name)}"><div class="t">${esc(name)}
      <span class="hint">${num(total)} people · ${g.final ? "final" : "live"}</span></div>${rows}</div>`;
  }).join("");
}

async function tick() {
  try {
    const r = await fetch("status", { cache: "no-store" });
    const s = await r.json();
    $("jobname").textContent = s.job.name;
    $("state").textContent = s.job.state;
    $("state").className = "pill " + s.job.state;
    $("meta").textContent = `sluice ${s.version} · ${s.job.delivery} · up ${dur(s.job.uptime_s)}`;
    kpis(s); graph(s); chart(s); checkpoints(s); side(s); tasks(s); venues(s);
    document.body.dataset.updated = String(s.now);
  } catch (e) {
    $("state").textContent = "disconnected";
    $("state").className = "pill down";
  }
}
tick();
setInterval(tick, 1000);
