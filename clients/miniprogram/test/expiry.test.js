'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');

const { startDev, newClient } = require('../testing/harness.js');

let server;
test.before(async () => {
  // Access tokens live one second on this server.
  server = await startDev({ WXAUTH_TOKENS__ACCESS_TTL_SECS: '1' });
});
test.after(() => server && server.stop());

test('a request after the access token expired refreshes once and succeeds', async () => {
  const { client, shim } = newClient(server, 'alice');
  await client.login();
  await new Promise((r) => setTimeout(r, 1300));
  const results = await Promise.all([client.me(), client.me(), client.me()]);
  assert.equal(new Set(results.map((r) => r.id)).size, 1);
  assert.equal(shim.counts.byPath['POST /v1/token/refresh'], 1, 'concurrent calls share one refresh');
  assert.equal(shim.counts.login, 1, 'no new login was needed');
});
