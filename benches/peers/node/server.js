'use strict';
// Peer server for the wsloop benchmarks, built on the `ws` package.
//
// Usage: node server.js PORT [off|deflate|deflate-fast] [--tls-cert FILE --tls-key FILE]
//   (listens on 127.0.0.1:PORT; with the two PEM files it serves wss:// through
//   Node's `https` module, i.e. Node's bundled OpenSSL, ALPN http/1.1 as wsloop
//   announces; everything else in TLS is Node's default)
//
//   /echo  every text/binary message is sent back unchanged.
//   /chat  every text/binary message is sent to every client connected on
//          /chat (the sender included).
//
// Node runs the JavaScript on one thread (zlib's work runs on libuv's thread
// pool, which the benchmark pins and measures with the process).
// Compression (permessage-deflate, RFC 7692):
//   off           perMessageDeflate: false (the default; as for every server
//                 in the uncompressed comparison)
//   deflate       perMessageDeflate: true, ws's own defaults: context takeover
//                 both ways, zlib level 6 (Z_DEFAULT_COMPRESSION), messages of
//                 1 KiB and more compressed
//   deflate-fast  no context takeover either way, zlib level 1, messages of
//                 128 bytes and more: wsloop's shared mode, configured in ws

const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer, WebSocket } = require('ws');

// Positional: PORT, compression; options: --tls-cert FILE, --tls-key FILE.
const positional = [];
const tlsFiles = {};
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  if (arg === '--tls-cert' || arg === '--tls-key') {
    if (i + 1 >= process.argv.length) {
      console.error(`${arg} needs a FILE`);
      process.exit(2);
    }
    tlsFiles[arg.slice(6)] = process.argv[++i];
  } else {
    positional.push(arg);
  }
}
if (Boolean(tlsFiles.cert) !== Boolean(tlsFiles.key)) {
  console.error('--tls-cert and --tls-key go together');
  process.exit(2);
}
const tls = Boolean(tlsFiles.cert);
const port = Number(positional[0] || 9003);
const compression = positional[1] || 'off';
const DEFLATE = {
  off: false,
  deflate: true,
  'deflate-fast': {
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
    zlibDeflateOptions: { level: 1 },
    threshold: 128,
  },
};
if (!(compression in DEFLATE)) {
  console.error(`unknown compression ${JSON.stringify(compression)}: off, deflate or deflate-fast`);
  process.exit(2);
}

// One WebSocketServer per path, both without their own HTTP server so the
// upgrade can be routed by path below.
const opts = { noServer: true, perMessageDeflate: DEFLATE[compression], clientTracking: false };
const echo = new WebSocketServer(opts);
const chat = new WebSocketServer(opts);
const chatClients = new Set();

echo.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});

chat.on('connection', (ws) => {
  chatClients.add(ws);
  ws.on('message', (data, isBinary) => {
    // ws frames per send(); the payload Buffer itself is shared, not copied.
    for (const client of chatClients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
  ws.on('close', () => chatClients.delete(ws));
  ws.on('error', () => {});
});

const notFound = (req, res) => {
  res.writeHead(404);
  res.end();
};
const server = tls
  ? https.createServer(
      {
        cert: fs.readFileSync(tlsFiles.cert),
        key: fs.readFileSync(tlsFiles.key),
        ALPNProtocols: ['http/1.1'],
      },
      notFound,
    )
  : http.createServer(notFound);

server.on('upgrade', (req, socket, head) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  const wss = path === '/echo' ? echo : path === '/chat' ? chat : null;
  if (!wss) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  socket.on('error', () => {});
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

// A large backlog: the idle scenario opens 10,000 connections quickly.
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  const scheme = tls ? 'wss' : 'ws';
  console.error(`peer-node-ws listening on ${scheme}://127.0.0.1:${port} (compression: ${compression})`);
});

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
