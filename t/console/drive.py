#!/usr/bin/python3
"""Drive the web console in headless Chromium, as a user would.

Run by t/200-console.t against its nginx (module, API at /_links/, console
at /console/).  Prints TAP ("ok N - ...", "not ok N - ...", "# ..." notes,
"1..N" at the end); exits 0 only when every check passed.  Any error or
Content-Security-Policy violation in the browser's console fails the run,
except the HTTP errors this script provokes on purpose (listed as it goes).

    drive.py --base http://127.0.0.1:PORT --key KEY --code CODE
             --sample SAMPLE_CODE --sample-pv N --out DIR
"""

import argparse
import http.client
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import (StaleElementReferenceException,
                                        TimeoutException, WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'

# a desktop browser's click, so the top lists have something known in them
CLICK_UA = ('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 '
            '(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36')
CLICK_REFERER = 'https://news.example.org/some/post'

CSP_PROBE = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
    window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' '
                      + e.sourceFile + ':' + e.lineNumber);
});
"""


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, desc, diag=None):
        self.n += 1
        print(f"{'ok' if cond else 'not ok'} {self.n} - {desc}", flush=True)
        if not cond:
            self.failed += 1
            if diag:
                self.note(diag)
        return cond

    def note(self, text):
        for line in str(text).splitlines() or ['']:
            print(f'# {line}', flush=True)

    def done(self):
        print(f'1..{self.n}', flush=True)


class Console:
    """The browser, the server, and what the browser logged."""

    def __init__(self, args, tap):
        self.args = args
        self.tap = tap
        self.base = args.base.rstrip('/')
        self.url = urllib.parse.urlsplit(self.base)
        self.logs = []
        # network errors this script provokes: (url regex, status)
        self.expected = []
        self.profile = tempfile.mkdtemp(prefix='console-chromium-')

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ('--headless=new', '--no-sandbox', '--disable-gpu',
                  '--disable-dev-shm-usage', '--no-first-run',
                  '--disable-extensions', '--disable-background-networking',
                  '--disable-sync', '--disable-default-apps',
                  '--password-store=basic', '--lang=en-US',
                  '--force-device-scale-factor=1',
                  '--window-size=1280,1000', f'--user-data-dir={self.profile}'):
            opts.add_argument(a)
        opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})

        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER),
                                       options=opts)
        self.driver.set_page_load_timeout(20)
        self.driver.execute_cdp_cmd('Page.addScriptToEvaluateOnNewDocument',
                                    {'source': CSP_PROBE})

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # --- the browser ---------------------------------------------------

    def collect(self):
        """Move the browser's console messages into self.logs."""
        self.logs.extend(self.driver.get_log('browser'))
        csp = self.driver.execute_script('return window.__csp || [];') or []
        for v in csp:
            self.logs.append({'level': 'CSP', 'message': v, 'source': 'csp'})
        self.driver.execute_script('window.__csp = [];')

    def wait(self, cond, what, timeout=10):
        try:
            # a row replaced while it is looked at: look again
            return WebDriverWait(
                self.driver, timeout, poll_frequency=0.1,
                ignored_exceptions=(StaleElementReferenceException,)) \
                .until(lambda d: cond())
        except TimeoutException:
            raise AssertionError(f'timed out waiting for {what}') from None

    def find(self, css, root=None):
        return (root or self.driver).find_element(By.CSS_SELECTOR, css)

    def finds(self, css, root=None):
        return (root or self.driver).find_elements(By.CSS_SELECTOR, css)

    def visible(self, css):
        els = [e for e in self.finds(css) if e.is_displayed()]
        return els[0] if els else None

    def go(self, hash_):
        self.driver.execute_script('window.location.hash = arguments[0];',
                                   hash_)

    def row(self, code):
        rows = self.finds(f'tr[data-code="{code}"]')
        return rows[0] if rows else None

    def screenshot(self, name, full=False):
        """Save a PNG of the window, or of the whole page (full)."""
        d = self.driver
        os.makedirs(self.args.out, exist_ok=True)
        path = os.path.join(self.args.out, name)
        size = d.get_window_size()
        if full:
            height = d.execute_script(
                'return document.documentElement.scrollHeight'
                ' + window.outerHeight - window.innerHeight')
            d.set_window_size(size['width'], max(height, size['height']))
            time.sleep(0.4)             # the charts follow the new size
        d.save_screenshot(path)
        if full:
            d.set_window_size(size['width'], size['height'])
        self.tap.note(f'screenshot {path}')
        return path

    # --- the server, without the browser --------------------------------

    def http(self, method, path, headers=None, body=None):
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port,
                                          timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            return res.status, dict(res.getheaders()), res.read()
        finally:
            conn.close()

    def api(self, method, path, body=None):
        headers = {'Authorization': f'Bearer {self.args.key}'}
        if body is not None:
            body = json.dumps(body)
            headers['Content-Type'] = 'application/json'
        status, _, raw = self.http(method, '/_links' + path, headers, body)
        return status, (json.loads(raw) if raw else None)

    def click(self, code):
        return self.http('GET', f'/{code}', {'User-Agent': CLICK_UA,
                                             'Referer': CLICK_REFERER})


# --- accessibility, as far as a script can tell -----------------------------

# Every visible control has a name, every text meets WCAG AA contrast
# against the background it is drawn on (4.5:1, or 3:1 for large text).
A11Y_PROBE = """
const root = document.querySelector('dialog[open]') || document.body;
const problems = [];
const shown = (el) => el.getClientRects().length > 0
    && getComputedStyle(el).visibility !== 'hidden';
const rgba = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
        const c = rgba(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] >= 0.99)) {
            return c.slice(0, 3);
        }
    }
    return [255, 255, 255];
};
const name = (el) => (el.getAttribute('aria-label')
    || (el.getAttribute('aria-labelledby') || '').split(' ')
       .map((id) => document.getElementById(id)?.textContent || '').join('')
    || [...(el.labels || [])].map((l) => l.textContent).join('')
    || (el.matches('button, a') ? el.textContent : '')
    || el.getAttribute('title') || '').trim();
const what = (el) => el.tagName.toLowerCase()
    + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : '');

for (const el of root.querySelectorAll('input, select, textarea, button, a[href]')) {
    if (shown(el) && !el.classList.contains('offscreen') && name(el) === '') {
        problems.push('no accessible name: ' + what(el));
    }
}
for (const el of root.querySelectorAll('*')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3
                                           && n.textContent.trim() !== '');
    if (!own || !shown(el) || el.closest('.visually-hidden, [aria-hidden="true"]')
        || el.closest('details:not([open])')) {
        continue;
    }
    const st = getComputedStyle(el);
    const fg = rgba(st.color);
    const l1 = lum(fg.slice(0, 3));
    const l2 = lum(background(el));
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(st.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
        problems.push(`contrast ${ratio.toFixed(2)}: ${what(el)} `
                      + `"${el.textContent.trim().slice(0, 30)}"`);
    }
}
return problems;
"""


def check_a11y(c, t, page):
    problems = c.driver.execute_script(A11Y_PROBE)
    t.ok(not problems, f'{page}: every control has a name, every text '
         'enough contrast', '\n'.join(problems))


# --- the steps ---------------------------------------------------------------

def step_key(c, t):
    d = c.driver
    # what a user grants when asked: the copy button writes the clipboard
    d.execute_cdp_cmd('Browser.grantPermissions', {
        'origin': c.base,
        'permissions': ['clipboardReadWrite', 'clipboardSanitizedWrite']})
    d.get(c.base + '/console/')
    c.wait(lambda: c.visible('#api-key'), 'the key form')
    t.ok(True, 'without a key the console asks for one')
    check_a11y(c, t, 'the key form')

    # a wrong key: the API's 401 brings the form back with the reason
    c.expected.append((r'/_links/links\?', 401))
    c.find('#api-key').send_keys('sl_not_a_key')
    c.find('#api-key').send_keys(Keys.ENTER)
    c.wait(lambda: 'refused' in c.find('#api-key-error').text,
           'the refused key message', 10)
    t.ok(d.execute_script("return sessionStorage.length") == 0,
         'a refused key is forgotten')

    c.find('#api-key').send_keys(c.args.key)
    c.find('#api-key').send_keys(Keys.ENTER)
    c.wait(lambda: c.visible('#new-link'), 'the links page')
    stored = d.execute_script(
        "return sessionStorage.getItem('shortlink.apiKey');")
    t.ok(stored == c.args.key, 'the key is kept in sessionStorage')
    t.ok(c.args.key not in d.current_url, 'the key is not in the URL',
         d.current_url)
    t.ok(d.execute_script('return document.cookie') == ''
         and not d.get_cookies(), 'the console sets no cookie',
         str(d.get_cookies()))
    t.ok(d.execute_script('return localStorage.length') == 0,
         'nothing in localStorage')


def fill(c, dialog, name, value):
    el = c.find(f'[data-field="{name}"]', dialog)
    if el.get_attribute('type') == 'checkbox':
        if el.is_selected() != bool(value):
            el.click()
    elif el.tag_name == 'select':
        c.driver.execute_script(
            'arguments[0].value = arguments[1];'
            'arguments[0].dispatchEvent(new Event("change"));', el, str(value))
    else:
        el.clear()
        el.send_keys(value)


def open_dialog(c):
    return c.wait(lambda: c.visible('dialog.link-dialog[open]'),
                  'the link dialog')


def step_create(c, t):
    code = c.args.code
    check_a11y(c, t, 'the links page')
    c.find('#new-link').click()
    dialog = open_dialog(c)
    check_a11y(c, t, 'the link dialog')
    fill(c, dialog, 'url', c.base + '/console/#/status')
    fill(c, dialog, 'code', code)
    fill(c, dialog, 'title', 'Console test <b>&amp;</b>')
    fill(c, dialog, 'tags', f'e2e {code}')
    fill(c, dialog, 'redirect_status', 307)
    c.find('button[type="submit"]', dialog).click()
    c.wait(lambda: not c.visible('dialog.link-dialog[open]'),
           'the dialog to close')
    tr = c.wait(lambda: c.row(code), f'the row of {code}')
    short = c.find('.short-url', tr).text
    t.ok(short.endswith('/' + code), 'the new link is in the list with its '
         'short URL', short)
    t.ok(c.find('.title', tr).text == 'Console test <b>&amp;</b>'
         and not c.finds('.title b', tr),
         'its title is shown as text, not markup')
    tags = [e.text for e in c.finds('.tag', tr)]
    t.ok(tags == ['e2e', code], 'its tags are listed', str(tags))
    t.ok(c.find('.c-meta', tr).text.startswith('307'),
         'its redirect status is 307')
    copy = c.find('[data-action="copy"]', tr)
    t.ok(copy.get_attribute('aria-label') == f'Copy the short URL of {code}',
         'a copy button names the link it copies')
    copy.click()
    c.wait(lambda: copy.text == 'Copied', 'the copy to be confirmed')
    clip = c.driver.execute_async_script(
        'const done = arguments[0];'
        'navigator.clipboard.readText().then(done, (e) => done(`${e}`));')
    t.ok(clip == short, 'Copy puts the short URL on the clipboard', clip)

    # the list as the server has it: found by its tag, and by its code
    c.go(f'#/links?tag={code}')
    c.wait(lambda: c.row(code) and 'with the tag' in c.find('.count').text,
           'the tag filter')
    t.ok(len(c.finds('tr[data-code]')) == 1, 'the tag filter finds it')
    c.go('#/links')
    c.wait(lambda: c.find('.count').text.endswith('shown')
           or 'more below' in c.find('.count').text, 'the full list')
    c.find('#code-find').send_keys(code + Keys.ENTER)
    c.wait(lambda: 'for the code' in c.find('.count').text, 'the code search')
    t.ok(len(c.finds('tr[data-code]')) == 1 and c.row(code) is not None,
         'the code search finds it')
    c.go('#/links?tag=no-such-tag')
    c.wait(lambda: c.visible('.empty') and not c.finds('tr[data-code]'),
           'an empty filtered list')
    t.ok(True, 'a tag nobody uses lists nothing')


def step_paging(c, t):
    """More than a page (50) of links: "More links" fetches the next page."""
    tag = c.args.code + '-page'
    status, res = c.api('POST', '/links/bulk', [
        {'url': f'https://example.com/page/{i}', 'tags': [tag]}
        for i in range(51)])
    if status != 200 or res.get('created') != 51:
        raise AssertionError(f'bulk create: {status} {res}')
    c.go(f'#/links?tag={tag}')
    c.wait(lambda: len(c.finds('tr[data-code]')) == 50, 'the first page')
    more = c.wait(lambda: c.visible('button.more'), 'the "More links" button')
    t.ok(True, 'a first page of 50 links, and a "More links" button')
    more.click()
    c.wait(lambda: len(c.finds('tr[data-code]')) == 51, 'the second page')
    t.ok(not c.visible('button.more'),
         'the next page appended; no "More links" at the end')
    t.ok(c.driver.switch_to.active_element.tag_name != 'body',
         'the focus is not lost when "More links" goes away')


def step_follow(c, t):
    code = c.args.code
    d = c.driver

    # the browser follows the short URL (its target is the console itself)
    d.get(f'{c.base}/{code}')
    c.wait(lambda: c.visible('#health .figure'), 'the redirect target')
    t.ok(d.current_url.startswith(c.base + '/console/'),
         'the browser followed the short URL', d.current_url)

    # and a desktop browser with a referer, from here
    status, headers, _ = c.click(code)
    t.ok(status == 307, 'a GET of the short URL redirects with 307',
         f'status {status}')


def stats_value(c, key):
    el = c.finds(f'.totals [data-stat="{key}"] .value')
    return el[0].text if el else None


def top_labels(c, key):
    return [e.get_attribute('textContent') for e in
            c.finds(f'section[data-top="{key}"] table.data tbody th')]


def step_stats(c, t):
    code = c.args.code
    c.go(f'#/links/{code}/stats')
    c.wait(lambda: stats_value(c, 'pv') is not None, 'the totals')

    # the flush interval is short: read the statistics (the "48 hours"
    # preset, by hour: a run at midnight UTC too) until both clicks are in
    deadline = time.time() + 15
    while True:
        c.find('.presets button:nth-of-type(2)').click()
        c.wait(lambda: c.finds('.stats-results[aria-busy="false"]'),
               'the statistics')
        if stats_value(c, 'pv') == '2' or time.time() > deadline:
            break
        time.sleep(0.3)
    t.ok(stats_value(c, 'pv') == '2', 'the statistics count both clicks',
         f'pv {stats_value(c, "pv")}')
    t.ok(stats_value(c, 'unique_ips') == '1', 'from one address',
         f'unique_ips {stats_value(c, "unique_ips")}')
    for key in ('uv', 'bots'):
        t.ok(stats_value(c, key) is not None, f'the totals show {key}')
    t.ok('Chrome' in top_labels(c, 'browsers'),
         'the browsers list has the desktop click\'s Chrome',
         str(top_labels(c, 'browsers')))
    t.ok('news.example.org' in top_labels(c, 'referrers'),
         'the referrers list has its referer', str(top_labels(c, 'referrers')))
    t.ok('interval=hour' in c.driver.current_url,
         'the range is kept in the URL', c.driver.current_url)
    c.screenshot('stats-link.png', full=True)


def step_sample(c, t):
    """The seeded link: two weeks of clicks, every chart drawn."""
    code = c.args.sample
    c.go(f'#/links/{code}/stats')
    c.wait(lambda: stats_value(c, 'pv') is not None, 'the sample totals')
    c.find('.presets button:nth-of-type(4)').click()         # 30 days
    c.wait(lambda: stats_value(c, 'pv') == f'{c.args.sample_pv:,}',
           'the 30-day totals')
    t.ok(True, f'30 days of the sample link: {c.args.sample_pv:,} page views')

    # every chart has been drawn by Chart.js (a canvas it sized)
    c.wait(lambda: c.driver.execute_script("""
        const cs = [...document.querySelectorAll('.stats-results canvas')];
        return cs.length > 0 && cs.every((x) => x.width > 0
            && x.getContext('2d').getImageData(0, 0, x.width, x.height)
                 .data.some((v) => v !== 0));
    """), 'the charts to be drawn')
    n = len(c.finds('.stats-results canvas'))
    tops = [e.get_attribute('data-top')
            for e in c.finds('section[data-top]')]
    dists = [e.get_attribute('data-dist')
             for e in c.finds('section[data-dist]')]
    drawn = [e.get_attribute('data-top') for e in c.finds('section[data-top]')
             if c.finds('canvas', e)]
    empty = [e.get_attribute('data-top') for e in c.finds('section[data-top]')
             if not c.finds('canvas', e)
             and c.finds('p.empty', e) and not c.finds('table', e)]
    t.ok(n == 1 + len(dists) + len(drawn) and len(drawn) + len(empty)
         == len(tops), f'{n} charts drawn: the series, {len(dists)} '
         f'distributions and {len(drawn)} top lists; empty: {empty}',
         str(dists + tops))
    t.ok({'referrers', 'browsers', 'os', 'devices', 'countries', 'languages',
          'sources'} <= set(tops),
         'referrers, browsers, OS, devices, countries, languages and sources '
         'have a chart', str(tops))
    t.ok(dists == ['hours_of_day', 'weekdays'],
         'the hours of the day and the weekdays have a chart', str(dists))
    for key, rows in (('hours_of_day', 24), ('weekdays', 7)):
        cells = [e.get_attribute('textContent').replace(',', '') for e in
                 c.finds(f'section[data-dist="{key}"] table.data tbody td:nth-child(2)')]
        t.ok(len(cells) == rows and sum(map(int, cells)) == c.args.sample_pv,
             f'{key}: {rows} buckets adding up to every click',
             str(cells))
    t.ok(top_labels(c, 'sources')[:2] == ['profile', 'qr'],
         'the sources list: profile, then qr', str(top_labels(c, 'sources')))
    t.ok(c.finds('.today [data-stat="pv"] .value'),
         'today\'s figures are shown')
    nr = [e.text for e in c.finds('.returning .figure .value')]
    t.ok(len(nr) == 2 and all(x.endswith('%') for x in nr),
         'new and returning visitors as shares', str(nr))
    zone = c.find('#stats-tz').get_attribute('value')
    want = c.driver.execute_script(
        'return Intl.DateTimeFormat().resolvedOptions().timeZone;')
    t.ok(zone == want, f'the time zone is the browser\'s ({want})', zone)
    t.ok(any(x.startswith('DE · ') for x in top_labels(c, 'countries')),
         'countries are named', str(top_labels(c, 'countries')))
    t.ok(len(c.finds('.series table.data tbody tr')) == 30,
         'the series has 30 days', str(len(c.finds('.series table.data tbody tr'))))

    # a range the API refuses (too many hours) is shown at the range picker
    c.expected.append((r'/stats\?', 400))
    c.driver.execute_script("""
        document.getElementById('stats-from').value = '1999-01-01';
        document.getElementById('stats-interval').value = 'hour';""")
    c.find('form.range button[type="submit"]').click()
    c.wait(lambda: c.find('#stats-range-error').text != '',
           'the range error')
    t.ok(True, 'a refused range is explained next to the range picker: '
         + c.find('#stats-range-error').text)
    c.find('.presets button:nth-of-type(3)').click()          # 7 days
    c.wait(lambda: len(c.finds('.series table.data tbody tr')) == 7,
           'the 7-day series')

    # another zone: sent as tz=, the buckets follow its midnight
    c.driver.execute_script("""
        const s = document.getElementById('stats-tz');
        s.value = 'Asia/Tokyo';
        s.dispatchEvent(new Event('change'));""")
    c.wait(lambda: 'Asia/Tokyo' in c.find('.range-line').text,
           'the range in the new zone')
    t.ok('tz=Asia%2FTokyo' in c.driver.current_url,
         'the zone is kept in the URL', c.driver.current_url)
    first = c.find('.series table.data tbody th').get_attribute('textContent')
    t.ok(len(c.finds('.series table.data tbody tr')) == 7,
         f'7 days in Asia/Tokyo, from {first}')
    c.driver.execute_script("""
        const s = document.getElementById('stats-tz');
        s.value = arguments[0];
        s.dispatchEvent(new Event('change'));""", zone)
    c.wait(lambda: zone in c.find('.range-line').text, 'the zone back')
    c.wait(lambda: c.driver.execute_script(
        "return [...document.querySelectorAll('.stats-results canvas')]"
        ".every((x) => x.width > 0)"), 'the charts to be drawn')
    time.sleep(0.3)
    c.driver.execute_script('window.scrollTo(0, 0)')
    check_a11y(c, t, 'the statistics page')
    c.screenshot('stats.png', full=True)


def preview_codes(c):
    return [a.get_attribute('data-code')
            for a in c.finds('.preview .pv-page nav a')]


def entry_codes(c):
    return [li.get_attribute('data-code')
            for li in c.finds('ol.entries > li')]


def pick(c, code):
    c.driver.execute_script(
        'const s = document.getElementById("entry-pick");'
        's.value = arguments[0]; s.dispatchEvent(new Event("change"));', code)
    c.find('#entry-add').click()


def pstat(c, key):
    # read in one go: the figures are redrawn on each refresh
    return c.driver.execute_script(
        'const el = document.querySelector(arguments[0]);'
        'return el ? el.textContent : null;',
        f'.profile-stats [data-stat="{key}"] .value')


def step_profile(c, t):
    """A profile through the UI: entries, preview, reorder, page, stats."""
    d = c.driver
    user = c.args.profile
    sample, code = c.args.sample, c.args.code

    c.go('#/profiles')
    c.wait(lambda: c.visible('#new-profile'), 'the profiles page')
    check_a11y(c, t, 'the profiles page')
    c.find('#new-profile').click()
    c.wait(lambda: c.visible('[data-field="username"]'), 'the profile form')
    t.ok(d.switch_to.active_element.get_attribute('data-field') == 'username',
         'the new profile form starts at the username')
    c.find('[data-field="username"]').send_keys(user)
    c.find('[data-field="display_name"]').send_keys('Console <b>test</b> ✓')
    c.find('[data-field="bio"]').send_keys('First line\nمرحبا')
    d.execute_script('const s = document.querySelector(\'[data-field="theme"]\');'
                     's.value = "dark"; s.dispatchEvent(new Event("change",'
                     ' {bubbles: true}));')
    pick(c, sample)
    pick(c, code)
    t.ok(entry_codes(c) == [sample, code], 'two links picked as entries',
         str(entry_codes(c)))
    h1 = c.find('.preview .pv-h1')
    t.ok(h1.text == 'Console <b>test</b> ✓' and not c.finds('.preview b'),
         'the preview shows the name as text, not markup', h1.text)
    t.ok(preview_codes(c) == [sample, code]
         and 't-dark' in c.find('.preview .pv-page').get_attribute('class'),
         'the preview lists both entries in order, dark theme',
         str(preview_codes(c)))
    t.ok(c.find('.preview .pv-bio').text == 'First line\nمرحبا',
         'the bio keeps its line break', c.find('.preview .pv-bio').text)

    # an empty title: the API's 422 at /entries/1/title, shown at the entry
    c.expected.append((r'/_links/profiles$', 422))
    title2 = c.finds('ol.entries [data-entry-field="title"]')[1]
    title2.clear()
    title2.send_keys(' ')
    title2.send_keys(Keys.BACKSPACE)
    c.find('#profile-save').click()
    err = c.wait(lambda: c.visible(f'ol.entries li[data-code="{code}"] '
                                   '.field-error:not(:empty)'),
                 'the entry\'s error')
    t.ok('title' in err.text, 'a 422 on /entries/1/title is shown at the '
         'entry', err.text)
    t.ok(title2.get_attribute('aria-invalid') == 'true'
         and d.switch_to.active_element == title2,
         'its title is marked invalid and has the focus')
    t.ok(not c.find('#alerts').text, 'no page alert for a field error')
    check_a11y(c, t, 'the profile form with an error')
    title2.send_keys('Console & <friends>')

    c.find('#profile-save').click()
    c.wait(lambda: c.visible('#public-page'), 'the saved profile')
    t.ok(d.current_url.endswith(f'#/profiles/{user}'),
         'created: the editor of the saved profile', d.current_url)
    status, prof = c.api('GET', f'/profiles/{user}')
    t.ok(status == 200 and [e['code'] for e in prof['entries']]
         == [sample, code] and prof['theme'] == 'dark',
         'the API has it with both entries, dark', f'{status} {prof}')

    # reorder with the keyboard: focus the second entry's "Up", press Enter
    c.wait(lambda: len(c.finds('ol.entries > li')) == 2, 'the entries')
    up = c.find(f'ol.entries li[data-code="{code}"] [data-action="up"]')
    d.execute_script('arguments[0].focus();', up)
    d.switch_to.active_element.send_keys(Keys.ENTER)
    t.ok(entry_codes(c) == [code, sample] and preview_codes(c) == [code, sample],
         'Up moves the entry, the preview follows', str(entry_codes(c)))
    act = d.switch_to.active_element
    t.ok(act.get_attribute('data-action') == 'down'
         and act.find_element(By.XPATH, './ancestor::li')
                .get_attribute('data-code') == code,
         'the focus stays on the moved entry')
    # a javascript: avatar: the PATCH's 422 at /avatar_url, at its field
    c.expected.append((rf'/_links/profiles/{user}$', 422))
    avatar = c.find('[data-field="avatar_url"]')
    avatar.send_keys('javascript:alert(1)')
    c.find('#profile-save').click()
    err = c.wait(lambda: c.visible('.profile-form [data-error-for="avatar_url"]'),
                 'the avatar field\'s error')
    t.ok(err.text != '' and avatar.get_attribute('aria-invalid') == 'true'
         and d.switch_to.active_element == avatar,
         'a 422 on /avatar_url is shown at the avatar field', err.text)
    # an image of this server: the preview names its host, loads nothing
    avatar.clear()
    avatar.send_keys(f'{c.base}/console/favicon.svg')
    host = c.find('.preview .pv-avatar')
    t.ok(host.text == c.url.netloc and not c.finds('.preview img'),
         'the preview shows where the avatar comes from', host.text)
    check_a11y(c, t, 'the profile editor')
    c.screenshot('profile-editor.png', full=True)
    c.find('#profile-save').click()
    c.wait(lambda: 'Saved' in c.find('.form-alert').text, 'the save')
    status, prof = c.api('GET', f'/profiles/{user}')
    t.ok([e['code'] for e in prof['entries']] == [code, sample],
         'one save puts the new order in the API',
         str([e['code'] for e in prof['entries']]))
    t.ok(prof['avatar_url'] == f'{c.base}/console/favicon.svg',
         'and the avatar', str(prof['avatar_url']))

    # the public page, as nginx serves it
    href = c.find('#public-page').get_attribute('href')
    t.ok(href == f'{c.base}/@{user}', 'a link to the public page', href)
    d.get(href)
    c.wait(lambda: c.finds('nav[aria-label="Links"] a'), 'the public page')
    t.ok(d.find_element(By.TAG_NAME, 'h1').text == 'Console <b>test</b> ✓',
         'the public page has the display name')
    avatar_ok = lambda: d.execute_script(
        'const i = document.querySelector("img.avatar");'
        'return Boolean(i && i.complete && i.naturalWidth > 0);')
    try:
        c.wait(avatar_ok, 'the avatar', 5)
    except AssertionError:
        pass
    t.ok(avatar_ok(), 'and its avatar')
    hrefs = [a.get_attribute('href')
             for a in c.finds('nav[aria-label="Links"] a')]
    t.ok(hrefs == [f'{c.base}/{code}?_sls=profile',
                   f'{c.base}/{sample}?_sls=profile'],
         'its links go through the short links, in the new order', str(hrefs))
    c.screenshot('profile-page.png')

    # back in the console: the statistics of the profile (30 days: the
    # sample link's clicks marked source "profile", the one view)
    d.get(f'{c.base}/console/#/profiles/{user}')
    c.wait(lambda: pstat(c, 'views') is not None, 'the profile statistics')
    c.find('.profile-stats [data-days="30"]').click()
    deadline = time.time() + 15
    while pstat(c, 'views') != '1' and time.time() < deadline:
        time.sleep(0.3)
        c.find('#pstats-refresh').click()
        c.wait(lambda: c.finds('.pstats-results[aria-busy="false"]'),
               'the statistics')
    t.ok(pstat(c, 'views') == '1', 'the page view is counted',
         str(pstat(c, 'views')))
    c.wait(lambda: pstat(c, 'clicks') == '120', 'the entry clicks')
    t.ok(pstat(c, 'ctr') == '12000.0 %',
         'clicks per view', str(pstat(c, 'ctr')))
    rows = {r.get_attribute('data-code'):
            c.find('td.num', r).get_attribute('textContent')
            for r in c.finds('table.pstats-table tbody tr')}
    t.ok(rows == {code: '0', sample: '120'},
         'clicks per entry', str(rows))
    t.ok(c.finds('.profile-stats canvas'), 'clicks per entry as a chart')
    check_a11y(c, t, 'the profile statistics')


def step_overall(c, t):
    """GET /stats: every link of the key's owner, and by tag."""
    c.go('#/stats')
    c.wait(lambda: c.finds('.stats-results[aria-busy="false"] .range-line'),
           'the owner-wide statistics')
    c.find('.presets button:nth-of-type(4)').click()         # 30 days
    c.wait(lambda: stats_value(c, 'pv') is not None
           and int(stats_value(c, 'pv').replace(',', '')) >= c.args.sample_pv,
           'the 30-day totals of all links')
    t.ok(' links' in c.find('.range-line').text,
         'the owner-wide statistics say how many links',
         c.find('.range-line').text)
    c.find('#stats-tag').send_keys('sample' + Keys.ENTER)
    c.wait(lambda: 'tag=sample' in c.driver.current_url
           and stats_value(c, 'pv') == f'{c.args.sample_pv:,}',
           'the statistics of the tag')
    t.ok('1 links' in c.find('.range-line').text,
         'by tag: the sample link alone', c.find('.range-line').text)
    t.ok(c.finds('section[data-dist="weekdays"] canvas'),
         'with the same charts as a link')


def step_edit(c, t):
    code = c.args.code
    c.go(f'#/links?tag={code}')
    tr = c.wait(lambda: c.row(code), 'the row')
    c.find('[data-action="edit"]', tr).click()
    dialog = open_dialog(c)
    url = c.find('[data-field="url"]', dialog)
    t.ok(c.driver.switch_to.active_element == url,
         'the edit dialog starts at the URL field')

    # a javascript: URL: the API's 422 is shown next to the URL field
    c.expected.append((rf'/_links/links/{code}$', 422))
    fill(c, dialog, 'url', 'javascript:alert(1)')
    c.find('button[type="submit"]', dialog).click()
    err = c.wait(lambda: c.visible('dialog[open] [data-error-for="url"]'),
                 'the URL field\'s error')
    t.ok('http' in err.text, 'a 422 on /url is shown next to the URL field',
         err.text)
    t.ok(url.get_attribute('aria-invalid') == 'true'
         and err.get_attribute('id') in url.get_attribute('aria-describedby'),
         'the URL field is marked invalid and described by the error')
    t.ok(c.driver.switch_to.active_element == url,
         'the focus is on the field in error')
    check_a11y(c, t, 'the link dialog with an error')
    t.ok(not c.find('#alerts').text, 'no page alert for a field error')

    new = 'https://example.com/edited?x=1'
    fill(c, dialog, 'url', new)
    c.find('button[type="submit"]', dialog).click()
    c.wait(lambda: not c.visible('dialog.link-dialog[open]'),
           'the dialog to close')
    c.wait(lambda: c.find('.target', c.row(code)).text == new,
           'the new target in the list')
    t.ok(True, 'the edited target is listed')
    status, headers, _ = c.click(code)
    t.ok(status == 307 and headers.get('Location') == new,
         'the short URL redirects to the new target',
         f'{status} {headers.get("Location")}')

    # a taken alias, creating: the 409 goes next to the alias field
    c.expected.append((r'/_links/links$', 409))
    c.find('#new-link').click()
    dialog = open_dialog(c)
    fill(c, dialog, 'url', 'https://example.com/')
    fill(c, dialog, 'code', code)
    c.find('button[type="submit"]', dialog).click()
    err = c.wait(lambda: c.visible('dialog[open] [data-error-for="code"]'),
                 'the alias field\'s error')
    t.ok('taken' in err.text, 'a taken alias is shown next to the alias field',
         err.text)
    c.find('dialog[open]').send_keys(Keys.ESCAPE)
    c.wait(lambda: not c.visible('dialog.link-dialog[open]'),
           'Escape to close the dialog')
    t.ok(True, 'Escape closes the dialog')


def step_disable_delete(c, t):
    code = c.args.code
    tr = c.row(code)
    c.find('[data-action="disable"]', tr).click()
    c.wait(lambda: c.row(code).get_attribute('data-state') == 'disabled',
           'the disabled state')
    t.ok(c.find('.badge', c.row(code)).text == 'Disabled',
         'disabled: the list says so')
    t.ok(c.click(code)[0] == 404, 'a disabled link answers 404')
    t.ok(c.driver.switch_to.active_element.get_attribute('data-action')
         == 'enable', 'the focus moves to the Enable button')

    c.screenshot('links.png')

    c.find('[data-action="delete"]', c.row(code)).click()
    dlg = c.wait(lambda: c.visible('dialog.confirm-dialog[open]'),
                 'the confirmation')
    t.ok(c.driver.switch_to.active_element.get_attribute('data-action')
         == 'cancel', 'the confirmation starts on Cancel')
    check_a11y(c, t, 'the confirmation')
    c.find('[data-action="cancel"]', dlg).click()
    t.ok(c.row(code) is not None, 'cancelled: the link stays')
    c.find('[data-action="delete"]', c.row(code)).click()
    dlg = c.wait(lambda: c.visible('dialog.confirm-dialog[open]'),
                 'the confirmation')
    c.find('[data-action="confirm"]', dlg).click()
    c.wait(lambda: c.row(code) is None, 'the row to go')
    t.ok(True, 'confirmed: the link leaves the list')
    status, _ = c.api('GET', f'/links/{code}')
    t.ok(status == 404, 'the API no longer has it', f'status {status}')


def step_status(c, t):
    c.go('#/status')
    c.wait(lambda: c.finds('#metrics .cards'), 'the metrics summary')
    health = {e.find_element(By.TAG_NAME, 'dt').text:
              e.find_element(By.CSS_SELECTOR, '.value').text
              for e in c.finds('#health [data-card="Backends"] .figure')}
    t.ok(health.get('Status', '').endswith('ok')
         and health.get('PostgreSQL', '').endswith('up'),
         'the status page shows the health answer', str(health))
    cards = [e.get_attribute('data-card') for e in c.finds('#metrics .card')]
    t.ok({'Requests by tier', 'Click queue', 'Clicks', 'Backends'} <= set(cards),
         'the metrics summary has tiers, queue, clicks and backends',
         str(cards))
    text = c.find('#metrics').text
    t.ok('Flush lag' in text and 'Queue depth' in text,
         'flush lag and queue depth are shown')
    t.ok(c.finds('#metrics [data-metric="Dropped"]'),
         'dropped clicks are shown')

    # the browser's parse agrees with this one (nothing redirects meanwhile)
    _, _, raw = c.http('GET', '/metrics')
    want = sum(float(m.group(1)) for m in re.finditer(
        r'^shortlink_requests_total\{[^}]*outcome="redirect"[^}]*\} (\S+)$',
        raw.decode(), re.M))
    shown = lambda: c.driver.execute_script("""
        const el = document.querySelector(
            '#metrics [data-card="Requests by outcome"] '
            + '[data-metric="Redirect"] .value');
        return el ? el.textContent.replace(/,/g, '') : null;""")
    c.find('#refresh').click()
    try:
        c.wait(lambda: shown() == f'{want:.0f}', 'the refreshed figure', 5)
    except AssertionError:
        pass
    t.ok(shown() == f'{want:.0f}',
         f'the redirects counted in /metrics are shown ({want:.0f})', shown())
    check_a11y(c, t, 'the status page')
    c.screenshot('status.png', full=True)


def step_phone(c, t):
    d = c.driver
    d.set_window_size(390, 844)
    c.go('#/links')
    c.wait(lambda: c.finds('tr[data-code]'), 'the list on a phone')
    time.sleep(0.2)
    overflow = d.execute_script('return document.documentElement.scrollWidth'
                                ' - document.documentElement.clientWidth')
    t.ok(overflow <= 0, 'on a phone the list fits the screen',
         f'{overflow}px too wide')
    c.screenshot('links-phone.png')
    c.go(f'#/links/{c.args.sample}/stats')
    c.wait(lambda: c.finds('.stats-results[aria-busy="false"] canvas'),
           'the statistics on a phone')
    time.sleep(0.3)
    overflow = d.execute_script('return document.documentElement.scrollWidth'
                                ' - document.documentElement.clientWidth')
    t.ok(overflow <= 0, 'on a phone the statistics fit the screen',
         f'{overflow}px too wide')
    c.screenshot('stats-phone.png')
    c.go(f'#/profiles/{c.args.profile}')
    c.wait(lambda: c.finds('.preview .pv-page nav a')
           and c.finds('.pstats-results[aria-busy="false"]'),
           'the profile editor on a phone')
    time.sleep(0.3)
    overflow = d.execute_script('return document.documentElement.scrollWidth'
                                ' - document.documentElement.clientWidth')
    t.ok(overflow <= 0, 'on a phone the profile editor fits the screen',
         f'{overflow}px too wide')
    c.screenshot('profile-phone.png')
    d.set_window_size(1280, 1000)


def step_profile_delete(c, t):
    user = c.args.profile
    c.go(f'#/profiles/{user}')
    c.wait(lambda: c.visible('#profile-delete'), 'the delete button')
    c.find('#profile-delete').click()
    dlg = c.wait(lambda: c.visible('dialog.confirm-dialog[open]'),
                 'the confirmation')
    c.find('[data-action="confirm"]', dlg).click()
    c.wait(lambda: c.driver.current_url.endswith('#/profiles')
           and c.visible('#new-profile'), 'the profiles page')
    c.wait(lambda: not c.finds(f'tr[data-username="{user}"]'),
           'the profile to leave the list')
    t.ok(True, 'a deleted profile leaves the list')
    # the cached page goes when nginx hears the NOTIFY (milliseconds)
    deadline = time.time() + 5
    while True:
        status, _, _ = c.http('GET', f'/@{user}')
        if status == 404 or time.time() > deadline:
            break
        time.sleep(0.1)
    t.ok(status == 404, 'its public page answers 404', f'status {status}')


def step_forget(c, t):
    c.go('#/links')
    c.wait(lambda: c.visible('#forget-key'), 'the forget button')
    c.find('#forget-key').click()
    c.wait(lambda: c.visible('#api-key'), 'the key form again')
    t.ok(c.driver.execute_script('return sessionStorage.length') == 0,
         '"Forget key" empties sessionStorage')


def check_logs(c, t):
    c.collect()
    bad = []
    used = set()
    for e in c.logs:
        level, msg = e.get('level'), e.get('message', '')
        if level not in ('SEVERE', 'CSP') and 'Content Security Policy' not in msg:
            continue
        if level == 'SEVERE' and e.get('source') == 'network':
            m = re.search(r'^(\S+) - Failed to load resource: the server '
                          r'responded with a status of (\d+)', msg)
            hit = m and next((i for i, (rx, st) in enumerate(c.expected)
                              if re.search(rx, m.group(1))
                              and int(m.group(2)) == st), None)
            if hit is not None:
                used.add(hit)
                t.note(f'expected: {msg}')
                continue
        bad.append(f'{level} {e.get("source", "")}: {msg}')
    t.ok(not bad, 'no error and no CSP violation in the browser console',
         '\n'.join(bad))
    t.ok(len(used) == len(c.expected),
         'each HTTP error provoked on purpose was logged as one',
         f'{len(used)} of {len(c.expected)}')


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--base', required=True)
    p.add_argument('--key', required=True)
    p.add_argument('--code', required=True)
    p.add_argument('--sample', required=True)
    p.add_argument('--sample-pv', type=int, required=True)
    p.add_argument('--profile', required=True)
    p.add_argument('--out', required=True)
    args = p.parse_args()
    t = Tap()

    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            t.ok(False, f'{path} is installed (chromium, chromium-driver)')
            t.done()
            return 1

    try:
        c = Console(args, t)
    except WebDriverException as e:
        t.ok(False, 'headless Chromium starts', str(e))
        t.done()
        return 1

    steps = [step_key, step_create, step_paging, step_follow, step_stats,
             step_sample, step_profile, step_overall, step_edit,
             step_disable_delete, step_status,
             step_phone, step_profile_delete, step_forget]
    try:
        for step in steps:
            try:
                step(c, t)
                c.collect()
            except Exception as e:                  # noqa: BLE001
                t.ok(False, f'{step.__name__} completes',
                     f'{e}\n{traceback.format_exc()}')
                try:
                    c.screenshot(f'failed-{step.__name__}.png')
                    c.collect()
                except Exception:                    # noqa: BLE001
                    pass
                break
        check_logs(c, t)
    finally:
        c.close()

    t.done()
    return 1 if t.failed else 0


if __name__ == '__main__':
    sys.exit(main())
