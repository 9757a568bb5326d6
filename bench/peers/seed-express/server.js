// The usual tutorial backend, as a benchmark peer (do not deploy this):
// POST /login exchanges the code with WeChat and hands openid AND
// session_key to the client; POST /api/data trusts the openid the client
// sends and keeps the data in memory. It is what wxauth is measured against.
//
//   WECHAT=http://127.0.0.1:8081 APPID=wx… SECRET=… PORT=3001 node server.js
'use strict';

const express = require('express');
const request = require('request');

const app = express();
app.use(express.json());
const { WECHAT, APPID, SECRET } = process.env;
const data = new Map();

app.post('/login', (req, res) => {
  const url = `${WECHAT}/sns/jscode2session?appid=${APPID}&secret=${SECRET}&js_code=${encodeURIComponent(req.body.code)}&grant_type=authorization_code`;
  request.get({ url, json: true }, (err, resp, body) => {
    if (err) return res.status(502).json({ error: String(err) });
    if (typeof body === 'string') body = JSON.parse(body);
    if (body.errcode) return res.status(400).json(body);
    res.json({ openid: body.openid, session_key: body.session_key });
  });
});

app.post('/api/data', (req, res) => {
  const { openid } = req.body;
  const list = data.get(openid) || [];
  const item = Object.assign({ id: list.length + 1 }, req.body);
  list.push(item);
  data.set(openid, list);
  res.status(201).json(item);
});

const port = Number(process.env.PORT || 3001);
app.listen(port, '127.0.0.1', () => console.log(`seed peer on http://127.0.0.1:${port}`));
