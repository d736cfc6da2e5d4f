// Charts with Debian's Chart.js, loaded on first use.  Every chart comes
// with a data table (in a <details>), so nothing depends on seeing a canvas,
// and a missing Chart.js leaves the tables and says so.

import { CHART_JS } from './config.js';
import { h, alertError, fmtNumber } from './dom.js';

// Okabe-Ito: told apart with every common colour vision deficiency
export const PALETTE = ['#0072b2', '#d55e00', '#009e73', '#cc79a7',
                        '#e69f00', '#56b4e9', '#000000', '#f0e442'];

let loading = null;

function loadChart() {
    if (!loading) {
        loading = import(CHART_JS).then((mod) => {
            mod.Chart.register(...mod.registerables);
            mod.Chart.defaults.font.family = getComputedStyle(document.body)
                                             .fontFamily;
            mod.Chart.defaults.color = '#333';
            mod.Chart.defaults.animation = false;
            return mod.Chart;
        }).catch((e) => {
            alertError('Charts are not available:',
                       `${CHART_JS} did not load (${e.message}); `
                       + 'the figures are shown as tables.');
            return null;
        });
    }
    return loading;
}

// A figure: a canvas (role="img" with a summary) and a table of the same
// data.  rows: [[label, v1, v2, ...]], columns: ['Label', 'PV', ...]
function figure(caption, summary, columns, rows, height) {
    const canvas = h('canvas', { role: 'img', 'aria-label': summary });
    const box = h('div', { class: 'chart-box' }, canvas);
    const table = h('table', { class: 'data' },
        h('caption', { class: 'visually-hidden', text: caption }),
        h('thead', {}, h('tr', {},
            columns.map((c, i) => h('th', { scope: 'col',
                                           class: i ? 'num' : null, text: c })))),
        h('tbody', {}, rows.map((r) => h('tr', {},
            r.map((v, i) => (i ? h('td', { class: 'num', text: fmtNumber(v) })
                               : h('th', { scope: 'row', text: v })))))));

    if (height) {
        box.style.height = `${height}px`;       // CSSOM: allowed by the CSP
    }

    const details = h('details', { class: 'chart-table' },
        h('summary', { text: `${caption}: table` }), table);
    const el = h('figure', { class: 'chart' }, box, details);

    // without Chart.js, the table is the figure
    const noChart = () => {
        box.hidden = true;
        details.open = true;
    };
    return { el, canvas, noChart };
}

// series: [{t, pv, uv, ...}] -> a line (day) or bar (hour) chart of every
// numeric field
export function seriesChart(caption, labels, keys, keyLabel, series, kind) {
    const rows = series.map((p, i) => [labels[i], ...keys.map((k) => p[k])]);
    const total = keys.length ? series.reduce((s, p) => s + (p[keys[0]] || 0), 0)
                              : 0;
    const { el, canvas, noChart } = figure(
        caption,
        `${caption}: ${series.length} points, ${keyLabel(keys[0] || '')} `
        + `${fmtNumber(total)} in all`,
        ['Time', ...keys.map(keyLabel)], rows, 300);

    loadChart().then((Chart) => {
        if (!Chart) {
            noChart();
            return;
        }
        if (!canvas.isConnected) {
            return;
        }
        // eslint-disable-next-line no-new
        new Chart(canvas, {
            type: kind,
            data: {
                labels,
                datasets: keys.map((k, i) => ({
                    label: keyLabel(k),
                    data: series.map((p) => p[k]),
                    borderColor: PALETTE[i % PALETTE.length],
                    backgroundColor: PALETTE[i % PALETTE.length]
                                     + (kind === 'line' ? '33' : 'cc'),
                    fill: kind === 'line' && i === 0,
                    tension: 0.2,
                    pointRadius: series.length > 60 ? 0 : 3,
                })),
            },
            options: {
                maintainAspectRatio: false,
                interaction: { mode: 'index', intersect: false },
                scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
                plugins: { legend: { position: 'bottom' } },
            },
        });
    });

    return el;
}

// items: [{label, count}] -> horizontal bars
export function barChart(caption, items, colour) {
    const total = items.reduce((s, x) => s + x.count, 0);
    const rows = items.map((x) => [x.label, x.count,
        total ? `${(100 * x.count / total).toFixed(1)} %` : '']);
    const top = items[0] ? `, most: ${items[0].label} (${fmtNumber(items[0].count)})`
                         : '';
    const { el, canvas, noChart } = figure(
        caption, `${caption}: ${items.length} entries${top}`,
        ['Value', 'Clicks', 'Share of list'], rows, 48 + 28 * Math.max(items.length, 1));

    loadChart().then((Chart) => {
        if (!Chart) {
            noChart();
            return;
        }
        if (!canvas.isConnected) {
            return;
        }
        // eslint-disable-next-line no-new
        new Chart(canvas, {
            type: 'bar',
            data: {
                labels: items.map((x) => x.label),
                datasets: [{
                    label: 'Clicks',
                    data: items.map((x) => x.count),
                    backgroundColor: colour,
                    borderRadius: 3,
                    maxBarThickness: 22,
                }],
            },
            options: {
                indexAxis: 'y',
                maintainAspectRatio: false,
                scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
                plugins: { legend: { display: false } },
            },
        });
    });

    return el;
}

// a distribution over fixed buckets (hours of the day, weekdays): vertical
// bars in the buckets' own order, every bucket shown even when empty
export function columnChart(caption, labels, values, colour) {
    const total = values.reduce((s, v) => s + v, 0);
    const max = Math.max(0, ...values);
    const peak = total ? `, most: ${labels[values.indexOf(max)]} `
                         + `(${fmtNumber(max)})` : ', none';
    const rows = labels.map((l, i) => [l, values[i],
        total ? `${(100 * values[i] / total).toFixed(1)} %` : '']);
    const { el, canvas, noChart } = figure(
        caption, `${caption}: ${fmtNumber(total)} clicks${peak}`,
        ['Bucket', 'Clicks', 'Share'], rows, 220);

    loadChart().then((Chart) => {
        if (!Chart) {
            noChart();
            return;
        }
        if (!canvas.isConnected) {
            return;
        }
        // eslint-disable-next-line no-new
        new Chart(canvas, {
            type: 'bar',
            data: {
                labels,
                datasets: [{
                    label: 'Clicks', data: values,
                    backgroundColor: colour, borderRadius: 2,
                }],
            },
            options: {
                maintainAspectRatio: false,
                scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
                plugins: { legend: { display: false } },
            },
        });
    });

    return el;
}
