'use strict';

// The playground in a real browser: Debian's Chromium driven by
// playwright-core. Clicks login, save and bind phone, checks what the page
// shows, and saves a screenshot (its path is printed; .ci/run shows it).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { startDev, APP1 } = require('../testing/harness.js');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOT = path.resolve(__dirname, '..', 'test-output', 'playground.png');

// A real 1×1 PNG (the browser must decode what the avatar URL serves).
const PNG_1X1 = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64'
);

/** `wxauth dev` and a headless Chromium, both stopped after the test;
 * null (the test skipped) without Chromium, except under CI. */
async function devAndChromium(t) {
  if (!fs.existsSync(CHROMIUM)) {
    assert.notEqual(process.env.CI, 'true', `Chromium is required under CI (looked for ${CHROMIUM})`);
    t.skip(`skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`);
    return null;
  }
  const { chromium } = require('playwright-core');
  const server = await startDev();
  t.after(() => server.stop());
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run'],
  });
  t.after(() => browser.close());
  return { server, browser };
}

test('the playground logs alice in, saves a note, binds a phone and sets an avatar in Chromium', async (t) => {
  const started = await devAndChromium(t);
  if (!started) return;
  const { server, browser } = started;
  const page = await browser.newPage({ viewport: { width: 1200, height: 860 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await page.goto(`${server.api}/`);
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.textContent('#sim-url'), server.sim);

  await page.selectOption('#user', 'alice');
  await page.click('#login');
  await page.waitForFunction(() => document.querySelector('#status').textContent === 'logged in');
  const expected = await (await fetch(`${server.sim}/sim/v1/users/${APP1}/alice`)).json();
  assert.equal(await page.textContent('#openid'), expected.openid);
  assert.equal(await page.textContent('#unionid'), expected.unionid);
  assert.equal(await page.textContent('#new-user'), 'true');

  await page.click('#save');
  await page.waitForFunction(() => document.querySelector('#note-count').textContent === '1');
  assert.match(await page.textContent('#notes'), /张三, 20/);
  await page.click('#save');
  await page.waitForFunction(() => document.querySelector('#note-count').textContent === '2');
  // Mark the newest done, then filter: "open notes only" is a where().
  await page.click('#notes li:first-child button.done');
  await page.waitForFunction(() => document.querySelector('#notes').textContent.includes('✓'));
  await page.check('#open-only');
  await page.waitForFunction(() => document.querySelector('#note-count').textContent === '1');
  assert.doesNotMatch(await page.textContent('#notes'), /✓/);
  assert.match(await page.textContent('#query'), /where\(\{ done: _\.neq\(true\) \}\)/);

  await page.click('#bind-phone');
  await page.waitForFunction(() => /^1\d{10}$/.test(document.querySelector('#phone').textContent));

  // An avatar from a file input (as chooseAvatar hands over a temporary
  // file): uploaded with the client, then shown through its URL by <img>.
  await page.setInputFiles('#avatar-file', { name: 'face.png', mimeType: 'image/png', buffer: PNG_1X1 });
  await page.waitForFunction(() => {
    const img = document.querySelector('#avatar');
    return !img.hidden && img.complete && img.naturalWidth === 1;
  });
  const avatarSrc = await page.getAttribute('#avatar', 'src');
  assert.ok(avatarSrc.startsWith(`${server.api}/v1/files/`), avatarSrc);
  const served = await fetch(avatarSrc);
  assert.deepEqual(Buffer.from(await served.arrayBuffer()), PNG_1X1);

  // The timeline shows each step: the code from wx.login, the exchange, the data.
  const timeline = await page.textContent('#events');
  assert.match(timeline, /wx\.login\(\) as alice → code \w{32}/);
  assert.match(timeline, /POST \/v1\/login200/);
  assert.match(timeline, /POST \/v1\/data\/notes201/);
  assert.match(timeline, /GET \/v1\/data\/notes\?where=%7B%22done%22%3A%7B%22%24ne%22%3Atrue%7D%7D/);
  assert.match(timeline, /GET \/v1\/data\/notes\/_count/);
  assert.match(timeline, /POST \/v1\/me\/phone200/);
  assert.match(timeline, /avatar button → temporary file http:\/\/tmp\/\d+_face\.png/);
  assert.match(timeline, /POST \/v1\/files201/);
  assert.match(timeline, /PATCH \/v1\/me200/);
  assert.ok(!timeline.includes(expected.session_key), 'the session_key never reaches the page');
  assert.equal(await page.textContent('#error'), '');
  assert.deepEqual(errors, []);

  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`playground screenshot: ${SCREENSHOT}`);
});

test('two playground pages share a live board in Chromium', async (t) => {
  const started = await devAndChromium(t);
  if (!started) return;
  const { server, browser } = started;
  const errors = [];
  async function phone(user) {
    const page = await browser.newPage({ viewport: { width: 1200, height: 860 } });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${server.api}/`);
    await page.waitForSelector('body[data-ready="true"]');
    await page.selectOption('#user', user);
    await page.click('#login');
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'logged in');
    // Its watch has started (the timeline shows the socket's init).
    await page.waitForFunction(() => /WS \/v1\/watch ← init/.test(document.querySelector('#events').textContent));
    return page;
  }
  const alice = await phone('alice');
  const bob = await phone('bob');
  await alice.fill('#board-text', 'hello from alice');
  await alice.click('#post');
  // Bob's page shows it without doing anything: pushed over the socket.
  await bob.waitForFunction(() => document.querySelector('#board').textContent.includes('alice: hello from alice'));
  await bob.fill('#board-text', '你好 from bob');
  await bob.click('#post');
  await alice.waitForFunction(() => document.querySelector('#board').textContent.includes('bob: 你好 from bob'));
  assert.deepEqual(
    await alice.$$eval('#board li', (lis) => lis.map((li) => li.textContent)),
    ['alice: hello from alice', 'bob: 你好 from bob']
  );
  assert.match(await bob.textContent('#events'), /WS \/v1\/watch ← change add/);
  assert.equal(await alice.textContent('#error'), '');
  assert.equal(await bob.textContent('#error'), '');
  assert.deepEqual(errors, []);
});

test('the playground runs the very same client file as the package', async () => {
  const server = await startDev();
  try {
    const client = await (await fetch(`${server.api}/playground/wxauth.js`)).text();
    const lib = fs.readFileSync(path.join(__dirname, '..', 'index.js'), 'utf8');
    assert.equal(client, lib, 'the playground runs the very same client file');
  } finally {
    server.stop();
  }
});
