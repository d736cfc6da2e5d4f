// Building the DOM without markup: every piece of data becomes a text node
// (textContent), never HTML.  No innerHTML anywhere in the console.

// h('tag', {class, text, on: {click: fn}, dataset: {...}, attr: value},
//   child, ...): children are nodes, strings (text), arrays, or null/false
export function h(tag, props, ...children) {
    const el = document.createElement(tag);

    for (const [k, v] of Object.entries(props || {})) {
        if (v === undefined || v === null || v === false) {
            continue;
        }
        if (k === 'class') {
            el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
        } else if (k === 'text') {
            el.textContent = String(v);
        } else if (k === 'on') {
            for (const [ev, fn] of Object.entries(v)) {
                el.addEventListener(ev, fn);
            }
        } else if (k === 'dataset') {
            Object.assign(el.dataset, v);
        } else if (k === 'style' || k === 'innerHTML' || k.startsWith('on')) {
            throw new Error(`h(): ${k} is not allowed`);
        } else if (k === 'hidden' || k === 'disabled' || k === 'checked'
                   || k === 'required' || k === 'selected' || k === 'open')
        {
            el[k] = Boolean(v);
        } else if (k === 'value') {
            el.value = String(v);
        } else {
            el.setAttribute(k, v === true ? '' : String(v));
        }
    }

    append(el, children);
    return el;
}

export function append(el, children) {
    for (const c of children.flat(Infinity)) {
        if (c === null || c === undefined || c === false) {
            continue;
        }
        el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
}

export function clear(el) {
    while (el.firstChild) {
        el.firstChild.remove();
    }
    return el;
}

// say something to screen readers without moving the focus
export function announce(message) {
    const region = document.getElementById('announce');
    region.textContent = '';
    // a change a moment later is announced even when the text repeats
    setTimeout(() => { region.textContent = message; }, 50);
}

// the page's alert region (role="alert"): errors not tied to a field
export function alertError(message, detail) {
    const region = document.getElementById('alerts');
    const item = h('div', { class: 'alert' },
        h('p', { class: 'alert-text' },
          h('strong', { text: message }), detail ? ` ${detail}` : null),
        h('button', {
            type: 'button', class: 'alert-close', 'aria-label': 'Dismiss',
            text: '×', on: { click: () => item.remove() },
        }));
    region.append(item);
    return item;
}

export function clearAlerts() {
    clear(document.getElementById('alerts'));
}

let uid = 0;
export function nextId(prefix) {
    uid += 1;
    return `${prefix}-${uid}`;
}

export const numberFormat = new Intl.NumberFormat('en');

export function fmtNumber(v) {
    return typeof v === 'number' && Number.isFinite(v) ? numberFormat.format(v)
                                                       : String(v);
}

// "unique_ips" -> "Unique ips": a label for a key nobody named yet
export function humanize(key) {
    const s = String(key).replace(/[_-]+/g, ' ').trim();
    return s.charAt(0).toUpperCase() + s.slice(1);
}

// an ISO timestamp as the reader's local date and time
export function fmtDateTime(iso) {
    if (!iso) {
        return '';
    }
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}
