// saelab feature dashboards: renders the data embedded in the page (no network). The feature data
// sits in <script type="application/json"> chunks that are parsed only when one of their cards is
// opened, so a page with tens of thousands of features opens at once.
//
// Record format (written by src/saelab/vis/dashboard_page.cpp):
//   {i, d: density, mx: max act, mn: mean act, n: fires, R: histogram range, h: [counts],
//    t: [example], b: [[lo, hi, count, [example]]], pl/nl: [[token id, value]],
//    lh: [lo, hi, [counts]], nb: [[index, cosine]], cr: [[index, r]], nu: [[index, value]],
//    pr: {probe name: {input: [64], output: [64]}}}
//   example = [prompt, position, context start, context length, offset, q, offset, q, ...]
//   with q in 1..255 the act at that context offset as a fraction q/255 of mx (absent: 0).
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const readJson = (id) => JSON.parse($(id).textContent);
  const meta = readJson('meta');
  const index = readJson('index');  // [[feature, density, max act, top token id]]
  const CH = meta.chunk;
  const chunks = {};
  const pos = new Map();  // feature -> its place in index (and so its chunk)
  index.forEach((r, k) => pos.set(r[0], k));

  function record(f) {
    const k = pos.get(f);
    if (k === undefined) return null;
    const c = Math.floor(k / CH);
    if (!chunks[c]) chunks[c] = readJson('c' + c);
    return chunks[c][k - c * CH];
  }

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') e.className = v;
      else if (k === 'onclick') e.onclick = v;
      else e.setAttribute(k, v);
    }
    for (const c of kids) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const svgNS = 'http://www.w3.org/2000/svg';
  function sv(tag, attrs) {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  const fmt = (x) => (x === null || x === undefined) ? '–' :
    (Math.abs(x) >= 1000 || (Math.abs(x) < 1e-3 && x !== 0)) ? x.toExponential(2) : (+x.toPrecision(3)).toString();
  const tokStr = (id) => { const s = meta.vocab[id]; return s === undefined ? String(id) : s; };
  const show = (s) => s.replace(/\n/g, '\u21b5').replace(/ /g, '\u00a0');

  // ---- tooltip
  const tip = el('div', {id: 'tip'});
  document.body.append(tip);
  document.addEventListener('mouseover', (ev) => {
    const t = ev.target.closest && ev.target.closest('[data-tip]');
    if (!t) { tip.style.display = 'none'; return; }
    tip.textContent = t.getAttribute('data-tip');
    tip.style.display = 'block';
  });
  document.addEventListener('mousemove', (ev) => {
    tip.style.left = (ev.clientX + 12) + 'px';
    tip.style.top = (ev.clientY + 12) + 'px';
  });

  // ---- small charts
  function histogram(counts, lo, hi, cls, title) {
    const W = 300, H = 90, n = counts.length, mx = Math.max(1, ...counts);
    const s = sv('svg', {width: W, height: H + 16, class: 'hist'});
    counts.forEach((c, i) => {
      const h = c / mx * H, w = W / n;
      const r = sv('rect', {x: i * w, y: H - h, width: Math.max(1, w - 1), height: h});
      if (cls) r.setAttribute('class', cls);
      const a = lo + (hi - lo) * i / n, b = lo + (hi - lo) * (i + 1) / n;
      r.setAttribute('data-tip', fmt(a) + ' – ' + fmt(b) + ': ' + c);
      s.append(r);
    });
    const t1 = sv('text', {x: 0, y: H + 12}); t1.textContent = fmt(lo);
    const t2 = sv('text', {x: W, y: H + 12, 'text-anchor': 'end'}); t2.textContent = fmt(hi);
    s.append(t1, t2);
    return el('div', null, el('h3', null, title), s);
  }

  function featLink(i) {
    return el('a', {class: 'fl', onclick: () => { location.hash = 'feature=' + i; }}, String(i));
  }
  function table(title, rows, cols) {
    const t = el('table', {class: 'tbl'});
    for (const r of rows) t.append(el('tr', null, ...cols.map((c) => el('td', null, c(r)))));
    return el('div', null, el('h3', null, title), rows.length ? t : el('div', {class: 'muted'}, 'none'));
  }

  // ---- examples
  function colour(frac) {  // white -> orange
    const a = Math.max(0, Math.min(1, frac));
    return 'rgba(255,' + Math.round(140 + 0 * a) + ',0,' + (a * 0.85).toFixed(3) + ')';
  }
  function decode(ex, mx) {
    const [prompt, position, start, len] = ex;
    const acts = new Array(len).fill(0);
    for (let k = 4; k + 1 < ex.length; k += 2) acts[ex[k]] = ex[k + 1] / 255 * mx;
    const ids = meta.prompts[prompt].slice(start, start + len);
    return {prompt, position, start, ids, acts};
  }
  // loss: the example's loss effect at its max token (top examples; undefined / null otherwise).
  function strip(rec, ex, label, loss) {
    const e = decode(ex, rec.mx);
    const line = el('div', {class: 'ex'}, el('span', {class: 'lbl'}, label));
    e.ids.forEach((id, k) => {
      const a = e.acts[k], p = e.start + k, here = p === e.position && loss !== undefined && loss !== null;
      const s = el('span', {class: 'tok' + (p === e.position ? ' mx' : ''), 'data-act': a.toPrecision(4),
        'data-tip': JSON.stringify(tokStr(id)) + '  id ' + id + '\npos ' + p + '  act ' + fmt(a) +
          (here ? '\nloss effect of ablating it here ' + fmt(loss) : '')}, show(tokStr(id)));
      if (here) s.setAttribute('data-loss', String(loss));
      if (a > 0) s.style.background = colour(a / rec.mx);
      line.append(s);
    });
    return line;
  }

  // ---- Othello boards
  const SQ = []; for (let s = 0; s < 64; ++s) if (![27, 28, 35, 36].includes(s)) SQ.push(s);
  const DIRS = [[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]];
  function flips(b, sq, p) {
    if (b[sq]) return [];
    const r0 = sq >> 3, c0 = sq & 7, out = [];
    for (const [dr, dc] of DIRS) {
      const run = []; let r = r0 + dr, c = c0 + dc;
      while (r >= 0 && r < 8 && c >= 0 && c < 8 && b[r * 8 + c] === 3 - p) { run.push(r * 8 + c); r += dr; c += dc; }
      if (run.length && r >= 0 && r < 8 && c >= 0 && c < 8 && b[r * 8 + c] === p) out.push(...run);
    }
    return out;
  }
  const legal = (b, p) => { const l = []; for (let s = 0; s < 64; ++s) if (flips(b, s, p).length) l.push(s); return l; };
  // The board before move t of a game (1 = black, 2 = white), the player to move and its legal moves.
  function boardAt(ids, t) {
    const b = new Array(64).fill(0); b[28] = b[35] = 1; b[27] = b[36] = 2;
    let p = 1;
    for (let k = 0; k < t; ++k) {
      const sq = SQ[ids[k] - 1];
      if (sq === undefined) break;
      if (!flips(b, sq, p).length && flips(b, sq, 3 - p).length) p = 3 - p;  // the player passed
      for (const f of flips(b, sq, p)) b[f] = p;
      b[sq] = p; p = 3 - p;
    }
    if (!legal(b, p).length) p = 3 - p;
    return {b, p, legal: legal(b, p)};
  }
  function board(cells, opts) {
    const S = 17, s = sv('svg', {width: S * 8 + 14, height: S * 8 + 14});
    for (let r = 0; r < 8; ++r) {
      const t = sv('text', {x: 0, y: 14 + r * S + 12, 'font-size': 9}); t.textContent = 'ABCDEFGH'[r]; s.append(t);
      const u = sv('text', {x: 14 + r * S + 5, y: 10, 'font-size': 9}); u.textContent = r; s.append(u);
    }
    for (let q = 0; q < 64; ++q) {
      const x = 14 + (q & 7) * S, y = 14 + (q >> 3) * S;
      const rect = sv('rect', {x, y, width: S, height: S, fill: opts.fill(q), stroke: '#555', 'stroke-width': .5,
        'data-sq': q, 'data-tip': 'ABCDEFGH'[q >> 3] + (q & 7) + (opts.tip ? '  ' + opts.tip(q) : '')});
      s.append(rect);
      const piece = opts.piece ? opts.piece(q) : 0;
      if (piece) s.append(sv('circle', {cx: x + S / 2, cy: y + S / 2, r: S * .38, fill: piece === 1 ? '#111' : '#fff', stroke: '#111', 'data-piece': piece}));
      if (opts.dot && opts.dot(q)) s.append(sv('circle', {cx: x + S / 2, cy: y + S / 2, r: 2.5, fill: '#1a5fb4', 'data-legal': 1}));
    }
    return s;
  }
  function exampleBoard(rec, ex, label) {
    const e = decode(ex, rec.mx), ids = meta.prompts[e.prompt];
    const st = boardAt(ids, e.position), move = SQ[ids[e.position] - 1];
    const act = e.acts[e.position - e.start];
    const svg = board(null, {
      fill: (q) => q === move ? '#f6b26b' : '#3c8d4f',
      piece: (q) => st.b[q], dot: (q) => st.legal.includes(q)});
    return el('div', {class: 'board', 'data-act': act.toPrecision(4), 'data-move': move, 'data-pieces': st.b.filter((x) => x).length},
      svg, el('div', null, label + ' move ' + tokStr(ids[e.position]) + ' act ' + fmt(act)));
  }
  function probeBoard(vals, title) {
    const m = Math.max(1e-9, ...vals.map(Math.abs));
    const fill = (q) => { const v = vals[q] / m; return v >= 0 ? 'rgba(192,28,40,' + v.toFixed(3) + ')' : 'rgba(26,95,180,' + (-v).toFixed(3) + ')'; };
    return el('div', {class: 'board'}, board(null, {fill, tip: (q) => 'cos ' + fmt(vals[q])}), el('div', null, title));
  }

  function examples(rec, list, labelOf, losses) {
    if (meta.othello) return el('div', {class: 'boards'}, ...list.map((ex, k) => exampleBoard(rec, ex, labelOf(ex, k))));
    return el('div', null, ...list.map((ex, k) => strip(rec, ex, labelOf(ex, k), losses ? losses[k] : undefined)));
  }

  // ---- a feature card
  function card(f) {
    const rec = record(f);
    if (!rec) return el('div', {class: 'card'}, 'Feature ' + f + ' is not in this page.');
    const c = el('div', {class: 'card', 'data-feature': String(f)});
    c.append(el('h2', null, 'Feature ' + f));
    c.append(el('div', {class: 'stats'}, el('span', null, 'density ' + fmt(rec.d)),
      el('span', null, 'max act ' + fmt(rec.mx)), el('span', null, 'mean act (firing) ' + fmt(rec.mn)),
      el('span', null, 'fires ' + rec.n)));
    const row = el('div', {class: 'cols'});
    if (rec.h && rec.h.length) row.append(histogram(rec.h, 0, rec.R, '', 'Activations (non-zero), density ' + fmt(rec.d)));
    if (rec.lh) row.append(histogram(rec.lh[2], rec.lh[0], rec.lh[1], 'lg', 'Logit effects W_dec[i] @ W_U'));
    c.append(row);
    const row2 = el('div', {class: 'cols'});
    const lrow = (r) => [(x) => show(tokStr(x[0])), (x) => fmt(x[1])];
    if (rec.pl) row2.append(table('Promoted tokens', rec.pl, lrow()), table('Suppressed tokens', rec.nl, lrow()));
    row2.append(table('Decoder neighbours (cos)', rec.nb || [], [(x) => featLink(x[0]), (x) => fmt(x[1])]));
    row2.append(table('Correlated latents (r)', rec.cr || [], [(x) => featLink(x[0]), (x) => fmt(x[1])]));
    row2.append(table('Largest decoder entries', rec.nu || [], [(x) => 'dim ' + x[0], (x) => fmt(x[1])]));
    c.append(row2);
    if (rec.pr) {
      const pb = el('div', {class: 'boards'});
      for (const [name, v] of Object.entries(rec.pr)) {
        pb.append(probeBoard(v.input, 'input · ' + name), probeBoard(v.output, 'output · ' + name));
      }
      c.append(el('h3', null, 'Cosine with probe directions'), pb);
    }
    c.append(el('h3', null, 'Top activations'));
    if (!rec.t.length) c.append(el('div', {class: 'muted'}, 'never fired on the counted tokens'));
    else c.append(examples(rec, rec.t, (ex) => fmt(ex.length ? decode(ex, rec.mx).acts[ex[1] - ex[2]] : 0), rec.tl));
    if (rec.b && rec.b.length) {
      c.append(el('h3', null, 'Activation bands (random examples per band)'));
      for (let g = rec.b.length - 1; g >= 0; --g) {
        const [lo, hi, count, exs] = rec.b[g];
        if (!count) continue;
        const d = el('details', {class: 'band', open: ''}, el('summary', null, fmt(lo) + ' – ' + fmt(hi) + ': ' + count + ' tokens'));
        d.append(examples(rec, exs, (ex) => fmt(decode(ex, rec.mx).acts[ex[1] - ex[2]])));
        c.append(d);
      }
    }
    return c;
  }

  // ---- the index
  let order = index.slice(), sortKey = 0, sortDir = 1, shown = 200, filtered = order;
  const side = $('side'), main = $('main');
  const search = el('input', {id: 'search', placeholder: 'feature index or top token'});
  const tbl = el('table', {id: 'index'});
  const more = el('button', {class: 'more'}, 'show more');
  side.append(search, tbl, more);
  const heads = [['feature', 0], ['density', 1], ['max act', 2], ['top token', 3]];
  function renderIndex() {
    tbl.textContent = '';
    tbl.append(el('tr', null, ...heads.map(([name, k]) =>
      el('th', {'data-sort': k, onclick: () => { sortDir = sortKey === k ? -sortDir : (k === 0 ? 1 : -1); sortKey = k; resort(); }},
        name + (sortKey === k ? (sortDir > 0 ? ' ▲' : ' ▼') : '')))));
    for (const r of filtered.slice(0, shown)) {
      tbl.append(el('tr', {class: 'row', 'data-row': r[0], onclick: () => { location.hash = 'feature=' + r[0]; }},
        el('td', null, String(r[0])), el('td', null, fmt(r[1])), el('td', null, fmt(r[2])),
        el('td', null, r[3] >= 0 ? show(tokStr(r[3])) : '')));
    }
    more.style.display = filtered.length > shown ? '' : 'none';
  }
  function resort() {
    const k = sortKey;
    order.sort((a, b) => k === 3 ? sortDir * tokStr(a[3]).localeCompare(tokStr(b[3])) : sortDir * (a[k] - b[k]) || a[0] - b[0]);
    refilter();
  }
  function refilter() {
    const q = search.value.trim().toLowerCase();
    filtered = !q ? order : order.filter((r) => String(r[0]) === q || (r[3] >= 0 && tokStr(r[3]).toLowerCase().includes(q)));
    shown = 200;
    renderIndex();
  }
  search.oninput = refilter;
  more.onclick = () => { shown += 500; renderIndex(); };

  // ---- the prompt-centric view
  function promptView() {
    const P = readJson('prompt');
    const wrap = el('div', {class: 'card', id: 'prompt-view'});
    wrap.append(el('h2', null, 'Prompt'));
    const toks = el('div', {class: 'ex ptoks'});
    const ranked = el('div');
    function select(p) {
      toks.querySelectorAll('.tok').forEach((t) => t.classList.toggle('cur', +t.getAttribute('data-pos') === p));
      ranked.textContent = '';
      const list = p === P.position ? P.ranked : P.per_token[p].map((x) => [x[0], x[1], null, null]);
      const rows = list.map((x) => el('tr', {class: 'rk', 'data-index': x[0]}, el('td', null, featLink(x[0])),
        el('td', {'data-act': (+x[1]).toPrecision(4)}, fmt(x[1])), el('td', null, x[2] === null ? '–' : fmt(x[2])),
        el('td', null, x[3] === null ? '–' : fmt(x[3]))));
      ranked.append(el('h3', null, 'Active features at position ' + p + ' (' + JSON.stringify(P.tokens[p]) + ')'),
        el('table', {class: 'tbl', id: 'ranked'}, el('tr', null, el('th', null, 'feature'), el('th', null, 'act'),
          el('th', null, 'quantile'), el('th', null, 'loss effect')), ...rows));
    }
    P.tokens.forEach((s, p) => {
      const top = P.per_token[p][0];
      const t = el('span', {class: 'tok', 'data-pos': p, 'data-act': top ? (+top[1]).toPrecision(4) : '0',
        'data-tip': JSON.stringify(s) + '  pos ' + p + (top ? '\ntop feature ' + top[0] + ' act ' + fmt(top[1]) : '')}, show(s));
      if (top) t.style.background = colour(top[1] / P.max_act);
      t.onclick = () => select(p);
      toks.append(t);
    });
    wrap.append(toks, ranked);
    main.prepend(wrap);
    select(P.position);
  }

  const cardBox = el('div', {id: 'cards'});
  main.append(cardBox);
  function route() {
    const m = /feature=(\d+)/.exec(location.hash);
    const f = m ? +m[1] : (meta.kind === 'prompt' ? null : (index.length ? index[0][0] : null));
    cardBox.textContent = '';
    tbl.querySelectorAll('tr.row').forEach((r) => r.classList.toggle('sel', +r.getAttribute('data-row') === f));
    if (f !== null) cardBox.append(card(f));
  }
  window.addEventListener('hashchange', route);
  renderIndex();
  if (meta.kind === 'prompt') promptView();
  route();
  document.body.setAttribute('data-ready', '1');
})();
