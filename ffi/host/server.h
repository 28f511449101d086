/* The server of a PROMPT (or MIX) engine with llm.listenIpInfo: DECODERs connect
 * to it to link, look caches up and pin them while they pull.
 *
 * Threads: one listener, and one thread per connection (a DECODER's link), all
 * started by core_thread_start (every signal blocked). A connection's requests are handled in order. Its
 * pins are dropped when it closes for any reason — DONE, UNLINK, the DECODER
 * closing or dying, a malformed message, finalize — and the connection is always
 * shut down first, so a DECODER still copying sees it gone (and reports
 * LINK_FAILED) before the memory it copies can be reused. */
#ifndef LLMDD_HOST_SERVER_H
#define LLMDD_HOST_SERVER_H

#include <netinet/in.h>
#include <stdint.h>

struct engine;
struct server;

/* Listens on addr and starts the listener. Returns SUCCESS with the server and
 * the port it listens on, or FAILED with a message. */
int32_t host_server_start(struct engine *e, const struct sockaddr_in *addr, struct server **out,
                     uint16_t *out_port);

/* Stops listening, shuts every connection down, waits for their threads (which
 * drop their pins under the engine lock: it must not be held) and frees s. */
void host_server_stop(struct server *s);

#endif
