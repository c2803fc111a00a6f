/*
 * app.js: the live web UI. Data comes from /stream (server-sent events, every second); if the
 * stream goes quiet, the page polls the JSON endpoints instead until it comes back.
 */
'use strict';

const $ = (sel) => document.querySelector(sel);
const POLL_MS = 2000;
const QUIET_MS = 5000; /* no event for this long: poll */
const RECONNECT_MS = 10000; /* while polling, how often a closed stream is tried again */

const ui = {
  info: null,          /* /ui/state */
  stats: null,         /* the last /stats/requests */
  run: null,           /* the last /ui/run */
  sort: { key: null, dir: 1 },
  tab: 'stats',
  lastEvent: 0,
  pollTimer: null,
  es: null,            /* the EventSource */
  reconnectAt: 0,
  historyStart: null,  /* the test the charts show */
  historyN: 0,         /* points the charts have */
  charts: null,
  pendingPoints: [],   /* points that came before the chart library was ready */
  ratioAt: 0,
};

/* ---- formatting ------------------------------------------------------------------------- */

function esc(s) {
  return String(s == null ? '' : s).replace(/[&<>"']/g, (c) => (
    { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

/* Milliseconds as the console shows them: whole from 100, else 1 or 2 decimals. */
function ms(v) {
  if (v == null || !isFinite(v)) return '';
  if (v >= 100 || v === 0) return Math.round(v).toString();
  return v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function num(v, decimals) {
  if (v == null || !isFinite(v)) return '';
  return decimals ? v.toFixed(decimals) : Math.round(v).toLocaleString('en-US');
}

function when(epoch) {
  if (!epoch) return '';
  return new Date(epoch * 1000).toLocaleString();
}

/* ---- fetching ----------------------------------------------------------------------------- */

async function getJSON(url) {
  const res = await fetch(url, { cache: 'no-store' });
  if (!res.ok) throw new Error(url + ': HTTP ' + res.status);
  return res.json();
}

/* ---- the navbar and the buttons ------------------------------------------------------------- */

function renderRun(run) {
  ui.run = run;
  const state = run.state;
  $('#nav-host').textContent = run.host || (ui.info && ui.info.host) || '(set by the script)';
  $('#nav-host').title = $('#nav-host').textContent;
  const st = $('#nav-state');
  st.textContent = state.toUpperCase();
  st.className = state;
  $('#nav-users').textContent = run.user_count.toString();
  const running = state === 'spawning' || state === 'running';
  $('#btn-new').hidden = running || state === 'stopping';
  $('#btn-edit').hidden = !running;
  $('#btn-stop').hidden = !(running || state === 'stopping');
  $('#btn-stop').disabled = state === 'stopping';
  document.body.dataset.state = state;
}

function renderTotals(stats) {
  $('#nav-rps').textContent = num(stats.total_rps, 1);
  const pct = (stats.fail_ratio || 0) * 100;
  const f = $('#nav-fail');
  f.textContent = Math.round(pct) + '%';
  f.classList.toggle('bad', pct > 0);
  if (stats.worker_count || (ui.info && ui.info.is_distributed)) {
    $('#nav-workers-box').hidden = false;
    $('#nav-workers').textContent = String(stats.worker_count || 0);
  }
}

/* ---- tables ------------------------------------------------------------------------------- */

const STAT_COLS = [
  ['method', (e) => esc(e.method || '')],
  ['name', (e) => esc(e.name), 'name'],
  ['num_requests', (e) => num(e.num_requests), 'num'],
  ['num_failures', (e) => num(e.num_failures), 'num'],
  ['median_response_time', (e) => ms(e.median_response_time), 'num'],
  ['response_time_percentile_0.95', (e) => ms(e['response_time_percentile_0.95']), 'num'],
  ['response_time_percentile_0.99', (e) => ms(e['response_time_percentile_0.99']), 'num'],
  ['avg_response_time', (e) => ms(e.avg_response_time), 'num'],
  ['min_response_time', (e) => ms(e.min_response_time), 'num'],
  ['max_response_time', (e) => ms(e.max_response_time), 'num'],
  ['avg_content_length', (e) => num(e.avg_content_length), 'num'],
  ['current_rps', (e) => num(e.current_rps, 1), 'num'],
  ['current_fail_per_sec', (e) => num(e.current_fail_per_sec, 1), 'num'],
];

function statRow(e, total) {
  let cells = '';
  for (const [key, fmt, cls] of STAT_COLS) {
    let c = cls || '';
    if (key === 'num_failures' && e.num_failures > 0) c += ' fails';
    cells += '<td' + (c ? ' class="' + c.trim() + '"' : '') + '>' + fmt(e) + '</td>';
  }
  return '<tr' + (total ? ' class="total"' : '') + '>' + cells + '</tr>';
}

function renderStats(stats) {
  const rows = stats.stats.slice(0, -1);
  const total = stats.stats[stats.stats.length - 1];
  const { key, dir } = ui.sort;
  if (key) {
    rows.sort((a, b) => {
      const x = a[key], y = b[key];
      if (typeof x === 'number' && typeof y === 'number') return (x - y) * dir;
      return String(x || '').localeCompare(String(y || '')) * dir;
    });
  }
  const html = rows.map((e) => statRow(e, false));
  if (total) html.push(statRow(total, true));
  $('#stats-table tbody').innerHTML = html.join('');
  $('#stats-empty').hidden = rows.length > 0;
  document.querySelectorAll('#stats-table th[data-key]').forEach((th) => {
    th.classList.toggle('sorted-asc', th.dataset.key === key && dir > 0);
    th.classList.toggle('sorted-desc', th.dataset.key === key && dir < 0);
  });
}

function renderFailures(errors) {
  const html = errors.map((e) => '<tr><td class="num">' + num(e.occurrences) + '</td><td>' +
    esc(e.method) + '</td><td class="name">' + esc(e.name) + '</td><td>' + esc(e.error) +
    '</td><td>' + esc(when(e.first_seen)) + '</td><td>' + esc(when(e.last_seen)) + '</td></tr>');
  $('#failures-table tbody').innerHTML = html.join('');
  $('#failures-empty').hidden = errors.length > 0;
  const badge = $('#badge-failures');
  badge.hidden = errors.length === 0;
  badge.textContent = String(errors.length);
}

function renderExceptions(data) {
  const list = data.exceptions || [];
  const html = list.map((e) => '<tr><td class="num">' + num(e.count) + '</td><td>' + esc(e.msg) +
    '</td><td><pre>' + esc(e.traceback) + '</pre></td><td>' + esc(e.nodes) + '</td></tr>');
  $('#exceptions-table tbody').innerHTML = html.join('');
  $('#exceptions-empty').hidden = list.length > 0;
  const badge = $('#badge-exceptions');
  badge.hidden = list.length === 0;
  badge.textContent = String(list.length);
}

function renderWorkers(stats) {
  const list = stats.workers || [];
  const html = list.map((w) => '<tr><td>' + esc(w.id) + '</td><td>' + esc(w.state) +
    '</td><td class="num">' + num(w.user_count) + '</td><td class="num">' +
    num(w.cpu_usage, 1) + '%</td><td class="num">' + num(w.memory_usage) + '</td></tr>');
  $('#workers-table tbody').innerHTML = html.join('');
  $('#workers-empty').hidden = list.length > 0;
}

function onStats(stats) {
  ui.stats = stats;
  renderTotals(stats);
  renderStats(stats);
  renderFailures(stats.errors || []);
  renderWorkers(stats);
}

/* ---- charts ------------------------------------------------------------------------------- */

function chartsReady() {
  if (ui.charts) return true;
  if (!window.CicadaCharts || !window.Chart) return false;
  ui.charts = window.CicadaCharts.create({
    rps: $('#chart-rps'), times: $('#chart-times'), users: $('#chart-users'),
  });
  return true;
}

function addPoints(points) {
  if (chartsReady()) {
    if (ui.pendingPoints.length) {
      ui.charts.add(ui.pendingPoints);
      ui.pendingPoints = [];
    }
    ui.charts.add(points);
  } else {
    ui.pendingPoints.push(...points);
  }
}

/* A history message: {start_time, from, n, points}. */
async function onHistory(h) {
  if (h.start_time !== ui.historyStart || h.from === 0) {
    ui.historyStart = h.start_time;
    ui.historyN = 0;
    ui.pendingPoints = [];
    if (chartsReady()) ui.charts.reset();
  }
  if (h.from > ui.historyN) { /* missed some: fetch them */
    try {
      return onHistory(await getJSON('ui/history?from=' + ui.historyN));
    } catch (e) {
      return undefined;
    }
  }
  const fresh = h.points.slice(ui.historyN - h.from);
  if (fresh.length) addPoints(fresh);
  ui.historyN = h.n;
  return undefined;
}

/* ---- ratio and logs ----------------------------------------------------------------------- */

function ratioTree(tree) {
  const items = Object.entries(tree || {}).map(([name, node]) =>
    '<li><span class="pct">' + (node.ratio * 100).toFixed(1) + '%</span> ' + esc(name) +
    (node.tasks ? ratioTree(node.tasks) : '') + '</li>');
  return '<ul>' + items.join('') + '</ul>';
}

async function refreshRatio() {
  ui.ratioAt = Date.now();
  try {
    const t = await getJSON('tasks');
    $('#ratio-per-class').innerHTML = ratioTree(t.per_class);
    $('#ratio-total').innerHTML = ratioTree(t.total);
  } catch (e) { /* shown again on the next try */ }
}

const MAX_LOG_LINES = 1000;

function appendLogs(lines, replace) {
  const pre = $('#logs');
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  let all = replace ? lines : (pre.textContent ? pre.textContent.split('\n') : []).concat(lines);
  if (all.length > MAX_LOG_LINES) all = all.slice(all.length - MAX_LOG_LINES);
  pre.textContent = all.join('\n');
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

/* ---- the stream, and polling when it breaks ------------------------------------------------- */

function setConn(kind) {
  const c = $('#conn');
  c.className = 'conn ' + kind;
  c.textContent = kind === 'live' ? 'live' : kind === 'poll' ? 'polling' : 'connecting';
}

function heard() {
  ui.lastEvent = Date.now();
  if (ui.pollTimer) {
    clearInterval(ui.pollTimer);
    ui.pollTimer = null;
  }
  setConn('live');
}

function connect() {
  const es = new EventSource('stream');
  ui.es = es;
  const on = (name, fn) => es.addEventListener(name, (ev) => {
    heard();
    fn(JSON.parse(ev.data));
  });
  on('stats', onStats);
  on('run', (run) => {
    renderRun(run);
    if (ui.tab === 'ratio' && Date.now() - ui.ratioAt > 5000) refreshRatio();
  });
  on('history', onHistory);
  on('exceptions', renderExceptions);
  on('logs', (l) => appendLogs(l.lines, false));
}

async function pollOnce() {
  try {
    const [stats, run, exc, logs] = await Promise.all([
      getJSON('stats/requests'), getJSON('ui/run'), getJSON('exceptions'), getJSON('logs')]);
    onStats(stats);
    renderRun(run);
    renderExceptions(exc);
    appendLogs(logs.master, true);
    await onHistory(await getJSON('ui/history?from=' + ui.historyN));
  } catch (e) { /* the server may be gone; try again */ }
}

function watchdog() {
  const now = Date.now();
  if (now - ui.lastEvent > QUIET_MS && !ui.pollTimer) {
    setConn('poll');
    ui.reconnectAt = now;
    pollOnce();
    ui.pollTimer = setInterval(pollOnce, POLL_MS);
  }
  /* A stream the browser gave up on (an error answer, say) is tried again now and then;
   * one that merely reconnects is left to the browser. */
  if (ui.pollTimer && ui.es && ui.es.readyState === EventSource.CLOSED &&
      now - ui.reconnectAt > RECONNECT_MS) {
    ui.reconnectAt = now;
    connect();
  }
}

/* ---- tabs ----------------------------------------------------------------------------------- */

function showTab(name) {
  if (!document.getElementById('tab-' + name)) name = 'stats';
  ui.tab = name;
  document.querySelectorAll('.tabs button[data-tab]').forEach((b) => {
    b.setAttribute('aria-selected', String(b.dataset.tab === name));
  });
  document.querySelectorAll('main > .panel').forEach((p) => {
    p.hidden = p.id !== 'tab-' + name;
  });
  if (name === 'charts' && chartsReady()) ui.charts.resize();
  if (name === 'ratio') refreshRatio();
  if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
}

/* ---- the start / edit form ------------------------------------------------------------------ */

function openForm(edit) {
  const dlg = $('#form-dialog');
  const info = ui.info;
  dlg.classList.toggle('edit', edit);
  $('#form-title').textContent = edit ? 'Change the number of users' : 'Start a new test';
  $('#form-submit').textContent = edit ? 'Update' : 'Start';
  $('#form-error').hidden = true;
  if (edit && ui.run) {
    $('#f-users').value = String(ui.run.target);
  } else if (!$('#f-users').value) {
    $('#f-users').value = String(info.defaults.user_count);
  }
  if (!$('#f-rate').value) $('#f-rate').value = String(info.defaults.spawn_rate);
  if (!edit) {
    const host = (ui.run && ui.run.host) || info.defaults.host || '';
    if (!$('#f-host').value) $('#f-host').value = host;
    if (!$('#f-run-time').value && info.defaults.run_time > 0)
      $('#f-run-time').value = info.defaults.run_time + 's';
  }
  if (!dlg.open) dlg.showModal();
  $('#f-users').focus();
}

async function submitForm(ev) {
  ev.preventDefault();
  const dlg = $('#form-dialog');
  const edit = dlg.classList.contains('edit');
  const body = new URLSearchParams();
  body.append('user_count', $('#f-users').value);
  body.append('spawn_rate', $('#f-rate').value);
  if (!edit) {
    body.append('host', $('#f-host').value);
    body.append('run_time', $('#f-run-time').value);
    const boxes = document.querySelectorAll('#f-classes input[type=checkbox]');
    const picked = [...boxes].filter((b) => b.checked);
    if (boxes.length && !picked.length) {
      showFormError('Pick at least one user class.');
      return;
    }
    if (picked.length < boxes.length) for (const b of picked) body.append('user_classes', b.value);
  }
  try {
    const res = await fetch('swarm', { method: 'POST', body: body });
    const data = await res.json();
    if (!data.success) {
      showFormError(data.message || 'The test could not start.');
      return;
    }
    dlg.close();
    if (!edit) {
      ui.historyStart = null; /* the next history message starts the charts afresh */
      showTab('stats');
    }
    refreshNow();
  } catch (e) {
    showFormError('The request failed: ' + e.message);
  }
}

function showFormError(msg) {
  const p = $('#form-error');
  p.textContent = msg;
  p.hidden = false;
}

async function refreshNow() {
  try {
    const [stats, run] = await Promise.all([getJSON('stats/requests'), getJSON('ui/run')]);
    onStats(stats);
    renderRun(run);
  } catch (e) { /* the stream will bring it */ }
}

/* ---- start ---------------------------------------------------------------------------------- */

async function main() {
  try {
    ui.info = await getJSON('ui/state');
  } catch (e) {
    document.body.insertAdjacentHTML('afterbegin',
      '<p class="form-error">The UI cannot reach cicada: ' + esc(e.message) + '</p>');
    return;
  }
  const info = ui.info;
  document.title = 'cicada: ' + info.locustfile;
  $('#dl-history-item').hidden = !info.full_history;
  const fs = $('#f-classes');
  fs.hidden = info.user_classes.length < 2;
  for (const name of info.user_classes) {
    fs.insertAdjacentHTML('beforeend', '<label><input type="checkbox" name="user_classes" value="' +
      esc(name) + '" checked> ' + esc(name) + '</label>');
  }

  document.querySelectorAll('.tabs button[data-tab]').forEach((b) => {
    b.addEventListener('click', () => showTab(b.dataset.tab));
  });
  document.querySelectorAll('#stats-table th[data-key]').forEach((th) => {
    th.addEventListener('click', () => {
      const key = th.dataset.key;
      ui.sort = ui.sort.key === key ? { key: key, dir: -ui.sort.dir } : { key: key, dir: 1 };
      if (ui.stats) renderStats(ui.stats);
    });
  });
  $('#btn-new').addEventListener('click', () => openForm(false));
  $('#btn-edit').addEventListener('click', () => openForm(true));
  $('#btn-stop').addEventListener('click', async () => {
    await fetch('stop').catch(() => null);
    refreshNow();
  });
  $('#btn-reset').addEventListener('click', async () => {
    await fetch('stats/reset').catch(() => null);
    refreshNow();
  });
  $('#swarm-form').addEventListener('submit', submitForm);
  $('#form-cancel').addEventListener('click', () => $('#form-dialog').close());

  showTab((location.hash || '#stats').slice(1));
  renderRun({ state: info.state, host: info.host, user_count: 0, target: 0 });
  await refreshNow();
  await onHistory(await getJSON('ui/history?from=0').catch(() => ({ start_time: 0, from: 0, n: 0, points: [] })));
  if (ui.run && ui.run.state === 'ready') openForm(false);

  ui.lastEvent = Date.now();
  connect();
  setInterval(watchdog, 1000);
}

window.cicadaUI = ui; /* for people and tests poking at the page */
main();
