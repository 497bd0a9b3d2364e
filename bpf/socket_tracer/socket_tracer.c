/* socket_tracer: TCP connections of every process, their byte counts, and the
 * payloads of connections whose protocol was recognised, from the exits of
 * syscall tracepoints only (no kprobes, no entry programs).
 *
 * A connection is known from the exit of connect() (client) or accept() /
 * accept4() (server), or adopted when a process first reads or writes an fd
 * that turns out to be an inet stream socket (connections older than the
 * collector). Its addresses are read from the kernel's struct sock reached
 * through the fd table, so servers accepting with a NULL address are covered.
 * A connection is (tgid, fd) plus a unique conn_id: an fd reused after close
 * is a new connection.
 *
 * Payload bytes leave the kernel only for connections whose protocol was
 * inferred from their first bytes; the others are counted, never copied.
 *
 * Defines given by the loader (tracedb/connectors/socket_tracer/connector.py):
 *   *_OFF            byte offsets of kernel struct members, from the running
 *                    kernel's BTF (the compile-time headers may not match)
 *   SELF_TGID        tracedb's own process: never traced
 *   MAX_CAPTURE      payload bytes copied per syscall (<= CAPTURE_MASK + 1)
 *   DATA_RING_PAGES, CONN_RING_PAGES  ring buffer sizes (powers of two)
 *   MAX_CPUS         possible CPUs (size of the scratch array)
 *   FILTER_PIDS      only trace tgids present in the target_pids map
 *   FILTER_PORTS     only trace connections with a port in target_ports
 */
#include <uapi/linux/ptrace.h>
#include "common/kernel.h"
#include "socket_tracer.h"
#include "inference.h"

#define CAPTURE_MASK 32767 /* power of two minus one, >= MAX_CAPTURE - 1 */
#define MAX_IOV 16
#define MAX_MMSG 2           /* messages of sendmmsg/recvmmsg captured (the verifier bounds it) */
#define MAX_MMSG_COUNTED 64  /* messages whose bytes are counted (UIO_MAXIOV is 1024) */
/* Syscalls looked at before giving up: clients that read a length prefix on
 * its own (MySQL drivers, the PostgreSQL server) show a first message only
 * after their handshake. */
#define INFER_ATTEMPTS 8
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* The data syscalls, each followed by its exit alone (see "a syscall's
 * arguments" below); sent with each data event. */
enum syscall_kind {
    SYS_READ = 1, SYS_WRITE, SYS_READV, SYS_WRITEV, SYS_RECVFROM, SYS_SENDTO,
    SYS_RECVMSG, SYS_SENDMSG, SYS_RECVMMSG, SYS_SENDMMSG, SYS_SENDFILE,
};

/* The kernel state of one connection. */
struct conn_info {
    struct conn_id id;
    __u64 bytes_sent;
    __u64 bytes_recv;
    __u8 protocol;
    __u8 infer_attempts;
};

/* A data syscall's arguments, as its exit reads them. */
struct data_args {
    __u64 buf;     /* buffer, iovec array, msghdr or mmsghdr array */
    __u64 addr;    /* sendto/recvfrom: the peer's sockaddr (NULL when connected) */
    __u32 fd;
    __u32 count;   /* iovec count or mmsghdr count */
    __u8 direction;
};

/* A data event as built in scratch memory before it is copied to the ring.
 * The payload area is twice the mask so that masked offsets plus masked
 * lengths always stay inside it, as the verifier requires. */
struct data_scratch {
    struct data_event header;
    char payload[2 * (CAPTURE_MASK + 1)];
};

BPF_RINGBUF_OUTPUT(data_ring, DATA_RING_PAGES);
BPF_RINGBUF_OUTPUT(conn_ring, CONN_RING_PAGES);
BPF_HASH(conn_info_map, __u64, struct conn_info, 65536);    /* tgid << 32 | fd */
BPF_HASH(not_inet_stream, __u64, __u8, 65536);              /* fds known not to be TCP */
BPF_ARRAY(scratch, struct data_scratch, MAX_CPUS);
BPF_ARRAY(next_conn_id, __u64, 1);
/* lost[0]: data events, lost[1]: connection events, lost[2]: conn_info_map full */
BPF_ARRAY(lost, __u64, 3);
#ifdef FILTER_PIDS
BPF_HASH(target_pids, __u32, __u8, 1024);
#endif
#ifdef FILTER_PORTS
BPF_HASH(target_ports, __u16, __u8, 64);
#endif

static __always_inline void count_lost(int which)
{
    __u64 *n = lost.lookup(&which);
    if (n)
        __sync_fetch_and_add(n, 1);
}

static __always_inline int traced_process(__u32 tgid)
{
    if (tgid == SELF_TGID)
        return 0;
#ifdef FILTER_PIDS
    if (!target_pids.lookup(&tgid))
        return 0;
#endif
    return 1;
}

static __always_inline __u64 conn_key(__u32 tgid, __u32 fd)
{
    return ((__u64)tgid << 32) | fd;
}

/* The struct sock behind fd of the current process, if fd is a socket. */
static __always_inline void *fd_to_sock(__u32 fd)
{
    void *task = (void *)bpf_get_current_task();
    void *files = (void *)read_u64(task, TASK_FILES_OFF);
    void *fdt = files ? (void *)read_u64(files, FILES_FDT_OFF) : 0;
    if (!fdt || fd >= read_u32(fdt, FDTABLE_MAX_FDS_OFF))
        return 0;
    void *fd_array = (void *)read_u64(fdt, FDTABLE_FD_OFF);
    void *file = (void *)read_u64(fd_array, fd * sizeof(void *));
    if (!file)
        return 0;
    void *inode = (void *)read_u64(file, FILE_F_INODE_OFF);
    if (!inode || (read_u16(inode, INODE_I_MODE_OFF) & S_IFMT) != S_IFSOCK)
        return 0;
    void *socket = (void *)read_u64(file, FILE_PRIVATE_DATA_OFF);
    return socket ? (void *)read_u64(socket, SOCKET_SK_OFF) : 0;
}

static __always_inline __u8 transport_of(void *sk)
{
    __u16 type = read_u16(sk, SK_TYPE_OFF), protocol = read_u16(sk, SK_PROTOCOL_OFF);
    if (type == SOCK_STREAM && protocol == IPPROTO_TCP)
        return TRANSPORT_TCP;
    if (type == SOCK_DGRAM && protocol == IPPROTO_UDP)
        return TRANSPORT_UDP;
    return 0;
}

/* Fill id's addresses from sk; 0 if sk is not an inet TCP or UDP socket. */
static __always_inline int read_endpoints(void *sk, struct conn_id *id)
{
    __u16 family = read_u16(sk, SKC_FAMILY_OFF);
    if (family != AF_INET && family != AF_INET6)
        return 0;
    id->transport = transport_of(sk);
    if (!id->transport)
        return 0;
    id->family = family;
    id->lport = read_u16(sk, SKC_NUM_OFF);
    id->rport = __builtin_bswap16(read_u16(sk, SKC_DPORT_OFF));
    if (family == AF_INET) {
        bpf_probe_read_kernel(id->laddr, 4, (char *)sk + SKC_RCV_SADDR_OFF);
        bpf_probe_read_kernel(id->raddr, 4, (char *)sk + SKC_DADDR_OFF);
    } else {
        bpf_probe_read_kernel(id->laddr, 16, (char *)sk + SKC_V6_RCV_SADDR_OFF);
        bpf_probe_read_kernel(id->raddr, 16, (char *)sk + SKC_V6_DADDR_OFF);
    }
    return 1;
}

static __always_inline int traced_ports(struct conn_id *id)
{
#ifdef FILTER_PORTS
    return target_ports.lookup(&id->lport) || target_ports.lookup(&id->rport);
#else
    return 1;
#endif
}

static __always_inline void send_conn_event(struct conn_info *info, __u8 kind)
{
    struct conn_event *e = conn_ring.ringbuf_reserve(sizeof(*e));
    if (!e) {
        count_lost(1);
        return;
    }
    e->time_ns = bpf_ktime_get_boot_ns();
    e->bytes_sent = info->bytes_sent;
    e->bytes_recv = info->bytes_recv;
    e->kind = kind;
    e->protocol = info->protocol;
    __builtin_memset(e->_pad, 0, sizeof(e->_pad));
    e->id = info->id;
    conn_ring.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* Start tracking (tgid, fd) if it is a TCP socket; the new entry or 0. */
static __always_inline struct conn_info *track(__u32 tgid, __u32 fd, __u8 role, __u8 origin)
{
    void *sk = fd_to_sock(fd);
    struct conn_info info = {};
    if (!sk || !read_endpoints(sk, &info.id) || !traced_ports(&info.id))
        return 0;
    int zero = 0;
    __u64 *next = next_conn_id.lookup(&zero);
    if (!next)
        return 0;
    info.id.conn_id = __sync_fetch_and_add(next, 1) + 1;
    info.id.start_boottime_ns = process_start((void *)bpf_get_current_task());
    info.id.tgid = tgid;
    info.id.fd = fd;
    info.id.role = role;
    info.id.origin = origin;
    __u64 key = conn_key(tgid, fd);
    if (conn_info_map.update(&key, &info) != 0) {
        count_lost(2);
        return 0;
    }
    struct conn_info *stored = conn_info_map.lookup(&key);
    if (stored)
        send_conn_event(stored, CONN_OPEN);
    return stored;
}

/* ---- a syscall's arguments --------------------------------------------------
 * Read at its exit from the user registers the kernel saved at its entry
 * (x86-64: arguments in di, si, dx, r10, r8, r9; offsets from BTF), which the
 * syscalls followed here never change. So no program runs at their entries:
 * one saving the arguments for the exit cost every probed syscall a second
 * tracepoint hit and a slot lookup (bench/probe_floor.py), and a syscall
 * already blocked when the probes were attached (a server waiting in read())
 * is now seen whole. */

/* The saved registers, as a pointer the verifier types from BTF: read by
 * plain loads (a bpf_probe_read_kernel each cost ~50 ns more). */
static __always_inline const char *user_regs(void)
{
    return (const char *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

static __always_inline __u64 reg(const char *regs, int offset)
{
    return *(const __u64 *)(regs + offset);
}

static __always_inline __u32 fd_arg(void)
{
    return reg(user_regs(), ARG0_OFF);
}

static __always_inline __u8 direction_of(const int kind)
{
    switch (kind) {
    case SYS_READ:
    case SYS_READV:
    case SYS_RECVFROM:
    case SYS_RECVMSG:
    case SYS_RECVMMSG:
        return DIR_RECV;
    default:
        return DIR_SEND;
    }
}

/* `kind` is a constant at every call site: each program reads only the
 * registers its syscall uses. */
static __always_inline void read_data_args(const int kind, __u32 fd, struct data_args *a)
{
    const char *regs = user_regs();
    a->fd = fd;
    a->buf = kind == SYS_SENDFILE ? 0 : reg(regs, ARG1_OFF);
    a->count = kind == SYS_READV || kind == SYS_WRITEV || kind == SYS_RECVMMSG || kind == SYS_SENDMMSG
                   ? reg(regs, ARG2_OFF) : 0;
    a->addr = kind == SYS_RECVFROM || kind == SYS_SENDTO ? reg(regs, ARG4_OFF) : 0;
    a->direction = direction_of(kind);
}

/* ---- connect / accept / close ------------------------------------------ */

#define EINPROGRESS 115

TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if ((args->ret != 0 && args->ret != -EINPROGRESS) || !traced_process(tgid))
        return 0;
    __u32 fd = fd_arg();
    __u64 key = conn_key(tgid, fd);
    not_inet_stream.delete(&key);
    track(tgid, fd, ROLE_CLIENT, ORIGIN_CONNECT);
    return 0;
}

static __always_inline void exit_accept(long ret)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (ret < 0 || !traced_process(tgid))
        return;
    __u64 key = conn_key(tgid, ret);
    not_inet_stream.delete(&key);
    track(tgid, ret, ROLE_SERVER, ORIGIN_ACCEPT);
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept) { exit_accept(args->ret); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { exit_accept(args->ret); return 0; }

/* An fd is in at most one of the two maps (track() is only tried for an fd
 * not known as a non-socket). Most closes are of files in neither: two
 * lookups, no delete (a hash delete takes its bucket's lock even for a
 * missing key). */
TRACEPOINT_PROBE(syscalls, sys_exit_close)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (args->ret != 0 || !traced_process(tgid))
        return 0;
    __u64 key = conn_key(tgid, fd_arg());
    struct conn_info *info = conn_info_map.lookup(&key);
    if (info) {
        send_conn_event(info, CONN_CLOSE);
        conn_info_map.delete(&key);
    } else if (not_inet_stream.lookup(&key)) {
        not_inet_stream.delete(&key);
    }
    return 0;
}

/* Look at the first bytes a syscall moved; set protocol (and role if it was
 * unknown) when they are recognised; give up after INFER_ATTEMPTS. */
static __always_inline void infer_protocol(struct conn_info *info, const __u8 *head, __u32 len, __u32 size, __u8 direction)
{
    int request = 0;
    __u8 protocol = infer(head, len, size, info->id.transport, &request);
    if (protocol != PROTO_UNKNOWN) {
        info->protocol = protocol;
        if (info->id.role == ROLE_UNKNOWN)
            info->id.role = (request == (direction == DIR_SEND)) ? ROLE_CLIENT : ROLE_SERVER;
        send_conn_event(info, CONN_PROTOCOL);
        return;
    }
    if (++info->infer_attempts >= INFER_ATTEMPTS)
        info->protocol = PROTO_NONE;
}

/* ---- data: exit ------------------------------------------------------------ */

/* The user_msghdr fields used here (UAPI layout, fixed for 64-bit). */
#define MSGHDR_IOV_OFF 16
#define MSGHDR_IOVLEN_OFF 24
#define MMSGHDR_SIZE 64
#define MMSGHDR_LEN_OFF 56

/* x & CAPTURE_MASK, computed for real: clang drops a mask it can prove
 * redundant, but the verifier only trusts bounds it sees applied. */
static __always_inline __u32 bounded(__u32 x)
{
    asm volatile("" : "+r"(x));
    return x & CAPTURE_MASK;
}

static __always_inline __u32 mmsg_len(__u64 mmsghdr)
{
    __u32 len = 0;
    bpf_probe_read_user(&len, sizeof(len), (void *)(mmsghdr + MMSGHDR_LEN_OFF));
    return len;
}

struct user_iovec {
    __u64 base;
    __u64 len;
};

static __always_inline __u32 copy_plain(char *payload, __u64 buf, __u32 limit)
{
    __u32 n = bounded(limit);
    bpf_probe_read_user(payload, n, (void *)buf);
    return n;
}

/* Copy up to `limit` bytes spread over an iovec array, looking at no more
 * than `max_iov` (a constant) of its entries. */
static __always_inline __u32 copy_iov(char *payload, __u64 iov_addr, __u32 iovcnt, __u32 limit, const int max_iov)
{
    __u32 copied = 0;
    for (int i = 0; i < max_iov; i++) {
        if (i >= iovcnt || copied >= limit)
            break;
        struct user_iovec iov = {};
        bpf_probe_read_user(&iov, sizeof(iov), (void *)(iov_addr + i * sizeof(iov)));
        __u32 n = iov.len < limit - copied ? iov.len : limit - copied;
        bpf_probe_read_user(payload + bounded(copied), bounded(n), (void *)iov.base);
        copied += n;
    }
    return copied;
}

static __always_inline __u32 copy_msghdr(char *payload, __u64 msghdr, __u32 limit, const int max_iov)
{
    __u64 iov = 0, iovlen = 0;
    bpf_probe_read_user(&iov, sizeof(iov), (void *)(msghdr + MSGHDR_IOV_OFF));
    bpf_probe_read_user(&iovlen, sizeof(iovlen), (void *)(msghdr + MSGHDR_IOVLEN_OFF));
    return copy_iov(payload, iov, iovlen, limit, max_iov);
}

/* `kind` is a constant at every call site, so each tracepoint program holds
 * only the copy code its syscall needs (keeps the verifier's work small). */
static __always_inline __u32 copy_payload(char *payload, const int kind, struct data_args *a, __u64 msg_addr, __u32 limit,
                                          const int max_iov)
{
    switch (kind) {
    case SYS_SENDFILE:
        return 0; /* bytes come from a file, not user memory: counted, not captured */
    case SYS_READV:
    case SYS_WRITEV:
        return copy_iov(payload, a->buf, a->count, limit, max_iov);
    case SYS_RECVMSG:
    case SYS_SENDMSG:
    case SYS_RECVMMSG:
    case SYS_SENDMMSG:
        return copy_msghdr(payload, msg_addr, limit, max_iov);
    default:
        return copy_plain(payload, a->buf, limit);
    }
}

/* The datagram peer's sockaddr, for the syscalls that name one. */
static __always_inline __u64 peer_sockaddr(const int kind, struct data_args *a, __u64 msg_addr)
{
    __u64 name = 0;
    switch (kind) {
    case SYS_SENDTO:
    case SYS_RECVFROM:
        return a->addr;
    case SYS_SENDMSG:
    case SYS_RECVMSG:
    case SYS_SENDMMSG:
    case SYS_RECVMMSG:
        bpf_probe_read_user(&name, sizeof(name), (void *)msg_addr); /* msg_name comes first */
        return name;
    default:
        return 0;
    }
}

/* Fill the event's peer from a user sockaddr (left zero when there is none). */
static __always_inline void read_peer(struct data_event *h, __u64 sockaddr)
{
    h->peer_family = h->peer_port = 0;
    __builtin_memset(h->peer_addr, 0, sizeof(h->peer_addr));
    if (!sockaddr)
        return;
    __u16 family = 0, port = 0;
    bpf_probe_read_user(&family, sizeof(family), (void *)sockaddr);
    bpf_probe_read_user(&port, sizeof(port), (void *)(sockaddr + 2));
    if (family == AF_INET)
        bpf_probe_read_user(h->peer_addr, 4, (void *)(sockaddr + 4));
    else if (family == AF_INET6)
        bpf_probe_read_user(h->peer_addr, 16, (void *)(sockaddr + 8));
    else
        return;
    h->peer_family = family;
    h->peer_port = __builtin_bswap16(port);
}

/* iovecs looked at for inference: two, since a length prefix may be an
 * iovec of its own; one for the mmsg syscalls, whose programs would
 * otherwise grow past the verifier's budget. */
static __always_inline int head_iovecs(const int kind)
{
    return kind == SYS_RECVMMSG || kind == SYS_SENDMMSG ? 1 : 2;
}

/* Account `size` bytes moved on the connection; send them if its protocol is
 * traced. While the protocol is unknown only a few head bytes are copied, to
 * infer it. */
static __always_inline void on_bytes(struct conn_info *info, const int kind, struct data_args *a, __u64 msg_addr, __u32 size)
{
    __u64 *counter = a->direction == DIR_SEND ? &info->bytes_sent : &info->bytes_recv;
    __u64 pos = __sync_fetch_and_add(counter, size);
    if (info->protocol == PROTO_NONE || size == 0)
        return;

    int cpu = bpf_get_smp_processor_id();
    struct data_scratch *s = scratch.lookup(&cpu);
    if (!s)
        return;
    __u32 limit = size < MAX_CAPTURE ? size : MAX_CAPTURE;
    if (info->protocol == PROTO_UNKNOWN) {
        __builtin_memset(s->payload, 0, INFER_HEAD);
        __u32 head = copy_payload(s->payload, kind, a, msg_addr, limit < INFER_HEAD ? limit : INFER_HEAD, head_iovecs(kind));
        infer_protocol(info, (const __u8 *)s->payload, head, size, a->direction);
        if (info->protocol == PROTO_UNKNOWN || info->protocol == PROTO_NONE)
            return;
    }
    __u32 captured = bounded(copy_payload(s->payload, kind, a, msg_addr, limit, MAX_IOV));
    s->header.time_ns = bpf_ktime_get_boot_ns();
    s->header.conn_id = info->id.conn_id;
    s->header.pos = pos;
    s->header.size = size;
    s->header.captured = captured;
    s->header.tgid = info->id.tgid;
    s->header.fd = info->id.fd;
    s->header.direction = a->direction;
    s->header.protocol = info->protocol;
    s->header.role = info->id.role;
    s->header.syscall = kind;
    s->header._pad[0] = s->header._pad[1] = 0;
    read_peer(&s->header, info->id.transport == TRANSPORT_UDP ? peer_sockaddr(kind, a, msg_addr) : 0);
    if (data_ring.ringbuf_output(s, sizeof(s->header) + captured, BPF_RB_NO_WAKEUP) != 0)
        count_lost(0);
}

static __always_inline void exit_data(long ret, const int kind)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (ret <= 0 || !traced_process(tgid))
        return;
    __u32 fd = fd_arg();
    __u64 key = conn_key(tgid, fd);
    struct conn_info *info = conn_info_map.lookup(&key);
    if (!info) {
        if (not_inet_stream.lookup(&key))
            return;
        info = track(tgid, fd, ROLE_UNKNOWN, ORIGIN_ADOPTED);
        if (!info) {
            __u8 one = 1;
            not_inet_stream.update(&key, &one);
            return;
        }
    }
    struct data_args a;
    read_data_args(kind, fd, &a);
    if (kind != SYS_RECVMMSG && kind != SYS_SENDMMSG) {
        on_bytes(info, kind, &a, a.buf, ret);
        return;
    }
    /* ret messages, each with its own length: the first MAX_MMSG are
     * handled like single syscalls, the bytes of later ones only counted. */
    for (int i = 0; i < MAX_MMSG; i++) {
        if (i >= ret)
            break;
        __u64 msg = a.buf + i * MMSGHDR_SIZE;
        on_bytes(info, kind, &a, msg, mmsg_len(msg));
    }
    __u64 uncaptured = 0;
    for (int i = MAX_MMSG; i < MAX_MMSG_COUNTED; i++) {
        if (i >= ret)
            break;
        uncaptured += mmsg_len(a.buf + i * MMSGHDR_SIZE);
    }
    __sync_fetch_and_add(a.direction == DIR_SEND ? &info->bytes_sent : &info->bytes_recv, uncaptured);
}

TRACEPOINT_PROBE(syscalls, sys_exit_read) { exit_data(args->ret, SYS_READ); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { exit_data(args->ret, SYS_WRITE); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_readv) { exit_data(args->ret, SYS_READV); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_writev) { exit_data(args->ret, SYS_WRITEV); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom) { exit_data(args->ret, SYS_RECVFROM); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_sendto) { exit_data(args->ret, SYS_SENDTO); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg) { exit_data(args->ret, SYS_RECVMSG); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_sendmsg) { exit_data(args->ret, SYS_SENDMSG); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_recvmmsg) { exit_data(args->ret, SYS_RECVMMSG); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_sendmmsg) { exit_data(args->ret, SYS_SENDMMSG); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_sendfile64) { exit_data(args->ret, SYS_SENDFILE); return 0; }
