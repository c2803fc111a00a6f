/* SPDX-License-Identifier: MIT */
/*
 * interpose.c: two C library functions that cicada's executable defines for libmosquitto's
 * sake, because the library offers no option for either. Everywhere else, and whenever the
 * MQTT code has not asked for the difference, each is the plain system call.
 *
 * socketpair(2): libmosquitto 2.0 opens a socketpair in every mosquitto_new() for its threaded
 * loop, which the external loop does not use: two more descriptors per client (10,000 users
 * would need 30,000) and a write(2) to it for every packet queued. The library does without
 * when the call fails, so it fails while mqtt.c creates a client (mqtt_refuse_socketpair).
 *
 * read(2): libmosquitto reads a packet with one read(2) for its type byte, one per byte of its
 * length, one for its body, and one more to learn that nothing is left: four system calls for
 * a 4-byte PUBACK. While mqtt.c reads a client's packets (mqtt_read_begin/end), the reads of
 * that client's socket are served from one buffer that a single read(2) fills per readable
 * event, and "would block" is answered without a system call once the socket was drained (a
 * short read; epoll, level-triggered, reports any byte that comes later).
 *
 * Built without _FORTIFY_SOURCE, whose inline wrappers would clash with these definitions.
 */
#undef _FORTIFY_SOURCE
#include "proto/mqtt/mqtt.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Thread_local bool refuse;

void mqtt_refuse_socketpair(bool on)
{
    refuse = on;
}

int socketpair(int domain, int type, int protocol, int sv[2])
{
    if (refuse) {
        errno = EMFILE;
        return -1;
    }
    return (int)syscall(SYS_socketpair, domain, type, protocol, sv);
}

/* The socket whose reads are buffered (-1: none), and its buffer. */
static _Thread_local int buffered_fd = -1;
static _Thread_local struct mqtt_rbuf *rb;

void mqtt_read_begin(struct mqtt_rbuf *b, int fd)
{
    b->pos = b->len = 0;
    b->drained = false;
    b->fills = 0;
    rb = b;
    buffered_fd = fd;
}

void mqtt_read_end(void)
{
    buffered_fd = -1;
    rb = NULL;
}

/* A refill budget per readable event: a peer that keeps the socket full is read again on the
 * next loop turn, after the other connections. */
#define MAX_FILLS 4

static ssize_t buffered_read(void *buf, size_t count)
{
    struct mqtt_rbuf *b = rb;
    if (b->pos == b->len) {
        if (b->drained) {
            errno = EAGAIN;
            return -1;
        }
        ssize_t r = syscall(SYS_read, buffered_fd, b->data, b->cap);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) b->drained = true;
            return r;
        }
        b->pos = 0;
        b->len = (size_t)r;
        b->drained = (size_t)r < b->cap || ++b->fills >= MAX_FILLS;
    }
    size_t n = b->len - b->pos < count ? b->len - b->pos : count;
    memcpy(buf, b->data + b->pos, n);
    b->pos += n;
    return (ssize_t)n;
}

ssize_t read(int fd, void *buf, size_t count)
{
    if (CC_LIKELY(fd != buffered_fd || fd < 0)) return syscall(SYS_read, fd, buf, count);
    return buffered_read(buf, count);
}
