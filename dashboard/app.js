/**
 * Orbit live dashboard: plain JS, no libraries, no build step.
 *
 * What the page does
 *  - Opens a WebSocket to `/api/v1/dashboard/ws` on the same host (ws:// or wss:// following
 *    the page), optionally with `?function=...&status=...` from the filter selects (changing a
 *    filter reconnects with the new query). It reconnects by itself with exponential backoff
 *    (0.5 s doubling, capped at 10 s, each delay jittered to 50-100 %), and also when an open
 *    socket has been silent for 10 s. The header pill (`#conn-state`, aria-live) says
 *    connecting / live / reconnecting.
 *  - Draws throughput, queue depth and queue/compute latency (p50, p99) per function on
 *    <canvas> charts over a rolling 5-minute window (bounded), shows KPI cards, a functions
 *    table (workers online, pending), the latest 50 results (bounded), and dead letters.
 *  - Clicking a result fetches `GET /api/v1/inference/{id}/record` (retrying a few times on 404,
 *    the sink may lag) and plots the input with the output over it: a moving average aligned at
 *    index i + window - 1, or an LSTM forecast continuing after the last input point.
 *  - A form submits a job (`POST /api/v1/inference/submit`), shows the job id, follows it via
 *    `GET /api/v1/inference/{id}` and its `result` message, and shows the server's error
 *    message and field next to the form on a 4xx.
 *
 * Protocol (server -> client JSON text frames; the client sends nothing)
 *  - `{"type":"update", timestamp, interval_s, statistics:{total_jobs, completed, failed,
 *     success_rate}, functions:[{function, throughput, succeeded, failed, queue_ms:{p50,p99}|null,
 *     compute_ms:{p50,p99}|null, pending, in_flight, workers}], dead_letters:{total, recent:[...]},
 *     skipped, recent_results?:[...]}` -- first frame (the snapshot, with recent_results,
 *     newest first), then every interval_s seconds.
 *  - `{"type":"result", job_id, function, status, source, submitted_at, finished_at, queue_ms,
 *     compute_ms, worker_id, attempt, error, input_len, output_len}` -- each finished job.
 *  - `{"type":"deadletter", function, job_id|null, reason, at}`.
 *  pending, in_flight, workers and dead_letters.total may be null (unknown right now): shown
 *  as '–'. Unknown message types and unknown fields are ignored.
 */
'use strict';

(() => {
  const WINDOW_MS = 5 * 60 * 1000; // charts show the last 5 minutes...
  const MAX_POINTS = 300;          // ...and never keep more updates than this
  const MAX_RESULTS = 50;
  const MAX_DEAD = 20;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 10_000;
  const STALL_MS = 10_000;
  const FINAL = new Set(['succeeded', 'failed']);

  const $ = (id) => document.getElementById(id);

  /** Creates an element; `props` keys go to properties, `data-*`/`aria-*`/`style` to attributes. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value == null || value === false) continue;
      if (/^(data-|aria-|style$|title$|scope$|colspan$)/.test(key)) node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children.flat().filter((c) => c != null));
    return node;
  }

  // ---- formatting -------------------------------------------------------------------------

  const pad = (n, w = 2) => String(n).padStart(w, '0');
  function clock(value, millis = false) {
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return '–';
    const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return millis ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
  }
  const fmtInt = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
  function fmtNum(v) {
    if (v == null || !Number.isFinite(v)) return '–';
    const a = Math.abs(v);
    if (a === 0) return '0';
    if (a < 1) return String(Number(v.toPrecision(2)));
    if (a < 10) return v.toFixed(2);
    if (a < 100) return v.toFixed(1);
    return fmtInt(v);
  }
  const shortId = (id) => (id && id.length > 14 ? `…${id.slice(-12)}` : id || '–');
  const pctPair = (p) => (p ? `${fmtNum(p.p50)} / ${fmtNum(p.p99)}` : '–');

  // ---- colours ----------------------------------------------------------------------------

  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const fnIndex = new Map([['moving_average', 0], ['lstm_timeseries', 1]]);
  function fnColor(fn) {
    if (!fnIndex.has(fn)) fnIndex.set(fn, fnIndex.size);
    return css(`--series-${(fnIndex.get(fn) % 6) + 1}`);
  }

  // ---- canvas charts ----------------------------------------------------------------------

  /** Round tick values covering [min, max] with about `count` steps. */
  function niceTicks(min, max, count) {
    const raw = (max - min) / Math.max(1, count);
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let v = Math.floor(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
    if (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
    ticks.decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return ticks;
  }
  const tickLabel = (v, decimals) => v.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });

  /**
   * Draws line series on a canvas sized to its CSS box.
   * opts: series [{color, points: [[x, y|null]], dash, width}], x: {min, max, time?},
   * log (log10 y axis), zero (y axis includes 0), gap (x distance that breaks a line),
   * markers [x] (vertical dashed lines), bare (no axes), empty (text when there is no data).
   */
  function drawChart(canvas, opts) {
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = `11px ${getComputedStyle(document.body).fontFamily}`;

    const ty = opts.log ? (v) => Math.log10(Math.max(v, 1e-4)) : (v) => v;
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of opts.series) {
      for (const [x, y] of s.points) {
        if (y == null || !Number.isFinite(y) || x < opts.x.min || x > opts.x.max) continue;
        lo = Math.min(lo, ty(y));
        hi = Math.max(hi, ty(y));
      }
    }
    const hasData = Number.isFinite(lo);
    if (!hasData) { lo = 0; hi = 1; }
    if (opts.zero && !opts.log) { lo = Math.min(0, lo); hi = Math.max(0, hi); }
    if (!opts.log && hi - lo < 1e-9) { // a flat line: give it some room
      const room = Math.abs(hi) * 0.1 || 1;
      hi += room;
      if (!opts.zero || lo < 0) lo -= room;
    }
    let yTicks;
    if (opts.log) {
      lo = Math.floor(lo); hi = Math.ceil(hi);
      if (hi === lo) hi += 1;
      yTicks = [];
      for (let k = lo; k <= hi; k++) yTicks.push(k);
    } else {
      yTicks = niceTicks(lo, hi, Math.max(2, Math.floor(h / 45)));
      lo = yTicks[0]; hi = yTicks[yTicks.length - 1];
    }
    const yLabel = opts.log ? (k) => String(Number((10 ** k).toPrecision(1))) : (v) => tickLabel(v, yTicks.decimals);

    const padT = opts.bare ? 3 : 8;
    const padB = opts.bare ? 3 : 20;
    const padR = opts.bare ? 3 : 10;
    const padL = opts.bare ? 3 : Math.ceil(Math.max(...yTicks.map((t) => ctx.measureText(yLabel(t)).width))) + 10;
    const X = (x) => padL + ((x - opts.x.min) / (opts.x.max - opts.x.min || 1)) * (w - padL - padR);
    const Y = (y) => padT + (1 - (ty(y) - lo) / (hi - lo)) * (h - padT - padB);
    const axis = css('--chart-axis');

    if (!opts.bare) {
      ctx.strokeStyle = css('--chart-grid');
      ctx.lineWidth = 1;
      ctx.fillStyle = axis;
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      for (const t of yTicks) {
        const y = Math.round(padT + (1 - (t - lo) / (hi - lo)) * (h - padT - padB)) + 0.5;
        ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(w - padR, y); ctx.stroke();
        ctx.fillText(yLabel(t), padL - 6, y);
      }
      ctx.textAlign = 'center';
      ctx.textBaseline = 'top';
      for (const { v, label } of xTicks(opts.x, w - padL - padR)) {
        const x = X(v);
        ctx.fillText(label, Math.min(Math.max(x, padL + 14), w - padR - 14), h - padB + 5);
      }
    }

    ctx.setLineDash([4, 4]);
    ctx.strokeStyle = css('--chart-marker');
    for (const m of opts.markers || []) {
      const x = Math.round(X(m)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, padT); ctx.lineTo(x, h - padB); ctx.stroke();
    }

    ctx.lineJoin = 'round';
    ctx.lineCap = 'round';
    for (const s of opts.series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = s.width || 1.75;
      ctx.setLineDash(s.dash ? [5, 4] : []);
      ctx.beginPath();
      let prev = null;
      for (const [x, y] of s.points) {
        if (y == null || !Number.isFinite(y) || x < opts.x.min || x > opts.x.max) { prev = null; continue; }
        const jump = prev != null && opts.gap && x - prev > opts.gap;
        if (prev == null || jump) ctx.moveTo(X(x), Y(y)); else ctx.lineTo(X(x), Y(y));
        prev = x;
      }
      ctx.stroke();
      if (s.points.length === 1 && s.points[0][1] != null) { // a lone point: draw a dot
        ctx.fillStyle = s.color;
        ctx.beginPath(); ctx.arc(X(s.points[0][0]), Y(s.points[0][1]), 2.5, 0, 2 * Math.PI); ctx.fill();
      }
    }
    ctx.setLineDash([]);
    if (!hasData && opts.empty) {
      ctx.fillStyle = axis;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(opts.empty, (padL + w - padR) / 2, (padT + h - padB) / 2);
    }
  }

  /** X-axis ticks: round clock times on a time axis, round numbers on an index axis. */
  function xTicks(x, width) {
    if (x.time) {
      const fit = Math.max(2, Math.floor(width / 64));
      const step = [10, 15, 30, 60, 120, 300].map((s) => s * 1000).find((s) => (x.max - x.min) / s <= fit) || 600_000;
      const out = [];
      for (let t = Math.ceil(x.min / step) * step; t <= x.max; t += step) {
        out.push({ v: t, label: step < 60_000 ? clock(t) : clock(t).slice(0, 5) });
      }
      return out;
    }
    return niceTicks(x.min, x.max, Math.max(2, Math.floor(width / 70)))
      .filter((v) => v >= x.min && v <= x.max)
      .map((v) => ({ v, label: tickLabel(v, 0) }));
  }

  /** Every canvas gets a painter; resizes and colour-scheme changes repaint. */
  const painters = new Map();
  let repaintQueued = false;
  function paint(canvas, painter) {
    painters.set(canvas, painter);
    painter();
  }
  function repaintAll() {
    if (repaintQueued) return;
    repaintQueued = true;
    requestAnimationFrame(() => {
      repaintQueued = false;
      for (const p of painters.values()) p();
    });
  }
  const resizeObserver = new ResizeObserver(repaintAll);
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', repaintAll);

  function legend(list, items) {
    list.replaceChildren(...items.map((i) => el('li', {},
      el('span', { className: `swatch${i.dash ? ' dashed' : ''}`, style: `--c:${i.color}` }),
      i.label, i.value != null ? el('b', {}, i.value) : null)));
  }

  // ---- state ------------------------------------------------------------------------------

  const state = {
    history: [],    // [{t, fns: Map(function -> stats)}], oldest first, last WINDOW_MS
    interval: 2,    // seconds between updates, from the server
    results: [],    // result summaries, newest first, at most MAX_RESULTS
    incoming: [],   // results received but not yet rendered (batched; buffered while paused)
    dead: [],       // dead letters, newest first, at most MAX_DEAD
    mine: new Set(),// jobs submitted from this page (highlighted)
    selected: null, // job id shown in the detail panel
    paused: false,
    skipped: 0,
    lastUpdateAt: 0,
  };

  // ---- connection -------------------------------------------------------------------------

  const conn = { ws: null, attempt: 0, retryAt: 0, retryTimer: 0, lastFrameAt: 0 };
  const filterFn = $('filter-function');
  const filterStatus = $('filter-status');

  function setConn(stateName, text) {
    const pill = $('conn-state');
    pill.dataset.state = stateName;
    if (pill.textContent !== text) pill.textContent = text;
  }

  // With API keys on, the page is opened as /?access_token=<read key>. Requests carry it as a
  // bearer header; the socket (a browser cannot set its headers) as the subprotocol
  // `orbit.bearer.<key>`, beside `orbit`, which the gateway selects: never in the socket's URL.
  const accessToken = new URLSearchParams(location.search).get('access_token') || '';
  const authHeaders = accessToken ? { authorization: `Bearer ${accessToken}` } : {};

  function wsUrl() {
    const query = new URLSearchParams();
    if (filterFn.value) query.set('function', filterFn.value);
    if (filterStatus.value) query.set('status', filterStatus.value);
    const q = query.toString();
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/api/v1/dashboard/ws${q ? `?${q}` : ''}`;
  }

  function connect() {
    clearTimeout(conn.retryTimer);
    conn.retryAt = 0;
    setConn(conn.attempt ? 'reconnecting' : 'connecting', conn.attempt ? 'Reconnecting…' : 'Connecting…');
    const ws = accessToken
      ? new WebSocket(wsUrl(), ['orbit', `orbit.bearer.${accessToken}`])
      : new WebSocket(wsUrl());
    conn.ws = ws;
    conn.lastFrameAt = Date.now();
    ws.onmessage = (event) => {
      if (conn.ws !== ws) return;
      conn.lastFrameAt = Date.now();
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      handle(msg);
    };
    ws.onclose = () => { if (conn.ws === ws) dropped(); };
  }

  /** Stops listening to a socket; one still connecting is closed once open (no console noise). */
  function discard(ws) {
    ws.onmessage = null;
    ws.onclose = null;
    if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close();
    else ws.close();
  }

  /** The socket is gone (closed, failed or stalled): wait, then connect again. */
  function dropped() {
    if (conn.ws) { discard(conn.ws); conn.ws = null; }
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** conn.attempt);
    const delay = ceiling * (0.5 + Math.random() * 0.5);
    conn.attempt += 1;
    conn.retryAt = Date.now() + delay;
    conn.retryTimer = setTimeout(connect, delay);
    tick();
  }

  function reconnectNow() {
    if (conn.ws) { discard(conn.ws); conn.ws = null; }
    conn.attempt = 0;
    connect();
  }

  /** Once a second: the "updated … ago" line, the retry countdown, the stall watchdog. */
  function tick() {
    const now = Date.now();
    if (conn.retryAt) {
      setConn('reconnecting', `Reconnecting in ${Math.max(1, Math.ceil((conn.retryAt - now) / 1000))} s`);
    } else if (conn.ws && conn.ws.readyState === WebSocket.OPEN && now - conn.lastFrameAt > STALL_MS) {
      dropped();
      return;
    }
    if (state.lastUpdateAt) {
      const ago = Math.round((now - state.lastUpdateAt) / 1000);
      $('last-update').textContent = ago <= 1 ? 'updated just now' : `updated ${ago} s ago`;
    }
  }
  setInterval(tick, 1000);
  window.addEventListener('online', () => { if (conn.retryAt) reconnectNow(); });
  for (const select of [filterFn, filterStatus]) {
    select.addEventListener('change', () => {
      state.results = [];
      state.incoming = [];
      renderResults();
      reconnectNow();
    });
  }

  function handle(msg) {
    switch (msg && msg.type) {
      case 'update': onUpdate(msg); break;
      case 'result': onResult(msg); break;
      case 'deadletter': onDeadLetter(msg); break;
      default: break; // unknown types: ignored, newer servers may send more
    }
  }

  // ---- update: KPIs, charts, functions, dead letters --------------------------------------

  function onUpdate(msg) {
    if ($('conn-state').dataset.state !== 'live') { // a new connection: a new skipped count
      state.skipped = 0;
      $('skipped').hidden = true;
    }
    conn.attempt = 0;
    setConn('live', 'Live');
    state.lastUpdateAt = Date.now();
    if (Number.isFinite(msg.interval_s) && msg.interval_s > 0) state.interval = msg.interval_s;

    const functions = Array.isArray(msg.functions) ? msg.functions : [];
    const t = Date.parse(msg.timestamp) || Date.now();
    const point = { t, fns: new Map(functions.map((f) => [f.function, f])) };
    const h = state.history;
    while (h.length && h[h.length - 1].t >= t) h.pop(); // a snapshot after a reconnect, or clock skew
    h.push(point);
    while (h.length > MAX_POINTS || (h.length && h[0].t < t - WINDOW_MS)) h.shift();

    renderKpis(msg.statistics || {}, functions, msg.dead_letters);
    renderFunctions(functions);
    renderCharts();

    if (msg.dead_letters && Array.isArray(msg.dead_letters.recent)) {
      state.dead = msg.dead_letters.recent.slice(0, MAX_DEAD);
      renderDead(msg.dead_letters.total);
    }
    if (Number.isFinite(msg.skipped) && msg.skipped > 0) {
      state.skipped += msg.skipped;
      const note = $('skipped');
      note.hidden = false;
      note.textContent = `${fmtInt(state.skipped)} results not pushed to this page (slow client or rate cap)`;
    }
    if (Array.isArray(msg.recent_results)) {
      state.results = msg.recent_results.filter(matchesFilter).slice(0, MAX_RESULTS);
      state.incoming = [];
      renderResults();
    }
  }

  function renderKpis(stats, functions, dead) {
    // A null figure is unknown right now (the server could not ask NATS): '–', not 0.
    const sum = (key) => (functions.some((f) => Number.isFinite(f[key]))
      ? functions.reduce((acc, f) => acc + (Number(f[key]) || 0), 0) : NaN);
    $('kpi-total').textContent = fmtInt(stats.total_jobs);
    $('kpi-total-sub').textContent = `${fmtInt(stats.completed)} completed`;
    const rate = Number(stats.success_rate);
    const success = $('kpi-success');
    success.textContent = Number.isFinite(rate) ? `${Number(rate.toFixed(2))} %` : '–';
    success.className = `kpi-value ${rate >= 99 ? 'good' : rate < 95 ? 'bad' : ''}`;
    $('kpi-success-sub').textContent = `${fmtInt(stats.failed)} failed`;
    $('kpi-throughput').textContent = fmtNum(sum('throughput'));
    $('kpi-pending').textContent = fmtInt(sum('pending'));
    const inFlight = sum('in_flight');
    $('kpi-pending-sub').textContent = Number.isFinite(inFlight) ? `waiting · ${fmtInt(inFlight)} in flight` : 'jobs waiting';
    const workers = $('kpi-workers');
    const unserved = functions.filter((f) => f.workers === 0).map((f) => f.function);
    workers.textContent = fmtInt(sum('workers'));
    workers.className = `kpi-value ${unserved.length ? 'bad' : ''}`;
    $('kpi-workers-sub').textContent = unserved.length ? `none for ${unserved.join(', ')}`
      : `${functions.length} function${functions.length === 1 ? '' : 's'}`;
    if (dead && Number.isFinite(dead.total)) $('kpi-dead').textContent = fmtInt(dead.total);
  }

  function renderFunctions(functions) {
    const body = $('functions-table').tBodies[0];
    if (!functions.length) {
      body.replaceChildren(el('tr', { className: 'empty' }, el('td', { colspan: 9 }, 'No functions reported.')));
      return;
    }
    body.replaceChildren(...functions.map((f) => el('tr', { 'data-function': f.function },
      el('td', {}, el('span', { className: 'fn-name' }, el('span', { className: 'dot', style: `--c:${fnColor(f.function)}` }), f.function)),
      el('td', { className: `num${f.workers === 0 ? ' bad-text' : ''}` }, fmtInt(f.workers)),
      el('td', { className: 'num' }, fmtInt(f.pending)),
      el('td', { className: 'num' }, fmtInt(f.in_flight)),
      el('td', { className: 'num' }, fmtNum(f.throughput)),
      el('td', { className: 'num' }, fmtInt(f.succeeded)),
      el('td', { className: 'num' }, fmtInt(f.failed)),
      el('td', { className: 'num' }, pctPair(f.queue_ms)),
      el('td', { className: 'num' }, pctPair(f.compute_ms)))));
  }

  /** Names of the functions seen in the window, in a stable order. */
  function windowFunctions() {
    const names = new Set();
    for (const p of state.history) for (const name of p.fns.keys()) names.add(name);
    return [...names].sort((a, b) => (fnIndex.get(a) ?? 99) - (fnIndex.get(b) ?? 99) || a.localeCompare(b));
  }

  const CHARTS = [
    { id: 'throughput', value: (f) => f.throughput, zero: true, unit: '/s' },
    { id: 'pending', value: (f) => f.pending, zero: true, unit: '' },
    { id: 'queue', pct: 'queue_ms', log: true, unit: ' ms' },
    { id: 'compute', pct: 'compute_ms', log: true, unit: ' ms' },
  ];

  function renderCharts() {
    for (const chart of CHARTS) {
      const canvas = $(`chart-${chart.id}`);
      paint(canvas, () => paintTimeChart(canvas, chart));
    }
  }

  function paintTimeChart(canvas, chart) {
    const h = state.history;
    const last = h.length ? h[h.length - 1] : null;
    const max = last ? last.t : Date.now();
    const min = Math.max(max - WINDOW_MS, Math.min(h.length ? h[0].t : max, max - 60_000));
    const series = [];
    const items = [];
    for (const fn of windowFunctions()) {
      const color = fnColor(fn);
      const at = (pick) => h.map((p) => [p.t, p.fns.has(fn) ? pick(p.fns.get(fn)) : null]);
      const now = last && last.fns.get(fn);
      if (chart.pct) {
        series.push({ color, points: at((f) => f[chart.pct]?.p50) });
        series.push({ color, dash: true, width: 1.25, points: at((f) => f[chart.pct]?.p99) });
        const p = now && now[chart.pct];
        items.push({ color, label: fn, value: p ? `${fmtNum(p.p50)} / ${fmtNum(p.p99)} ms` : '–' });
      } else {
        series.push({ color, points: at(chart.value) });
        items.push({ color, label: fn, value: now ? `${fmtNum(chart.value(now))}${chart.unit}` : '–' });
      }
    }
    drawChart(canvas, {
      series,
      x: { min, max, time: true },
      zero: chart.zero,
      log: chart.log,
      gap: state.interval * 1000 * 2.5,
      empty: h.length ? 'No results in the window' : 'Waiting for data…',
    });
    legend($(`legend-${chart.id}`), items);
  }

  // ---- results table ----------------------------------------------------------------------

  const matchesFilter = (r) => (!filterFn.value || r.function === filterFn.value)
    && (!filterStatus.value || r.status === filterStatus.value);

  let flushQueued = false;
  function onResult(msg) {
    if (tracked && msg.job_id === tracked.id) applyJob(tracked, msg);
    if (!msg.job_id || !matchesFilter(msg)) return;
    state.incoming.push(msg);
    if (state.incoming.length > MAX_RESULTS * 2) state.incoming.splice(0, state.incoming.length - MAX_RESULTS);
    if (state.paused) { updatePauseLabel(); return; }
    if (!flushQueued) {
      flushQueued = true;
      setTimeout(() => { flushQueued = false; if (!state.paused) flushResults(); }, 250);
    }
  }

  /** Merges `incoming` (oldest first) into `results` (newest first): one row per job id. */
  function flushResults() {
    if (!state.incoming.length) return;
    const fresh = state.incoming.reverse();
    state.incoming = [];
    const seen = new Set();
    state.results = [...fresh, ...state.results].filter((r) => !seen.has(r.job_id) && seen.add(r.job_id)).slice(0, MAX_RESULTS);
    renderResults();
  }

  function renderResults() {
    const body = $('results-body');
    if (!state.results.length) {
      body.replaceChildren(el('tr', { className: 'empty' }, el('td', { colspan: 9 }, 'No results yet.')));
      return;
    }
    const focused = document.activeElement && body.contains(document.activeElement)
      ? document.activeElement.closest('tr')?.dataset.jobId : null;
    body.replaceChildren(...state.results.map(resultRow));
    if (focused) body.querySelector(`tr[data-job-id="${CSS.escape(focused)}"] button`)?.focus();
  }

  function resultRow(r) {
    const err = r.error || null;
    return el('tr', {
      'data-job-id': r.job_id,
      'data-status': r.status,
      'data-testid': 'result-row',
      'data-selected': r.job_id === state.selected ? 'true' : null,
      className: state.mine.has(r.job_id) ? 'mine' : '',
    },
    el('td', {}, clock(r.finished_at, true)),
    el('td', {}, el('button', { type: 'button', className: 'linkish', title: `Show ${r.job_id}`, 'aria-label': `Show job ${r.job_id}` }, shortId(r.job_id))),
    el('td', {}, el('span', { className: 'fn-name' }, el('span', { className: 'dot', style: `--c:${fnColor(r.function)}` }), r.function)),
    el('td', { title: err ? `${err.code}: ${err.message}` : null },
      el('span', { className: 'badge', 'data-status': r.status }, r.status),
      err ? el('span', { className: 'muted small' }, ` ${err.code}`) : null),
    el('td', { className: 'num' }, fmtNum(r.queue_ms)),
    el('td', { className: 'num' }, fmtNum(r.compute_ms)),
    el('td', {}, r.worker_id || '–', r.attempt > 1 ? el('span', { className: 'muted small' }, ` (try ${r.attempt})`) : null),
    el('td', { className: 'num' }, `${r.input_len ?? '–'} → ${r.output_len ?? '–'}`),
    el('td', {}, r.source || '–'));
  }

  $('results-body').addEventListener('click', (event) => {
    const row = event.target.closest('tr[data-job-id]');
    if (row) openDetail(row.dataset.jobId);
  });

  function updatePauseLabel() {
    const button = $('pause');
    button.setAttribute('aria-pressed', String(state.paused));
    button.textContent = state.paused ? `Resume${state.incoming.length ? ` (${state.incoming.length} new)` : ''}` : 'Pause';
  }
  $('pause').addEventListener('click', () => {
    state.paused = !state.paused;
    if (!state.paused) flushResults();
    updatePauseLabel();
  });

  // ---- dead letters -----------------------------------------------------------------------

  function onDeadLetter(msg) {
    const key = (d) => `${d.job_id}|${d.at}|${d.reason}`;
    if (state.dead.some((d) => key(d) === key(msg))) return;
    state.dead = [msg, ...state.dead].slice(0, MAX_DEAD);
    const kpi = $('kpi-dead');
    const total = Number(kpi.textContent.replace(/,/g, ''));
    const next = Number.isFinite(total) ? total + 1 : null;
    if (next != null) kpi.textContent = fmtInt(next);
    renderDead(next);
  }

  function renderDead(total) {
    if (Number.isFinite(total)) $('dead-total').textContent = `${fmtInt(total)} total`;
    const list = $('dead-list');
    if (!state.dead.length) {
      list.replaceChildren(el('li', { className: 'empty' }, 'None.'));
      return;
    }
    list.replaceChildren(...state.dead.map((d) => el('li', { 'data-testid': 'dead-row', 'data-job-id': d.job_id || null },
      el('div', { className: 'dead-meta' },
        el('time', { dateTime: d.at || '' }, clock(d.at)),
        el('span', { className: 'fn-name' }, el('span', { className: 'dot', style: `--c:${fnColor(d.function)}` }), d.function || '–'),
        d.job_id ? el('code', { title: d.job_id }, shortId(d.job_id)) : el('span', { className: 'muted' }, 'no job id')),
      el('div', { className: 'dead-reason' }, d.reason || '–'))));
  }

  // ---- detail panel -----------------------------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function errorText(response) {
    const body = await response.json().catch(() => null);
    const e = body && body.error;
    return e ? `${e.message}${e.field ? ` (${e.field})` : ''}` : `HTTP ${response.status}`;
  }

  /** The stored record; the sink may lag the result message by a few ms, so 404 is retried. */
  async function fetchRecord(id) {
    const url = `/api/v1/inference/${encodeURIComponent(id)}/record`;
    let last = 'not stored yet';
    for (const delay of [0, 150, 300, 600, 1200, 2000]) {
      await sleep(delay);
      try {
        const response = await fetch(url, { headers: { accept: 'application/json', ...authHeaders } });
        if (response.ok) return { record: await response.json() };
        last = await errorText(response);
        if (response.status !== 404) break;
      } catch (err) {
        last = `network error: ${err.message}`;
      }
    }
    return { error: last };
  }

  async function openDetail(id) {
    state.selected = id;
    for (const row of $('results-body').rows) row.toggleAttribute('data-selected', row.dataset.jobId === id);
    const panel = $('detail');
    panel.dataset.jobId = id;
    panel.dataset.state = 'loading';
    $('detail-body').hidden = true;
    $('detail-status').hidden = true;
    $('detail-message').hidden = false;
    $('detail-message').textContent = `Loading ${id}…`;
    panel.scrollIntoView({ behavior: 'smooth', block: 'nearest' });

    const { record, error } = await fetchRecord(id);
    if (state.selected !== id) return;
    if (!record) {
      panel.dataset.state = 'error';
      $('detail-message').textContent = `Could not load ${id}: ${error}`;
      return;
    }
    renderDetail(record);
    panel.dataset.state = 'ready';
  }

  function renderDetail(rec) {
    $('detail-message').hidden = true;
    $('detail-body').hidden = false;
    const badge = $('detail-status');
    badge.hidden = false;
    badge.dataset.status = rec.status;
    badge.textContent = rec.status;
    $('detail-job').textContent = rec.job_id;

    const input = Array.isArray(rec.input_data) ? rec.input_data : [];
    const out = rec.output || {};
    const n = input.length;
    const series = [{ color: css('--chart-input'), width: 1.5, points: input.map((v, i) => [i, v]) }];
    const items = [{ color: css('--chart-input'), label: `input (${n})` }];
    let xMax = Math.max(1, n - 1);
    const markers = [];
    if (Array.isArray(out.values)) {
      const window = Number(out.window || rec.parameters?.window || n - out.values.length + 1);
      const color = css('--series-1');
      series.push({ color, width: 2.25, points: out.values.map((v, i) => [i + window - 1, v]) });
      items.push({ color, label: `${out.kind || 'moving'} average, window ${window} (${out.values.length})` });
    }
    if (Array.isArray(out.forecast) && n) {
      const color = css('--series-2');
      series.push({ color, width: 2.25, dash: true, points: [[n - 1, input[n - 1]], ...out.forecast.map((v, i) => [n + i, v])] });
      items.push({ color, dash: true, label: `forecast, ${out.forecast.length} steps` });
      markers.push(n - 1);
      xMax = n - 1 + out.forecast.length;
    }
    const canvas = $('detail-chart');
    paint(canvas, () => drawChart(canvas, { series, markers, x: { min: 0, max: xMax }, empty: 'No input data' }));
    legend($('legend-detail'), items);

    const errBox = $('detail-error');
    errBox.hidden = !rec.error;
    if (rec.error) errBox.textContent = `${rec.error.code}: ${rec.error.message}${rec.error.field ? ` (field ${rec.error.field})` : ''}`;

    const facts = [
      ['Model', `${rec.model_name}${rec.model_version ? ` ${rec.model_version}` : ''}`],
      ['Worker', `${rec.worker_id || '–'}${rec.attempt ? `, attempt ${rec.attempt}` : ''}${rec.batch_size > 1 ? `, batch of ${rec.batch_size}` : ''}`],
      ['Source', rec.source || '–'],
      ['Parameters', JSON.stringify(rec.parameters || {})],
      ['Submitted', rec.submitted_at ? clock(rec.submitted_at, true) : '–'],
      ['Finished', rec.finished_at ? clock(rec.finished_at, true) : '–'],
      ['Queue', `${fmtNum(rec.queue_ms)} ms`],
      ['Compute', `${fmtNum(rec.compute_ms)} ms`],
    ];
    if (out.next != null) facts.push(['Next value', fmtNum(out.next)]);
    if (rec.metadata && Object.keys(rec.metadata).length) facts.push(['Metadata', JSON.stringify(rec.metadata)]);
    $('detail-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    const raw = JSON.stringify(rec.output ?? rec.error, null, 1) || 'null';
    $('detail-raw').textContent = raw.length > 4000 ? `${raw.slice(0, 4000)}\n…` : raw;
  }

  // ---- submit form ------------------------------------------------------------------------

  const form = $('submit-form');
  const modelSelect = $('model');
  const seriesBox = $('series');

  /** Numbers where tokens are numbers; other tokens are sent as-is so the server names them. */
  function parseSeries(text) {
    return text.split(/[\s,;]+/).filter(Boolean).map((tok) => {
      const n = Number(tok);
      return Number.isFinite(n) ? n : tok;
    });
  }

  function gaussian() {
    return Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
  }

  function generate(pattern, length) {
    const out = [];
    let walk = 100;
    const period = 12 + Math.floor(Math.random() * 12);
    for (let i = 0; i < length; i++) {
      let v;
      if (pattern === 'walk') v = walk += gaussian();
      else if (pattern === 'seasonal') v = 20 + 0.15 * i + 4 * Math.sin((2 * Math.PI * i) / 12) + 0.6 * gaussian();
      else v = 10 + 5 * Math.sin((2 * Math.PI * i) / period) + 0.8 * gaussian();
      out.push(Number(v.toFixed(3)));
    }
    return out;
  }

  function refreshSeriesInfo() {
    const values = parseSeries(seriesBox.value);
    const bad = values.filter((v) => typeof v !== 'number').length;
    $('series-count').textContent = values.length
      ? `${fmtInt(values.length)} values${bad ? `, ${bad} not numbers` : ''}` : '';
    const numbers = values.map((v, i) => [i, typeof v === 'number' ? v : null]);
    const canvas = $('series-preview');
    paint(canvas, () => drawChart(canvas, {
      series: [{ color: css('--series-1'), width: 1.5, points: numbers }],
      x: { min: 0, max: Math.max(1, values.length - 1) },
      bare: true,
    }));
  }

  // The functions the gateway's registry knows, by name (GET /api/v1/models): the form is
  // built from each one's declaration, so a function that plugs in gets a form of its own.
  const functions = new Map();

  /** One input per declared parameter: a select for an enum, a number box for a number, a
   * text box (comma-separated) for a list; the declared default shows as the placeholder. */
  function paramField(name, schema) {
    const id = `param-${name}`;
    const hint = schema.description || '';
    let input;
    if (Array.isArray(schema.enum)) {
      input = el('select', { id, name },
        ...(schema.default === undefined ? [el('option', { value: '' }, '(default)')] : []),
        ...schema.enum.map((v) => el('option', { value: String(v) }, String(v))));
      if (schema.default !== undefined) input.value = String(schema.default);
    } else if (schema.type === 'integer' || schema.type === 'number') {
      input = el('input', { id, name, type: 'number', inputMode: schema.type === 'integer' ? 'numeric' : 'decimal',
        step: schema.type === 'integer' ? '1' : 'any' });
      if (schema.minimum !== undefined) input.min = String(schema.minimum);
      if (schema.maximum !== undefined) input.max = String(schema.maximum);
      if (schema.default !== undefined) input.placeholder = String(schema.default);
    } else {
      input = el('input', { id, name, type: 'text', placeholder: schema.type === 'array' ? 'comma-separated' : '' });
      if (schema.default !== undefined && !(Array.isArray(schema.default) && !schema.default.length)) input.placeholder = JSON.stringify(schema.default);
    }
    input.dataset.kind = schema.type === 'array' ? 'list' : (Array.isArray(schema.enum) ? 'enum' : 'value');
    if (hint) input.title = hint;
    return el('div', {}, el('label', { htmlFor: id }, name), input);
  }

  let renderedFor = null; // which declaration the form was last built from

  function showModelParams() {
    const declared = functions.get(modelSelect.value);
    renderedFor = `${modelSelect.value} ${JSON.stringify(declared?.parameters ?? null)}`;
    const properties = (declared && declared.parameters && declared.parameters.properties) || {};
    const names = Object.keys(properties);
    $('param-fields').replaceChildren(...names.map((name) => paramField(name, properties[name])));
    $('params').hidden = names.length === 0;
    $('model-description').textContent = declared
      ? `${declared.description} · version ${declared.version}${declared.replicas !== undefined ? ` · ${declared.replicas} replica(s)` : ''}`
      : '';
    const tensors = declared && declared.input === 'tensors';
    $('tensor-inputs').hidden = !tensors;
    $('series-inputs').hidden = tensors;
    if (tensors && declared.example && declared.example.inputs) {
      $('inputs').value = JSON.stringify(declared.example.inputs);
    }
  }

  /** The parameters typed into the form; empty fields are left out (the declared default). */
  function formParameters() {
    const parameters = {};
    for (const input of $('param-fields').querySelectorAll('input, select')) {
      const raw = input.value.trim();
      if (raw === '') continue;
      if (input.dataset.kind === 'list') {
        parameters[input.name] = raw.split(/[\s,;]+/).filter(Boolean).map((tok) => {
          const n = Number(tok);
          return Number.isFinite(n) ? n : tok;
        });
      } else if (input.dataset.kind === 'enum') {
        parameters[input.name] = raw;
      } else {
        parameters[input.name] = param(input);
      }
    }
    return parameters;
  }

  function clearFormError() {
    $('submit-error').hidden = true;
    for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  }

  function showFormError(error) {
    const box = $('submit-error');
    box.replaceChildren(
      el('strong', {}, error.message || 'Request failed'),
      error.field ? el('span', {}, ' — field ', el('code', { 'data-testid': 'submit-error-field' }, error.field)) : null,
      error.code ? el('span', { className: 'muted' }, ` (${error.code})`) : null);
    box.hidden = false;
    const field = String(error.field || '');
    const target = field.startsWith('data') ? seriesBox
      : field.startsWith('inputs') ? $('inputs')
      : field === 'model_name' ? modelSelect
      : form.querySelector(`[name="${CSS.escape(field.replace(/^(parameters|metadata)\./, '').replace(/\[.*$/, ''))}"]`);
    target?.setAttribute('aria-invalid', 'true');
  }

  /** Empty -> omitted (server default); a whole number -> number; anything else as typed. */
  function param(input) {
    const raw = input.value.trim();
    if (raw === '') return undefined;
    const n = Number(raw);
    return Number.isFinite(n) ? n : raw;
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormError();
    const model = modelSelect.value;
    const parameters = formParameters();
    const declared = functions.get(model);
    const tensors = declared && declared.input === 'tensors';
    let inputs = null;
    if (tensors) {
      try {
        inputs = JSON.parse($('inputs').value || '[]');
      } catch (err) {
        showFormError({ message: `The inputs are not JSON: ${err.message}`, field: 'inputs' });
        return;
      }
    }
    const data = tensors ? [] : parseSeries(seriesBox.value);
    const button = $('submit-button');
    button.disabled = true;
    button.textContent = 'Submitting…';
    try {
      const response = await fetch('/api/v1/inference/submit', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...authHeaders },
        body: JSON.stringify(tensors ? { model_name: model, inputs, parameters } : { model_name: model, data, parameters }),
      });
      const body = await response.json().catch(() => null);
      if (!response.ok || !body || !body.job_id) {
        showFormError((body && body.error) || { message: `The server answered HTTP ${response.status}` });
        return;
      }
      trackJob(body.job_id, model, body.status || 'queued', data.length);
    } catch (err) {
      showFormError({ message: `Network error: ${err.message}` });
    } finally {
      button.disabled = false;
      button.textContent = 'Submit job';
    }
  });

  $('generate').addEventListener('click', () => {
    const length = Math.min(100_000, Math.max(1, Math.round(Number($('length').value) || 64)));
    seriesBox.value = generate($('pattern').value, length).join(', ');
    seriesBox.removeAttribute('aria-invalid');
    refreshSeriesInfo();
  });
  seriesBox.addEventListener('input', refreshSeriesInfo);
  modelSelect.addEventListener('change', () => { showModelParams(); clearFormError(); });
  form.addEventListener('input', (event) => event.target.removeAttribute('aria-invalid'));

  // ---- the job submitted from this page -----------------------------------------------------

  let tracked = null; // {id, model, status, inputLen, since, timer}

  function trackJob(id, model, status, inputLen) {
    if (tracked) clearTimeout(tracked.timer);
    tracked = { id, model, status, inputLen, since: Date.now(), timer: 0, polls: 0 };
    state.mine.add(id);
    if (state.mine.size > MAX_RESULTS) state.mine.delete(state.mine.values().next().value);
    $('job').hidden = false;
    $('job-id').textContent = id;
    $('job-open').hidden = true;
    renderJob(tracked, '');
    poll(tracked);
  }

  async function poll(job) {
    if (tracked !== job || FINAL.has(job.status)) return;
    try {
      const response = await fetch(`/api/v1/inference/${encodeURIComponent(job.id)}`, { headers: { accept: 'application/json', ...authHeaders } });
      if (response.ok) applyJob(job, await response.json());
    } catch { /* transient; the next poll or the result message will tell */ }
    if (tracked !== job || FINAL.has(job.status)) return;
    job.polls += 1;
    const waited = Date.now() - job.since;
    if (waited > 120_000) { renderJob(job, 'Still not finished after 2 minutes; it will show up in the results when it does.'); return; }
    job.timer = setTimeout(() => poll(job), Math.min(2000, 250 * 1.5 ** job.polls));
  }

  /** Accepts a job view (`GET /api/v1/inference/{id}`) or a `result` message. */
  function applyJob(job, view) {
    if (FINAL.has(job.status)) return;
    if (view.status) job.status = view.status;
    if (!FINAL.has(job.status)) { renderJob(job, ''); return; }
    clearTimeout(job.timer);
    const timings = view.timings || view;
    const error = view.error;
    const summary = `${job.status} on ${view.worker_id || 'a worker'}: queue ${fmtNum(timings.queue_ms)} ms, compute ${fmtNum(timings.compute_ms)} ms`;
    renderJob(job, error ? `${summary}. ${error.code}: ${error.message}` : summary);
    $('job-open').hidden = false;
    // The result message may have been filtered out or skipped: make sure the row is there.
    if (!view.type) {
      const result = view.result || {};
      const row = {
        job_id: job.id, function: view.model_name || job.model, status: job.status, source: view.source,
        submitted_at: timings.submitted_at, finished_at: timings.finished_at, queue_ms: timings.queue_ms,
        compute_ms: timings.compute_ms, worker_id: view.worker_id, attempt: view.attempt, error: error || null,
        input_len: job.inputLen, output_len: (result.values || result.forecast || []).length || null,
      };
      if (!state.results.some((r) => r.job_id === job.id) && !state.incoming.some((r) => r.job_id === job.id)) onResult(row);
    }
  }

  function renderJob(job, text) {
    const badge = $('job-status');
    badge.dataset.status = job.status;
    badge.textContent = job.status;
    const reached = { queued: 1, running: 2, succeeded: 3, failed: 3 }[job.status] || 0;
    [...$('job-steps').children].forEach((li, i) => {
      li.classList.toggle('done', i < reached);
      li.classList.toggle('failed', job.status === 'failed');
    });
    $('job-detail').textContent = text || (job.status === 'queued' ? 'Waiting for a worker…' : 'Running…');
  }
  $('job-open').addEventListener('click', () => { if (tracked) openDetail(tracked.id); });

  // ---- start ------------------------------------------------------------------------------

  async function loadModels() {
    try {
      const response = await fetch('/api/v1/models', { headers: { accept: 'application/json', ...authHeaders } });
      const body = response.ok ? await response.json() : null;
      const models = body && body.models;
      if (!Array.isArray(models) || !models.length) return;
      functions.clear();
      for (const declared of body.functions || []) functions.set(declared.name, declared);
      const keep = modelSelect.value || 'moving_average';
      modelSelect.replaceChildren(...models.map((m) => el('option', { value: m }, m)));
      if (models.includes(keep)) modelSelect.value = keep;

      const filterKeep = filterFn.value;
      filterFn.replaceChildren(el('option', { value: '' }, 'All'), ...models.map((m) => el('option', { value: m }, m)));
      filterFn.value = filterKeep;
      // Rebuilt only when the declaration changed, so a refresh never wipes what was typed.
      const current = `${modelSelect.value} ${JSON.stringify(functions.get(modelSelect.value)?.parameters ?? null)}`;
      if (current !== renderedFor) showModelParams();
    } catch { /* keep what the page has */ }
  }

  for (const canvas of document.querySelectorAll('canvas')) resizeObserver.observe(canvas);
  showModelParams();
  seriesBox.value = generate('sine', 64).join(', ');
  refreshSeriesInfo();
  renderCharts();
  loadModels();
  // Functions plug in while the page is open: the list and the forms follow the registry.
  setInterval(loadModels, 15_000);
  connect();
})();
