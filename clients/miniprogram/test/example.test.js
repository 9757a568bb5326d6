'use strict';

// Runs the example mini program's own code (app.js and its page) in Node,
// with App/Page/getApp stand-ins and the wx shim, against a real wxauth dev.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { startDev, newClient, fetchWhenChecked, APP1 } = require('../testing/harness.js');
const { createWxShim } = require('../shim/wx-shim.js');

const example = path.join(__dirname, '..', 'example');

test('the example carries the same client as the package', () => {
  const lib = fs.readFileSync(path.join(__dirname, '..', 'index.js'));
  const copy = fs.readFileSync(path.join(example, 'utils', 'wxauth.js'));
  assert.ok(lib.equals(copy), 'example/utils/wxauth.js differs from index.js: run `npm run sync-example`');
});

test('the example logs in, shows the user, saves and lists a note, binds a phone', async (t) => {
  const server = await startDev();
  t.after(() => server.stop());
  const shim = createWxShim({ simURL: server.sim, appid: APP1, user: 'alice', WebSocket: require('ws') });

  let appInstance;
  let pageDef;
  global.wx = shim.wx;
  global.App = (def) => {
    appInstance = def;
  };
  global.Page = (def) => {
    pageDef = def;
  };
  global.getApp = () => appInstance;
  require(path.join(example, 'config.js')).baseURL = server.api;
  require(path.join(example, 'app.js'));
  appInstance.onLaunch();
  require(path.join(example, 'pages', 'index', 'index.js'));

  // A page instance: the definition's methods with `data` and setData.
  const page = Object.assign({}, pageDef, { data: JSON.parse(JSON.stringify(pageDef.data)) });
  page.setData = function (patch) {
    Object.assign(this.data, patch);
  };

  await page.onLoad();
  assert.equal(page.data.error, '');
  const expected = await (await fetch(`${server.sim}/sim/v1/users/${APP1}/alice`)).json();
  assert.equal(page.data.user.openid, expected.openid);
  assert.equal(page.data.notes.length, 0);

  await page.saveNote();
  assert.equal(page.data.error, '');
  assert.equal(page.data.notes.length, 1);
  assert.deepEqual(page.data.notes[0].data, { name: '张三', age: '20' });

  await page.onGetPhoneNumber(await shim.phoneNumberEvent('13900001111'));
  assert.equal(page.data.phone.phone_number, '13900001111');

  // The avatar button: chooseAvatar's temporary file goes up, the profile keeps its URL.
  const avatar = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), Buffer.alloc(200, 3)]);
  await page.onChooseAvatar(shim.chooseAvatarEvent(avatar));
  assert.equal(page.data.error, '');
  assert.ok(page.data.avatarUrl.startsWith(server.api + '/v1/files/'), page.data.avatarUrl);
  const shown = await fetchWhenChecked(page.data.avatarUrl);
  assert.equal(shown.status, 200);
  assert.deepEqual(Buffer.from(await shown.arrayBuffer()), avatar);

  await page.onGetPhoneNumber({ detail: { errMsg: 'getPhoneNumber:fail user deny' } });
  assert.match(page.data.error, /no_phone_code/);
  page.setData({ error: '' });
  assert.equal(shim.counts.login, 1);

  // The live board: another user's post and the page's own appear by themselves.
  const waitFor = async (what, ok) => {
    for (let i = 0; i < 250 && !ok(); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(ok(), what + ': ' + JSON.stringify(page.data.board));
  };
  await waitFor('the board is watched', () => shim.counts.socket === 1);
  const bob = newClient(server, 'bob');
  await bob.client.login();
  await bob.client.data('board').add({ by: 'bob', text: 'hi alice' });
  await waitFor("bob's post arrives", () => page.data.board.length === 1);
  await page.postToBoard();
  await waitFor('her own post arrives', () => page.data.board.length === 2);
  assert.deepEqual(
    page.data.board.map((d) => `${d.data.by}: ${d.data.text}`),
    ['bob: hi alice', `${expected.openid.slice(-6)}: 你好`]
  );
  assert.equal(page.data.error, '');
  page.onUnload();
});
