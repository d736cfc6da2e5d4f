// The management API: one fetch wrapper.  Errors come back as ApiError
// carrying the RFC 9457 problem (title, detail, errors[].pointer).

import { API_BASE } from './config.js';
import { getKey } from './key.js';

export class ApiError extends Error {
    constructor(status, problem) {
        super(problem.detail || problem.title || `HTTP ${status}`);
        this.status = status;
        this.problem = problem;
    }

    // "invalid fields: 2 fields are invalid: see errors"
    describe() {
        const p = this.problem;
        const parts = [p.title, p.detail].filter(Boolean);
        return parts.length ? parts.join(': ') : `HTTP ${this.status}`;
    }
}

export async function api(method, path, options = {}) {
    const url = new URL(API_BASE + path, window.location.origin);
    const headers = { Accept: 'application/json, application/problem+json' };
    const key = getKey();
    let res;

    for (const [k, v] of Object.entries(options.query || {})) {
        if (v !== undefined && v !== null && v !== '') {
            url.searchParams.set(k, v);
        }
    }

    if (key && !options.anonymous) {
        headers.Authorization = `Bearer ${key}`;
    }

    const init = {
        method, headers, cache: 'no-store', credentials: 'omit',
        redirect: 'error', referrerPolicy: 'no-referrer',
    };

    if (options.body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(options.body);
    }

    try {
        res = await fetch(url, init);
    } catch (e) {
        throw new ApiError(0, { title: 'The server could not be reached',
                                detail: String(e.message || e) });
    }

    return readBody(res, options.acceptErrors);
}

// 204 -> null; JSON bodies parsed; non-2xx -> ApiError (unless the status
// is in acceptErrors: /health answers 503 with a body worth reading)
async function readBody(res, acceptErrors = []) {
    let body = null;

    if (res.status !== 204) {
        const type = res.headers.get('Content-Type') || '';
        const text = await res.text();
        if (/json/.test(type) && text !== '') {
            try {
                body = JSON.parse(text);
            } catch {
                body = null;
            }
        }
    }

    if (!res.ok && !acceptErrors.includes(res.status)) {
        const problem = body && typeof body === 'object' && !Array.isArray(body)
                        ? body : { title: `HTTP ${res.status} ${res.statusText}` };
        throw new ApiError(res.status, problem);
    }

    return body;
}

export function linkPath(code) {
    return `/links/${encodeURIComponent(code)}`;
}
