/*
 * charts.js: the three charts of a run (requests and failures per second, the median and 95th
 * percentile response times, the users), drawn with Chart.js. Used by the live UI and inlined
 * in the HTML report, so it is a plain script: it defines window.CicadaCharts.
 *
 * A point is an array [time_s, users, rps, fail_per_s, p50_ms, p95_ms, avg_ms].
 */
(function (global) {
  'use strict';

  function two(n) { return (n < 10 ? '0' : '') + n; }
  function clock(ms) {
    const d = new Date(ms);
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  }

  function series(label, color, dashed) {
    return {
      label: label, data: [], borderColor: color, backgroundColor: color,
      borderWidth: 2, pointRadius: 0, pointHitRadius: 6, tension: 0.15,
      borderDash: dashed ? [6, 4] : [], spanGaps: true,
    };
  }

  function chart(canvas, datasets, yTitle) {
    return new global.Chart(canvas.getContext('2d'), {
      type: 'line',
      data: { datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        parsing: false, normalized: true,
        interaction: { mode: 'nearest', axis: 'x', intersect: false },
        scales: {
          /* the first seconds get sub-second steps: only whole seconds are labelled */
          x: { type: 'linear', ticks: { maxTicksLimit: 8, callback: function (v) { return v % 1000 ? null : clock(v); } } },
          y: { beginAtZero: true, title: { display: !!yTitle, text: yTitle || '' } },
        },
        plugins: {
          legend: { position: 'top', align: 'end', labels: { boxWidth: 18, boxHeight: 2 } },
          tooltip: { callbacks: { title: function (items) { return items.length ? clock(items[0].parsed.x) : ''; } } },
        },
      },
    });
  }

  /* |els| = {rps, times, users}: the three canvases. */
  function create(els) {
    const rps = chart(els.rps, [series('RPS', '#1f6f50'), series('Failures/s', '#b3261e')], 'per second');
    const times = chart(els.times, [series('Median', '#3465a4'), series('95th percentile', '#a15c00', true)], 'ms');
    const users = chart(els.users, [series('Users', '#6a4c93')], 'users');
    let count = 0;

    function push(p) {
      const x = p[0] * 1000;
      rps.data.datasets[0].data.push({ x: x, y: p[2] });
      rps.data.datasets[1].data.push({ x: x, y: p[3] });
      times.data.datasets[0].data.push({ x: x, y: p[4] });
      times.data.datasets[1].data.push({ x: x, y: p[5] });
      users.data.datasets[0].data.push({ x: x, y: p[1] });
      count++;
    }

    function draw() {
      for (const c of [rps, times, users]) {
        c.update('none');
        c.canvas.dataset.points = String(count);
      }
    }

    return {
      /* Forgets every point (a new test began). */
      reset: function () {
        for (const c of [rps, times, users])
          for (const d of c.data.datasets) d.data.length = 0;
        count = 0;
        draw();
      },
      /* Adds points (oldest first) and redraws. */
      add: function (points) {
        for (const p of points) push(p);
        draw();
      },
      resize: function () { for (const c of [rps, times, users]) c.resize(); },
      get count() { return count; },
      charts: { rps: rps, times: times, users: users },
    };
  }

  global.CicadaCharts = { create: create, clock: clock };
})(window);
