// #/links/{code}/stats?from=&to=&interval=: whatever /links/{code}/stats
// answers.  Totals become figures, series a chart, every list under "top"
// a bar chart; keys nobody here knows yet are drawn by their shape, so new
// statistics appear as the API grows.

import { h, append, clear, fmtNumber, humanize, nextId } from './dom.js';
import { api, ApiError, linkPath } from './api.js';
import { seriesChart, barChart, PALETTE } from './charts.js';
import { reportError } from './links.js';

const LABELS = {
    pv: 'Page views',
    uv: 'Unique visitors',
    unique_ips: 'Unique IPs',
    bots: 'Bot clicks',
    referrers: 'Referrers',
    browsers: 'Browsers',
    os: 'Operating systems',
    devices: 'Devices',
    countries: 'Countries',
    languages: 'Languages',
};

const HINTS = {
    pv: 'every redirect, bots included',
    uv: 'distinct visitor cookies',
    unique_ips: 'distinct (anonymised) addresses',
    bots: 'clicks from known crawlers',
};

// keys of the answer drawn by their own part of the page
const KNOWN = new Set(['code', 'from', 'to', 'interval', 'totals', 'series',
                       'top']);

const label = (k) => LABELS[k] || humanize(k);

const regionNames = typeof Intl.DisplayNames === 'function'
    ? new Intl.DisplayNames(['en'], { type: 'region' }) : null;

function countryLabel(v) {
    if (regionNames && /^[A-Z]{2}$/.test(v)) {
        try {
            const name = regionNames.of(v);
            return name && name !== v ? `${v} · ${name}` : v;
        } catch {
            return v;
        }
    }
    return v;
}

const isoDay = (d) => d.toISOString().slice(0, 10);

function addDays(day, n) {
    const d = new Date(`${day}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + n);
    return isoDay(d);
}

// the range asked for: dates (UTC) from..to, both included
function rangeFrom(params) {
    const today = isoDay(new Date());
    const re = /^\d{4}-\d{2}-\d{2}$/;
    const to = re.test(params.get('to') || '') ? params.get('to') : today;
    const from = re.test(params.get('from') || '') ? params.get('from')
                                                   : addDays(to, -6);
    const interval = params.get('interval') === 'hour' ? 'hour' : 'day';
    return { from, to, interval };
}

// "2026-11-28T14:00:00Z" -> "Nov 28" by day; by hour "14:00", with the
// date at the first point and at each midnight (UTC)
function pointLabel(t, interval, first) {
    const d = new Date(t);
    if (Number.isNaN(d.getTime())) {
        return String(t);
    }
    const day = d.toLocaleString('en', { timeZone: 'UTC', month: 'short',
                                         day: 'numeric' });
    if (interval !== 'hour') {
        return day;
    }
    const hour = `${String(d.getUTCHours()).padStart(2, '0')}:00`;
    return first || d.getUTCHours() === 0 ? `${day} ${hour}` : hour;
}

// the answer's [from, to) as the dates (or hours) it covers, in UTC
function rangeText(from, to, interval) {
    const a = new Date(from);
    const b = new Date(new Date(to).getTime() - 1);
    if (Number.isNaN(a.getTime()) || Number.isNaN(b.getTime())) {
        return `${from} – ${to}, by ${interval}`;
    }
    if (b < a) {
        return `Nothing from ${from} to ${to}`;
    }
    const opts = { timeZone: 'UTC', year: 'numeric', month: 'short',
                   day: 'numeric' };
    if (interval === 'hour') {
        Object.assign(opts, { hour: '2-digit', minute: '2-digit',
                              hourCycle: 'h23' });
        b.setTime(new Date(to).getTime() - 3600000);
    }
    const fmt = (d) => d.toLocaleString('en', opts);
    return `${fmt(a)} – ${fmt(b)} UTC, by ${interval}`;
}

// a top list's entries, whatever their field names: {label, count}
function entries(list, key) {
    return list.map((x) => {
        if (x === null || typeof x !== 'object') {
            return { label: String(x), count: 0 };
        }
        const count = typeof x.count === 'number' ? x.count
            : Object.values(x).find((v) => typeof v === 'number') ?? 0;
        let text = x.value ?? x.name ?? x.key
            ?? Object.values(x).find((v) => typeof v === 'string') ?? '';
        text = text === '' ? '(none)' : String(text);
        return { label: key === 'countries' ? countryLabel(text) : text, count };
    });
}

function isEntryList(v) {
    return Array.isArray(v) && v.every((x) => x && typeof x === 'object'
        && Object.values(x).some((y) => typeof y === 'number'));
}

function figures(obj, cls) {
    return h('dl', { class: cls },
        Object.entries(obj).map(([k, v]) => h('div', {
            class: 'figure', dataset: { stat: k },
        },
            h('dt', { text: label(k) }),
            h('dd', { class: 'value', text: typeof v === 'object' && v !== null
                                            ? JSON.stringify(v) : fmtNumber(v) }),
            HINTS[k] ? h('dd', { class: 'hint', text: HINTS[k] }) : null)));
}

function topSection(key, list, i) {
    const items = entries(list, key);
    const headingId = nextId('top');
    return h('section', { class: 'top card', dataset: { top: key },
                          'aria-labelledby': headingId },
        h('h3', { id: headingId, text: label(key) }),
        items.length
            ? barChart(label(key), items, PALETTE[i % PALETTE.length])
            : h('p', { class: 'empty', text: 'None recorded in this range.' }));
}

// a key of the answer nobody here knows: drawn by its shape
function extraSection(key, value, i) {
    const headingId = nextId('extra');
    let body;

    if (isEntryList(value)) {
        body = value.length ? barChart(label(key), entries(value, key),
                                       PALETTE[i % PALETTE.length])
                            : h('p', { class: 'empty', text: 'Nothing here.' });
    } else if (value && typeof value === 'object' && !Array.isArray(value)
               && Object.values(value).every((v) => typeof v !== 'object'
                                                   || v === null)) {
        body = figures(value, 'figures small');
    } else if (value && typeof value === 'object'
               && Object.values(value).every(isEntryList)) {
        body = h('div', { class: 'tops' }, Object.entries(value).map(
            ([k, v], j) => topSection(k, v, i + j)));
    } else {
        body = h('pre', { class: 'raw', text: JSON.stringify(value, null, 2) });
    }

    return h('section', { class: 'extra card', dataset: { extra: key },
                          'aria-labelledby': headingId },
        h('h2', { id: headingId, text: label(key) }), body);
}

export function render(main, params, code) {
    let range = rangeFrom(params);
    const results = h('div', { class: 'stats-results', 'aria-busy': 'true' });
    const targetLine = h('p', { class: 'target-line' });
    const heading = h('h1', { tabindex: '-1' }, 'Statistics of ',
                      h('code', { text: code }));

    const fromIn = h('input', { type: 'date', id: 'stats-from', required: true,
                                value: range.from,
                                'aria-describedby': 'stats-range-error' });
    const toIn = h('input', { type: 'date', id: 'stats-to', required: true,
                              value: range.to,
                              'aria-describedby': 'stats-range-error' });
    const intervalIn = h('select', { id: 'stats-interval' },
        h('option', { value: 'day', text: 'by day' }),
        h('option', { value: 'hour', text: 'by hour' }));
    intervalIn.value = range.interval;
    const rangeError = h('p', { class: 'field-error', id: 'stats-range-error' });

    // the range lives in the URL (without a new history entry or a reload)
    const show = (r, push) => {
        range = r;
        markPreset();
        fromIn.value = r.from;
        toIn.value = r.to;
        intervalIn.value = r.interval;
        const q = new URLSearchParams(r).toString();
        const hash = `#/links/${encodeURIComponent(code)}/stats?${q}`;
        if (push && window.location.hash !== hash) {
            window.history.replaceState(null, '', hash);
        }
        load();
    };

    const presetRange = (days, interval) => {
        const to = isoDay(new Date());
        return { from: addDays(to, 1 - days), to, interval };
    };

    const preset = (days, interval, text) => h('button', {
        type: 'button', class: 'small preset', text,
        'aria-pressed': 'false', dataset: { days, interval },
        on: {
            click: () => show(presetRange(days, interval), true),
        },
    });

    const form = h('form', {
        class: 'range', 'aria-label': 'Range',
        on: {
            submit: (e) => {
                e.preventDefault();
                if (!fromIn.value || !toIn.value || fromIn.value > toIn.value) {
                    rangeError.textContent = 'Pick a start date on or before '
                                             + 'the end date.';
                    fromIn.setAttribute('aria-invalid', 'true');
                    fromIn.focus();
                    return;
                }
                show({ from: fromIn.value, to: toIn.value,
                       interval: intervalIn.value }, true);
            },
        },
    },
        h('div', { class: 'field' },
            h('label', { for: 'stats-from', text: 'From (UTC)' }), fromIn),
        h('div', { class: 'field' },
            h('label', { for: 'stats-to', text: 'To (UTC, included)' }), toIn),
        h('div', { class: 'field' },
            h('label', { for: 'stats-interval', text: 'Interval' }), intervalIn),
        h('div', { class: 'field field-submit' },
            h('button', { type: 'submit', class: 'primary', text: 'Show' })),
        h('div', { class: 'presets', role: 'group', 'aria-label': 'Quick ranges' },
            preset(1, 'hour', 'Today'),
            preset(2, 'hour', '48 hours'),
            preset(7, 'day', '7 days'),
            preset(30, 'day', '30 days'),
            preset(90, 'day', '90 days')),
        rangeError);

    // the quick range that is shown, if any, is pressed
    const markPreset = () => {
        form.querySelectorAll('button.preset').forEach((b) => {
            const p = presetRange(Number(b.dataset.days), b.dataset.interval);
            const on = p.from === range.from && p.to === range.to
                       && p.interval === range.interval;
            b.setAttribute('aria-pressed', String(on));
        });
    };

    let seq = 0;

    const load = async () => {
        const mine = ++seq;
        rangeError.textContent = '';
        fromIn.removeAttribute('aria-invalid');
        results.setAttribute('aria-busy', 'true');
        results.classList.add('loading');

        let stats;
        try {
            stats = await api('GET', `${linkPath(code)}/stats`, {
                query: { from: range.from, to: addDays(range.to, 1),
                         interval: range.interval },
            });
        } catch (e) {
            if (mine !== seq) {
                return;
            }
            results.classList.remove('loading');
            results.setAttribute('aria-busy', 'false');
            if (e instanceof ApiError && e.status === 400) {
                rangeError.textContent = e.describe();
                return;
            }
            clear(results);
            results.append(h('p', { class: 'empty',
                                    text: 'No statistics to show.' }));
            reportError(e, `The statistics of ${code} could not be read:`);
            return;
        }
        if (mine !== seq) {
            return;
        }
        clear(results);
        results.append(...draw(stats));
        results.classList.remove('loading');
        results.setAttribute('aria-busy', 'false');
    };

    const draw = (stats) => {
        const out = [];
        const interval = stats.interval || range.interval;
        const series = Array.isArray(stats.series) ? stats.series : [];

        out.push(h('p', { class: 'range-line',
                          text: rangeText(stats.from, stats.to, interval) }));

        if (stats.totals && typeof stats.totals === 'object') {
            out.push(h('section', { class: 'totals', 'aria-label': 'Totals' },
                       figures(stats.totals, 'figures')));
        }

        if (series.length) {
            const keys = [...new Set(series.flatMap((p) => Object.keys(p)))]
                .filter((k) => k !== 't'
                        && series.some((p) => typeof p[k] === 'number'));
            out.push(h('section', { class: 'series card',
                                    'aria-labelledby': 'series-h' },
                h('h2', { id: 'series-h', text: `Clicks by ${interval}` }),
                seriesChart(`Clicks by ${interval}`,
                            series.map((p, i) => pointLabel(p.t, interval,
                                                            i === 0)),
                            keys, label, series,
                            interval === 'hour' ? 'bar' : 'line')));
        }

        if (stats.top && typeof stats.top === 'object') {
            const order = ['referrers', 'browsers', 'os', 'devices', 'countries'];
            const keys = Object.keys(stats.top).sort((a, b) => {
                const ia = order.indexOf(a) < 0 ? 99 : order.indexOf(a);
                const ib = order.indexOf(b) < 0 ? 99 : order.indexOf(b);
                return ia - ib || a.localeCompare(b);
            });
            out.push(h('section', { class: 'tops-wrap',
                                    'aria-labelledby': 'tops-h' },
                h('h2', { id: 'tops-h', text: 'Top lists' }),
                h('div', { class: 'tops' }, keys.map((k, i) => (
                    Array.isArray(stats.top[k])
                        ? topSection(k, stats.top[k], i)
                        : extraSection(k, stats.top[k], i))))));
        }

        Object.keys(stats).filter((k) => !KNOWN.has(k))
            .forEach((k, i) => out.push(extraSection(k, stats[k], i)));

        return out;
    };

    markPreset();
    main.append(
        h('p', { class: 'crumbs' }, h('a', { href: '#/links', text: '← Links' })),
        heading, targetLine, form, results);

    // the link itself, for its target and short URL (not needed to draw)
    api('GET', linkPath(code)).then((link) => {
        append(targetLine, [
            h('code', { class: 'short-url', text: link.short_url || code }),
            ' → ', h('span', { class: 'target', text: link.url }),
            link.title ? h('span', { class: 'meta', text: ` · ${link.title}` })
                       : null,
            link.enabled === false ? h('span', { class: 'badge badge-disabled',
                                                 text: 'Disabled' }) : null]);
    }).catch(() => {});

    load();
}
