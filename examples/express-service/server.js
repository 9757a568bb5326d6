// A mini program's own business service (orders, scores, …) that trusts
// wxauth for the caller's identity. Two ways, pick one:
//
// 1. Behind wxauth's gateway: wxauth checks the token and sets
//    X-Wxauth-Openid / X-Wxauth-User-Id (a client cannot: wxauth removes any
//    it sends). The tutorial handler's one-line change:
//        const openid = req.body.openid;            // before: anyone can claim any openid
//        const openid = req.get('x-wxauth-openid');  // after
//
// 2. Called directly with the wxauth access token: verify it with wxauth's
//    public keys (JWKS); no shared secret.
'use strict';

const express = require('express');
const { createRemoteJWKSet, jwtVerify } = require('jose');

function createApp({ wxauthURL, issuer = 'wxauth' } = {}) {
  const app = express();
  app.use(express.json());
  const store = [];

  // (1) behind the gateway.
  app.post('/api/data', (req, res) => {
    const openid = req.get('x-wxauth-openid');
    if (!openid) return res.status(401).json({ error: 'not signed in' });
    const item = { openid, data: req.body, at: new Date().toISOString() };
    store.push(item);
    res.status(201).json(item);
  });
  app.get('/api/whoami', (req, res) => {
    res.json({
      user_id: req.get('x-wxauth-user-id') || null,
      openid: req.get('x-wxauth-openid') || null,
      unionid: req.get('x-wxauth-unionid') || null,
      appid: req.get('x-wxauth-appid') || null,
      authorization: req.get('authorization') || null,
    });
  });

  // (2) verifying the access token itself, with the JWKS only.
  if (wxauthURL) {
    const jwks = createRemoteJWKSet(new URL('/.well-known/jwks.json', wxauthURL));
    app.get('/direct/whoami', async (req, res) => {
      const token = (req.get('authorization') || '').replace(/^Bearer /, '');
      try {
        const { payload } = await jwtVerify(token, jwks, { issuer, algorithms: ['EdDSA'] });
        res.json({ user_id: payload.sub, appid: payload.app, session_id: payload.sid });
      } catch (e) {
        res.status(401).json({ error: 'invalid token', reason: e.code || String(e) });
      }
    });
  }
  return app;
}

if (require.main === module) {
  const port = Number(process.env.PORT || 3000);
  createApp({ wxauthURL: process.env.WXAUTH_URL }).listen(port, '127.0.0.1', () => {
    console.log(`example service on http://127.0.0.1:${port}`);
  });
}

module.exports = { createApp };
