#!/usr/bin/env bash
# tinyhttpd's tests.
#
#   ./test.sh            the suite, against both builds (about a minute)
#   ./test.sh --long     the suite plus the slow cases (memory, soak)
#   ./test.sh --check    the suite under UBSan, ASan and valgrind
#   ./test.sh --bench    the benchmark tables (add --quick for a smoke run)
#
# Needs bash, curl, ab (apache2-utils), python3 and strace; Linux, because
# it reads /proc.  Every server it starts listens on 127.0.0.1, port 0,
# and is stopped by PID, also when the script is interrupted.  The last
# line is "N passed, N failed, N skipped"; the exit status is 1 if
# anything failed.
set -u
cd "$(dirname "$0")" || exit 1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tinyhttpd-test.XXXXXX") || exit 1
PIDS=()                          # every process we started, to stop on exit
n_pass=0 n_fail=0 n_skip=0
backend=""                       # the build under test: epoll or select
BIN=""                           # its binary
export PYTHONDONTWRITEBYTECODE=1

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok()      { printf 'ok   %-6s  %s\n' "$backend" "$1"; n_pass=$((n_pass + 1)); }
fail()    { printf 'FAIL %-6s  %s\n' "$backend" "$1"; n_fail=$((n_fail + 1)); }
skipped() { printf 'skip %-6s  %s\n' "$backend" "$1"; n_skip=$((n_skip + 1)); }

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

# start_server COMMAND...: starts it with "-p 0" appended, waits for the
# start-up line, and sets PID, URL, PORT and OUT (its stdout; stderr is
# $OUT.err).  Returns 1 if it did not start within 5 s.
start_server() {
    OUT="$TMP/server.$RANDOM$RANDOM"
    "$@" -p 0 >"$OUT" 2>"$OUT.err" &
    PID=$!
    PIDS+=("$PID")
    if ! wait_until 5 grep -q '^tinyhttpd: .* serving http' "$OUT"; then
        kill -KILL "$PID" 2>/dev/null
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

# check NAME TEST [ARGS...]: a client.py test on a fresh server, which
# must then still serve a plain GET and stop cleanly with SIGTERM.
check() {
    local name=$1 why
    if ! start_server "$BIN"; then
        fail "$name: server did not start: $(head -c 300 "$OUT.err")"
        return
    fi
    why=$(client "${@:2}" 2>&1)
    if [ $? -ne 0 ]; then
        fail "$name: $why"
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
import os, random, re, resource, select, socket, sys, time

HOST = '127.0.0.1'
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


def expect_error(conn, status, what):
    """The next reply is status with Connection: close, then the server closes."""
    try:
        got, headers, _ = conn.reply()
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

# --- The tests: one function per behaviour, run against each build. ---

test_get_with_curl() {
    local body headers
    start_server "$BIN" || { fail "curl: server did not start"; return; }
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

test_ab() {   # test_ab NAME [-k]: 20,000 requests, 50 at a time
    local name=$1 keep_alive=${2:-} out
    start_server "$BIN" || { fail "$name: server did not start"; return; }
    out=$(ab -q "${@:2}" -n 20000 -c 50 -s 10 "$URL" 2>&1)
    stop_server
    if ! grep -q '^Complete requests: *20000$' <<<"$out"; then
        fail "$name: $(grep -E 'Complete|apr_' <<<"$out" | head -2)"
    elif ! grep -q '^Failed requests: *0$' <<<"$out"; then
        fail "$name: $(grep -A1 '^Failed' <<<"$out" | tr -s ' \n' ' ')"
    elif grep -q '^Non-2xx' <<<"$out"; then
        fail "$name: $(grep '^Non-2xx' <<<"$out")"
    elif [ -n "$keep_alive" ] && ! grep -q '^Keep-Alive requests: *20000$' <<<"$out"; then
        fail "$name: $(grep '^Keep-Alive' <<<"$out"), want 20000"
    else
        ok "$name: 20000 requests, 0 failed${keep_alive:+, 20000 kept alive}"
    fi
}

# The client opens 2000 connections in a burst, at about 8 us each.  While
# the pool grows, each new coroutine costs the server 5-7 us more (mmap and
# the signal trick), so it accepts more slowly than that for a moment: a
# backlog of 128 overflows, the kernel drops SYNs, and the client resends
# each only after 1 s, so its first connections would reach the 10 s head
# deadline before the last one opened.  A burst needs a backlog to match.
test_many_connections() {     # epoll only: select stops at FD_SETSIZE
    local why
    [ "$backend" = epoll ] || { skipped "2000 connections: epoll only"; return; }
    start_server "$BIN" -b 2048 || { fail "2000 connections: server did not start"; return; }
    why=$(client many_connections 2000)
    local status=$?
    stop_server
    if [ $status -ne 0 ]; then
        fail "2000 connections: $why"
    elif ! grep -q 'peak 2000 concurrent' "$OUT"; then
        fail "2000 connections: totals say '$(tail -1 "$OUT")', want peak 2000"
    else
        ok "2000 connections held open at once, all answered, peak 2000"
    fi
}

# After warm-up, keep-alive requests must make no signal or mmap call:
# coroutines are reused and a switch saves no signal mask.
test_no_syscall_per_switch() {
    local trace="$TMP/strace.$backend" tracer n_writes bad
    start_server "$BIN" || { fail "no syscalls per switch: server did not start"; return; }
    ab -q -k -n 200 -c 10 "$URL" >/dev/null 2>&1
    strace -f -q -p "$PID" -o "$trace" \
        -e trace=read,write,mmap,munmap,sigaltstack,rt_sigprocmask,rt_sigaction 2>/dev/null &
    tracer=$!
    PIDS+=("$tracer")
    if ! wait_until 5 grep -q '^TracerPid:[[:space:]]*[1-9]' "/proc/$PID/status"; then
        kill "$tracer" 2>/dev/null
        skipped "no syscalls per switch: strace cannot attach here"
        stop_server
        return
    fi
    ab -q -k -n 1000 -c 10 "$URL" >/dev/null 2>&1
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null
    stop_server
    n_writes=$(grep -c 'write(' "$trace")
    bad=$(grep -oE '(mmap|munmap|sigaltstack|rt_sigprocmask|rt_sigaction)\(' "$trace" | sort | uniq -c | tr -s ' \n' ' ')
    if [ "$n_writes" -lt 1000 ]; then
        fail "no syscalls per switch: strace saw $n_writes writes for 1000 requests"
    elif [ -n "$bad" ]; then
        fail "no syscalls per switch: 1000 warm keep-alive requests made:$bad"
    else
        ok "no syscalls per switch: 1000 keep-alive requests, $n_writes writes, no signal or mmap call"
    fi
}

test_fortify() {
    local bin="$TMP/fortify-$backend" control="$TMP/control"
    # Control: the toolchain does apply the check to a plain longjmp.
    printf '#include <setjmp.h>\nsigjmp_buf b;\nint main(void) { if (!sigsetjmp(b, 0)) siglongjmp(b, 1); return 0; }\n' >"$TMP/control.c"
    cc -O2 -D_FORTIFY_SOURCE=2 -o "$control" "$TMP/control.c" || { fail "fortify: control build"; return; }
    if ! nm "$control" | grep -q __longjmp_chk; then
        skipped "fortify: this toolchain does not fortify longjmp"
        return
    fi
    if ! cc -O2 -D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror -D"USE_$(tr a-z A-Z <<<"$backend")" \
            -o "$bin" tinyhttpd.c 2>"$TMP/fortify.err"; then
        fail "fortify: build failed: $(head -3 "$TMP/fortify.err")"
    elif nm "$bin" | grep -q __longjmp_chk; then
        fail "fortify: the -D_FORTIFY_SOURCE=2 build references __longjmp_chk"
    elif ! start_server "$bin"; then
        fail "fortify: server did not start: $(head -c 300 "$OUT.err")"
    else
        local out
        out=$(ab -q -k -n 2000 -c 20 "$URL" 2>&1)
        if ! serves || ! grep -q '^Failed requests: *0$' <<<"$out"; then
            fail "fortify: the -O2 -D_FORTIFY_SOURCE=2 build does not serve ($(head -c 200 "$OUT.err"))"
        else
            ok "fortify: -O2 -D_FORTIFY_SOURCE=2 build has no __longjmp_chk and serves"
        fi
        stop_server
    fi
}

test_stop_signals() {
    local sig
    for sig in TERM INT; do
        start_server "$BIN" || { fail "SIG$sig: server did not start"; return; }
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
        timeout 5 "$BIN" $args >"$TMP/usage.out" 2>"$TMP/usage.err"
        status=$?
        if [ $status -ne 2 ] || ! grep -q '^usage: ' "$TMP/usage.err" || [ -s "$TMP/usage.out" ]; then
            bad="$bad '$args' exits $status;"
        fi
    done
    timeout 5 "$BIN" -h >"$TMP/usage.out" 2>"$TMP/usage.err"
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

test_port_in_use() {
    local status
    start_server "$BIN" || { fail "port in use: server did not start"; return; }
    timeout 5 "$BIN" -p "$PORT" >/dev/null 2>"$TMP/inuse.err"
    status=$?
    if [ $status -ne 1 ]; then
        fail "port in use: second server exits $status, want 1"
    elif ! grep -q "^tinyhttpd: bind 127.0.0.1:$PORT: Address already in use$" "$TMP/inuse.err"; then
        fail "port in use: message '$(cat "$TMP/inuse.err")'"
    elif ! serves; then
        fail "port in use: the first server stopped serving"
    else
        ok "port in use: exit 1, '$(cat "$TMP/inuse.err")'"
    fi
    stop_server
}

run_suite() {
    test_get_with_curl
    check "GET: status, headers, body" get
    check "HTTP/1.0 closes" http10_close
    check "HTTP/1.0 keep-alive" http10_keepalive
    check "HTTP/1.1 keep-alive, then Connection: close" http11_keepalive
    check "pipelining: 100 requests in one write, in order" pipelined
    check "dribbled byte by byte, and split inside CRLF CRLF" dribbled
    check "bare LF line ends" bare_lf
    check "HEAD: headers, no body" head
    check "a body closes the connection after the reply" body_closes
    test_ab "ab"
    test_ab "ab -k" -k
    test_many_connections
    test_no_syscall_per_switch
    test_fortify
    test_stop_signals
    test_command_line
    test_port_in_use
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

main() {
    need curl ab python3 strace cc nm
    [ "$(uname -s)" = Linux ] || { echo "test.sh: needs Linux (it reads /proc)" >&2; exit 2; }
    make -s all >/dev/null || exit 1
    write_client
    for backend in epoll select; do
        BIN=./tinyhttpd-$backend
        run_suite
    done
    backend=""
    echo "$n_pass passed, $n_fail failed, $n_skip skipped"
    [ "$n_fail" -eq 0 ]
}

main "$@"
