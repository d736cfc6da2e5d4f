// A profile's statistics (GET /profiles/{username}/stats): views, visitors,
// entry clicks and click-through rate over a range of days in a time zone,
// and each entry's clicks and CTR as a bar chart with its table.

import { h, clear, fmtNumber, nextId } from './dom.js';
import { api, ApiError } from './api.js';
import { barChart, PALETTE } from './charts.js';
import { reportError } from './links.js';
import { profilePath } from './profileapi.js';
import { browserZone, midnight, todayIn, addDays, wallClock } from './tz.js';

const pct = (v) => (typeof v === 'number' ? `${(100 * v).toFixed(1)} %` : '–');

function figure(key, label, value, hint) {
    return h('div', { class: 'figure', dataset: { stat: key } },
        h('dt', { text: label }), h('dd', { class: 'value', text: value }),
        hint ? h('dd', { class: 'hint', text: hint }) : null);
}

export function profileStats(username) {
    const tz = browserZone();
    const headingId = nextId('pstats');
    const results = h('div', { class: 'pstats-results', 'aria-busy': 'true' });
    const error = h('p', { class: 'field-error', id: nextId('pstats-error') });
    let days = 7;
    let seq = 0;

    const load = async () => {
        const mine = ++seq;
        const to = todayIn(tz);
        const from = addDays(to, 1 - days);
        let s;

        error.textContent = '';
        results.setAttribute('aria-busy', 'true');
        try {
            s = await api('GET', `${profilePath(username)}/stats`, {
                query: { from: midnight(from, tz),
                         to: midnight(addDays(to, 1), tz), tz } });
        } catch (e) {
            if (mine === seq) {
                results.setAttribute('aria-busy', 'false');
                if (e instanceof ApiError && e.status === 400) {
                    error.textContent = e.describe();
                } else {
                    reportError(e, `The statistics of @${username} could not `
                                   + 'be read:');
                }
            }
            return;
        }
        if (mine !== seq) {
            return;
        }
        const a = wallClock(s.from);
        const entries = Array.isArray(s.entries) ? s.entries : [];
        clear(results);
        results.append(
            h('p', { class: 'range-line', text: a
                ? `${days} days from ${a.day} ${a.year} (${s.tz || tz})`
                : `${s.from} – ${s.to}` }),
            h('dl', { class: 'figures' },
                figure('views', 'Page views', fmtNumber(s.views),
                       'GETs of the page'),
                figure('visitors', 'Visitors', fmtNumber(s.visitors),
                       'distinct visitor cookies'),
                figure('clicks', 'Entry clicks', fmtNumber(s.clicks),
                       'from the page to its links'),
                figure('ctr', 'Click-through rate', pct(s.ctr),
                       'entry clicks per view')),
            entries.length
                ? h('div', { class: 'pstats-entries' },
                    barChart('Clicks per entry', entries.map((e) => ({
                        label: e.title ? `${e.title} (${e.code})` : e.code,
                        count: e.clicks || 0 })), PALETTE[1]),
                    h('table', { class: 'data pstats-table' },
                        h('caption', { text: 'Entries: clicks and CTR' }),
                        h('thead', {}, h('tr', {},
                            ['Entry', 'Code', 'Clicks', 'CTR'].map((c, i) =>
                                h('th', { scope: 'col', class: i > 1 ? 'num' : null,
                                          text: c })))),
                        h('tbody', {}, entries.map((e) => h('tr', {
                            dataset: { code: e.code } },
                            h('th', { scope: 'row', dir: 'auto',
                                      text: e.title || '' }),
                            h('td', {}, h('code', { text: e.code })),
                            h('td', { class: 'num', text: fmtNumber(e.clicks) }),
                            h('td', { class: 'num', text: pct(e.ctr) }))))))
                : h('p', { class: 'empty', text: 'No entries.' }));
        results.setAttribute('aria-busy', 'false');
    };

    const preset = (n, text) => h('button', {
        type: 'button', class: 'small preset', text,
        'aria-pressed': String(n === days), dataset: { days: n },
        on: { click: (ev) => {
            days = n;
            ev.target.parentElement.querySelectorAll('button').forEach((b) => {
                b.setAttribute('aria-pressed', String(b === ev.target));
            });
            load();
        } },
    });

    const section = h('section', { class: 'profile-stats card',
                                   'aria-labelledby': headingId },
        h('h2', { id: headingId, text: 'Statistics' }),
        h('div', { class: 'presets', role: 'group',
                   'aria-label': `Range (days in ${tz})` },
            preset(1, 'Today'), preset(7, '7 days'), preset(30, '30 days'),
            preset(90, '90 days'),
            h('button', { type: 'button', class: 'small', id: 'pstats-refresh',
                          text: 'Refresh', on: { click: () => load() } })),
        error, results);
    load();
    return section;
}
