// Peer server for the wsloop benchmarks, built on uWebSockets (C++).
//
// Usage: peer-uws PORT [--compression off|shared|dedicated]   (ws://127.0.0.1:PORT)
//        peer-uws-tls PORT --tls-cert FILE --tls-key FILE     (wss://127.0.0.1:PORT)
//
//   /echo  every text/binary message is sent back unchanged (same opcode).
//   /chat  every text/binary message is sent to every client connected on
//          /chat, the sender included: each /chat socket subscribes to one
//          topic and the message is published with app.publish (uWS's
//          pub/sub, its fast path for fan-out; app.publish, unlike
//          ws->publish, does not skip the sender).
//
// One thread (uWS runs one event loop per thread; we start no others),
// compression off unless --compression says otherwise (below). Built by
// build.sh against a uWebSockets checkout outside this repository (UWS_DIR),
// twice: peer-uws with uSockets built without TLS
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
//                             --compression (the permessage-deflate scenarios,
//                             RFC 7692) selects one of uWS's two modes for
//                             both routes instead:
//     shared                  SHARED_COMPRESSOR | SHARED_DECOMPRESSOR: one
//                             deflate and one inflate stream per event loop,
//                             reset after every message, so the 101 answers
//                             server_no_context_takeover and
//                             client_no_context_takeover (RFC 7692 §7.1.1).
//     dedicated               DEDICATED_COMPRESSOR | DEDICATED_DECOMPRESSOR:
//                             a 15-bit deflate stream (256 KiB of zlib state)
//                             and a 32 KiB inflate window kept per socket,
//                             context takeover both ways (no parameters in
//                             the response).
//                             Either way every echo and every publish asks
//                             for compression (send/publish with
//                             compress = true); uWS then compresses each
//                             frame at zlib's default level (6, fixed in
//                             uWS) for each receiver: app.publish has no
//                             compress-once path (uWS's PreparedMessage is a
//                             separate API, not used here), so a broadcast
//                             compresses once per subscriber in both modes.
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
typename AppT::template WebSocketBehavior<UserData> behavior(uWS::CompressOptions compression) {
    typename AppT::template WebSocketBehavior<UserData> b;
    b.compression = compression;
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
int serve(AppT &app, int port, const char *scheme, uWS::CompressOptions compression) {
    // Without compression the sends stay exactly what they were (compress =
    // false); with it, uWS compresses only where the socket negotiated it.
    const bool compress = compression != uWS::DISABLED;
    auto echo = behavior<AppT, NoData>(compression);
    echo.message = [compress](auto *ws, std::string_view message, uWS::OpCode opCode) {
        // Inside the message handler uWS has the socket corked: the echoes
        // of one read go out in one write.
        ws->send(message, opCode, compress);
    };
    app.template ws<NoData>("/echo", std::move(echo));

    auto chat = behavior<AppT, NoData>(compression);
    chat.open = [](auto *ws) { ws->subscribe(CHAT_TOPIC); };
    chat.message = [&app, compress](auto * /*ws*/, std::string_view message, uWS::OpCode opCode) {
        // Small messages are queued once in the topic tree and written to
        // every subscriber (corked, one write each) at the end of the loop
        // iteration; messages of 16 KiB and more are sent at once.
        app.publish(CHAT_TOPIC, message, opCode, compress);
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
    std::fprintf(stderr, "peer-uws listening on %s://127.0.0.1:%d (compression %s)\n", scheme, port,
                 compression == uWS::DISABLED ? "off"
                 : (compression & uWS::_COMPRESSOR_MASK) == uWS::SHARED_COMPRESSOR ? "shared"
                                                                                   : "dedicated");
    app.run();
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    const char *usage =
        "usage: %s PORT [--compression off|shared|dedicated] [--tls-cert FILE --tls-key FILE]\n";
    int port = 9004;
    bool have_port = false;
    const char *cert = nullptr;
    const char *key = nullptr;
    uWS::CompressOptions compression = uWS::DISABLED;
    for (int i = 1; i < argc; i++) {
        std::string_view arg = argv[i];
        if ((arg == "--tls-cert" || arg == "--tls-key") && i + 1 < argc) {
            (arg == "--tls-cert" ? cert : key) = argv[++i];
        } else if (arg == "--compression" && i + 1 < argc) {
            std::string_view mode = argv[++i];
            if (mode == "off") {
                compression = uWS::DISABLED;
            } else if (mode == "shared") {
                compression = uWS::CompressOptions(uWS::SHARED_COMPRESSOR | uWS::SHARED_DECOMPRESSOR);
            } else if (mode == "dedicated") {
                compression = uWS::CompressOptions(uWS::DEDICATED_COMPRESSOR | uWS::DEDICATED_DECOMPRESSOR);
            } else {
                std::fprintf(stderr, usage, argv[0]);
                return 2;
            }
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
        return serve(app, port, "wss", compression);
#endif
    }

    uWS::App app;
    return serve(app, port, "ws", compression);
}
