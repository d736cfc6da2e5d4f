// #/links/{code}/stats?from=&to=&interval=&tz=: whatever /links/{code}/stats
// answers; #/stats?tag=&...: the same for all of the key's links (GET
// /stats).  Totals become figures, "today" figures, series a chart, the
// hours of the day and the weekdays column charts, every list under "top" a
// bar chart; keys nobody here knows yet are drawn by their shape, so new
// statistics appear as the API grows.

import { h, append, clear, fmtNumber, humanize, nextId } from './dom.js';
import { api, ApiError, linkPath } from './api.js';
import { seriesChart, barChart, columnChart, PALETTE } from './charts.js';
import { browserZone, zones, validZone, midnight, todayIn, addDays,
         wallClock } from './tz.js';
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
    networks: 'Networks',
    sources: 'Sources',
    new_visitors: 'New visitors',
    returning_visitors: 'Returning visitors',
};

const HINTS = {
    pv: 'every redirect, bots included',
    uv: 'distinct visitor cookies',
    unique_ips: 'distinct (anonymised) addresses',
    bots: 'clicks from known crawlers',
    new_visitors: 'first seen on this link in the bucket',
    returning_visitors: 'seen on it before the bucket',
};

// keys of the answer drawn by their own part of the page
const KNOWN = new Set(['code', 'from', 'to', 'interval', 'tz', 'totals',
                       'series', 'top', 'today', 'hours_of_day', 'weekdays',
                       'owner', 'tag', 'links']);

const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
const HOURS = Array.from({ length: 24 },
                         (_, i) => `${String(i).padStart(2, '0')}h`);

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

const DAY_RE = /^\d{4}-\d{2}-\d{2}$/;

// the range asked for: local dates from..to (both included) in zone tz
function rangeFrom(params) {
    const tz = validZone(params.get('tz')) ? params.get('tz') : browserZone();
    const today = todayIn(tz);
    const to = DAY_RE.test(params.get('to') || '') ? params.get('to') : today;
    const from = DAY_RE.test(params.get('from') || '') ? params.get('from')
                                                       : addDays(to, -6);
    const interval = params.get('interval') === 'hour' ? 'hour' : 'day';
    return { from, to, interval, tz };
}

// a bucket start as the API writes it, in the zone ("2026-10-25T00:00:00
// +02:00"): "Oct 25" by day; by hour "14:00", with the date at the first
// point and at each midnight
function pointLabel(t, interval, first) {
    const w = wallClock(t);
    if (!w) {
        return String(t);
    }
    if (interval !== 'hour') {
        return w.day;
    }
    return first || w.hour === 0 ? `${w.day} ${w.time}` : w.time;
}

// the answer's [from, to) in its zone's wall-clock time
function rangeText(from, to, interval, tz) {
    const a = wallClock(from);
    const b = wallClock(to);
    if (!a || !b) {
        return `${from} – ${to}, by ${interval}`;
    }
    const fmt = (w) => `${w.day} ${w.year}${w.time === '00:00' ? ''
                                                              : ` ${w.time}`}`;
    return `${fmt(a)} – ${fmt(b)} (end excluded, ${tz}), by ${interval}`;
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

function todaySection(today, tz) {
    const w = wallClock(today.since);
    const rest = Object.fromEntries(Object.entries(today)
                                    .filter(([k]) => k !== 'since'));
    return h('section', { class: 'today card', 'aria-labelledby': 'today-h' },
        h('h2', { id: 'today-h', text: 'Today' }),
        h('p', { class: 'meta', text: w ? `Since midnight, ${w.day} ${w.year}, `
                                          + `${tz}` : `Since ${today.since}` }),
        figures(rest, 'figures small'));
}

function newReturning(totals) {
    const n = totals.new_visitors;
    const r = totals.returning_visitors;
    if (typeof n !== 'number' || typeof r !== 'number') {
        return null;
    }
    const all = n + r;
    const pct = (v) => (all ? `${(100 * v / all).toFixed(1)} %` : '–');
    return h('section', { class: 'returning card',
                          'aria-labelledby': 'returning-h' },
        h('h2', { id: 'returning-h', text: 'New and returning visitors' }),
        h('dl', { class: 'figures small' },
            h('div', { class: 'figure', dataset: { stat: 'new_share' } },
                h('dt', { text: 'New' }), h('dd', { class: 'value', text: pct(n) }),
                h('dd', { class: 'hint', text: `${fmtNumber(n)} visitors` })),
            h('div', { class: 'figure', dataset: { stat: 'returning_share' } },
                h('dt', { text: 'Returning' }),
                h('dd', { class: 'value', text: pct(r) }),
                h('dd', { class: 'hint', text: `${fmtNumber(r)} visitors` }))));
}

function distribution(key, title, labels, values, colour) {
    const headingId = nextId('dist');
    return h('section', { class: 'dist card', dataset: { dist: key },
                          'aria-labelledby': headingId },
        h('h3', { id: headingId, text: title }),
        columnChart(title, labels, values, colour));
}

const isCounts = (v, n) => Array.isArray(v) && v.length === n
                           && v.every((x) => typeof x === 'number');

// code: a link's statistics; null: the key's links (tag from the URL)
export function render(main, params, code) {
    let range = rangeFrom(params);
    let tag = code ? '' : (params.get('tag') || '').trim();
    const results = h('div', { class: 'stats-results', 'aria-busy': 'true' });
    const targetLine = h('p', { class: 'target-line' });
    const heading = code
        ? h('h1', { tabindex: '-1' }, 'Statistics of ', h('code', { text: code }))
        : h('h1', { tabindex: '-1', text: 'Statistics of all links' });
    const base = code ? `#/links/${encodeURIComponent(code)}/stats` : '#/stats';

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
    const tzIn = h('select', { id: 'stats-tz' },
        zones().map((z) => h('option', { value: z, text: z })));
    tzIn.value = range.tz;
    const tagIn = code ? null : h('input', {
        type: 'text', id: 'stats-tag', value: tag, autocomplete: 'off',
        spellcheck: 'false', placeholder: 'all links' });
    const rangeError = h('p', { class: 'field-error', id: 'stats-range-error' });

    // the range lives in the URL (without a new history entry or a reload)
    const show = (r, push) => {
        range = r;
        markPreset();
        fromIn.value = r.from;
        toIn.value = r.to;
        intervalIn.value = r.interval;
        tzIn.value = r.tz;
        const q = new URLSearchParams(r);
        if (tag) {
            q.set('tag', tag);
        }
        const hash = `${base}?${q}`;
        if (push && window.location.hash !== hash) {
            window.history.replaceState(null, '', hash);
        }
        load();
    };

    const presetRange = (days, interval) => {
        const to = todayIn(range.tz);
        return { from: addDays(to, 1 - days), to, interval, tz: range.tz };
    };

    const preset = (days, interval, text) => h('button', {
        type: 'button', class: 'small preset', text,
        'aria-pressed': 'false', dataset: { days, interval },
        on: {
            click: () => show(presetRange(days, interval), true),
        },
    });

    // a new zone keeps the dates: they now mean days in that zone
    tzIn.addEventListener('change', () => {
        if (validZone(tzIn.value)) {
            show({ ...range, tz: tzIn.value }, true);
        }
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
                if (tagIn) {
                    tag = tagIn.value.trim();
                }
                show({ from: fromIn.value, to: toIn.value,
                       interval: intervalIn.value, tz: tzIn.value }, true);
            },
        },
    },
        h('div', { class: 'field' },
            h('label', { for: 'stats-from', text: 'From' }), fromIn),
        h('div', { class: 'field' },
            h('label', { for: 'stats-to', text: 'To (included)' }), toIn),
        h('div', { class: 'field' },
            h('label', { for: 'stats-interval', text: 'Interval' }), intervalIn),
        h('div', { class: 'field' },
            h('label', { for: 'stats-tz', text: 'Time zone' }), tzIn),
        tagIn ? h('div', { class: 'field' },
            h('label', { for: 'stats-tag', text: 'Tag' }), tagIn) : null,
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
            stats = await api('GET', code ? `${linkPath(code)}/stats` : '/stats', {
                query: { from: midnight(range.from, range.tz),
                         to: midnight(addDays(range.to, 1), range.tz),
                         interval: range.interval, tz: range.tz,
                         tag: tag || undefined },
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
            reportError(e, code ? `The statistics of ${code} could not be read:`
                                : 'The statistics could not be read:');
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
        const tz = stats.tz || range.tz;
        const series = Array.isArray(stats.series) ? stats.series : [];

        out.push(h('p', { class: 'range-line',
                          text: rangeText(stats.from, stats.to, interval, tz)
                                + (typeof stats.links === 'number'
                                   ? ` · ${fmtNumber(stats.links)} links`
                                   : '') }));

        if (stats.totals && typeof stats.totals === 'object') {
            out.push(h('section', { class: 'totals', 'aria-label': 'Totals' },
                       figures(stats.totals, 'figures')));
        }

        if (stats.today && typeof stats.today === 'object') {
            out.push(todaySection(stats.today, tz));
        }

        if (stats.totals && typeof stats.totals === 'object') {
            const nr = newReturning(stats.totals);
            if (nr) {
                out.push(nr);
            }
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

        const dists = [];
        if (isCounts(stats.hours_of_day, 24)) {
            dists.push(distribution('hours_of_day', `Hour of the day (${tz})`,
                                    HOURS, stats.hours_of_day, PALETTE[0]));
        }
        if (isCounts(stats.weekdays, 7)) {
            dists.push(distribution('weekdays', 'Day of the week', WEEKDAYS,
                                    stats.weekdays, PALETTE[2]));
        }
        if (dists.length) {
            out.push(h('section', { class: 'dists-wrap',
                                    'aria-labelledby': 'dists-h' },
                h('h2', { id: 'dists-h', text: 'When' }),
                h('div', { class: 'tops' }, dists)));
        }

        if (stats.top && typeof stats.top === 'object') {
            const order = ['referrers', 'browsers', 'os', 'devices', 'countries',
                           'languages', 'sources', 'networks'];
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
    if (code) {
        api('GET', linkPath(code)).then((link) => {
            append(targetLine, [
                h('code', { class: 'short-url', text: link.short_url || code }),
                ' → ', h('span', { class: 'target', text: link.url }),
                link.title ? h('span', { class: 'meta', text: ` · ${link.title}` })
                           : null,
                link.enabled === false ? h('span', { class: 'badge badge-disabled',
                                                     text: 'Disabled' }) : null]);
        }).catch(() => {});
    } else {
        targetLine.textContent = 'Every link of this key\'s owner, or those '
                                 + 'with a tag.';
    }

    load();
}
