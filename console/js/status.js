// #/status: /health (no key needed) and a readable summary of the
// Prometheus metrics, refreshed every 5 seconds while the page is shown.

import { h, clear, fmtNumber, humanize } from './dom.js';
import { API_BASE, METRICS_URL } from './config.js';
import { Metrics } from './prom.js';

const TIERS = {
    shm: 'shared-memory zone (L1)',
    negative: 'zone, known absent',
    bloom: 'refused by the bloom filter',
    redis: 'Redis (L2)',
    pg: 'PostgreSQL',
    stale: 'expired zone entry, backends down',
    error: 'no backend answered (503)',
    invalid: 'malformed code',
    none: 'no tier',
};

const NAMES = {
    status: 'Status', postgresql: 'PostgreSQL', redis: 'Redis',
    zone: 'Cache zone', queue: 'Click queue',
};

const name = (k) => NAMES[k] || humanize(k);

const REFRESH_MS = 5000;

function bytes(n) {
    if (typeof n !== 'number' || !Number.isFinite(n)) {
        return String(n);
    }
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
        n /= 1024;
        i += 1;
    }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function pct(part, whole) {
    return whole ? `${(100 * part / whole).toFixed(1)} %` : '–';
}

function seconds(v) {
    if (v === null || !Number.isFinite(v)) {
        return '–';
    }
    return v < 1 ? `${(v * 1000).toFixed(0)} ms` : `${v.toFixed(2)} s`;
}

// one row of a summary: label, value, and a state (ok / warn / bad)
function item(label, value, state, note) {
    return h('div', { class: ['figure', state ? `is-${state}` : null],
                      dataset: { metric: label } },
        h('dt', { text: label }),
        h('dd', { class: 'value', text: value }),
        note ? h('dd', { class: 'hint', text: note }) : null,
        state === 'bad' || state === 'warn'
            ? h('dd', { class: 'visually-hidden',
                        text: state === 'bad' ? '(problem)' : '(attention)' })
            : null);
}

function card(title, ...items) {
    const list = items.flat().filter(Boolean);
    return list.length
        ? h('section', { class: 'card', dataset: { card: title } },
            h('h3', { text: title }), h('dl', { class: 'figures small' }, list))
        : null;
}

function upState(v) {
    if (v === 'up' || v === 'ok') {
        return 'ok';
    }
    if (v === 'off' || v === 'disabled' || v === 'not configured') {
        return null;
    }
    return 'bad';
}

function healthView(health, httpStatus) {
    const parts = [];
    const scalars = Object.entries(health)
        .filter(([, v]) => v === null || typeof v !== 'object');
    const objects = Object.entries(health)
        .filter(([, v]) => v !== null && typeof v === 'object');

    parts.push(card('Backends', scalars.map(([k, v]) => item(
        name(k), String(v), upState(String(v)),
        k === 'status' ? `HTTP ${httpStatus}` : null))));

    for (const [k, obj] of objects) {
        const rows = Object.entries(obj).map(([kk, v]) => {
            const isBytes = /^(size|free|used)$/.test(kk);
            return item(humanize(kk), typeof v === 'number'
                ? (isBytes ? bytes(v) : fmtNumber(v)) : JSON.stringify(v),
                kk === 'dropped' && v > 0 ? 'warn' : null);
        });
        if (typeof obj.size === 'number' && typeof obj.free === 'number') {
            rows.push(item('In use', pct(obj.size - obj.free, obj.size)));
        } else if (typeof obj.size === 'number' && typeof obj.used === 'number') {
            rows.push(item('In use', pct(obj.used, obj.size)));
        }
        parts.push(card(name(k), rows));
    }
    return parts;
}

function metricsView(m) {
    const out = [];

    // which tier answered the requests
    const byTier = m.by('shortlink_requests_total', 'tier');
    const byOutcome = m.by('shortlink_requests_total', 'outcome');
    const all = Object.values(byTier).reduce((a, b) => a + b, 0);
    out.push(card('Requests by tier',
        Object.entries(byTier).sort((a, b) => b[1] - a[1]).map(([t, n]) =>
            item(t, `${fmtNumber(n)} (${pct(n, all)})`,
                 t === 'error' && n > 0 ? 'bad'
                 : t === 'stale' && n > 0 ? 'warn' : null,
                 TIERS[t] || null)),
        all === 0 && m.families.has('shortlink_requests_total')
            ? item('Requests', '0', null, 'nothing answered yet') : null));

    out.push(card('Requests by outcome',
        Object.entries(byOutcome).sort((a, b) => b[1] - a[1]).map(([o, n]) =>
            item(humanize(o), fmtNumber(n),
                 o === 'unavailable' && n > 0 ? 'bad' : null))));

    // the click pipeline
    const qSize = m.value('shortlink_click_queue_bytes', { state: 'size' });
    const qUsed = m.value('shortlink_click_queue_bytes', { state: 'used' });
    const depth = m.value('shortlink_click_queue_clicks');
    const lag = m.value('shortlink_flush_lag_seconds');
    const failed = m.value('shortlink_flush_batches_total', { result: 'failed' });
    out.push(card('Click queue',
        depth !== null ? item('Queue depth', `${fmtNumber(depth)} clicks`) : null,
        qSize !== null ? item('Queue bytes', `${bytes(qUsed)} of ${bytes(qSize)}`,
            qSize && qUsed / qSize > 0.8 ? 'warn' : null, pct(qUsed, qSize))
            : null,
        lag !== null ? item('Flush lag', seconds(lag), lag > 10 ? 'warn' : null,
                            'age of the oldest click of the last batch') : null,
        m.has('shortlink_flush_batches_total')
            ? item('Batches committed', fmtNumber(m.value(
                'shortlink_flush_batches_total', { result: 'committed' }) ?? 0))
            : null,
        failed !== null ? item('Batches failed', fmtNumber(failed),
                               failed > 0 ? 'warn' : null) : null));

    const clicks = m.by('shortlink_clicks_total', 'state');
    out.push(card('Clicks', Object.entries(clicks).map(([s, n]) => item(
        humanize(s), fmtNumber(n),
        (s === 'dropped' || s === 'discarded') && n > 0 ? 'bad'
        : s === 'rejected' && n > 0 ? 'warn' : null,
        s === 'dropped' ? 'queue full or broken' : null))));

    // backends
    const errors = m.by('shortlink_backend_errors_total', 'backend');
    const timeouts = m.by('shortlink_backend_timeouts_total', 'backend');
    const lookups = m.value('shortlink_lookup_duration_seconds_count');
    const lookupSum = m.value('shortlink_lookup_duration_seconds_sum');
    const conns = m.by('shortlink_postgresql_connections', 'state');
    out.push(card('Backends',
        Object.entries(errors).map(([b, n]) => item(`${name(b)} errors`,
            fmtNumber(n), n > 0 ? 'warn' : null)),
        Object.entries(timeouts).map(([b, n]) => item(`${name(b)} timeouts`,
            fmtNumber(n), n > 0 ? 'warn' : null)),
        Object.entries(conns).map(([s, n]) => item(`PostgreSQL connections ${s}`,
                                                   fmtNumber(n))),
        m.has('shortlink_postgresql_lookups_total')
            ? item('PostgreSQL lookups',
                   fmtNumber(m.value('shortlink_postgresql_lookups_total')))
            : null,
        lookups ? item('Mean lookup time', seconds(lookupSum / lookups),
                       null, `${fmtNumber(lookups)} lookups (Redis or PostgreSQL)`)
                : null));

    // caches
    const zSize = m.value('shortlink_cache_zone_bytes', { state: 'size' });
    const zFree = m.value('shortlink_cache_zone_bytes', { state: 'free' });
    const bloom = m.samples('shortlink_bloom_fill_ratio');
    out.push(card('Caches',
        zSize !== null ? item('Zone in use', pct(zSize - zFree, zSize), null,
                              `${bytes(zFree)} free of ${bytes(zSize)}`) : null,
        bloom.map((s) => item(`Bloom filter, worker ${s.labels.worker ?? '?'}`,
            pct(s.value, 1), s.value > 1 ? 'warn' : null,
            `${fmtNumber(m.value('shortlink_bloom_codes', s.labels) ?? 0)} codes`)),
        m.has('shortlink_code_collisions_total')
            ? item('Generated-code collisions',
                   fmtNumber(m.value('shortlink_code_collisions_total')))
            : null));

    return out.filter(Boolean);
}

// every sample, so metrics added later are visible too
function rawTable(m) {
    const rows = [];
    for (const f of m.families.values()) {
        for (const s of f.samples) {
            const labels = Object.entries(s.labels)
                .map(([k, v]) => `${k}="${v}"`).join(',');
            rows.push(h('tr', { title: f.help },
                h('th', { scope: 'row' }, h('code', {
                    text: labels ? `${s.name}{${labels}}` : s.name })),
                h('td', { class: 'num', text: fmtNumber(s.value) }),
                h('td', { text: f.type })));
        }
    }
    return h('details', { class: 'raw-metrics' },
        h('summary', { text: `All metrics (${rows.length} samples)` }),
        h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
            h('thead', {}, h('tr', {},
                h('th', { scope: 'col', text: 'Sample' }),
                h('th', { scope: 'col', class: 'num', text: 'Value' }),
                h('th', { scope: 'col', text: 'Type' }))),
            h('tbody', {}, rows))));
}

export function render(main) {
    const healthBox = h('div', { class: 'cards', id: 'health' });
    const metricsBox = h('div', { id: 'metrics' });
    const stamp = h('p', { class: 'meta', 'aria-live': 'off' });
    const auto = h('input', { type: 'checkbox', id: 'auto-refresh',
                              checked: true });
    let timer = null;
    let open = true;
    let rawOpen = false;

    const refresh = async () => {
        let health = null;
        let status = 0;
        let metricsText = null;
        let metricsProblem = null;

        try {
            const res = await fetch(`${API_BASE}/health`,
                                    { cache: 'no-store', credentials: 'omit' });
            status = res.status;
            health = await res.json().catch(() => null);
        } catch {
            health = null;
            status = 0;
        }

        try {
            const res = await fetch(METRICS_URL, { cache: 'no-store',
                                                   credentials: 'omit' });
            if (res.ok) {
                metricsText = await res.text();
            } else {
                metricsProblem = `${METRICS_URL} answered HTTP ${res.status}`;
            }
        } catch {
            metricsProblem = `${METRICS_URL} could not be reached`;
        }

        if (!open) {
            return;
        }

        clear(healthBox);
        if (health && typeof health === 'object') {
            healthBox.append(...healthView(health, status));
        } else {
            healthBox.append(card('Backends', item('Health',
                status ? `HTTP ${status}` : 'unreachable', 'bad')));
        }

        rawOpen = metricsBox.querySelector('details.raw-metrics')?.open || rawOpen;
        clear(metricsBox);
        if (metricsText !== null) {
            const m = new Metrics(metricsText);
            const raw = rawTable(m);
            raw.open = rawOpen;
            metricsBox.append(h('div', { class: 'cards' }, metricsView(m)), raw);
        } else {
            metricsBox.append(h('p', { class: 'empty',
                text: `No metrics: ${metricsProblem}. Add a location with `
                      + '"shortlink_metrics;" there to see them.' }));
        }
        stamp.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    };

    const schedule = () => {
        clearInterval(timer);
        timer = auto.checked ? setInterval(refresh, REFRESH_MS) : null;
    };
    auto.addEventListener('change', schedule);

    main.append(
        h('div', { class: 'page-head' },
            h('h1', { tabindex: '-1', text: 'Status' }),
            h('button', { type: 'button', text: 'Refresh', id: 'refresh',
                          on: { click: refresh } })),
        h('div', { class: 'field-check inline' }, auto,
          h('label', { for: 'auto-refresh', text: 'Refresh every 5 seconds' })),
        stamp,
        h('h2', { text: 'Health' }), healthBox,
        h('h2', { text: 'Metrics' }), metricsBox);

    refresh();
    schedule();

    return () => {
        open = false;
        clearInterval(timer);
    };
}
