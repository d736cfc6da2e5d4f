// #/links: the key owner's links (an admin key: all), filtered by tag,
// paged with the API's cursor; create, edit, disable/enable, delete.

import { h, announce, alertError, fmtDateTime } from './dom.js';
import { api, ApiError, linkPath } from './api.js';
import { LinkForm } from './linkform.js';
import { confirmDialog } from './confirm.js';

const PAGE = 50;

let form = null;

function linkState(link) {
    if (link.enabled === false) {
        return ['disabled', 'Disabled'];
    }
    if (link.expires_at && new Date(link.expires_at) <= new Date()) {
        return ['expired', 'Expired'];
    }
    return ['active', 'Active'];
}

// only http(s) targets become links; anything else stays text
function safeHref(url) {
    try {
        const u = new URL(url);
        return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
    } catch {
        return null;
    }
}

async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return;
    }
    // plain http on another host: the old way, through a selected field
    const area = h('textarea', { readonly: true, class: 'offscreen',
                                 'aria-hidden': 'true' });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    if (!ok) {
        throw new Error('the browser refused to copy');
    }
}

export function render(main, params) {
    const tag = params.get('tag') || '';
    const code = params.get('code') || '';
    const rows = new Map();               // code -> <tr>
    let cursor = null;

    form = form || new LinkForm();

    const tagInput = h('input', { type: 'search', id: 'tag-filter',
                                  value: tag, autocomplete: 'off',
                                  spellcheck: 'false' });
    const codeInput = h('input', { type: 'search', id: 'code-find',
                                   value: code, autocomplete: 'off',
                                   spellcheck: 'false', maxlength: '64' });
    const tbody = h('tbody', {});
    const empty = h('p', { class: 'empty', hidden: true });
    const more = h('button', { type: 'button', class: 'more', hidden: true,
                               text: 'More links' });
    const count = h('p', { class: 'count', 'aria-live': 'polite' });

    const setCount = () => {
        const n = rows.size;
        count.textContent = `${n} link${n === 1 ? '' : 's'} shown`
            + (tag ? ` with the tag “${tag}”` : '')
            + (code ? ` for the code “${code}”` : '')
            + (cursor ? '; more below' : '');
        empty.hidden = n > 0;
        empty.textContent = code ? `No link has the code “${code}”.`
            : tag ? `No links with the tag “${tag}”.`
            : 'No links yet. Create one with “New link”.';
    };

    // a link's row: replaces the one it had, else at the end (or top)
    const put = (link, { top = false } = {}) => {
        const tr = row(link);
        const old = rows.get(link.code);
        if (old) {
            old.replaceWith(tr);
        } else if (top) {
            tbody.prepend(tr);
        } else {
            tbody.append(tr);
        }
        rows.set(link.code, tr);
        return tr;
    };

    let busy = false;

    // not disabled while loading: a disabled button would drop the focus
    const load = async (first) => {
        let added = null;
        if (busy) {
            return;
        }
        busy = true;
        more.setAttribute('aria-disabled', 'true');
        try {
            if (code) {
                await findCode();
                return;
            }
            const page = await api('GET', '/links', {
                query: { limit: PAGE, tag, cursor: first ? null : cursor },
            });
            for (const link of page.links || []) {
                if (!rows.has(link.code)) {
                    const tr = put(link);
                    added = added || tr;
                }
            }
            cursor = page.next_cursor || null;
        } catch (e) {
            reportError(e, 'The links could not be read:');
        } finally {
            const hadFocus = document.activeElement === more;
            busy = false;
            more.removeAttribute('aria-disabled');
            more.hidden = !cursor;
            setCount();
            // the last page: the button goes, the keyboard goes on from the
            // first link it brought
            if (hadFocus && more.hidden) {
                (added ? added.querySelector('button, a') : heading).focus();
            }
        }
    };

    // ?code=: that one link (a 404 is an empty list, not an error)
    const findCode = async () => {
        if (!/^[0-9A-Za-z_-]{1,64}$/.test(code)) {
            return;
        }
        try {
            put(await api('GET', linkPath(code)));
        } catch (e) {
            if (!(e instanceof ApiError && e.status === 404)) {
                throw e;
            }
        }
    };

    const row = (link) => {
        const [state, stateText] = linkState(link);
        const short = link.short_url || '';
        const href = safeHref(link.url);
        const tr = h('tr', { dataset: { code: link.code, state } });

        const copy = h('button', {
            type: 'button', class: 'small', text: 'Copy',
            'aria-label': `Copy the short URL of ${link.code}`,
            dataset: { action: 'copy' },
            on: {
                click: async () => {
                    try {
                        await copyText(short);
                        copy.textContent = 'Copied';
                        announce(`${short} copied`);
                        setTimeout(() => { copy.textContent = 'Copy'; }, 2000);
                    } catch (e) {
                        alertError('Could not copy:', e.message);
                    }
                },
            },
        });

        const action = (name, text, label, fn, cls) => h('button', {
            type: 'button', class: ['small', cls], text,
            'aria-label': `${label} ${link.code}`, dataset: { action: name },
            on: { click: fn },
        });

        tr.append(
            h('td', { class: 'c-short', dataset: { label: 'Short URL' } },
                h('code', { class: 'short-url', text: short || link.code }),
                ' ', short ? copy : null),
            h('td', { class: 'c-target', dataset: { label: 'Target' } },
                href ? h('a', { href, rel: 'noopener noreferrer nofollow',
                                target: '_blank', class: 'target', text: link.url })
                     : h('span', { class: 'target', text: link.url })),
            h('td', { class: 'c-title', dataset: { label: 'Title, tags' } },
                link.title ? h('span', { class: 'title', text: link.title }) : null,
                (link.tags || []).length
                    ? h('ul', { class: 'tags', 'aria-label': 'Tags' },
                        link.tags.map((t) => h('li', {},
                            h('a', { href: `#/links?tag=${encodeURIComponent(t)}`,
                                     class: 'tag', text: t,
                                     'aria-label': `Show links tagged ${t}` }))))
                    : null),
            h('td', { class: 'c-meta', dataset: { label: 'Redirect' } },
                h('span', { text: String(link.redirect_status) }),
                link.forward_query ? h('span', { class: 'meta', text: ' + query' })
                                   : null,
                link.expires_at
                    ? h('span', { class: 'meta block',
                                  text: `expires ${fmtDateTime(link.expires_at)}` })
                    : null),
            h('td', { class: 'c-state', dataset: { label: 'State' } },
                h('span', { class: ['badge', `badge-${state}`], text: stateText })),
            h('td', { class: 'c-actions', dataset: { label: 'Actions' } },
                h('div', { class: 'row-actions' },
                    h('a', { class: 'button small', href:
                             `#/links/${encodeURIComponent(link.code)}/stats`,
                             text: 'Stats', dataset: { action: 'stats' },
                             'aria-label': `Statistics of ${link.code}` }),
                    action('edit', 'Edit', 'Edit', () => edit(link)),
                    link.enabled === false
                        ? action('enable', 'Enable', 'Enable', () => toggle(link, true))
                        : action('disable', 'Disable', 'Disable',
                                 () => toggle(link, false)),
                    action('delete', 'Delete', 'Delete', () => remove(link),
                           'danger'))));
        return tr;
    };

    // keep the keyboard where it was: on the same action of the new row
    const refocus = (tr, name) => {
        const b = tr.querySelector(`[data-action="${name}"]`);
        (b || tr.querySelector('button')).focus();
    };

    const edit = async (link) => {
        const saved = await form.open(link);
        const tr = rows.get(link.code);
        if (saved) {
            refocus(put(saved), 'edit');
            announce(`${saved.code} saved`);
        } else if (tr) {
            refocus(tr, 'edit');
        }
    };

    const toggle = async (link, enabled) => {
        try {
            const saved = await api('PATCH', linkPath(link.code),
                                    { body: { enabled } });
            refocus(put(saved), enabled ? 'disable' : 'enable');
            announce(`${saved.code} ${enabled ? 'enabled' : 'disabled'}`);
        } catch (e) {
            reportError(e, `${link.code} could not be changed:`);
        }
    };

    const remove = async (link) => {
        const ok = await confirmDialog(
            `Delete ${link.code}?`,
            `${link.short_url || link.code} will answer 404. The code stays `
            + 'taken: codes of deleted links are never reused.',
            'Delete');
        if (!ok) {
            rows.get(link.code)?.querySelector('[data-action="delete"]')?.focus();
            return;
        }
        try {
            await api('DELETE', linkPath(link.code));
        } catch (e) {
            if (!(e instanceof ApiError && e.status === 404)) {
                reportError(e, `${link.code} could not be deleted:`);
                return;
            }
        }
        const tr = rows.get(link.code);
        const next = tr && (tr.nextElementSibling || tr.previousElementSibling);
        tr?.remove();
        rows.delete(link.code);
        setCount();
        announce(`${link.code} deleted`);
        (next ? next.querySelector('button') : heading).focus();
    };

    const create = async () => {
        const saved = await form.open(null, tag);
        if (saved) {
            const tr = put(saved, { top: true });
            tr.classList.add('fresh');
            setCount();
            refocus(tr, 'copy');
            announce(`${saved.code} created: ${saved.short_url || ''}`);
        } else {
            newButton.focus();
        }
    };

    const heading = h('h1', { tabindex: '-1', text: 'Links' });
    const newButton = h('button', { type: 'button', class: 'primary',
                                    id: 'new-link', text: 'New link',
                                    on: { click: create } });
    const go = (key, value) => {
        window.location.hash = value
            ? `#/links?${key}=${encodeURIComponent(value)}` : '#/links';
    };

    main.append(
        h('div', { class: 'page-head' }, heading, newButton),
        h('div', { class: 'filters' },
            h('form', {
                class: 'filter', role: 'search', 'aria-label': 'Filter by tag',
                on: { submit: (e) => { e.preventDefault();
                                       go('tag', tagInput.value.trim()); } },
            },
                h('label', { for: 'tag-filter', text: 'Tag' }),
                tagInput,
                h('button', { type: 'submit', text: 'Filter' })),
            h('form', {
                class: 'filter', role: 'search', 'aria-label': 'Find a code',
                on: { submit: (e) => { e.preventDefault();
                                       go('code', codeInput.value.trim()); } },
            },
                h('label', { for: 'code-find', text: 'Code' }),
                codeInput,
                h('button', { type: 'submit', text: 'Find' })),
            tag || code ? h('a', { href: '#/links', class: 'button',
                                   text: 'All links' }) : null),
        count,
        h('div', { class: 'table-wrap' },
            h('table', { class: 'links' },
                h('caption', { class: 'visually-hidden', text: 'Links' }),
                h('thead', {}, h('tr', {},
                    ['Short URL', 'Target', 'Title, tags', 'Redirect', 'State',
                     'Actions'].map((t) => h('th', { scope: 'col', text: t })))),
                tbody)),
        empty,
        more);

    more.addEventListener('click', () => load(false));
    load(true);
}

function reportError(e, what) {
    if (e instanceof ApiError && e.status === 401) {
        window.dispatchEvent(new CustomEvent('shortlink:unauthorized',
                                             { detail: e.describe() }));
        return;
    }
    alertError(what, e instanceof ApiError ? e.describe() : String(e));
}

export { reportError };
