// A tiny Node app on the built-in `http` module only: `npm install` has nothing to fetch.
'use strict';

const http = require('http');
const os = require('os');

const port = Number(process.env.PORT || 3000);
const started = Date.now();
let hits = 0;

const server = http.createServer((req, res) => {
  hits += 1;
  if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok' }) + '\n');
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html>
<title>node-app</title>
<h1>Hello from node-app</h1>
<p>Node ${process.version}, running as <code>${os.userInfo().username}</code>
(service <code>${process.env.MAESTRO_SERVICE || 'node-app'}</code>),
up ${Math.round((Date.now() - started) / 1000)} s, ${hits} request(s) served.</p>
`);
});

server.listen(port, '0.0.0.0', () => console.log(`node-app listening on :${port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
