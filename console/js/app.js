// The console's entry point: the key, the hash router, the top bar.
//   #/links[?tag=]                         links.js
//   #/links/{code}/stats[?from=&to=&interval=]   stats.js
//   #/stats[?tag=&from=&to=&interval=&tz=]  stats.js (all the key's links)
//   #/profiles, #/profiles/new, #/profiles/{username}   profiles.js
//   #/status                               status.js (no key needed)

import { h, clear, clearAlerts, alertError, announce } from './dom.js';
import { getKey, setKey, forgetKey, validKey, onKeyChange } from './key.js';
import * as links from './links.js';
import * as stats from './stats.js';
import * as status from './status.js';
import * as profiles from './profiles.js';

const main = document.getElementById('main');
const keyState = document.getElementById('key-state');
const forgetButton = document.getElementById('forget-key');

const ROUTES = [
    { re: /^\/links\/?$/, view: (el, q) => links.render(el, q),
      title: 'Links', key: true, nav: 'links' },
    { re: /^\/links\/([0-9A-Za-z_-]{1,64})\/stats\/?$/,
      view: (el, q, m) => stats.render(el, q, m[1]),
      title: 'Statistics', key: true, nav: 'links' },
    { re: /^\/stats\/?$/, view: (el, q) => stats.render(el, q, null),
      title: 'Statistics', key: true, nav: 'stats' },
    { re: /^\/profiles\/?$/, view: (el) => profiles.list(el),
      title: 'Profiles', key: true, nav: 'profiles' },
    { re: /^\/profiles\/(new|[a-z0-9_.]{1,30})\/?$/,
      view: (el, q, m) => profiles.edit(el, m[1] === 'new' ? null : m[1]),
      title: 'Profile', key: true, nav: 'profiles' },
    { re: /^\/status\/?$/, view: (el) => status.render(el),
      title: 'Status', key: false, nav: 'status' },
];

let leave = null;           // the shown view's cleanup

function keyForm(message) {
    const input = h('input', {
        type: 'password', id: 'api-key', autocomplete: 'off',
        spellcheck: 'false', 'aria-describedby': 'api-key-hint api-key-error',
        required: true,
    });
    const error = h('p', { class: 'field-error', id: 'api-key-error',
                           text: message || '' });

    // no name on the input: it can never be submitted, even without script
    const form = h('form', {
        class: 'card key-form', 'aria-labelledby': 'key-h',
        on: {
            submit: (e) => {
                e.preventDefault();
                const key = input.value.trim();
                if (!validKey(key)) {
                    error.textContent = 'Paste the whole key: printable '
                                        + 'characters, no spaces.';
                    input.setAttribute('aria-invalid', 'true');
                    input.focus();
                    return;
                }
                setKey(key);
                input.value = '';
                announce('Key saved for this tab');
                route();
            },
        },
    },
        h('h1', { id: 'key-h', tabindex: '-1', text: 'API key' }),
        h('p', {}, 'The console talks to the management API with your key. '
                   + 'It is kept in this tab only (sessionStorage) and sent '
                   + 'in the Authorization header; it is forgotten when the '
                   + 'tab closes or with “Forget key”.'),
        h('div', { class: 'field' },
            h('label', { for: 'api-key', text: 'API key' }), input,
            h('p', { class: 'hint', id: 'api-key-hint' },
              'An administrator creates one in psql: ',
              h('code', { text: "SELECT shortlink.create_api_key('you');" })),
            error),
        h('div', { class: 'actions' },
          h('button', { type: 'submit', class: 'primary', text: 'Use key' })));

    if (message) {
        input.setAttribute('aria-invalid', 'true');
    }
    return { form, input };
}

function showKeyState() {
    const key = getKey();
    keyState.textContent = key ? `Key ${key.slice(0, 6)}…` : 'No key';
    forgetButton.hidden = !key;
}

function route(keyMessage) {
    const raw = window.location.hash.replace(/^#/, '') || '/links';
    const [path, query] = raw.split('?');
    const params = new URLSearchParams(query || '');
    const r = ROUTES.find((x) => x.re.test(path));

    if (leave) {
        leave();
        leave = null;
    }
    clearAlerts();
    clear(main);

    document.querySelectorAll('nav a[data-nav]').forEach((a) => {
        if (r && a.dataset.nav === r.nav) {
            a.setAttribute('aria-current', 'page');
        } else {
            a.removeAttribute('aria-current');
        }
    });

    if (!r) {
        document.title = 'Not found · Shortlink console';
        main.append(h('h1', { tabindex: '-1', text: 'Nothing here' }),
                    h('p', {}, h('a', { href: '#/links', text: 'Go to links' })));
    } else if (r.key && !getKey()) {
        document.title = 'API key · Shortlink console';
        const { form, input } = keyForm(keyMessage);
        main.append(form);
        input.focus();
        return;
    } else {
        document.title = `${r.title} · Shortlink console`;
        leave = r.view(main, params, path.match(r.re)) || null;
    }

    // a new page: the keyboard starts at its heading
    const heading = main.querySelector('h1');
    if (heading && document.activeElement !== document.querySelector('#api-key')) {
        heading.focus({ preventScroll: true });
    }
}

forgetButton.addEventListener('click', () => {
    forgetKey();
    announce('Key forgotten');
    route();
});

document.getElementById('skip').addEventListener('click', (e) => {
    e.preventDefault();
    main.focus();
});

onKeyChange(showKeyState);

// a 401 anywhere: the key is wrong or revoked, ask for another
window.addEventListener('shortlink:unauthorized', (e) => {
    forgetKey();
    route(`The key was refused: ${e.detail}`);
    alertError('The API refused the key.', e.detail);
});

window.addEventListener('hashchange', () => route());

showKeyState();
route();
