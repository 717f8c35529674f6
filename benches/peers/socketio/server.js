'use strict';
// Peer server for benches/cluster.rs: Socket.IO 4 over WebSocket only, rooms shared between
// processes by @socket.io/redis-adapter (PUBLISH per message, PSUBSCRIBE on every process).
//
// Usage: node server.js PORT REDIS_URL   (listens on 127.0.0.1:PORT)
//
//   emit("join", room)        joins the room
//   emit("msg", room, text)   io.to(room).emit("msg", text) on every process
//
// Compression off (perMessageDeflate: false), as for every server in the comparison.

const http = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

const port = Number(process.argv[2] || 9100);
const url = process.argv[3] || 'redis://127.0.0.1:6379';

(async () => {
  const pub = createClient({ url });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer();
  const io = new Server(server, {
    adapter: createAdapter(pub, sub),
    transports: ['websocket'],
    perMessageDeflate: false,
    serveClient: false,
  });
  io.on('connection', (socket) => {
    socket.on('join', (room) => socket.join(room));
    socket.on('msg', (room, text) => io.to(room).emit('msg', text));
  });
  server.listen(port, '127.0.0.1', () => console.log(`socket.io on ${port}`));
})();
