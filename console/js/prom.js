// Prometheus text exposition format (version 0.0.4), parsed: families by
// name with their HELP, TYPE and samples {name, labels, value}.

function unescapeLabel(s) {
    return s.replace(/\\(["\\n])/g, (_, c) => (c === 'n' ? '\n' : c));
}

function parseValue(s) {
    if (s === '+Inf') {
        return Infinity;
    }
    if (s === '-Inf') {
        return -Infinity;
    }
    return Number(s);       // "NaN" -> NaN, garbage -> NaN
}

// name{a="x",b="y"} value [timestamp]
const SAMPLE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$/;
const LABEL = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/gy;

function parseLabels(text) {
    const labels = {};
    let m;
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < text.length && (m = LABEL.exec(text)) !== null) {
        labels[m[1]] = unescapeLabel(m[2]);
    }
    return labels;
}

// the family a sample belongs to: histogram and summary parts included
function familyOf(families, name) {
    if (families.has(name)) {
        return families.get(name);
    }
    for (const suffix of ['_bucket', '_sum', '_count']) {
        if (name.endsWith(suffix)) {
            const base = families.get(name.slice(0, -suffix.length));
            if (base) {
                return base;
            }
        }
    }
    const f = { name, help: '', type: 'untyped', samples: [] };
    families.set(name, f);
    return f;
}

export function parseMetrics(text) {
    const families = new Map();

    for (const raw of text.split('\n')) {
        const line = raw.trim();
        let m;
        if (line === '') {
            continue;
        }
        if ((m = /^#\s+(HELP|TYPE)\s+(\S+)\s*(.*)$/.exec(line)) !== null) {
            const f = families.get(m[2])
                      || { name: m[2], help: '', type: 'untyped', samples: [] };
            families.set(m[2], f);
            if (m[1] === 'HELP') {
                f.help = m[3].replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
            } else {
                f.type = m[3] || 'untyped';
            }
            continue;
        }
        if (line.startsWith('#')) {
            continue;
        }
        if ((m = SAMPLE.exec(line)) !== null) {
            familyOf(families, m[1]).samples.push({
                name: m[1], labels: m[2] ? parseLabels(m[2]) : {},
                value: parseValue(m[3]),
            });
        }
    }
    return families;
}

// helpers for reading a parsed set
export class Metrics {
    constructor(text) {
        this.families = parseMetrics(text);
    }

    samples(name) {
        const f = this.families.get(name);
        return f ? f.samples.filter((s) => s.name === name) : [];
    }

    has(name) {
        return this.samples(name).length > 0;
    }

    // one value: the sample whose labels include these (sum if several)
    value(name, labels = {}) {
        const found = this.samples(name).filter((s) => Object.entries(labels)
            .every(([k, v]) => s.labels[k] === v));
        return found.length ? found.reduce((a, s) => a + s.value, 0) : null;
    }

    // {labelValue: sum} over one label
    by(name, label) {
        const out = {};
        for (const s of this.samples(name)) {
            const k = s.labels[label] ?? '';
            out[k] = (out[k] || 0) + s.value;
        }
        return out;
    }
}
