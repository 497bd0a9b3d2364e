/* Protocol inference: recognising a protocol from the first bytes of a
 * connection. Plain C over a byte array, included by socket_tracer.c (BPF)
 * and by tests/unit/test_inference.py's gcc-built harness, which runs these
 * exact rules over a corpus of protocol messages and random bytes. */
#ifndef TRACEDB_INFERENCE_H
#define TRACEDB_INFERENCE_H

#include "socket_tracer.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define INFER_HEAD 16 /* bytes enough to recognise every protocol's first message */

/* Each rule looks at the first bytes of one syscall's data (at most
 * INFER_HEAD), the number of bytes the syscall moved, and the transport, and
 * says whether they are the first message of a protocol, and whether that
 * message is a request (its sender is then the client). Rules that can check
 * a length field against the syscall size do so: it keeps random bytes from
 * matching. */

static __always_inline int starts_with(const __u8 *buf, const char *word, int len)
{
    for (int i = 0; i < len; i++)
        if (buf[i] != word[i])
            return 0;
    return 1;
}

static __always_inline __u32 be16(const __u8 *b) { return (b[0] << 8) | b[1]; }
static __always_inline __u32 be32(const __u8 *b) { return ((__u32)b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]; }
static __always_inline int is_digit(__u8 c) { return c >= '0' && c <= '9'; }
static __always_inline int is_letter(__u8 c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static __always_inline int is_text(__u8 c) { return (c >= 0x20 && c < 0x7f) || c == '\t' || c == '\n' || c == '\r'; }

static __always_inline int http_request(const __u8 *b)
{
    return starts_with(b, "GET ", 4) || starts_with(b, "POST ", 5) || starts_with(b, "PUT ", 4) ||
           starts_with(b, "HEAD ", 5) || starts_with(b, "DELETE ", 7) || starts_with(b, "PATCH ", 6) ||
           starts_with(b, "OPTIONS ", 8) || starts_with(b, "CONNECT ", 8) || starts_with(b, "TRACE ", 6);
}

static __always_inline int http_response(const __u8 *b)
{
    return starts_with(b, "HTTP/1.", 7) && (b[7] == '0' || b[7] == '1') && b[8] == ' ';
}

/* Startup (protocol 3.0), SSLRequest or GSSENCRequest, alone in the syscall;
 * or a simple Query message alone in the syscall. */
static __always_inline int pgsql_request(const __u8 *b, __u32 size)
{
    if (be32(b) == size && size >= 8) {
        __u32 code = be32(b + 4);
        if (code == 196608 || (size == 8 && (code == 80877103 || code == 80877104)))
            return 1;
    }
    return b[0] == 'Q' && be32(b + 1) + 1 == size && size > 6 && is_letter(b[5]);
}

static __always_inline __u32 mysql_packet_len(const __u8 *b) { return b[0] | (b[1] << 8) | (b[2] << 16); }

/* The server greeting (protocol 10, a version string) as the first packet. */
static __always_inline int mysql_greeting(const __u8 *b, __u32 size)
{
    return mysql_packet_len(b) + 4 == size && b[3] == 0 && b[4] == 10 && is_digit(b[5]);
}

/* COM_QUERY (0x03) or COM_STMT_PREPARE (0x16) with text, as a whole packet
 * of sequence 0: a client's command when its handshake was not recognised. */
static __always_inline int mysql_query(const __u8 *b, __u32 size)
{
    return mysql_packet_len(b) + 4 == size && b[3] == 0 && (b[4] == 0x03 || b[4] == 0x16) && is_text(b[5]);
}

/* A RESP array of bulk strings whose first is a command name:
 * "*<n>\r\n$<len>\r\n<letter>" with one- or two-digit n and len. */
static __always_inline int redis_request(const __u8 *b)
{
    if (b[0] != '*' || b[1] < '1' || b[1] > '9')
        return 0;
    int i = is_digit(b[2]) ? 3 : 2;
    if (b[i] != '\r' || b[i + 1] != '\n' || b[i + 2] != '$' || b[i + 3] < '1' || b[i + 3] > '9')
        return 0;
    int j = is_digit(b[i + 4]) ? i + 5 : i + 4;
    return b[j] == '\r' && b[j + 1] == '\n' && is_letter(b[j + 2]);
}

/* A standard query with one question and no answers (EDNS may add one
 * additional record); b is the DNS header. */
static __always_inline int dns_query(const __u8 *b, __u32 size)
{
    __u32 flags = be16(b + 2);
    return size >= 17 && (flags & 0xF840) == 0 && be16(b + 4) == 1 && be16(b + 6) == 0 && be16(b + 8) == 0 &&
           be16(b + 10) <= 1;
}

/* The protocol whose first message b (len head bytes of a syscall that moved
 * size bytes) is, or PROTO_UNKNOWN; *request tells the message's side. */
static __always_inline __u8 infer(const __u8 *b, __u32 len, __u32 size, __u8 transport, int *request)
{
    if (len < INFER_HEAD && len < size)
        return PROTO_UNKNOWN;
    if (len < 8) /* the shortest first message: PostgreSQL's SSLRequest */
        return PROTO_UNKNOWN;
    *request = 1;
    if (transport == TRANSPORT_UDP)
        return dns_query(b, size) ? PROTO_DNS : PROTO_UNKNOWN;
    if (http_request(b))
        return PROTO_HTTP;
    if (pgsql_request(b, size))
        return PROTO_PGSQL;
    if (mysql_query(b, size))
        return PROTO_MYSQL;
    if (redis_request(b))
        return PROTO_REDIS;
    /* DNS over TCP: with its length prefix, or without when the reader took
     * the 2-byte length in a syscall of its own (dnsmasq does). */
    if ((be16(b) + 2 == size && dns_query(b + 2, size - 2)) || dns_query(b, size))
        return PROTO_DNS;
    *request = 0;
    if (http_response(b))
        return PROTO_HTTP;
    if (mysql_greeting(b, size))
        return PROTO_MYSQL;
    return PROTO_UNKNOWN;
}

#endif
