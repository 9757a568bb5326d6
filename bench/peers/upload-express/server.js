// The usual tutorial upload backend, as a benchmark peer (do not deploy
// this): express + multer writing each file to a folder, no session (the
// tutorial trusts whoever calls), no type check, the file served back by
// express.static. What wxauth's uploads are measured against.
//
//   UPLOADS=/tmp/uploads PORT=3002 node server.js
'use strict';

const express = require('express');
const multer = require('multer');

const dir = process.env.UPLOADS || 'uploads';
const upload = multer({ dest: dir, limits: { fileSize: 10 * 1024 * 1024 } });
const app = express();

app.post('/upload', upload.single('file'), (req, res) => {
  if (!req.file) return res.status(400).json({ error: 'no file' });
  res.status(201).json({ url: '/uploads/' + req.file.filename, size: req.file.size, purpose: req.body.purpose });
});
app.use('/uploads', express.static(dir));

const port = Number(process.env.PORT || 3002);
app.listen(port, '127.0.0.1', () => console.log(`upload peer on http://127.0.0.1:${port}`));
