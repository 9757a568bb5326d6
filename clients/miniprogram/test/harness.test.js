'use strict';

// The harness's documented way to name the binary must work: its variables
// are not passed to `wxauth dev`, which refuses unknown WXAUTH_* variables.
const test = require('node:test');
const assert = require('node:assert/strict');

const harness = require('../testing/harness.js');

test('WXAUTH_TEST_BIN (and the older WXAUTH_BIN) name the binary and do not reach the server', async () => {
  const bin = harness.binaryPath();
  const saved = { test: process.env.WXAUTH_TEST_BIN, old: process.env.WXAUTH_BIN };
  process.env.WXAUTH_TEST_BIN = bin;
  process.env.WXAUTH_BIN = bin;
  let server;
  try {
    server = await harness.startDev();
    const res = await fetch(`${server.api}/healthz`);
    assert.equal(res.status, 200);
  } finally {
    if (server) server.stop();
    for (const [name, value] of [['WXAUTH_TEST_BIN', saved.test], ['WXAUTH_BIN', saved.old]]) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});
