/* report.js: draws the HTML report's charts from the points embedded in the page. */
(function () {
  'use strict';
  const note = document.getElementById('charts-note');
  let data;
  try {
    data = JSON.parse(document.getElementById('report-data').textContent);
  } catch (e) {
    note.textContent = 'The chart data cannot be read.';
    return;
  }
  if (!window.Chart || !window.CicadaCharts) {
    note.textContent = 'The chart library did not load.';
    return;
  }
  const points = data.points || [];
  note.textContent = points.length ? '' : 'No chart points: the test ran for less than a second.';
  note.hidden = points.length > 0;
  const charts = window.CicadaCharts.create({
    rps: document.getElementById('chart-rps'),
    times: document.getElementById('chart-times'),
    users: document.getElementById('chart-users'),
  });
  charts.add(points);
  document.body.dataset.chartPoints = String(points.length);
  window.cicadaReport = { charts: charts, data: data };
})();
