# ruff: noqa: E501  (the page's HTML, CSS and JavaScript, kept readable rather than wrapped)
"""The explorer page's markup, style and script; ``page.write_page`` fills in the title and the data.

The script reads the JSON data from ``<script id="data">``, draws the frame and the maps
(or per-feature bars), the SVG curves with a marker at the current step, and the
bookmarks; ``#step=K`` in the URL opens step ``K``. Errors are written into ``#errors``.
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:12px;color:#222;background:#fafafa}
header h1{font-size:17px;margin:0 0 4px}
header .meta span{margin-right:14px}
#main{display:flex;gap:16px;align-items:flex-start;margin-top:8px;flex-wrap:wrap}
#view{background:#000;image-rendering:pixelated}
#controls{margin:8px 0;display:flex;gap:10px;align-items:center;flex-wrap:wrap}
#scrubber{width:520px}
.chart{background:#fff;border:1px solid #ddd;margin-bottom:6px;width:660px}
.chart h3{font-size:12px;margin:2px 6px;font-weight:600}
.chart svg{display:block;width:100%;height:90px;cursor:crosshair}
.marker{stroke:#000;stroke-width:1.5;vector-effect:non-scaling-stroke}
polyline{fill:none;stroke-width:1.5;vector-effect:non-scaling-stroke}
#bookmarks button{margin:2px}
#bars svg{background:#fff;border:1px solid #ddd}
#errors{color:#b00;white-space:pre}
.legend span{margin-right:10px}
.range{font-weight:normal;color:#666;margin-left:12px}
</style></head>
<body>
<div id="errors"></div>
<header><h1>__TITLE__</h1><div class="meta" id="meta"></div></header>
<div id="controls">
<button id="play">play</button>
<input id="scrubber" type="range" min="0" value="0" step="1">
<span>step <b id="step">0</b> / <span id="last"></span></span>
<label><input type="checkbox" id="show-actor" checked> <span id="label-actor">actor</span> (blue)</label>
<label><input type="checkbox" id="show-critic" checked> <span id="label-critic">critic</span> (red)</label>
</div>
<div id="caption"></div>
<div id="main">
<div><canvas id="view"></canvas><div id="bars"></div></div>
<div id="charts"></div>
</div>
<div id="bookmarks"><b>largest value changes:</b> </div>
<script id="data" type="application/json">__DATA__</script>
<script>__SCRIPT__</script>
</body></html>
"""

SCRIPT = r"""
"use strict";
window.addEventListener("error", function (e) {
  document.getElementById("errors").textContent += "error: " + e.message + "\n";
});
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const T = D.meta.length;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  let step = 0, timer = null;
  const meta = D.meta;
  $("meta").innerHTML = [
    ["return", meta.return], ["length", meta.length + (meta.truncated ? " (cut at --max-steps)" : "")],
    ["checkpoint", meta.checkpoint], ["policy", meta.policy], ["method", meta.method],
  ].map((p) => "<span><b>" + p[0] + ":</b> <span id=\"meta-" + p[0] + "\">" + esc(p[1]) + "</span></span>").join("");
  $("label-actor").textContent = D.labels[0];
  $("label-critic").textContent = D.labels[1];
  const scrubber = $("scrubber");
  scrubber.max = String(T - 1);
  $("last").textContent = String(T - 1);

  function decode(b64) {
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function images(frames) {
    return frames.data.map((b) => { const im = new Image(); im.src = "data:" + frames.mime + ";base64," + b; return im; });
  }

  // --- the frame ---
  const view = $("view"), ctx = view.getContext("2d");
  let drawFrame = function () {};
  if (D.image) {
    const I = D.image, zoom = Math.max(1, Math.round(336 / Math.max(I.width, I.height)));
    view.width = I.width * zoom; view.height = I.height * zoom;
    const frames = images(I.frames);
    const actor = decode(I.actor), critic = I.critic ? decode(I.critic) : null;
    const cells = I.map_width * I.map_height;
    const heat = document.createElement("canvas");
    heat.width = I.map_width; heat.height = I.map_height;
    const hctx = heat.getContext("2d"), pixels = hctx.createImageData(I.map_width, I.map_height);
    drawFrame = function (t) {
      ctx.globalCompositeOperation = "source-over";
      ctx.imageSmoothingEnabled = false;
      ctx.fillStyle = "#000"; ctx.fillRect(0, 0, view.width, view.height);
      ctx.globalAlpha = 0.8;
      if (frames[t].complete) ctx.drawImage(frames[t], 0, 0, view.width, view.height);
      else frames[t].onload = () => { if (step === t) drawFrame(t); };
      ctx.globalAlpha = 1;
      const showA = $("show-actor").checked, showC = $("show-critic").checked && critic;
      for (let k = 0; k < cells; k++) {
        pixels.data[4 * k] = showC ? critic[t * cells + k] : 0;
        pixels.data[4 * k + 1] = 0;
        pixels.data[4 * k + 2] = showA ? actor[t * cells + k] : 0;
        pixels.data[4 * k + 3] = 255;
      }
      hctx.putImageData(pixels, 0, 0);
      ctx.globalCompositeOperation = "lighter";
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(heat, 0, 0, heat.width * I.factor * zoom, heat.height * I.factor * zoom);
      ctx.globalCompositeOperation = "source-over";
      view.dataset.step = String(t);
    };
  } else {
    const V = D.vector, frames = V.frames ? images(V.frames) : null;
    if (frames) { view.width = 360; view.height = 240; } else { view.style.display = "none"; }
    drawFrame = function (t) {
      if (frames) {
        const im = frames[t];
        const paint = () => { view.height = 240; view.width = Math.round(im.naturalWidth * 240 / im.naturalHeight) || 360; ctx.drawImage(im, 0, 0, view.width, view.height); };
        if (im.complete && im.naturalWidth) paint(); else im.onload = () => { if (step === t) paint(); };
      }
      view.dataset.step = String(t);
      drawBars(t);
    };
    const F = V.names.length, rowH = 22, half = 150;
    const maxAbs = (series) => Math.max(1e-12, ...series.flat().map((v) => Math.abs(v || 0)));
    const scaleA = maxAbs(V.actor), scaleC = V.critic ? maxAbs(V.critic) : 1;
    let svg = "<svg id=\"bar-chart\" height=\"" + (F * rowH + 24) + "\">";
    svg += "<text x=\"4\" y=\"14\" font-size=\"12\" fill=\"#2860ff\">" + esc(D.labels[0]) + "</text><text x=\"" + Math.max(48, 12 + 7 * D.labels[0].length) + "\" y=\"14\" font-size=\"12\" fill=\"#e53228\">" + esc(D.labels[1]) + "</text>";
    svg += "<line id=\"bar-zero\" y1=\"20\" y2=\"" + (F * rowH + 22) + "\" stroke=\"#999\"/>";
    for (let k = 0; k < F; k++) {
      const y = 22 + k * rowH;
      // The widest reading a step shows, while the labels are measured.
      svg += "<text class=\"bar-label\" x=\"4\" y=\"" + (y + 15) + "\" font-size=\"12\">" + esc(V.names[k]) + " <tspan id=\"obs-" + k + "\" fill=\"#777\">= -000.000</tspan></text>";
      svg += "<rect id=\"bar-actor-" + k + "\" y=\"" + (y + 2) + "\" height=\"8\" fill=\"#2860ff\"/>";
      svg += "<rect id=\"bar-critic-" + k + "\" y=\"" + (y + 11) + "\" height=\"8\" fill=\"#e53228\"/>";
    }
    $("bars").innerHTML = svg + "</svg>";
    // Bars start right of the longest label (feature name and its reading), so no bar covers text.
    const chart = $("bar-chart");
    const labelEnd = Math.max(100, ...Array.from(chart.querySelectorAll(".bar-label"), (t) => 4 + t.getComputedTextLength()));
    const label = Math.ceil(labelEnd) + 8, width = label + 2 * half + 10;
    chart.setAttribute("width", String(width));
    chart.setAttribute("viewBox", "0 0 " + width + " " + (F * rowH + 24));
    chart.setAttribute("data-label-end", String(labelEnd));
    $("bar-zero").setAttribute("x1", String(label + half));
    $("bar-zero").setAttribute("x2", String(label + half));
    function setBar(id, v, scale, show) {
      const el = $(id), len = show && v !== null ? Math.max(-1, Math.min(1, v / scale)) * half : 0;
      el.setAttribute("x", String(label + half + Math.min(0, len)));
      el.setAttribute("width", String(Math.abs(len)));
      el.setAttribute("data-value", v === null ? "" : String(v));
    }
    var drawBars = function (t) {
      for (let k = 0; k < F; k++) {
        setBar("bar-actor-" + k, V.actor[k][t], scaleA, $("show-actor").checked);
        setBar("bar-critic-" + k, V.critic ? V.critic[k][t] : null, scaleC, $("show-critic").checked && !!V.critic);
        $("obs-" + k).textContent = V.observations[k][t] === null ? "" : "= " + V.observations[k][t].toFixed(3);
      }
    };
  }

  // --- curves ---
  const colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const charts = [];
  function chart(name, title, series) {
    const all = series.flatMap((s) => s.values).filter((v) => v !== null);
    let lo = Math.min(...all), hi = Math.max(...all);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const W = 1000, H = 100, x = (i) => (T > 1 ? (i * W) / (T - 1) : W / 2), y = (v) => H - 4 - ((v - lo) / (hi - lo)) * (H - 8);
    let svg = "<svg id=\"chart-" + name + "\" viewBox=\"0 0 " + W + " " + H + "\" preserveAspectRatio=\"none\">";
    series.forEach((s, k) => {
      const pts = s.values.map((v, i) => x(i).toFixed(1) + "," + y(v === null ? lo : v).toFixed(1)).join(" ");
      svg += "<polyline class=\"curve\" data-name=\"" + esc(s.name) + "\" stroke=\"" + colours[k % colours.length] + "\" points=\"" + pts + "\"/>";
    });
    svg += "<line class=\"marker\" id=\"marker-" + name + "\" x1=\"0\" x2=\"0\" y1=\"0\" y2=\"" + H + "\"/></svg>";
    const legend = series.length > 1 ? "<span class=\"legend\">" + series.map((s, k) => "<span style=\"color:" + colours[k % colours.length] + "\">" + esc(s.name) + "</span>").join("") + "</span>" : "";
    const div = document.createElement("div");
    div.className = "chart";
    // The curves are scaled to fill the box: say the scale, so small swings do not look large.
    const range = all.length ? "<span class=\"range\">y from " + Math.min(...all).toPrecision(3) + " to " + Math.max(...all).toPrecision(3) + "</span>" : "";
    div.innerHTML = "<h3>" + esc(title) + " " + legend + " <span id=\"readout-" + name + "\"></span> " + range + "</h3>" + svg;
    $("charts").appendChild(div);
    const el = div.querySelector("svg");
    el.addEventListener("click", (e) => { const r = el.getBoundingClientRect(); setStep(Math.round(((e.clientX - r.left) / r.width) * (T - 1))); });
    charts.push({ name: name, x: x, series: series });
  }
  if (D.values) chart("value", "value", [{ name: "value", values: D.values }]);
  chart("reward", "reward", [{ name: "reward", values: D.rewards }]);
  chart("actions", meta.outputs === "probability" ? "action probabilities" : meta.outputs === "q_value" ? "Q-values" : "action distribution inputs",
        D.action_outputs.map((v, k) => ({ name: D.action_names[k], values: v })));

  // --- bookmarks ---
  D.bookmarks.forEach((b) => {
    const button = document.createElement("button");
    button.className = "bookmark"; button.dataset.step = String(b);
    const dv = D.values ? (D.values[b] - D.values[b - 1]) : 0;
    button.textContent = "step " + b + " (\u0394V " + (dv >= 0 ? "+" : "") + dv.toFixed(3) + ")";
    button.addEventListener("click", () => setStep(b));
    $("bookmarks").appendChild(button);
  });
  if (!D.bookmarks.length) $("bookmarks").appendChild(document.createTextNode("none"));

  function setStep(t) {
    step = Math.max(0, Math.min(T - 1, t | 0));
    scrubber.value = String(step);
    $("step").textContent = String(step);
    drawFrame(step);
    charts.forEach((c) => {
      const m = $("marker-" + c.name), px = c.x(step).toFixed(1);
      m.setAttribute("x1", px); m.setAttribute("x2", px);
      $("readout-" + c.name).textContent = c.series.map((s) => (c.series.length > 1 ? s.name + " " : "") + (s.values[step] === null ? "n/a" : s.values[step].toFixed(3))).join("  ");
    });
    $("caption").textContent = "step " + step + "  action " + D.actions[step] +
      "  value " + (D.values && D.values[step] !== null ? D.values[step].toFixed(3) : "n/a") +
      "  reward " + (D.rewards[step] === null ? "n/a" : D.rewards[step].toFixed(2));
    document.body.dataset.step = String(step);
  }
  function play(on) {
    if (timer) { clearInterval(timer); timer = null; }
    if (on) timer = setInterval(() => { if (step >= T - 1) play(false); else setStep(step + 1); }, 1000 / (meta.fps || 8));
    $("play").textContent = timer ? "pause" : "play";
  }
  $("play").addEventListener("click", () => { if (!timer && step >= T - 1) setStep(0); play(!timer); });
  scrubber.addEventListener("input", () => setStep(Number(scrubber.value)));
  $("show-actor").addEventListener("change", () => setStep(step));
  $("show-critic").addEventListener("change", () => setStep(step));
  document.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight") { setStep(step + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { setStep(step - 1); e.preventDefault(); }
    else if (e.key === " ") { play(!timer); e.preventDefault(); }
  });
  const wanted = /(?:^|[#&?])step=(\d+)/.exec(location.hash + "&" + location.search);
  setStep(wanted ? Number(wanted[1]) : 0);
  window.addEventListener("hashchange", () => { const m = /step=(\d+)/.exec(location.hash); if (m) setStep(Number(m[1])); });
  document.body.dataset.ready = "1";
})();
"""
