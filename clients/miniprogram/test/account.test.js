'use strict';

// The user's own rights against a real `wxauth dev`: export everything,
// then delete the account.

const test = require('node:test');
const assert = require('node:assert/strict');

const { startDev, newClient } = require('../testing/harness.js');

let server;
test.before(async () => {
  server = await startDev();
});
test.after(() => server && server.stop());

test('exportMyData holds every document; deleteAccount ends the account', async () => {
  const { client } = newClient(server, 'acct-zoe');
  const first = await client.login();
  await client.updateProfile({ nickname: 'Zoe' });
  const notes = client.data('notes');
  const a = await notes.add({ text: 'one' });
  const b = await notes.add({ text: 'two' });
  await client.data('todos').add({ title: 'x' });

  const exported = await client.exportMyData();
  assert.equal(exported.format, 'wxauth-export/1');
  assert.equal(exported.user.id, first.user.id);
  assert.equal(exported.user.profile.nickname, 'Zoe');
  assert.equal(exported.document_count, 3);
  assert.deepEqual(exported.documents.notes.map((d) => d.id).sort(), [a.id, b.id].sort());
  assert.equal(exported.sessions.length, 1);
  assert.ok(!JSON.stringify(exported).includes(first.access_token));

  await client.deleteAccount();
  assert.equal(client.isLoggedIn(), false, 'tokens forgotten');
  // The next call logs in again: the same WeChat user is a new user now.
  const again = await client.login();
  assert.equal(again.new_user, true);
  assert.notEqual(again.user.id, first.user.id);
  assert.equal((await client.exportMyData()).document_count, 0);
});
