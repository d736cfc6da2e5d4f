// The create / edit form of a link, in a modal <dialog>.  The API judges
// every field; its errors[].pointer puts each message next to its field,
// and whatever no field claims goes to the dialog's own alert region.

import { h, clear, nextId } from './dom.js';
import { api, ApiError, linkPath } from './api.js';

const STATUSES = [
    ['302', '302 Found (default)'],
    ['301', '301 Moved Permanently'],
    ['307', '307 Temporary Redirect'],
    ['308', '308 Permanent Redirect'],
];

// <input type="datetime-local"> value (local time) <-> ISO 8601 in UTC
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
    // an impossible date goes to the API as typed, which names the field
    return Number.isNaN(d.getTime()) ? value : d.toISOString();
}

function splitTags(text) {
    return text.split(/[\s,]+/).filter(Boolean);
}

// one labelled field with its hint and its error line
function field(name, label, control, hint) {
    const id = nextId(`link-${name}`);
    const errId = `${id}-error`;
    const hintId = hint ? `${id}-hint` : null;
    const described = [hintId, errId].filter(Boolean).join(' ');

    control.id = id;
    control.setAttribute('aria-describedby', described);
    control.dataset.field = name;

    const error = h('p', { class: 'field-error', id: errId,
                           dataset: { errorFor: name } });
    const wrap = h('div', { class: ['field', control.type === 'checkbox'
                                             ? 'field-check' : null] },
        control.type === 'checkbox'
            ? [control, h('label', { for: id, text: label })]
            : [h('label', { for: id, text: label }), control],
        hint ? h('p', { class: 'hint', id: hintId, text: hint }) : null,
        error);

    return { name, wrap, control, error };
}

export class LinkForm {
    constructor() {
        this.fields = new Map();

        const add = (f) => { this.fields.set(f.name, f); return f.wrap; };

        this.title = h('h2', { id: nextId('link-dialog-title') });
        this.formAlert = h('div', { class: 'form-alert', role: 'alert' });
        this.submit = h('button', { type: 'submit', class: 'primary' });

        this.form = h('form', { class: 'link-form', novalidate: true,
                                method: 'dialog' },
            this.title,
            this.formAlert,
            add(field('url', 'Target URL', h('input', {
                type: 'url', required: true, autocomplete: 'off',
                spellcheck: 'false', placeholder: 'https://example.com/page',
            }), 'http:// or https://')),
            add(field('code', 'Alias (custom code)', h('input', {
                type: 'text', autocomplete: 'off', spellcheck: 'false',
                maxlength: '64',
            }), 'Letters, digits, _ and -; leave empty for a generated code')),
            add(field('title', 'Title', h('input', {
                type: 'text', maxlength: '512', autocomplete: 'off',
            }))),
            add(field('tags', 'Tags', h('input', {
                type: 'text', autocomplete: 'off', spellcheck: 'false',
            }), 'Separated by spaces or commas')),
            h('div', { class: 'field-row' },
                add(field('expires_at', 'Expires', h('input', {
                    type: 'datetime-local',
                }), 'Your local time; empty: never')),
                add(field('redirect_status', 'Redirect status', h('select', {},
                    STATUSES.map(([v, t]) => h('option', { value: v, text: t })))))),
            add(field('forward_query', 'Forward the visitor\'s query string',
                      h('input', { type: 'checkbox' }))),
            add(field('enabled', 'Enabled', h('input', { type: 'checkbox' }))),
            h('div', { class: 'actions' },
                this.submit,
                h('button', { type: 'button', text: 'Cancel',
                              on: { click: () => this.dialog.close() } })));

        this.dialog = h('dialog', { class: 'link-dialog',
                                    'aria-labelledby': this.title.id },
                        this.form);
        this.form.addEventListener('submit', (e) => {
            e.preventDefault();
            this.save();
        });
        document.body.append(this.dialog);
    }

    value(name) {
        const c = this.fields.get(name).control;
        return c.type === 'checkbox' ? c.checked : c.value;
    }

    // open for a new link (link null) or to edit one; resolves with the
    // saved link, or null when cancelled
    open(link, tag) {
        const f = (n) => this.fields.get(n).control;

        this.link = link;
        this.clearErrors();
        this.title.textContent = link ? `Edit ${link.code}` : 'New link';
        this.submit.textContent = link ? 'Save' : 'Create';

        f('url').value = link ? link.url : '';
        f('code').value = link ? link.code : '';
        f('code').readOnly = Boolean(link);
        this.fields.get('code').wrap.hidden = Boolean(link);
        f('title').value = link && link.title ? link.title : '';
        f('tags').value = link ? (link.tags || []).join(' ') : (tag || '');
        f('expires_at').value = link ? toLocalInput(link.expires_at) : '';
        f('redirect_status').value = String(link ? link.redirect_status : 302);
        f('forward_query').checked = link ? Boolean(link.forward_query) : false;
        f('enabled').checked = link ? link.enabled !== false : true;

        return new Promise((resolve) => {
            this.resolve = resolve;
            this.dialog.addEventListener('close', () => {
                if (this.resolve) {
                    this.resolve(null);
                    this.resolve = null;
                }
            }, { once: true });
            this.dialog.showModal();
            f('url').focus();
        });
    }

    // the body: everything for POST, only what changed for PATCH
    body() {
        const all = {
            url: this.value('url').trim(),
            code: this.value('code').trim(),
            title: this.value('title').trim() || null,
            tags: splitTags(this.value('tags')),
            expires_at: fromLocalInput(this.value('expires_at')),
            redirect_status: Number(this.value('redirect_status')),
            forward_query: this.value('forward_query'),
            enabled: this.value('enabled'),
        };
        const link = this.link;

        if (!link) {
            const body = { ...all };
            if (body.code === '') {
                delete body.code;
            }
            if (body.title === null) {
                delete body.title;
            }
            if (body.expires_at === null) {
                delete body.expires_at;
            }
            return body;
        }

        const body = {};
        const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
        const old = {
            url: link.url, title: link.title || null, tags: link.tags || [],
            expires_at: link.expires_at
                        ? fromLocalInput(toLocalInput(link.expires_at)) : null,
            redirect_status: link.redirect_status,
            forward_query: Boolean(link.forward_query),
            enabled: link.enabled !== false,
        };
        for (const k of Object.keys(old)) {
            if (!same(all[k], old[k])) {
                body[k] = all[k];
            }
        }
        return body;
    }

    async save() {
        const body = this.body();
        let saved;

        this.clearErrors();

        if (this.link && Object.keys(body).length === 0) {
            this.finish(this.link);
            return;
        }

        this.submit.disabled = true;
        try {
            saved = this.link
                ? await api('PATCH', linkPath(this.link.code), { body })
                : await api('POST', '/links', { body });
        } catch (e) {
            this.showError(e);
            return;
        } finally {
            this.submit.disabled = false;
        }
        this.finish(saved);
    }

    finish(link) {
        const resolve = this.resolve;
        this.resolve = null;
        this.dialog.close();
        resolve(link);
    }

    clearErrors() {
        clear(this.formAlert);
        for (const f of this.fields.values()) {
            f.error.textContent = '';
            f.control.removeAttribute('aria-invalid');
        }
    }

    // errors[].pointer "/url", "/tags/3": the first segment names the field
    showError(e) {
        const problem = e instanceof ApiError ? e.problem : { title: String(e) };
        const stray = [];
        let first = null;

        for (const err of Array.isArray(problem.errors) ? problem.errors : []) {
            const ptr = typeof err.pointer === 'string' ? err.pointer : '';
            const segs = ptr.split('/').slice(1)
                            .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
            const f = this.fields.get(segs[0]);
            const detail = String(err.detail || 'is invalid');

            if (!f || f.wrap.hidden) {
                stray.push(`${ptr || 'request'}: ${detail}`);
                continue;
            }
            const text = segs.length > 1 && segs[0] === 'tags'
                ? `tag ${Number(segs[1]) + 1}: ${detail}` : detail;
            f.error.textContent = f.error.textContent
                ? `${f.error.textContent}; ${text}` : text;
            f.control.setAttribute('aria-invalid', 'true');
            first = first || f.control;
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
