// Where the console finds the server.  These are the only URLs it uses;
// both are paths on the console's own origin (the CSP allows no other).

// the location that has "shortlink_api;"
export const API_BASE = '/_links';

// the location that has "shortlink_metrics;" (the status page reads it)
export const METRICS_URL = '/metrics';

// Chart.js as Debian's libjs-chart.js ships it, served by an alias of
// /usr/share/javascript/chart.js/ (relative to this file: <console>/vendor/)
export const CHART_JS = new URL('../vendor/chart.js/chart.esm.js',
                                import.meta.url).href;

// the location with "shortlink_profile;": a profile's public page is
// PROFILE_BASE + username (the console links to it, never embeds it)
export const PROFILE_BASE = '/@';
