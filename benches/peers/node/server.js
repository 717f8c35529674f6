'use strict';
// Peer server for the wsloop benchmarks, built on the `ws` package.
//
// Usage: node server.js PORT   (listens on 127.0.0.1:PORT)
//
//   /echo  every text/binary message is sent back unchanged.
//   /chat  every text/binary message is sent to every client connected on
//          /chat (the sender included).
//
// Node runs the JavaScript on one thread; compression is off
// (perMessageDeflate: false), as for every server in the comparison.

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 9003);

// One WebSocketServer per path, both without their own HTTP server so the
// upgrade can be routed by path below.
const opts = { noServer: true, perMessageDeflate: false, clientTracking: false };
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
  console.error(`peer-node-ws listening on 127.0.0.1:${port}`);
});

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
