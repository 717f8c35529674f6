# 50 concurrent upgrades against examples/deferred_auth while /ping is timed on its own connections.
import socket, sys, threading, time
host, port = sys.argv[1].split(':'); port = int(port)
N = int(sys.argv[2]) if len(sys.argv) > 2 else 50
def upgrade(i, out):
    s = socket.create_connection((host, port)); s.settimeout(10)
    tok = f"valid-user{i}" if i % 5 else f"bad{i}"
    req = (f"GET /ws?token={tok} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    t = time.perf_counter(); s.sendall(req.encode()); buf = b""
    while b"\r\n\r\n" not in buf:
        c = s.recv(4096)
        if not c: break
        buf += c
    out[i] = (time.perf_counter() - t, buf[9:12].decode())
    s.close()
stop = False; pings = []
def pinger():
    while not stop:
        s = socket.create_connection((host, port)); s.settimeout(10)
        t = time.perf_counter(); s.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            c = s.recv(4096)
            if not c: break
            buf += c
        pings.append(time.perf_counter() - t); s.close(); time.sleep(0.002)
p = threading.Thread(target=pinger); p.start(); time.sleep(0.05)
out = {}; ts = [threading.Thread(target=upgrade, args=(i, out)) for i in range(N)]
t0 = time.perf_counter()
for t in ts: t.start()
for t in ts: t.join()
total = time.perf_counter() - t0
time.sleep(0.05); stop = True; p.join()
lat = sorted(v[0] for v in out.values()); st = {}
for v in out.values(): st[v[1]] = st.get(v[1], 0) + 1
print(f"{N} upgrades in {total*1000:.0f} ms; statuses {st}; decision latency min {lat[0]*1000:.0f} ms, median {lat[len(lat)//2]*1000:.0f} ms, max {lat[-1]*1000:.0f} ms")
ps = sorted(pings)
print(f"/ping x{len(ps)} during the run: median {ps[len(ps)//2]*1000:.2f} ms, worst {ps[-1]*1000:.2f} ms")
