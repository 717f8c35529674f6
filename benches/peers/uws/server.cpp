// Peer server for the wsloop benchmarks, built on uWebSockets (C++).
//
// Usage: peer-uws PORT                                  (ws://127.0.0.1:PORT)
//        peer-uws-tls PORT --tls-cert FILE --tls-key FILE (wss://127.0.0.1:PORT)
//
//   /echo  every text/binary message is sent back unchanged (same opcode).
//   /chat  every text/binary message is sent to every client connected on
//          /chat, the sender included: each /chat socket subscribes to one
//          topic and the message is published with app.publish (uWS's
//          pub/sub, its fast path for fan-out; app.publish, unlike
//          ws->publish, does not skip the sender).
//
// One thread (uWS runs one event loop per thread; we start no others),
// compression off. Built by build.sh against a uWebSockets checkout outside
// this repository (UWS_DIR), twice: peer-uws with uSockets built without TLS
// (LIBUS_NO_SSL), what the plain scenarios measure, and peer-uws-tls with
// uSockets' OpenSSL layer (LIBUS_USE_OPENSSL, the system's libssl), which
// serves uWS::SSLApp when given the two PEM files. TLS settings are uSockets'
// own: TLS 1.2 and 1.3, OpenSSL's default cipher suites and session tickets,
// read-ahead on, ssl_prefer_low_memory_usage off (its default: OpenSSL keeps
// its buffers per connection), no ALPN (SSLApp has no option for it).
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

template <typename AppT, typename UserData>
typename AppT::template WebSocketBehavior<UserData> behavior() {
    typename AppT::template WebSocketBehavior<UserData> b;
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

// Registers /echo and /chat on `app` (uWS::App or uWS::SSLApp), listens and
// runs the loop until the process is stopped.
template <typename AppT>
int serve(AppT &app, int port, const char *scheme) {
    auto echo = behavior<AppT, NoData>();
    echo.message = [](auto *ws, std::string_view message, uWS::OpCode opCode) {
        // Inside the message handler uWS has the socket corked: the echoes
        // of one read go out in one write.
        ws->send(message, opCode, false);
    };
    app.template ws<NoData>("/echo", std::move(echo));

    auto chat = behavior<AppT, NoData>();
    chat.open = [](auto *ws) { ws->subscribe(CHAT_TOPIC); };
    chat.message = [&app](auto * /*ws*/, std::string_view message, uWS::OpCode opCode) {
        // Small messages are queued once in the topic tree and written to
        // every subscriber (corked, one write each) at the end of the loop
        // iteration; messages of 16 KiB and more are sent at once.
        app.publish(CHAT_TOPIC, message, opCode, false);
    };
    // Unsubscribing on close is automatic.
    app.template ws<NoData>("/chat", std::move(chat));

    // Any other path: uWS's default 404 (registered by the App constructor).

    bool listening = false;
    app.listen("127.0.0.1", port, [&](us_listen_socket_t *listen_socket) {
        listening = listen_socket != nullptr;
    });
    if (!listening) {
        std::fprintf(stderr, "peer-uws: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    std::fprintf(stderr, "peer-uws listening on %s://127.0.0.1:%d\n", scheme, port);
    app.run();
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    const char *usage = "usage: %s PORT [--tls-cert FILE --tls-key FILE]\n";
    int port = 9004;
    bool have_port = false;
    const char *cert = nullptr;
    const char *key = nullptr;
    for (int i = 1; i < argc; i++) {
        std::string_view arg = argv[i];
        if ((arg == "--tls-cert" || arg == "--tls-key") && i + 1 < argc) {
            (arg == "--tls-cert" ? cert : key) = argv[++i];
        } else if (!have_port) {
            char *end = nullptr;
            long p = std::strtol(argv[i], &end, 10);
            if (!*argv[i] || *end || p <= 0 || p > 65535) {
                std::fprintf(stderr, usage, argv[0]);
                return 2;
            }
            port = (int) p;
            have_port = true;
        } else {
            std::fprintf(stderr, usage, argv[0]);
            return 2;
        }
    }
    if (!cert != !key) {
        std::fprintf(stderr, "%s: --tls-cert and --tls-key go together\n", argv[0]);
        return 2;
    }

    if (cert) {
#ifdef LIBUS_NO_SSL
        std::fprintf(stderr, "%s: built without TLS (uSockets with LIBUS_NO_SSL); "
                             "wss:// is served by peer-uws-tls\n", argv[0]);
        return 2;
#else
        uWS::SocketContextOptions options;
        options.cert_file_name = cert;
        options.key_file_name = key;
        uWS::SSLApp app(options);
        if (app.constructorFailed()) {
            std::fprintf(stderr, "%s: OpenSSL refused %s / %s\n", argv[0], cert, key);
            return 1;
        }
        return serve(app, port, "wss");
#endif
    }

    uWS::App app;
    return serve(app, port, "ws");
}
