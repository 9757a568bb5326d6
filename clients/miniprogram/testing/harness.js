// Starts a real `wxauth dev` (API + in-process WeChat simulator) on free
// ports for the tests, and gives each test a client wired to it.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const { createClient } = require('../index.js');
const { createWxShim } = require('../shim/wx-shim.js');

const APP1 = 'wx1111111111111111';
const repoRoot = path.resolve(__dirname, '..', '..', '..');

// The harness's own settings live outside the server's `WXAUTH_*`
// configuration namespace: `wxauth` refuses unknown WXAUTH_ variables (to
// catch typos), but ignores WXAUTH_TEST_*. WXAUTH_BIN is still read as an
// older spelling and is never passed on to the server.
const HARNESS_VARS = ['WXAUTH_TEST_BIN', 'WXAUTH_BIN'];

/** The wxauth binary: $WXAUTH_TEST_BIN, else target/debug/wxauth. */
function binaryPath() {
  const given = process.env.WXAUTH_TEST_BIN || process.env.WXAUTH_BIN;
  if (given) return given;
  const target = process.env.CARGO_TARGET_DIR || path.join(repoRoot, 'target');
  return path.join(target, 'debug', 'wxauth');
}

/** The server's environment: ours, minus the harness's own variables. */
function serverEnv(extra) {
  const env = Object.assign({}, process.env, { WXAUTH_LOG: 'warn' }, extra || {});
  for (const name of HARNESS_VARS) delete env[name];
  return env;
}

/** Starts `wxauth dev` (with `args` added, e.g. ['--config', file]);
 * resolves with { api, sim, stop(), output() }. */
async function startDev(env, args) {
  const bin = binaryPath();
  if (!fs.existsSync(bin)) {
    throw new Error(`no wxauth binary at ${bin}: run \`cargo build -p wxauth\` first (or set WXAUTH_TEST_BIN)`);
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxauth-js-'));
  const child = spawn(bin, ['dev', '--listen', '127.0.0.1:0', '--sim-listen', '127.0.0.1:0', '--data-dir', dataDir, ...(args || [])], {
    env: serverEnv(env),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const printed = [];
  const urls = await new Promise((resolve, reject) => {
    const found = {};
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => printed.push(line));
    const timer = setTimeout(() => reject(new Error('wxauth dev did not start in 20 s')), 20000);
    child.on('exit', (code) => reject(new Error(`wxauth dev exited with ${code}`)));
    lines.on('line', (line) => {
      const m = line.match(/^\s+(API|simulator)\s+(http:\/\/\S+)/);
      if (m) found[m[1]] = m[2];
      if (found.API && found.simulator) {
        clearTimeout(timer);
        resolve({ api: found.API, sim: found.simulator });
      }
    });
  });
  return {
    api: urls.api,
    sim: urls.sim,
    stop() {
      child.kill('SIGTERM');
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
    output() {
      return printed.join('\n');
    },
  };
}

/** A fresh client for a fresh phone (empty storage) of `user`. */
function newClient(server, user, extra) {
  // Node 20 has no WebSocket of its own: `ws`, the one most Node code uses.
  const shim = createWxShim({ simURL: server.sim, appid: APP1, user, WebSocket: require('ws') });
  const client = createClient(Object.assign({ baseURL: server.api, wx: shim.wx }, extra || {}));
  return { client, shim };
}

/** GET of a picture's stable URL once WeChat's check (the simulator's,
 * pushed back within a second) let it through: `wxauth dev` checks avatars
 * and images, and until then only the owner's signed URL opens it. */
async function fetchWhenChecked(url) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const res = await fetch(url);
    if (res.status !== 404 || Date.now() > deadline) return res;
    await new Promise((r) => setTimeout(r, 50));
  }
}

module.exports = { startDev, newClient, binaryPath, fetchWhenChecked, APP1 };
