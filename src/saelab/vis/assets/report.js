// saelab training report: draws the charts of the page from the JSON in #report-data with uPlot
// (inlined before this script). Every chart's container is already in the page as
// [data-chart="<key>"]; this fills it. Nothing is fetched. window.saelabCharts[key] is the uPlot
// instance of each chart and window.saelabReport.renderMs the time from navigation start until
// every chart was drawn (the tests read both).
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('report-data').textContent);
  var palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
                 '#17becf', '#bcbd22', '#7f7f7f'];
  window.saelabCharts = {};

  function num(v) {
    if (v == null || !isFinite(v)) return '-';
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return +v.toPrecision(5) + '';
  }
  function tokens(v) {
    if (v == null) return '-';
    var a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toPrecision(4) + 'B';
    if (a >= 1e6) return +(v / 1e6).toPrecision(4) + 'M';
    if (a >= 1e3) return +(v / 1e3).toPrecision(4) + 'k';
    return +v.toPrecision(4) + '';
  }
  // Axis labels: uPlot passes null for the unlabelled minor ticks of a log axis.
  function axisNum(u, vs) { return vs.map(function (v) { return v == null ? '' : num(v); }); }
  function axisTokens(u, vs) { return vs.map(function (v) { return v == null ? '' : tokens(v); }); }
  function widthOf(el) {
    return Math.max(300, Math.floor(el.clientWidth || 460) - 4);
  }

  // Vertical red lines where a metric was logged as NaN / infinity.
  function nanMarks(xs) {
    return function (u) {
      if (!xs.length) return;
      var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
      ctx.save();
      ctx.strokeStyle = '#cf222e';
      ctx.lineWidth = 1.5;
      ctx.setLineDash([4, 3]);
      xs.forEach(function (x) {
        var px = u.valToPos(x, 'x', true);
        if (px < u.bbox.left || px > u.bbox.left + u.bbox.width) return;
        ctx.beginPath();
        ctx.moveTo(px, top);
        ctx.lineTo(px, top + h);
        ctx.stroke();
      });
      ctx.restore();
    };
  }

  function lineChart(el, key, spec) {
    var body = el.querySelector('.plot');
    var drawn = spec.series.filter(function (s) { return s.x.length > 0; });
    if (!drawn.length) {
      body.innerHTML = '<div class="empty">no finite value logged</div>';
      return;
    }
    var data = drawn.length === 1 ? [drawn[0].x, drawn[0].y]
        : uPlot.join(drawn.map(function (s) { return [s.x, s.y]; }));
    var nanX = [];
    spec.series.forEach(function (s) { nanX = nanX.concat(s.nan_x || []); });
    var log = !!spec.log;
    function make() {
      var opts = {
        width: widthOf(body), height: 210,
        scales: {x: {time: false}, y: log ? {distr: 3} : {}},
        axes: [{values: axisTokens, size: 32},
               {values: axisNum, size: 62}],
        series: [{label: 'tokens', value: function (u, v) { return tokens(v); }}].concat(
            drawn.map(function (s, i) {
              return {label: s.label, stroke: palette[i % palette.length], width: 1.25,
                      spanGaps: true, points: {show: false},
                      value: function (u, v) { return num(v); }};
            })),
        cursor: {drag: {x: true, y: false}},
        legend: {show: true},
        hooks: {draw: [nanMarks(nanX)]},
      };
      body.innerHTML = '';
      window.saelabCharts[key] = new uPlot(opts, data, body);
    }
    make();
    var btn = el.querySelector('button.log');
    if (btn) {
      var positive = drawn.every(function (s) { return s.y.every(function (v) { return v > 0; }); });
      if (!positive) {
        btn.disabled = true;
        btn.title = 'log scale needs positive values';
      }
      btn.classList.toggle('on', log);
      btn.addEventListener('click', function () {
        if (!positive) return;
        log = !log;
        btn.classList.toggle('on', log);
        window.saelabCharts[key].destroy();
        make();
      });
    }
  }

  // Zones of the feature-density histogram, shaded behind the bars.
  function zoneShading(zones) {
    return function (u) {
      var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
      ctx.save();
      zones.forEach(function (z) {
        var a = u.valToPos(z.lo, 'x', true), b = u.valToPos(z.hi, 'x', true);
        ctx.fillStyle = z.color;
        ctx.fillRect(a, top, b - a, h);
      });
      ctx.restore();
    };
  }

  function densityChart(el, key, dens) {
    var body = el.querySelector('.plot');
    var edges = dens.edges;
    var xs = edges.slice(0, -1).map(function (e, i) { return (e + edges[i + 1]) / 2; });
    var snaps = dens.snapshots;
    var bars = uPlot.paths.bars({size: [1, Infinity], gap: 1});
    var series, data;
    if (dens.overlay) {
      series = snaps.map(function (s, i) {
        return {label: s.label, stroke: palette[i % palette.length], width: 1.5,
                paths: uPlot.paths.stepped({align: 0}), points: {show: false}};
      });
      data = [xs].concat(snaps.map(function (s) { return s.counts; }));
    } else {
      series = [{label: 'latents', stroke: '#1f2328', fill: 'rgba(31,35,40,0.55)', paths: bars,
                 points: {show: false}}];
      data = [xs, snaps[snaps.length - 1].counts];
    }
    var opts = {
      width: widthOf(body), height: 260,
      scales: {x: {time: false, range: [edges[0], edges[edges.length - 1]]}},
      axes: [{label: 'log10(feature density + 1e-10)', values: axisNum},
             {values: axisNum, size: 52, label: 'latents'}],
      series: [{label: 'log10 density', value: function (u, v) { return num(v); }}].concat(series),
      legend: {show: true},
      hooks: {drawClear: [zoneShading(dens.zones)]},
    };
    var u = new uPlot(opts, data, body);
    window.saelabCharts[key] = u;
    var slider = el.querySelector('input[type=range]');
    var label = el.querySelector('.snapshot-label');
    var rows = el.querySelectorAll('table.counts tbody tr');
    function show(i) {
      if (label) label.textContent = snaps[i].label;
      rows.forEach(function (r, j) { r.style.display = j === i ? '' : 'none'; });
      if (!dens.overlay) u.setData([xs, snaps[i].counts]);
    }
    if (slider) {
      slider.addEventListener('input', function () { show(+slider.value); });
      show(+slider.value);
    }
  }

  function scatterChart(el, key, sc) {
    var body = el.querySelector('.plot');
    var pts = sc.points.slice().sort(function (a, b) { return a.x - b.x; });
    var xs = pts.map(function (p) { return p.x; });
    var ys = pts.map(function (p) { return p.y; });
    var front = pts.map(function (p) { return p.pareto ? p.y : null; });
    var caption = el.querySelector('.hover');
    var opts = {
      width: widthOf(body), height: 300,
      scales: {x: {time: false}},
      axes: [{label: sc.xlabel, values: axisNum},
             {label: sc.ylabel, values: axisNum, size: 62}],
      series: [
        {label: sc.xlabel, value: function (u, v) { return num(v); }},
        {label: 'members', stroke: '#0969da', fill: '#0969da', paths: function () { return null; },
         points: {show: true, size: 10, stroke: '#0969da', fill: '#0969da'},
         value: function (u, v) { return num(v); }},
        {label: 'Pareto front', stroke: '#bf3989', width: 1.5, spanGaps: true,
         points: {show: true, size: 6, fill: '#bf3989'}},
      ],
      cursor: {drag: {x: false, y: false}, points: {size: 12}},
      legend: {show: true},
      hooks: {setCursor: [function (u) {
        var i = u.cursor.idx;
        if (caption) caption.textContent = i == null ? 'click a point to open that member\'s report'
            : pts[i].name + ': ' + sc.xlabel + ' ' + num(pts[i].x) + ', ' + sc.ylabel + ' ' + num(pts[i].y);
      }]},
    };
    var u = new uPlot(opts, [xs, ys, front], body);
    window.saelabCharts[key] = u;
    u.over.addEventListener('click', function () {
      var i = u.cursor.idx;
      if (i != null && pts[i].href) window.location.href = pts[i].href;
    });
  }

  document.querySelectorAll('[data-chart]').forEach(function (el) {
    var key = el.getAttribute('data-chart');
    if (D.charts && D.charts[key]) lineChart(el, key, D.charts[key]);
    else if (D.density && key === D.density.key) densityChart(el, key, D.density);
    else if (D.scatter && D.scatter[key]) scatterChart(el, key, D.scatter[key]);
  });
  window.saelabReport = {renderMs: performance.now(), charts: Object.keys(window.saelabCharts).length};
  document.body.setAttribute('data-rendered', '1');
})();
