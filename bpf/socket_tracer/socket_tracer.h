/* Events that cross from the socket_tracer BPF program to user space, and the
 * enums both sides share. Included by socket_tracer.c (BCC) and, in a test, by
 * a gcc-built program that checks the Python mirrors in
 * tracedb/connectors/socket_tracer/events.py. */
#ifndef TRACEDB_SOCKET_TRACER_H
#define TRACEDB_SOCKET_TRACER_H

#include <linux/types.h>

enum traffic_direction { DIR_SEND = 1, DIR_RECV = 2 };
enum endpoint_role { ROLE_UNKNOWN = 0, ROLE_CLIENT = 1, ROLE_SERVER = 2 };
/* PROTO_UNKNOWN: not inferred yet; PROTO_NONE: inference gave up, payloads
 * of this connection are never copied. */
enum traffic_protocol {
    PROTO_UNKNOWN = 0, PROTO_HTTP = 1, PROTO_PGSQL = 2, PROTO_MYSQL = 3, PROTO_REDIS = 4, PROTO_DNS = 5,
    PROTO_NONE = 255,
};
enum transport { TRANSPORT_TCP = 1, TRANSPORT_UDP = 2 };
enum conn_event_kind { CONN_OPEN = 1, CONN_CLOSE = 2, CONN_PROTOCOL = 3 };
/* How a connection became known. */
enum conn_origin { ORIGIN_CONNECT = 1, ORIGIN_ACCEPT = 2, ORIGIN_ADOPTED = 3 };

/* Identity and addresses of a connection, as held in conn_info_map and sent
 * with every connection event. Ports in host byte order; addresses in network
 * byte order (4 bytes used for AF_INET). For a UDP socket the "connection" is
 * the socket; its remote is the connected peer, or zeros when unconnected
 * (each datagram then names its peer, see struct data_event). */
struct conn_id {
    __u64 conn_id;            /* unique per connection while the collector runs */
    __u64 start_boottime_ns;  /* owning process's start, for upid */
    __u32 tgid;
    __u32 fd;
    __u16 family;
    __u16 lport;
    __u16 rport;
    __u8 role;
    __u8 origin;
    __u8 laddr[16];
    __u8 raddr[16];
    __u8 transport;
    __u8 _pad[7];
};

struct conn_event {
    __u64 time_ns;            /* CLOCK_BOOTTIME */
    __u64 bytes_sent;         /* totals so far (at close: final) */
    __u64 bytes_recv;
    __u8 kind;
    __u8 protocol;
    __u8 _pad[6];
    struct conn_id id;
};

/* Header of a data event; `captured` payload bytes follow it in the ring. */
struct data_event {
    __u64 time_ns;            /* CLOCK_BOOTTIME at syscall exit */
    __u64 conn_id;
    __u64 pos;                /* stream offset of the first byte in this direction */
    __u32 size;               /* bytes the syscall moved */
    __u32 captured;           /* bytes that follow (<= size) */
    __u32 tgid;
    __u32 fd;
    __u8 direction;
    __u8 protocol;
    __u8 role;
    __u8 syscall;             /* which syscall moved them (enum in the C) */
    __u16 peer_family;        /* UDP: the datagram's peer (0 when not known) */
    __u16 peer_port;
    __u8 peer_addr[16];
    __u32 _pad[2];
};

#endif
