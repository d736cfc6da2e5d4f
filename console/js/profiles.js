// #/profiles: the key's link-in-bio profiles.  #/profiles/new and
// #/profiles/{username}: the editor (profileedit.js) with its live preview
// and, for a saved profile, its statistics (profilestats.js).

import { h, clear, fmtDateTime } from './dom.js';
import { api } from './api.js';
import { reportError } from './links.js';
import { deleteProfile, publicUrl } from './profileapi.js';
import { ProfileEditor } from './profileedit.js';
import { profileStats } from './profilestats.js';

function row(p, refresh) {
    const url = publicUrl(p.username);
    return h('tr', { dataset: { username: p.username } },
        h('td', { class: 'c-user', dataset: { label: 'Username' } },
            h('a', { href: `#/profiles/${p.username}`, class: 'username',
                     text: `@${p.username}` })),
        h('td', { dataset: { label: 'Name' } },
            h('span', { class: 'title', dir: 'auto', text: p.display_name })),
        h('td', { class: 'num', dataset: { label: 'Entries' },
                  text: String((p.entries || []).length) }),
        h('td', { dataset: { label: 'Theme' }, text: p.theme }),
        h('td', { dataset: { label: 'Changed' },
                  text: fmtDateTime(p.updated_at) }),
        h('td', { class: 'row-actions' },
            h('a', { class: 'button small', href: `#/profiles/${p.username}`,
                     'aria-label': `Edit @${p.username}`, text: 'Edit' }),
            h('a', { class: 'button small', href: url, target: '_blank',
                     rel: 'noopener', dataset: { action: 'public' },
                     'aria-label': `Public page of @${p.username}`,
                     text: 'Page' }),
            h('button', { type: 'button', class: 'small danger',
                          dataset: { action: 'delete' },
                          'aria-label': `Delete @${p.username}`,
                          text: 'Delete',
                          on: { click: async () => {
                              if (await deleteProfile(p.username)) {
                                  refresh();
                              }
                          } } })));
}

export function list(main) {
    const body = h('tbody');
    const count = h('p', { class: 'count', 'aria-live': 'polite' });
    const more = h('button', { type: 'button', class: 'more', hidden: true,
                               text: 'More profiles' });
    const table = h('div', { class: 'table-wrap' },
        h('table', { class: 'links profiles' },
            h('caption', { class: 'visually-hidden', text: 'Profiles' }),
            h('thead', {}, h('tr', {},
                ['Username', 'Name', 'Entries', 'Theme', 'Changed', 'Actions']
                    .map((t) => h('th', { scope: 'col', text: t })))),
            body));
    const empty = h('p', { class: 'empty', hidden: true,
                           text: 'No profile yet.' });
    let cursor = null;
    let shown = 0;

    const load = async (append) => {
        let res;
        try {
            res = await api('GET', '/profiles', {
                query: { limit: 50, cursor: append ? cursor : null } });
        } catch (e) {
            reportError(e, 'The profiles could not be read:');
            return;
        }
        if (!append) {
            clear(body);
            shown = 0;
        }
        const refresh = () => load(false);
        (res.profiles || []).forEach((p) => body.append(row(p, refresh)));
        shown += (res.profiles || []).length;
        cursor = res.next_cursor || null;
        more.hidden = !cursor;
        empty.hidden = shown > 0;
        count.textContent = `${shown} profile${shown === 1 ? '' : 's'}`
                            + (cursor ? ', more below' : '');
    };
    more.addEventListener('click', () => load(true));

    main.append(
        h('div', { class: 'page-head' },
            h('h1', { tabindex: '-1', text: 'Profiles' }),
            h('a', { class: 'button primary', id: 'new-profile',
                     href: '#/profiles/new', text: 'New profile' })),
        h('p', { class: 'meta', text: 'Link-in-bio pages: each lists some '
                 + 'of your links, every click a counted short-link redirect.' }),
        count, table, empty, more);
    load(false);
}

export function edit(main, username) {
    const editor = new ProfileEditor(main, username);

    editor.onSaved = (p, created) => {
        if (created) {
            // the editor of the saved profile, with its statistics
            window.location.hash = `#/profiles/${p.username}`;
        }
    };
    editor.onDeleted = () => {
        window.location.hash = '#/profiles';
    };
    editor.start().then((ok) => {
        if (ok && username) {
            main.append(profileStats(username));
        }
    });
}
