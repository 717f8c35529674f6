'use strict';
// Peer server for the wsloop benchmarks, built on the `ws` package.
//
// Usage: node server.js PORT [off|deflate|deflate-fast]   (listens on 127.0.0.1:PORT)
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

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 9003);
const compression = process.argv[3] || 'off';
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

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});

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
  console.error(`peer-node-ws listening on 127.0.0.1:${port} (compression: ${compression})`);
});

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
