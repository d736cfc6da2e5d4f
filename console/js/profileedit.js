// The profile editor: the profile's fields, its entries (picked from the
// owner's links, titled, enabled, scheduled, reordered with buttons) and a
// live preview of the page.  A new profile is one POST /profiles with its
// entries; a saved one is a PATCH of what changed and, when the entries
// changed, the single PUT /profiles/{username}/entries of the whole list.
// The API's 422 errors[].pointer puts each message at its field.

import { h, clear, nextId, announce } from './dom.js';
import { api, ApiError } from './api.js';
import { PROFILE_BASE } from './config.js';
import { reportError } from './links.js';
import { renderPreview } from './preview.js';
import { deleteProfile, profilePath, publicUrl } from './profileapi.js';

const THEMES = [['light', 'Light'], ['dark', 'Dark'],
                ['contrast', 'High contrast']];

function toLocalInput(iso) {
    if (!iso) {
        return '';
    }
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) {
        return '';
    }
    const pad = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
           + `T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
    if (!value) {
        return null;
    }
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? value : d.toISOString();
}

// a labelled control with its error line; name: the API's field name
function field(name, label, control, hint) {
    const id = nextId(`profile-${name}`);
    const error = h('p', { class: 'field-error', id: `${id}-error`,
                           dataset: { errorFor: name } });
    const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint`,
                                   text: hint }) : null;
    control.id = id;
    control.dataset.field = name;
    control.setAttribute('aria-describedby',
                         [hintEl && hintEl.id, error.id].filter(Boolean)
                             .join(' '));
    const check = control.type === 'checkbox';
    const wrap = h('div', { class: ['field', check ? 'field-check' : null] },
        check ? [control, h('label', { for: id, text: label })]
              : [h('label', { for: id, text: label }), control],
        hintEl, error);
    return { name, control, error, wrap };
}

export class ProfileEditor {
    constructor(main, username) {
        this.main = main;
        this.username = username;       // null: a new profile
        this.profile = null;
        this.links = [];
        this.entries = [];              // [{code, title, enabled, ...}]
        this.entriesChanged = false;
        this.fields = new Map();
        this.onSaved = () => {};
        this.onDeleted = () => {};
    }

    async start() {
        try {
            const [profile, links] = await Promise.all([
                this.username ? api('GET', profilePath(this.username))
                              : Promise.resolve(null),
                api('GET', '/links', { query: { limit: 1000 } }),
            ]);
            this.profile = profile;
            this.links = (links && links.links) || [];
        } catch (e) {
            reportError(e, this.username
                ? `@${this.username} could not be read:`
                : 'The links could not be read:');
            this.main.append(h('h1', { tabindex: '-1', text: 'Profile' }),
                h('p', {}, h('a', { href: '#/profiles',
                                    text: 'Back to the profiles' })));
            return false;
        }
        this.entries = (this.profile ? this.profile.entries : []).map((e) => ({
            code: e.code, title: e.title, enabled: e.enabled !== false,
            visible_from: e.visible_from || null,
            visible_until: e.visible_until || null,
        }));
        this.build();
        return true;
    }

    build() {
        const p = this.profile;
        const add = (f) => { this.fields.set(f.name, f); return f.wrap; };
        const live = () => this.preview();

        this.formAlert = h('div', { class: 'form-alert', role: 'alert' });
        this.submit = h('button', { type: 'submit', class: 'primary',
                                    id: 'profile-save',
                                    text: p ? 'Save' : 'Create' });
        this.entryList = h('ol', { class: 'entries', 'aria-label': 'Entries' });
        this.picker = h('select', { id: 'entry-pick',
                                    'aria-describedby': 'entry-pick-hint' });
        this.entriesError = h('p', { class: 'field-error',
                                     dataset: { errorFor: 'entries' } });
        this.previewBox = h('div', { class: 'pv-page' });
        this.previewNote = h('p', { class: 'meta', 'aria-live': 'polite' });

        const form = h('form', { class: 'profile-form card', novalidate: true,
                                 'aria-labelledby': 'profile-h' },
            this.formAlert,
            p ? null : add(field('username', 'Username', h('input', {
                type: 'text', required: true, autocomplete: 'off',
                spellcheck: 'false', maxlength: '30',
            }), 'a–z, 0–9, _ and .; up to 30; it cannot change later')),
            add(field('display_name', 'Display name', h('input', {
                type: 'text', required: true, maxlength: '100',
                autocomplete: 'off', value: p ? p.display_name : '',
            }))),
            add(field('bio', 'Bio', h('textarea', {
                rows: '3', maxlength: '1000',
            }), 'Plain text, line breaks kept')),
            add(field('avatar_url', 'Avatar URL', h('input', {
                type: 'url', autocomplete: 'off', spellcheck: 'false',
                placeholder: 'https://…', value: p && p.avatar_url || '',
            }), 'http:// or https://; empty: none')),
            add(field('theme', 'Theme', h('select', {},
                THEMES.map(([v, t]) => h('option', { value: v, text: t }))))),
            h('fieldset', { class: 'entries-set' },
                h('legend', { text: 'Links on the page' }),
                this.entriesError,
                this.entryList,
                h('div', { class: 'entry-add' },
                    h('label', { for: 'entry-pick', text: 'Add a link' }),
                    this.picker,
                    h('button', { type: 'button', id: 'entry-add',
                                  class: 'small', text: 'Add',
                                  on: { click: () => this.addEntry() } }),
                    h('p', { class: 'hint', id: 'entry-pick-hint',
                             text: 'Your links; each can be listed once.' }))),
            h('div', { class: 'actions' }, this.submit,
                p ? h('button', { type: 'button', class: 'danger',
                                  id: 'profile-delete', text: 'Delete profile',
                                  on: { click: () => this.remove() } })
                  : null));

        this.fields.get('bio').control.value = p && p.bio ? p.bio : '';
        this.fields.get('theme').control.value = p ? p.theme : 'light';
        form.addEventListener('input', live);
        // a field being corrected loses its old error
        form.addEventListener('input', (e) => {
            const f = this.fields.get(e.target.dataset.field);
            const li = e.target.closest('li.entry');
            if (f) {
                f.error.textContent = '';
            } else if (li) {
                li.querySelector('.field-error').textContent = '';
            }
            e.target.removeAttribute('aria-invalid');
        });
        form.addEventListener('change', live);
        form.addEventListener('submit', (e) => {
            e.preventDefault();
            this.save();
        });

        const title = p ? `@${p.username}` : 'New profile';
        this.main.append(
            h('p', { class: 'crumbs' },
              h('a', { href: '#/profiles', text: '← Profiles' })),
            h('div', { class: 'page-head' },
                h('h1', { id: 'profile-h', tabindex: '-1', text: title }),
                p ? h('a', { class: 'button', id: 'public-page',
                             href: publicUrl(p.username), target: '_blank',
                             rel: 'noopener', text: 'Open the public page' })
                  : null),
            h('div', { class: 'profile-layout' }, form,
                h('section', { class: 'preview card',
                               'aria-labelledby': 'preview-h' },
                    h('h2', { id: 'preview-h', text: 'Preview' }),
                    this.previewNote, this.previewBox)));

        this.drawEntries();
        this.preview();
        (p ? this.fields.get('display_name')
           : this.fields.get('username')).control.focus();
    }

    value(name) {
        const f = this.fields.get(name);
        return f ? f.control.value : undefined;
    }

    // what the form says now, as the API would store it
    current() {
        return {
            username: this.profile ? this.profile.username
                                   : this.value('username').trim(),
            display_name: this.value('display_name').trim(),
            bio: this.value('bio'),
            avatar_url: this.value('avatar_url').trim() || null,
            theme: this.value('theme'),
            entries: this.entries,
        };
    }

    preview() {
        const cur = this.current();
        const n = renderPreview(this.previewBox, cur, '/');
        this.previewNote.textContent = `${n} of ${this.entries.length} `
            + `link${this.entries.length === 1 ? '' : 's'} shown now`
            + (cur.username ? ` · ${PROFILE_BASE}${cur.username}` : '');
    }

    // --- entries ------------------------------------------------------

    fillPicker() {
        const used = new Set(this.entries.map((e) => e.code));
        // an entry must be a link of the profile's owner (an admin key
        // lists everyone's links)
        const owner = this.profile ? this.profile.owner : null;
        clear(this.picker);
        const free = this.links.filter((l) => !used.has(l.code)
            && (!owner || !('owner' in l) || l.owner === owner));
        free.forEach((l) => this.picker.append(h('option', {
            value: l.code,
            text: l.title ? `${l.code} · ${l.title}` : `${l.code} · ${l.url}`,
        })));
        this.picker.disabled = free.length === 0;
        if (!free.length) {
            this.picker.append(h('option', { value: '',
                                             text: 'No other link to add' }));
        }
    }

    addEntry() {
        const code = this.picker.value;
        const link = this.links.find((l) => l.code === code);
        if (!link) {
            return;
        }
        this.entries.push({ code, title: link.title || code, enabled: true,
                            visible_from: null, visible_until: null });
        this.entriesChanged = true;
        this.drawEntries();
        this.preview();
        const items = this.entryList.querySelectorAll('[data-entry-field="title"]');
        items[items.length - 1].focus();
        announce(`${code} added, last on the page`);
    }

    move(i, by, focusAction) {
        const j = i + by;
        if (j < 0 || j >= this.entries.length) {
            return;
        }
        const [e] = this.entries.splice(i, 1);
        this.entries.splice(j, 0, e);
        this.entriesChanged = true;
        this.drawEntries();
        this.preview();
        // the focus stays on the button just used, now on the moved entry
        const li = this.entryList.children[j];
        const other = focusAction === 'up' ? 'down' : 'up';
        const usable = (a) => li.querySelector(
            `[data-action="${a}"]:not(:disabled)`);
        const btn = usable(focusAction) || usable(other)
                    || li.querySelector('[data-entry-field="title"]');
        btn.focus();
        announce(`${e.title || e.code} moved to position ${j + 1} `
                 + `of ${this.entries.length}`);
    }

    removeEntry(i) {
        const [e] = this.entries.splice(i, 1);
        this.entriesChanged = true;
        this.drawEntries();
        this.preview();
        const next = this.entryList.children[Math.min(i, this.entries.length - 1)];
        (next ? next.querySelector('[data-entry-field="title"]')
              : this.picker).focus();
        announce(`${e.code} removed`);
    }

    drawEntries() {
        clear(this.entryList);
        this.entries.forEach((e, i) => {
            const id = nextId('entry');
            const n = this.entries.length;
            const name = () => e.title || e.code;
            const err = h('p', { class: 'field-error', id: `${id}-error`,
                                 dataset: { errorFor: `entries/${i}` } });
            const title = h('input', {
                type: 'text', id: `${id}-title`, maxlength: '200', value: e.title,
                autocomplete: 'off', 'aria-describedby': err.id,
                dataset: { entryField: 'title' },
                on: { input: () => {
                    e.title = title.value;
                    this.entriesChanged = true;
                } },
            });
            const enabled = h('input', {
                type: 'checkbox', id: `${id}-enabled`, checked: e.enabled,
                dataset: { entryField: 'enabled' },
                on: { change: () => {
                    e.enabled = enabled.checked;
                    this.entriesChanged = true;
                } },
            });
            const when = (k, text) => {
                const input = h('input', {
                    type: 'datetime-local', id: `${id}-${k}`,
                    value: toLocalInput(e[k]), dataset: { entryField: k },
                    'aria-describedby': err.id,
                    on: { change: () => {
                        e[k] = fromLocalInput(input.value);
                        this.entriesChanged = true;
                    } },
                });
                return h('div', { class: 'field' },
                    h('label', { for: input.id, text }), input);
            };
            const btn = (action, text, label, disabled, fn) => h('button', {
                type: 'button', class: 'small', text, disabled,
                'aria-label': label, dataset: { action }, on: { click: fn },
            });
            this.entryList.append(h('li', { class: 'entry card',
                                            dataset: { code: e.code } },
                h('div', { class: 'entry-head' },
                    h('span', { class: 'entry-pos', text: `${i + 1}.` }),
                    h('code', { class: 'entry-code', text: e.code }),
                    h('div', { class: 'entry-buttons', role: 'group',
                               'aria-label': `Order of ${name()}` },
                        btn('up', '↑ Up', `Move ${name()} up`, i === 0,
                            () => this.move(i, -1, 'up')),
                        btn('down', '↓ Down', `Move ${name()} down`, i === n - 1,
                            () => this.move(i, 1, 'down')),
                        btn('remove', 'Remove', `Remove ${name()}`, false,
                            () => this.removeEntry(i)))),
                h('div', { class: 'field-row' },
                    h('div', { class: 'field' },
                        h('label', { for: title.id, text: 'Title' }), title),
                    h('div', { class: 'field field-check' }, enabled,
                        h('label', { for: enabled.id, text: 'Enabled' }))),
                h('div', { class: 'field-row' },
                    when('visible_from', 'Visible from (your time)'),
                    when('visible_until', 'Visible until')),
                err));
        });
        this.fillPicker();
    }

    entryBody() {
        return this.entries.map((e) => {
            const o = { code: e.code, title: e.title, enabled: e.enabled };
            if (e.visible_from) {
                o.visible_from = e.visible_from;
            }
            if (e.visible_until) {
                o.visible_until = e.visible_until;
            }
            return o;
        });
    }

    // --- saving -------------------------------------------------------

    async save() {
        const cur = this.current();
        const p = this.profile;
        let saved = p;

        this.clearErrors();
        this.submit.disabled = true;
        try {
            if (!p) {
                const body = { username: cur.username,
                               display_name: cur.display_name,
                               theme: cur.theme, entries: this.entryBody() };
                if (cur.bio !== '') {
                    body.bio = cur.bio;
                }
                if (cur.avatar_url) {
                    body.avatar_url = cur.avatar_url;
                }
                saved = await api('POST', '/profiles', { body });
            } else {
                const patch = {};
                for (const k of ['display_name', 'bio', 'avatar_url', 'theme']) {
                    const old = k === 'bio' ? (p.bio || '') : p[k];
                    if (cur[k] !== old) {
                        patch[k] = k === 'bio' && cur.bio === '' ? null : cur[k];
                    }
                }
                if (Object.keys(patch).length) {
                    saved = await api('PATCH', profilePath(p.username),
                                      { body: patch });
                    this.profile = saved;
                }
                if (this.entriesChanged) {
                    saved = await api('PUT', `${profilePath(p.username)}/entries`,
                                      { body: this.entryBody() });
                }
            }
        } catch (e) {
            this.showError(e, p ? '' : '/entries');
            return;
        } finally {
            this.submit.disabled = false;
        }
        this.profile = saved;
        this.entriesChanged = false;
        this.formAlert.append(h('p', { class: 'saved', text:
            `Saved (version ${saved.version}).` }));
        announce(`@${saved.username} saved`);
        this.onSaved(saved, !p);
    }

    async remove() {
        if (await deleteProfile(this.profile.username)) {
            this.onDeleted();
        }
    }

    clearErrors() {
        clear(this.formAlert);
        this.main.querySelectorAll('.profile-form .field-error')
            .forEach((el) => { el.textContent = ''; });
        this.main.querySelectorAll('.profile-form [aria-invalid]')
            .forEach((el) => el.removeAttribute('aria-invalid'));
    }

    // pointers: "/display_name"; entries "/entries/3/title" (POST) or
    // "/3/title" (PUT of the list)
    showError(e, entriesPrefix) {
        const problem = e instanceof ApiError ? e.problem : { title: String(e) };
        const stray = [];
        let first = null;

        if (e instanceof ApiError && e.status === 401) {
            reportError(e, 'The key was refused');
            return;
        }
        for (const err of Array.isArray(problem.errors) ? problem.errors : []) {
            const ptr = typeof err.pointer === 'string' ? err.pointer : '';
            const detail = String(err.detail || 'is invalid');
            let segs = ptr.split('/').slice(1);
            let entry = false;
            let target = null;

            if (segs[0] === 'entries' && entriesPrefix === '/entries') {
                segs = segs.slice(1);
                entry = true;
            } else if (entriesPrefix === '' && /^\d+$/.test(segs[0] || '')) {
                entry = true;
            }
            if (entry) {
                const i = Number(segs[0]);
                const li = segs.length && Number.isInteger(i)
                           ? this.entryList.children[i] : null;
                if (li) {
                    const el = li.querySelector(`[data-error-for="entries/${i}"]`);
                    const what = segs[1] ? `${segs[1]}: ${detail}` : detail;
                    el.textContent = el.textContent ? `${el.textContent}; ${what}`
                                                    : what;
                    target = li.querySelector(`[data-entry-field="${segs[1]}"]`)
                             || li.querySelector('[data-entry-field="title"]');
                } else {
                    this.entriesError.textContent = detail;
                    target = this.picker;
                }
            } else {
                const f = this.fields.get(segs[0]);
                if (f) {
                    f.error.textContent = f.error.textContent
                        ? `${f.error.textContent}; ${detail}` : detail;
                    target = f.control;
                }
            }
            if (!target) {
                stray.push(`${ptr || 'request'}: ${detail}`);
                continue;
            }
            target.setAttribute('aria-invalid', 'true');
            first = first || target;
        }

        if (!first || stray.length) {
            const title = e instanceof ApiError ? e.describe() : String(e);
            this.formAlert.append(h('p', {}, h('strong', { text: title })),
                stray.length ? h('ul', {}, stray.map((s) => h('li', { text: s })))
                             : null);
        }
        (first || this.submit).focus();
    }
}
