// seawall dashboard: reads api/dashboard every 5 s and draws each point's charts as SVG.
// No framework and nothing fetched from elsewhere: the page works on an offline machine.
// One piece (over 400 lines) on purpose: the page's only script, with no build step to join
// modules; its sections (view, fetching, controls, formatting, charts, timeline) are marked.
"use strict";
(function () {
  const REFRESH_MS = 5000;
  const POINTS_EVERY = 6; // refreshes between reloads of the point and host lists
  const WINDOWS = [900, 3600, 86400];
  const STATES = ["closed", "half_open", "open", "forced_open", "disabled"];
  const SEVERITY = { open: 4, forced_open: 3, half_open: 2, disabled: 1, closed: 0 };
  const NS = "http://www.w3.org/2000/svg";
  const CHART_HEIGHT = 150;
  const LANE = 18;

  const view = { window: 3600, point: "", host: "", end: null };
  let token = sessionStorage.getItem("seawall-token");
  let data = null;
  let known = null;
  let refreshes = 0;
  let timer = null;

  const $ = (id) => document.getElementById(id);

  // -- the URL holds the view, so a link shows the same thing ---------------------

  function readUrl() {
    const q = new URLSearchParams(location.search);
    const w = Number(q.get("window"));
    if (WINDOWS.includes(w)) view.window = w;
    view.point = q.get("point") || "";
    view.host = q.get("host") || "";
    const end = Number(q.get("end"));
    view.end = q.get("end") && isFinite(end) ? end : null;
    const hash = new URLSearchParams(location.hash.slice(1));
    if (hash.get("token")) {
      token = hash.get("token");
      sessionStorage.setItem("seawall-token", token);
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function writeUrl() {
    const q = new URLSearchParams();
    if (view.window !== 3600) q.set("window", view.window);
    if (view.point) q.set("point", view.point);
    if (view.host) q.set("host", view.host);
    if (view.end !== null) q.set("end", view.end);
    const s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : ""));
  }

  // -- fetching ---------------------------------------------------------------------

  class AuthError extends Error {}

  async function api(path, params) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const query = params ? "?" + new URLSearchParams(params).toString() : "";
    const answer = await fetch(path + query, { headers, cache: "no-store" });
    if (answer.status === 401) throw new AuthError("token needed");
    let body = null;
    try { body = await answer.json(); } catch (e) { body = null; }
    if (!answer.ok) throw new Error((body && body.error) || "HTTP " + answer.status);
    return body;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      if (known === null || refreshes % POINTS_EVERY === 0) {
        known = await api("api/points");
        fillFilters();
      }
      const params = { window: view.window };
      if (view.point) params.point = view.point;
      if (view.host) params.host = view.host;
      if (view.end !== null) params.end = view.end;
      data = await api("api/dashboard", params);
      refreshes += 1;
      document.body.dataset.refreshes = String(refreshes);
      $("banner").hidden = true;
      $("token-form").hidden = true;
      render();
    } catch (err) {
      if (err instanceof AuthError) {
        askToken();
        return; // no retry loop until a token is given
      }
      showError(err);
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function askToken() {
    document.body.dataset.state = "auth";
    $("points").replaceChildren();
    $("empty").hidden = true;
    $("token-form").hidden = false;
    setStatus("token needed", "error");
    $("token").focus();
  }

  function showError(err) {
    document.body.dataset.state = data ? "stale" : "error";
    const banner = $("banner");
    banner.textContent = "Cannot read the metrics: " + err.message + ". Retrying every " +
      REFRESH_MS / 1000 + " s" + (data ? "; the charts below are from " + clock(data.now) + "." : ".");
    banner.hidden = false;
    setStatus("no answer since " + (data ? clock(data.now) : "start"), "error");
  }

  // -- controls -----------------------------------------------------------------------

  function fillFilters() {
    fillSelect($("point"), known.points.map((p) => p.name), view.point, "all points");
    fillSelect($("host"), known.hosts, view.host, "all hosts");
  }

  function fillSelect(select, names, chosen, everything) {
    const all = names.slice();
    if (chosen && !all.includes(chosen)) all.push(chosen);
    const options = [new Option(everything, "")].concat(all.map((n) => new Option(n, n)));
    select.replaceChildren(...options);
    select.value = chosen;
  }

  function wire() {
    for (const button of document.querySelectorAll("#windows button")) {
      button.addEventListener("click", () => {
        view.window = Number(button.dataset.window);
        markWindow();
        writeUrl();
        refresh();
      });
    }
    $("point").addEventListener("change", (e) => { view.point = e.target.value; writeUrl(); refresh(); });
    $("host").addEventListener("change", (e) => { view.host = e.target.value; writeUrl(); refresh(); });
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      token = $("token").value.trim();
      sessionStorage.setItem("seawall-token", token);
      known = null;
      refresh();
    });
    window.addEventListener("hashchange", () => { readUrl(); known = null; refresh(); });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && document.body.dataset.state !== "auth") refresh();
    });
    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => { if (data) render(); }, 150);
    });
    markWindow();
  }

  function markWindow() {
    for (const button of document.querySelectorAll("#windows button")) {
      const on = Number(button.dataset.window) === view.window;
      button.classList.toggle("on", on);
      button.setAttribute("aria-pressed", String(on));
    }
  }

  function setStatus(text, kind) {
    const status = $("status");
    status.className = "status " + (kind || "");
    status.replaceChildren(el("span", "dot"), document.createTextNode(text));
  }

  // -- formatting ----------------------------------------------------------------------

  function clock(t, seconds) {
    const d = new Date(t * 1000);
    const two = (n) => String(n).padStart(2, "0");
    let s = two(d.getHours()) + ":" + two(d.getMinutes());
    if (seconds) s += ":" + two(d.getSeconds());
    return s;
  }

  function dayClock(t) {
    const d = new Date(t * 1000);
    return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + clock(t);
  }

  function count(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + "k";
    return String(Math.round(n));
  }

  function rate(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1000) return count(v) + "/s";
    if (v >= 10) return v.toFixed(0) + "/s";
    if (v >= 1) return v.toFixed(1) + "/s";
    return v.toFixed(2) + "/s";
  }

  function ms(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + " s";
    if (v >= 10) return v.toFixed(0) + " ms";
    if (v >= 1) return v.toFixed(1) + " ms";
    return v.toFixed(2) + " ms";
  }

  function short(v) {
    // an axis label: no trailing zeros
    return String(Number(v.toPrecision(3)));
  }

  function pct(v) {
    if (v === null || v === undefined) return "–";
    const p = v * 100;
    return (p >= 99.95 || p === 0 ? p.toFixed(0) : p.toFixed(p >= 99 ? 2 : 1)) + "%";
  }

  function stateName(s) { return s.replace("_", " "); }

  // -- DOM and SVG helpers ----------------------------------------------------------------

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, parent, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function key(label, color, box) {
    const k = el("span", "key");
    const i = el("i", box ? "box" : "");
    i.style.background = color;
    k.append(i, document.createTextNode(label));
    return k;
  }

  // -- the page ------------------------------------------------------------------------

  function render() {
    const main = $("points");
    const empty = $("empty");
    if (data.live) {
      setStatus("live · updated " + clock(data.now, true) + " · every " + REFRESH_MS / 1000 + " s");
    } else {
      setStatus("paused at " + dayClock(data.end) + " (end= in the address)", "paused");
    }
    if (!data.points.length) {
      main.replaceChildren();
      empty.replaceChildren(...emptyMessage());
      empty.hidden = false;
      document.body.dataset.state = "empty";
      return;
    }
    empty.hidden = true;
    main.replaceChildren(...data.points.map(renderPoint));
    document.body.dataset.state = "ready";
  }

  function emptyMessage() {
    const storeEmpty = known && known.points.length === 0;
    const title = el("h2", "", storeEmpty ? "No metrics recorded yet"
      : "No calls in the last " + windowName(data.window));
    const text = el("p");
    if (storeEmpty) {
      text.append("This store holds no calls. Record some with ",
        el("code", "", "seawall.persist_metrics(url)"), " pointed at the store this server reads, or run ",
        el("code", "", "make demo"), ". Points appear here as soon as they are written.");
    } else {
      const filters = [view.point && "point " + view.point, view.host && "host " + view.host]
        .filter(Boolean).join(", ");
      text.textContent = (filters ? "Nothing matches " + filters + " in this window. " : "") +
        "Try a longer window" + (filters ? " or clear the filters." : ".");
    }
    const small = el("p", "note", "The page checks again every " + REFRESH_MS / 1000 + " s.");
    return [title, text, small];
  }

  function windowName(w) {
    if (w % 86400 === 0) return (w / 86400 === 1 ? "24 h" : w / 86400 + " days");
    if (w % 3600 === 0) return (w / 3600 === 1 ? "hour" : w / 3600 + " h");
    return Math.round(w / 60) + " min";
  }

  function renderPoint(p) {
    const section = el("section", "point");
    section.dataset.point = p.name;
    const worst = worstState(p.breaker);
    if (worst === "open" || worst === "forced_open") section.classList.add("alarm");
    const head = el("div", "head");
    head.append(el("h2", "", p.name), badge(p.breaker, worst), figures(p));
    section.append(head);

    const charts = el("div", "charts");
    const s = p.series;
    // waits and hedges, and the bulkhead's limit, get a chart where the point has some
    const paced = s.waits.some((v) => v > 0) || s.hedges.some((v) => v > 0);
    const limits = s.concurrency_limit || [];
    const limited = limits.some((v) => v !== null && v !== undefined);
    const { perRow, width } = columns(4 + (paced ? 1 : 0) + (limited ? 1 : 0));
    charts.style.gridTemplateColumns = "repeat(" + perRow + ", minmax(0, 1fr))";
    charts.append(
      lineChart("calls", "calls / s", [{ name: "calls/s", values: s.calls_per_second, color: "var(--calls)" }],
        { format: rate, tick: (v) => short(v) + "/s" }, width),
      lineChart("success", "success rate", [{ name: "success", values: s.success_rate, color: "var(--ok)" }],
        { format: pct, tick: (v) => Math.round(v * 100) + "%", fixed: [0, 1], ticks: [0, 0.5, 1] }, width),
      lineChart("latency", "latency (log scale)", [
        { name: "p50", values: s.p50_ms, color: "var(--p50)" },
        { name: "p99", values: s.p99_ms, color: "var(--p99)" },
      ], { format: ms, tick: (v) => (v >= 1000 ? short(v / 1000) + " s" : short(v) + " ms"), log: true }, width),
      barChart("bars", "per " + windowStep(), [
        { name: "retries", values: s.retries, color: "var(--retries)" },
        { name: "rejections", values: s.rejections, color: "var(--rejections)" },
      ], width),
    );
    if (paced) {
      charts.append(barChart("pacing", "per " + windowStep(), [
        { name: "waits", values: s.waits, color: "var(--waits)" },
        { name: "hedges", values: s.hedges, color: "var(--hedges)" },
      ], width));
    }
    if (limited) {
      charts.append(lineChart("limit", "concurrency limit", [
        { name: "limit", values: limits, color: "var(--limit)" },
      ], { format: (v) => (v === null || v === undefined ? "–" : short(v)), tick: short }, width));
    }
    section.append(charts, timeline(p.breaker));
    return section;
  }

  function windowStep() {
    const st = data.step;
    return st % 3600 === 0 ? (st === 3600 ? "hour" : st / 3600 + " h") : (st === 60 ? "minute" : st / 60 + " min");
  }

  function worstState(b) {
    let worst = "closed";
    for (const lane of b.lanes) if (SEVERITY[lane.state] > SEVERITY[worst]) worst = lane.state;
    for (const s of Object.keys(b.states)) if (SEVERITY[s] > SEVERITY[worst]) worst = s;
    return worst;
  }

  function badge(b, worst) {
    const total = Object.values(b.states).reduce((a, c) => a + c, 0);
    const n = b.states[worst] || 0;
    const text = "breaker " + stateName(worst) + (total > 1 ? " · " + n + " of " + total + " processes" : "");
    const span = el("span", "badge " + worst, text);
    span.dataset.state = worst;
    return span;
  }

  function figures(p) {
    const t = p.totals;
    const box = el("div", "figures");
    const add = (label, value, title) => {
      const span = el("span");
      span.append(el("b", "", value), document.createTextNode(" " + label));
      if (title) span.title = title;
      box.append(span);
    };
    add("calls", count(t.calls));
    add("ok", pct(t.success_rate));
    add("p50", ms(t.calls ? t.p50_ms : null));
    add("p99", ms(t.calls ? t.p99_ms : null));
    add("retries", count(t.retries));
    const reasons = Object.entries(t.rejections_by_reason).filter(([, v]) => v > 0)
      .map(([k, v]) => k + " " + v).join(", ");
    add("rejections", count(t.rejections), reasons ? "by reason: " + reasons : "");
    const waited = Object.entries(t.waits_by_reason || {}).filter(([, v]) => v > 0);
    if (waited.length) {
      add("waits", count(waited.reduce((a, [, v]) => a + v, 0)),
        "by reason: " + waited.map(([k, v]) => k + " " + v).join(", "));
    }
    if (t.hedges_sent) add("hedges", count(t.hedges_sent) + "/" + count(t.hedges_won), "sent / won");
    if (t.concurrency_limit) add("limit", short(t.concurrency_limit), "the bulkhead's mean limit");
    add("", data.live ? "over the last " + windowName(data.window)
      : "over the " + windowName(data.window) + " to " + dayClock(data.end));
    return box;
  }

  // -- charts ------------------------------------------------------------------------

  function frame(kind, title, keys) {
    const box = el("div", "chart");
    box.dataset.chart = kind;
    const h = el("h3", "", title);
    for (const k of keys) h.append(k);
    box.append(h);
    return box;
  }

  function geometry(width, height, left) {
    const m = { left: left || 46, right: 8, top: 8, bottom: 20 };
    const t0 = data.start;
    const t1 = data.end;
    const x = (t) => m.left + ((t - t0) / (t1 - t0)) * (width - m.left - m.right);
    return { m, x, width, height, bottom: height - m.bottom, top: m.top };
  }

  function cardInner() {
    // the width inside a point's card (at least 320 px)
    return Math.max(320, $("points").clientWidth - 30);
  }

  function columns(n) {
    // n charts: four in a row (three with five or six, so rows stay even), else two by
    // two, else one above the other (never 3 + 1); width: each chart's, 14 px gaps between
    const inner = cardInner();
    const span = (k) => k * 280 + (k - 1) * 14; // k charts of the least width, side by side
    const row = n > 4 ? 3 : 4;
    const perRow = inner >= span(row) ? row : inner >= span(2) ? 2 : 1;
    return { perRow, width: Math.floor((inner - (perRow - 1) * 14) / perRow) };
  }

  function timeAxis(root, g) {
    const span = data.end - data.start;
    const steps = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
    const every = steps.find((s) => span / s <= 6) || 86400;
    const offset = new Date().getTimezoneOffset() * 60; // ticks on local round times
    let t = Math.ceil((data.start - offset) / every) * every + offset;
    for (; t <= data.end; t += every) {
      const x = g.x(t);
      svg("line", { class: "grid", x1: x, x2: x, y1: g.top, y2: g.bottom }, root);
      svg("text", { x, y: g.height - 5, "text-anchor": "middle" }, root, clock(t));
    }
    svg("line", { class: "axis", x1: g.m.left, x2: g.width - g.m.right, y1: g.bottom, y2: g.bottom }, root);
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const f of [1, 2, 2.5, 5, 10]) if (v <= f * p) return f * p;
    return 10 * p;
  }

  function lineChart(kind, title, series, opt, chartWidth) {
    const box = frame(kind, title, series.length > 1 ? series.map((s) => key(s.name, s.color)) : []);
    const g = geometry(chartWidth, CHART_HEIGHT);
    const root = svg("svg", { viewBox: "0 0 " + g.width + " " + g.height, height: g.height, role: "img",
      "aria-label": title });
    const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
    let y;
    let ticks;
    if (opt.fixed) {
      const [lo, hi] = opt.fixed;
      y = (v) => g.bottom - ((v - lo) / (hi - lo)) * (g.bottom - g.top);
      ticks = opt.ticks;
    } else if (opt.log) {
      const positive = values.filter((v) => v > 0);
      const lo = Math.pow(10, Math.floor(Math.log10(positive.length ? Math.min(...positive) : 1)));
      const hi = Math.pow(10, Math.ceil(Math.log10(positive.length ? Math.max(...positive) * 1.01 : 10)));
      const top = hi > lo ? hi : lo * 10;
      y = (v) => g.bottom - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) /
        (Math.log10(top) - Math.log10(lo))) * (g.bottom - g.top);
      ticks = [];
      for (let d = lo; d <= top * 1.0001; d *= 10) ticks.push(d);
    } else {
      const hi = niceMax(Math.max(0, ...values) * 1.05);
      y = (v) => g.bottom - (v / hi) * (g.bottom - g.top);
      ticks = [0, hi / 2, hi];
    }
    for (const v of ticks) {
      const ty = y(v);
      svg("line", { class: "grid", x1: g.m.left, x2: g.width - g.m.right, y1: ty, y2: ty }, root);
      svg("text", { x: g.m.left - 6, y: ty + 3, "text-anchor": "end" }, root, opt.tick(v));
    }
    timeAxis(root, g);
    const half = data.step / 2;
    for (const s of series) {
      const group = svg("g", { "data-series": s.name }, root);
      let run = [];
      const flush = () => {
        if (run.length === 1) {
          svg("circle", { class: "lone", cx: run[0][0], cy: run[0][1], r: 2.2, fill: s.color }, group);
        } else if (run.length > 1) {
          svg("polyline", { class: "seg-line", points: run.map((p) => p.join(",")).join(" "),
            stroke: s.color }, group);
        }
        run = [];
      };
      s.values.forEach((v, k) => {
        if (v === null || v === undefined) { flush(); return; }
        run.push([g.x(data.t[k] + half).toFixed(1), y(v).toFixed(1)]);
      });
      flush();
    }
    hover(root, g, (k) => clock(data.t[k]) + "\n" + series.map((s) => s.name + "  " + opt.format(s.values[k])).join("\n"));
    box.append(root);
    return box;
  }

  function barChart(kind, unit, series, chartWidth) {
    const box = frame(kind, "", series.map((s) => key(s.name, s.color, true)));
    box.querySelector("h3").append(el("span", "", unit));
    const title = series.map((s) => s.name).join(" and ") + " " + unit;
    const g = geometry(chartWidth, CHART_HEIGHT);
    const root = svg("svg", { viewBox: "0 0 " + g.width + " " + g.height, height: g.height, role: "img",
      "aria-label": title });
    const hi = niceMax(Math.max(1, ...series.flatMap((s) => s.values)) * 1.05);
    const y = (v) => g.bottom - (v / hi) * (g.bottom - g.top);
    for (const v of [0, hi / 2, hi]) {
      svg("line", { class: "grid", x1: g.m.left, x2: g.width - g.m.right, y1: y(v), y2: y(v) }, root);
      svg("text", { x: g.m.left - 6, y: y(v) + 3, "text-anchor": "end" }, root, count(v));
    }
    timeAxis(root, g);
    const slot = g.x(data.start + data.step) - g.x(data.start);
    const width = Math.max(0.8, (slot * 0.8) / series.length);
    series.forEach((s, i) => {
      const group = svg("g", { "data-series": s.name }, root);
      s.values.forEach((v, k) => {
        if (!v) return;
        const x = g.x(data.t[k]) + slot * 0.1 + i * width;
        svg("rect", { class: "bar", x: x.toFixed(1), y: y(v).toFixed(1), width: width.toFixed(2),
          height: Math.max(1, g.bottom - y(v)).toFixed(1), fill: s.color }, group);
      });
    });
    hover(root, g, (k) => clock(data.t[k]) + "\n" + series.map((s) => s.name + "  " + s.values[k]).join("\n"));
    box.append(root);
    return box;
  }

  function hover(root, g, describe) {
    const tip = $("tip");
    const cursor = svg("line", { class: "cursor", y1: g.top, y2: g.bottom, visibility: "hidden" }, root);
    root.addEventListener("mousemove", (e) => {
      const box = root.getBoundingClientRect();
      const px = ((e.clientX - box.left) / box.width) * g.width;
      const t = data.start + ((px - g.m.left) / (g.width - g.m.left - g.m.right)) * (data.end - data.start);
      const k = Math.floor((t - data.start) / data.step);
      if (k < 0 || k >= data.t.length) { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); return; }
      const cx = g.x(data.t[k] + data.step / 2);
      cursor.setAttribute("x1", cx);
      cursor.setAttribute("x2", cx);
      cursor.setAttribute("visibility", "visible");
      tip.textContent = describe(k);
      tip.hidden = false;
      tip.style.left = Math.min(e.clientX + 14, window.innerWidth - 180) + "px";
      tip.style.top = e.clientY + 14 + "px";
    });
    root.addEventListener("mouseleave", () => { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); });
  }

  // -- the breaker timeline -------------------------------------------------------------

  function timeline(b) {
    const box = el("div", "timeline");
    box.dataset.chart = "breaker";
    const h = el("h3", "", "circuit breaker");
    for (const s of STATES) h.append(key(stateName(s), "var(--" + s + ")", true));
    box.append(h);
    const lanes = b.lanes;
    const width = cardInner();
    const labelled = lanes.length > 1;
    const height = Math.max(1, lanes.length) * (LANE + 6) + 26;
    const g = geometry(width, height, labelled ? 130 : 46);
    const root = svg("svg", { viewBox: "0 0 " + width + " " + height, height, role: "img",
      "aria-label": "circuit breaker state over time" });
    timeAxis(root, g);
    const end = Math.min(data.end, data.live ? data.now : data.end);
    if (!lanes.length) {
      svg("rect", { class: "segment", "data-state": "closed", x: g.m.left, y: g.top + 4,
        width: Math.max(0, g.x(end) - g.m.left), height: LANE, fill: "var(--closed)", opacity: 0.35 }, root);
      svg("text", { x: g.m.left + 8, y: g.top + 4 + LANE / 2 + 3 }, root, "no breaker activity recorded");
    }
    lanes.forEach((lane, i) => {
      const top = g.top + 4 + i * (LANE + 6);
      const group = svg("g", { class: "lane", "data-host": lane.host, "data-pid": lane.pid }, root);
      if (labelled) {
        svg("text", { class: "lane-label", x: 4, y: top + LANE / 2 + 3 }, group,
          (lane.host.length > 16 ? lane.host.slice(0, 15) + "…" : lane.host) + " · " + lane.pid);
      }
      let state = lane.initial;
      let from = data.start;
      const paint = (to) => {
        const x0 = g.x(Math.max(from, data.start));
        const x1 = g.x(Math.min(to, end));
        if (x1 <= x0) return;
        const r = svg("rect", { class: "segment", "data-state": state, x: x0.toFixed(1), y: top,
          width: (x1 - x0).toFixed(1), height: LANE, fill: "var(--" + state + ")" }, group);
        svg("title", {}, r, stateName(state) + " " + clock(Math.max(from, data.start), true) + " – " +
          clock(Math.min(to, end), true));
      };
      for (const move of lane.transitions) {
        paint(move.time);
        state = move.to;
        from = move.time;
      }
      paint(end);
      let named = false; // one label per lane, at its first opening: readable when it flaps
      for (const move of lane.transitions) {
        const x = g.x(move.time);
        const mark = svg("g", { class: "transition", "data-from": move.from, "data-to": move.to }, group);
        svg("line", { class: "mark", x1: x.toFixed(1), x2: x.toFixed(1), y1: top - 3, y2: top + LANE + 3 }, mark);
        svg("path", { class: "mark-head", d: "M" + x.toFixed(1) + " " + (top - 3) + " l-4 -5 h8 z",
          fill: "var(--" + move.to + ")" }, mark);
        svg("title", {}, mark, clock(move.time, true) + "  " + stateName(move.from) + " → " +
          stateName(move.to) + (move.reason ? "\n" + move.reason : ""));
        if (!named && (move.to === "open" || move.to === "forced_open")) {
          named = true;
          const left = x - g.m.left > 120;
          svg("text", { class: "mark-label", x: (left ? x - 6 : x + 6).toFixed(1), y: top + LANE / 2 + 3,
            "text-anchor": left ? "end" : "start" }, mark, "opened " + clock(move.time, true));
        }
      }
    });
    box.append(root);
    const notes = [];
    if (b.hidden_lanes) notes.push(b.hidden_lanes + " more processes not drawn (filter by host to see them)");
    if (b.truncated) notes.push("more transitions than can be drawn: only the first ones are shown");
    if (notes.length) box.append(el("div", "note", notes.join(" · ")));
    return box;
  }

  readUrl();
  wire();
  refresh();
})();
