// The live preview of a profile page, built with DOM calls (textContent
// only) in the structure of the module's template
// (ngx_http_shortlink_profile_render.c): header with avatar, <h1>, bio,
// then <nav aria-label="Links"> with one button per visible entry, under a
// theme class.  Why not the real page in an <iframe>: it shows only what is
// saved (the preview follows every keystroke), its own CSP forbids framing
// (frame-ancestors 'none'), and loading it would count a profile view.
// The avatar is another origin's image, which the console's CSP refuses to
// load: the preview shows where it would be, with its host.  Its buttons
// have no href: a click there would be a counted redirect.

import { h, clear } from './dom.js';

const THEMES = ['light', 'dark', 'contrast'];

// what the page shows now: enabled entries inside their schedule
// (whether each link is itself followable is for the server to know)
export function visibleEntries(entries, now = Date.now()) {
    return entries.filter((e) => {
        if (!e.enabled) {
            return false;
        }
        const from = e.visible_from ? Date.parse(e.visible_from) : NaN;
        const until = e.visible_until ? Date.parse(e.visible_until) : NaN;
        return !(from > now) && !(until <= now);
    });
}

function avatarHost(url) {
    try {
        const u = new URL(url);
        return /^https?:$/.test(u.protocol) ? u.host : null;
    } catch {
        return null;
    }
}

// p: {display_name, bio, avatar_url, theme, entries: [{code, title,
// enabled, visible_from, visible_until}]}; linkBase: where codes go
export function renderPreview(box, p, linkBase) {
    const theme = THEMES.includes(p.theme) ? p.theme : 'light';
    const shown = visibleEntries(p.entries || []);
    const host = p.avatar_url ? avatarHost(p.avatar_url) : null;

    clear(box);
    box.className = `pv-page t-${theme}`;
    box.append(h('div', { class: 'pv-main' },
        h('div', { class: 'pv-header' },
            host ? h('div', { class: 'pv-avatar', role: 'img',
                              'aria-label': `Avatar from ${host}`,
                              title: p.avatar_url, text: host }) : null,
            h('p', { class: 'pv-h1', dir: 'auto',
                     text: p.display_name || '(display name)' }),
            p.bio ? h('p', { class: 'pv-bio', dir: 'auto', text: p.bio })
                  : null),
        h('nav', { 'aria-label': 'Links in the preview' },
            shown.length
                ? h('ul', {}, shown.map((e) => h('li', {},
                    h('a', { dir: 'auto', title: `${linkBase}${e.code}`,
                             dataset: { code: e.code },
                             text: e.title || e.code }))))
                : h('p', { class: 'pv-empty', text: 'No link is shown now.' }))));
    return shown.length;
}
