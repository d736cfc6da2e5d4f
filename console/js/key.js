// The API key: pasted by the user, kept in sessionStorage only (gone when
// the tab closes), never put into a URL, a cookie or localStorage.

const STORAGE = 'shortlink.apiKey';
const listeners = new Set();

export function getKey() {
    try {
        return sessionStorage.getItem(STORAGE);
    } catch {
        return null;
    }
}

// a header value must be printable ASCII: anything else is a paste mistake
export function validKey(key) {
    return /^[\x21-\x7e]{1,512}$/.test(key);
}

export function setKey(key) {
    sessionStorage.setItem(STORAGE, key);
    listeners.forEach((fn) => fn(key));
}

export function forgetKey() {
    try {
        sessionStorage.removeItem(STORAGE);
    } finally {
        listeners.forEach((fn) => fn(null));
    }
}

export function onKeyChange(fn) {
    listeners.add(fn);
}
