// Peer server for the wsloop benchmarks, built on uWebSockets (C++).
//
// Usage: peer-uws PORT   (listens on 127.0.0.1:PORT)
//
//   /echo  every text/binary message is sent back unchanged (same opcode).
//   /chat  every text/binary message is sent to every client connected on
//          /chat, the sender included: each /chat socket subscribes to one
//          topic and the message is published with app.publish (uWS's
//          pub/sub, its fast path for fan-out; app.publish, unlike
//          ws->publish, does not skip the sender).
//
// One thread (uWS runs one event loop per thread; we start no others), no
// TLS (uSockets built with LIBUS_NO_SSL), compression off. Built by
// build.sh against a uWebSockets checkout outside this repository (UWS_DIR).
//
// Settings, and why (uWS's defaults differ from the other peers'):
//   maxPayloadLength 64 MiB   uWS default is 16 KiB; wsloop, tungstenite and
//                             fastwebsockets take 64 MiB messages.
//   maxBackpressure 16 MiB    uWS default is 64 KiB, and by default a send
//     + closeOnBackpressureLimit  over it is silently DROPPED (the message is
//                             lost, the connection stays). The other peers
//                             never lose a message: the Rust/Node peers queue
//                             without bound, wsloop closes a subscriber whose
//                             queue is past 16 MiB (max_outbound). So: the same
//                             16 MiB cap, and closeOnBackpressureLimit, so a
//                             socket over it is closed (uWS shuts its read
//                             side, then closes) instead of going on with a
//                             gap. Unlike wsloop (which stops reading at its
//                             1 MiB high-water mark) uWS never pauses reading
//                             on its own. No scenario comes near either
//                             limit (at most 4 x 64 KiB in flight per
//                             connection).
//   idleTimeout 0             uWS default is 120 s plus automatic pings; the
//     sendPingsAutomatically  Rust/Node peers have no idle timeout, so off
//       false                 (with idleTimeout 0 the ping setting must be off
//                             too: uWS computes idleTimeout - 4 s, which for 0
//                             wraps around to a real timeout of minutes).
//   compression DISABLED      also uWS's default; stated so it stays off: the
//                             101 carries no Sec-WebSocket-Extensions.
//   TCP_NODELAY               uSockets sets it on every accepted socket.

#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

// Per-socket user data: nothing (the topic subscription lives in uWS).
struct NoData {};

constexpr std::string_view CHAT_TOPIC = "chat";

template <typename UserData>
uWS::App::WebSocketBehavior<UserData> behavior() {
    uWS::App::WebSocketBehavior<UserData> b;
    b.compression = uWS::DISABLED;
    b.maxPayloadLength = 64 * 1024 * 1024;
    b.idleTimeout = 0;
    b.maxBackpressure = 16 * 1024 * 1024;
    b.closeOnBackpressureLimit = true;
    b.resetIdleTimeoutOnSend = false;
    b.sendPingsAutomatically = false;
    b.maxLifetime = 0;
    return b;
}

} // namespace

int main(int argc, char **argv) {
    int port = 9004;
    if (argc > 1) {
        char *end = nullptr;
        long p = std::strtol(argv[1], &end, 10);
        if (!*argv[1] || *end || p <= 0 || p > 65535) {
            std::fprintf(stderr, "usage: %s PORT\n", argv[0]);
            return 2;
        }
        port = (int) p;
    }

    uWS::App app;

    auto echo = behavior<NoData>();
    echo.message = [](auto *ws, std::string_view message, uWS::OpCode opCode) {
        // Inside the message handler uWS has the socket corked: the echoes
        // of one read go out in one write.
        ws->send(message, opCode, false);
    };
    app.ws<NoData>("/echo", std::move(echo));

    auto chat = behavior<NoData>();
    chat.open = [](auto *ws) { ws->subscribe(CHAT_TOPIC); };
    chat.message = [&app](auto * /*ws*/, std::string_view message, uWS::OpCode opCode) {
        // Small messages are queued once in the topic tree and written to
        // every subscriber (corked, one write each) at the end of the loop
        // iteration; messages of 16 KiB and more are sent at once.
        app.publish(CHAT_TOPIC, message, opCode, false);
    };
    // Unsubscribing on close is automatic.
    app.ws<NoData>("/chat", std::move(chat));

    // Any other path: uWS's default 404 (registered by the App constructor).

    bool listening = false;
    app.listen("127.0.0.1", port, [&](us_listen_socket_t *listen_socket) {
        listening = listen_socket != nullptr;
    });
    if (!listening) {
        std::fprintf(stderr, "peer-uws: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    std::fprintf(stderr, "peer-uws listening on 127.0.0.1:%d\n", port);
    app.run();
    return 0;
}
