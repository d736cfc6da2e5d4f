// Time zones for the statistics: the browser's own zone by default, any
// IANA zone the browser knows, and the instant a local date starts at in a
// zone (the API takes instants; a bare date would mean UTC midnight).

export function browserZone() {
    try {
        return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    } catch {
        return 'UTC';
    }
}

export function zones() {
    let list = [];
    try {
        list = typeof Intl.supportedValuesOf === 'function'
               ? Intl.supportedValuesOf('timeZone') : [];
    } catch {
        list = [];
    }
    return [...new Set(['UTC', browserZone(), ...list])];
}

export function validZone(tz) {
    if (typeof tz !== 'string' || !/^[A-Za-z0-9_+\/-]{1,64}$/.test(tz)) {
        return false;
    }
    try {
        new Intl.DateTimeFormat('en', { timeZone: tz });
        return true;
    } catch {
        return false;
    }
}

// the zone's offset from UTC at an instant, in milliseconds
function offsetAt(ms, tz) {
    const parts = {};
    new Intl.DateTimeFormat('en-US', {
        timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit',
        day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    }).formatToParts(new Date(ms)).forEach((p) => { parts[p.type] = p.value; });
    const local = Date.UTC(Number(parts.year), Number(parts.month) - 1,
                           Number(parts.day), Number(parts.hour),
                           Number(parts.minute), Number(parts.second));
    return local - Math.floor(ms / 1000) * 1000;
}

// "2026-03-29", "Europe/Berlin" -> "2026-03-28T23:00:00.000Z"
export function midnight(day, tz) {
    const guess = Date.parse(`${day}T00:00:00Z`);
    let ms = guess - offsetAt(guess, tz);
    ms = guess - offsetAt(ms, tz);          // across a DST change
    return new Date(ms).toISOString();
}

// today's date in the zone, "YYYY-MM-DD"
export function todayIn(tz) {
    const ms = Date.now();
    return new Date(ms + offsetAt(ms, tz)).toISOString().slice(0, 10);
}

export function addDays(day, n) {
    const d = new Date(`${day}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
}

// the wall-clock parts of an ISO time with an offset, as it is written
// ("2026-10-25T00:00:00+02:00": 25 Oct, 00:00), without converting it
export function wallClock(iso) {
    const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2})/.exec(String(iso || ''));
    if (!m) {
        return null;
    }
    const day = new Date(`${m[1]}T00:00:00Z`).toLocaleString('en', {
        timeZone: 'UTC', month: 'short', day: 'numeric' });
    const year = m[1].slice(0, 4);
    return { date: m[1], day, year, hour: Number(m[2]), time: `${m[2]}:${m[3]}` };
}
