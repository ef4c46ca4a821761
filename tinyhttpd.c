/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the tinyhttpd authors */
/*
 * tinyhttpd: an HTTP server that answers "Hello, World!" to every request,
 * written to show how coroutines make an event-driven server simple.  It
 * redoes in C an experiment of 2009 (P. Szabo, "Experimental HTTP server
 * using Stackless Python", ptspts.blogspot.com, December 2009).
 *
 * Each connection is served by one straight-line function that reads a
 * request, answers it and loops, as if it had a thread of its own.  When a
 * read or write would block, that function's coroutine yields to an event
 * loop (select or epoll), which resumes it once the socket is ready: one
 * thread serves thousands of connections, with no callbacks and no locks.
 *
 *     make run        (or: cc -O2 -o tinyhttpd tinyhttpd.c && ./tinyhttpd,
 *                     adding -fcf-protection=none on x86 as the Makefile
 *                     does: the README says why, under shadow stacks)
 *     curl http://127.0.0.1:8080/
 *
 * The sections, in the order they appear:
 *   1. Setup: feature macros, includes, tunables, the -v trace, die()
 *   2. Coroutines: stacks, the signal-stack trick, switching, the pool
 *   3. Event loop: what it knows of a socket, the select or epoll
 *      backend, deadlines, waiting, one turn of the loop
 *   4. The connection: read a request head, answer it, keep alive, close
 *   5. Listener, signals, totals
 *   6. main and the command line
 */

/*
 * 1. Setup
 * ---------------------------------------------------------------------
 * Everything that depends on the platform is settled in this section, so
 * that the code below reads the same everywhere.
 *
 * Fortify goes first.  With -D_FORTIFY_SOURCE at any level, 1 to 3, and
 * optimizing (glibc's features.h ignores it at -O0; Ubuntu's gcc turns it
 * on by default, at level 3 since 24.04, and Fedora's package builds use
 * it), glibc replaces longjmp, _longjmp and siglongjmp with __longjmp_chk,
 * which aborts ("longjmp causes uninitialized stack frame") whenever a
 * jump lands at a lower stack address than it starts from, unless it
 * starts on the alternate signal stack and lands outside it (no switch
 * here does: step 6 of the trick, in section 2, unregisters each new
 * stack).  On one stack that check catches jumps into frames that have
 * returned; but a switch between the loop and a coroutine jumps from one
 * stack to another, and one of the two directions always goes down,
 * whichever stack is higher.  The check cannot be satisfied, so it is
 * turned off for this file.
 * Do not move this below an #include: the headers read it.
 */
#undef _FORTIFY_SOURCE

/* The backend: epoll on Linux, select(2) everywhere else (section 3). */
#if !defined(USE_EPOLL) && !defined(USE_SELECT)
#if defined(__linux__)
#define USE_EPOLL
#else
#define USE_SELECT
#endif
#endif
#if defined(USE_EPOLL) == defined(USE_SELECT)
#error "define exactly one of USE_EPOLL and USE_SELECT"
#endif
#if defined(__linux__)
#define _GNU_SOURCE         /* Linux: accept4(2), which glibc declares
                               only so, and struct tcp_info (section 5),
                               which musl declares only so */
#endif
#define _DEFAULT_SOURCE     /* glibc, musl: POSIX plus MAP_ANONYMOUS */
#define _DARWIN_C_SOURCE    /* macOS: keep MAP_ANON even under _XOPEN_SOURCE */
#define _TIME_BITS 64       /* glibc on 32-bit CPUs: a time_t that outlives
                               January 2038 (the Date header needs it) ... */
#define _FILE_OFFSET_BITS 64 /* ... which glibc grants only with this */

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#if !defined(MAP_ANONYMOUS)
#define MAP_ANONYMOUS MAP_ANON     /* the older BSD name */
#endif
#if defined(__OpenBSD__)
#define MAP_COROUTINE_STACK MAP_STACK  /* OpenBSD kills a process whose stack
                                          pointer is outside such memory */
#else
#define MAP_COROUTINE_STACK 0          /* FreeBSD's MAP_STACK means another
                                          thing: a region that grows down */
#endif
#if defined(__linux__)
#define DEFER_ACCEPT TCP_DEFER_ACCEPT  /* see open_listener() */
#else
#define DEFER_ACCEPT 0                 /* no such option */
#endif

/*
 * Tunables.  STACK_SIZE is the one to understand.  It is what each
 * coroutine maps for its stack, rounded up to whole pages; its struct coro
 * (section 2) takes the top few hundred bytes, and its whole call chain
 * must fit in the rest.  How much does it need?  We measured by painting
 * the stacks: filling each with a pattern, then finding how much of it was
 * overwritten (test.sh's test_stack_depth prints the figures for your
 * machine).  On an x86-64 Xeon with AVX-512 and AMX (wide vector and
 * matrix registers), Linux 6.18, glibc 2.36:
 *   - the signal frame the kernel leaves at the top of each stack (the
 *     registers it saves to run a signal handler; section 2 says why it is
 *     there) takes 3.3 KiB;
 *   - serving a request reaches 6.2 KiB below the top, 7.8 KiB with -v
 *     (with LD_BIND_NOW=1; both builds alike within 32 bytes);
 *   - where symbols are bound lazily (a shared library's function is
 *     looked up at its first call, not at start), that first call runs
 *     the dynamic linker's resolver on the stack, which saves the vector
 *     registers: the deepest use then reaches 9.1 KiB.
 * 64 KiB leaves room for CPUs with more registers, and costs only address
 * space: the kernel backs a stack with memory page by page, as it is
 * first written.  (Unless overcommit is turned off, vm.overcommit_memory
 * = 2: then each stack is charged in full against the commit limit.)  An
 * idle keep-alive connection has written two pages (8 KiB, measured with
 * 10,000 of them).
 *
 * GUARD_SIZE must be larger than any one frame on a coroutine's stack, or
 * that frame could step over the guard into the next coroutine's memory.
 * The largest found there: serve_connection(), 2.6 KiB (gcc
 * -fstack-usage); the resolver above, 2.5 KiB, nearly all of it the area
 * where xsavec saves the vector registers (2,432 bytes: the legacy area
 * and header, AVX's and AVX-512's parts, by the sizes CPUID leaf 0xD
 * reports; glibc 2.36's STATE_SAVE_MASK, in sysdeps/x86/sysdep.h, leaves
 * out x87, and no glibc up to 2.42 saves AMX's tiles there); and glibc's
 * fprintf to an unbuffered stream, 8.5 KiB, an 8 KiB buffer in glibc's
 * source, which is why -v buffers stderr.  64 KiB is over seven times
 * that, and costs address space only.
 */
#ifndef STACK_SIZE
#define STACK_SIZE (64 * 1024)     /* bytes mapped per stack, struct included */
#endif
#define GUARD_SIZE (64 * 1024)     /* bytes below each stack no one may touch */
#define PARKED_MAX 256             /* finished coroutines kept for reuse */
#define CONN_BUF_SIZE 2048         /* input buffer per connection, bytes */
#define HEAD_MAX_BYTES 8192        /* a request head may take no more */
#define LINGER_MS 1000             /* draining input before a close ... */
#define LINGER_BYTES (1024 * 1024) /* ... stops after this long or this much */
#define ACCEPT_PAUSE_MS 100        /* out of descriptors: retry accept after */
#define STOP_CHECK_MS 10           /* busy, look for SIGINT, SIGTERM this often */
#define DEFAULT_ADDRESS "127.0.0.1"
#define DEFAULT_PORT 8080
#define DEFAULT_BACKLOG 128
#define DEFAULT_IDLE_TIMEOUT_S 10
#define DEFER_ACCEPT_S 1           /* Linux: a silent client is held this long */

/*
 * -v prints one line per event to stderr: see the README for a sample.
 * Most lines are printed on a coroutine's stack, so -v gives stderr a
 * line buffer of its own: glibc formats a line for an unbuffered stream
 * in an 8 KiB array on the stack (buffered_vfprintf), a frame larger than
 * a request's whole need.  Each line is still written when it ends.
 */
static bool trace_enabled;
static char trace_buffer[BUFSIZ];
#define TRACE(...) do { if (trace_enabled) fprintf(stderr, __VA_ARGS__); } while (0)

/* Prints "tinyhttpd: <what>: <strerror(errno)>" and exits with status 1:
 * for what stops the server from its start, such as a port in use. */
static void
die(const char *fmt, ...)
{
    int saved_errno = errno;
    va_list ap;

    fputs("tinyhttpd: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(saved_errno));
    exit(1);
}

/* The same message, then abort(): for calls that cannot fail unless this
 * program is wrong, such as restoring a signal mask it saved itself. */
static void
broken(const char *what)
{
    fprintf(stderr, "tinyhttpd: %s: %s (a bug)\n", what, strerror(errno));
    abort();
}

/*
 * 2. Coroutines
 * ---------------------------------------------------------------------
 * A coroutine is a function call with a stack of its own, so it can stop
 * in the middle (yield) and later go on where it stopped (be resumed).
 * Here the event loop runs on the program's own stack and resumes one
 * ready coroutine at a time; each runs until it yields back to the loop.
 * Nothing runs in parallel, so nothing needs a lock.  A function whose
 * comment says "May yield" can let other coroutines run before it
 * returns: what they share may have changed when it does.
 *
 * Each coroutine is one mmap(2) call, its struct on top of its stack.  The
 * guard at the bottom is made inaccessible with mprotect(2), which splits
 * the mapping in two for the kernel:
 *
 *     high  +------------------------+  -
 *           | struct coro            |  |  context, links, id
 *           +------------------------+  |  <- the stack starts here
 *           | signal frame (dead)    |  |  left by the kernel in step 4
 *           | the coroutine's frames |  |  of coro_make_context()
 *           |           |            |  STACK_SIZE
 *           |           v            |  |  the stack grows down...
 *           +------------------------+  -
 *           | guard, PROT_NONE       |  ...so an overflow faults here,
 *           | GUARD_SIZE bytes       |  if no frame is larger than
 *     low   +------------------------+  the guard (see GUARD_SIZE)
 *
 * Switching is sigsetjmp(3) and siglongjmp(3): save where we are, jump to
 * where the other coroutine saved itself.  The hard part is the first
 * entry into a fresh stack, which has no saved place to jump to.  C cannot
 * set a stack pointer, but the kernel can: it runs a signal handler on an
 * alternate stack if asked to (sigaltstack(2)).  So we make the new stack
 * the alternate signal stack, raise a signal, and save the handler's
 * context there; jumping to that context later runs code on the new
 * stack.  This is R. S. Engelschall's signal-stack trick ("Portable
 * Multithreading", USENIX 2000; GNU Pth's pth_mctx.c), told in numbered
 * steps in coro_make_context().  It calls only POSIX functions, but leans
 * on what C and POSIX leave undefined: a jump back into a signal handler
 * that has returned, and jumps between stacks.  It works with every C
 * library and CPU tried (the README's portability table); what could break
 * it is a mechanism that checks where jumps land, such as glibc's fortify
 * (section 1) or x86's shadow stacks.  Nothing in this section knows
 * sockets.
 */
struct coro {
    sigjmp_buf context;        /* where it goes on when resumed */
    struct coro *next;         /* in the ready queue or in the pool */
    void (*body)(int);         /* what it runs, and with what */
    int arg;
    unsigned id;               /* for the -v trace */
    bool is_ready;             /* in the ready queue */
    bool must_unmap;           /* finished with the pool full */
};

static struct coro *coro_current;      /* the running one; NULL on the loop */
static sigjmp_buf coro_loop_context;   /* the loop's registers: yield jumps here */
static size_t guard_size, map_size;    /* set by coro_init() */

/* Rounds n up to whole pages: mmap and mprotect work on pages. */
static size_t
whole_pages(size_t n, size_t page_size)
{
    return (n + page_size - 1) / page_size * page_size;
}

static void
coro_init(void)
{
    long page = sysconf(_SC_PAGESIZE);

    if (page <= 0)
        die("sysconf(_SC_PAGESIZE)");
    guard_size = whole_pages(GUARD_SIZE, (size_t)page);
    map_size = guard_size + whole_pages(STACK_SIZE, (size_t)page);
}

static void coro_trampoline(int signo);   /* does step 5 of the trick */
static void coro_main(void);           /* what every coroutine runs: below */
static struct coro *coro_being_made;   /* read by coro_trampoline() */

/*
 * Prepares c->context so that jumping to it runs coro_main() on the stack
 * [stack, stack + size).  Restores every piece of signal state it changes,
 * on the failing paths too.  Returns 0, or -1 with errno set.
 */
static int
coro_make_context(struct coro *c, char *stack, size_t size)
{
    struct sigaction trampoline, old_action;
    stack_t new_stack, old_stack;
    sigset_t blocked, old_mask;
    int result = -1;

    /* 1. Block every signal: none may land on the new stack but ours.
     *    (sigfillset leaves out SIGKILL and SIGSTOP, which nothing can
     *    block, and glibc's two for threads, which no one sends to this
     *    one-thread program.) */
    sigfillset(&blocked);
    if (sigprocmask(SIG_SETMASK, &blocked, &old_mask) < 0)
        return -1;
    /* 2. Catch SIGUSR1 with coro_trampoline, on the alternate stack. */
    memset(&trampoline, 0, sizeof trampoline);
    trampoline.sa_handler = coro_trampoline;
    trampoline.sa_flags = SA_ONSTACK;
    sigfillset(&trampoline.sa_mask);
    if (sigaction(SIGUSR1, &trampoline, &old_action) < 0)
        goto restore_mask;
    /* 3. Make the new stack the alternate signal stack. */
    memset(&new_stack, 0, sizeof new_stack);
    new_stack.ss_sp = stack;
    new_stack.ss_size = size;
    if (sigaltstack(&new_stack, &old_stack) < 0)
        goto restore_action;
    /* 4. raise() makes SIGUSR1 pending (it is blocked since step 1), and
     *    sigsuspend unblocks it alone and waits for it: the kernel pushes a
     *    signal frame (the registers to restore when the handler returns)
     *    at the top of the new stack, and runs coro_trampoline() below it.
     * 5. coro_trampoline() saves its context, on the new stack, with
     *    sigsetjmp, and returns; then sigsuspend returns too, back here on
     *    the stack we were called on. */
    coro_being_made = c;
    sigdelset(&blocked, SIGUSR1);
    if (raise(SIGUSR1) == 0) {
        sigsuspend(&blocked);          /* returns -1, EINTR, by design */
        result = 0;
    }
    /* 6. Put back the old alternate stack (usually: none).  Never leave a
     *    coroutine's stack registered: a later signal would push its frame
     *    over whatever that coroutine keeps there by then. */
    if (sigaltstack(&old_stack, NULL) < 0)
        broken("restoring the signal stack");
restore_action:
    if (sigaction(SIGUSR1, &old_action, NULL) < 0)
        broken("restoring the SIGUSR1 action");
restore_mask:
    if (sigprocmask(SIG_SETMASK, &old_mask, NULL) < 0)
        broken("restoring the signal mask");
    return result;
}

/*
 * The SIGUSR1 handler that step 2 installs and step 4 runs, on the new
 * stack.  Step 5 is its sigsetjmp: it saves the handler's context and
 * returns.  Later, the coroutine's first coro_resume() jumps to that
 * context: sigsetjmp returns a second time, now 1, here on the new stack,
 * and coro_main() starts.
 * C itself does not promise that jumping back into a function that has
 * returned works (C11, 7.13.2.1): it works here because nothing has
 * written over the handler's frame since, as the stack was not used in
 * between.  coro_main() must never return, for the frame it would return
 * into is that of a signal handler long finished.
 */
static void
coro_trampoline(int signo)
{
    (void)signo;
    if (sigsetjmp(coro_being_made->context, 0) == 0)   /* 5. */
        return;
    coro_main();
}

/* Maps a stack with its guard and makes a coroutine on it; NULL if
 * the system is out of memory or mappings (see vm.max_map_count). */
static struct coro *
coro_create(void)
{
    static unsigned n_created;
    char *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_COROUTINE_STACK, -1, 0);
    char *stack;
    struct coro *c;

    if (map == MAP_FAILED)
        return NULL;
    c = (struct coro *)(map + map_size) - 1;
    stack = map + guard_size;
    if (mprotect(map, guard_size, PROT_NONE) < 0 ||
        coro_make_context(c, stack, (size_t)((char *)c - stack)) < 0) {
        int saved_errno = errno;

        if (munmap(map, map_size) < 0)
            broken("munmap");
        errno = saved_errno;
        return NULL;
    }
    c->id = ++n_created;
    TRACE("coro %u created, stack %p-%p\n", c->id, (void *)stack, (void *)c);
    return c;
}

/*
 * Saves the running context in from and continues at to; returns when
 * someone jumps back to from.  sigsetjmp(env, 0) saves no signal mask, so
 * a switch is a few dozen instructions and no system call; saving the
 * mask would cost two sigprocmask(2) calls per switch, each far slower
 * than the whole switch (the README's notes time both).  Nothing is lost:
 * the mask is the same everywhere but inside coro_make_context() and the
 * loop's wait (loop_poll() in section 3, with the mask catch_signals()
 * makes in section 5).  Keep the save and the jump together in this small
 * function: no caller's local is then live across sigsetjmp, which is
 * what gcc's -Wclobbered warns about (a local kept in a register may hold
 * a stale value when the jump comes back).
 */
static void
coro_switch(sigjmp_buf from, sigjmp_buf to)
{
    if (sigsetjmp(from, 0) == 0)
        siglongjmp(to, 1);
}

/* Switches from the running coroutine back to the loop. */
static void
coro_yield(void)
{
    assert(coro_current != NULL);
    coro_switch(coro_current->context, coro_loop_context);
}

/* Runs c until it yields: the loop's side of coro_yield().  The first
 * resume of a new coroutine lands in coro_trampoline().  A coroutine cannot
 * unmap the stack it runs on, so a finished one asks the loop to. */
static void
coro_resume(struct coro *c)
{
    TRACE("coro %u resumed\n", c->id);
    coro_current = c;
    coro_switch(coro_loop_context, c->context);
    coro_current = NULL;
    if (c->must_unmap) {
        TRACE("coro %u unmapped\n", c->id);
        if (munmap((char *)(c + 1) - map_size, map_size) < 0)
            broken("munmap");
    }
}

/*
 * The ready queue: coroutines that can go on, in the order they became
 * ready.  The loop resumes them in turn; anyone may add to it.
 */
static struct coro *ready_first, *ready_last;

static void
coro_ready(struct coro *c)
{
    if (c->is_ready)
        return;
    c->is_ready = true;
    c->next = NULL;
    if (ready_last != NULL)
        ready_last->next = c;
    else
        ready_first = c;
    ready_last = c;
}

/* Yields, but stays ready: the others get a turn first. */
static void
coro_let_others_run(void)
{
    TRACE("coro %u lets others run\n", coro_current->id);
    coro_ready(coro_current);
    coro_yield();
}

/*
 * Resumes, in turn, the coroutines that were ready when it was called.
 * One that becomes ready again meanwhile (coro_let_others_run()) waits for
 * the next turn, after the loop has polled: no coroutine can keep the
 * loop from accepting, waking the others or expiring deadlines.  Returns
 * true if some coroutine is ready again.
 */
static bool
coro_run_ready(void)
{
    struct coro *c = ready_first;

    ready_first = ready_last = NULL;
    while (c != NULL) {
        struct coro *next = c->next;   /* before it may be queued anew */

        c->is_ready = false;
        coro_resume(c);
        c = next;
    }
    return ready_first != NULL;
}

/*
 * The pool.  A coroutine whose body has returned parks in the pool, and is
 * handed the next connection.  Making a coroutine takes 13 system calls
 * (strace -f, glibc 2.36: mmap, mprotect, then 11 for the trick, raise()
 * being three), unmapping it one more, and a fresh stack's pages fault in
 * as they are first written: together, thousands of times a switch (the
 * README's notes time it).  The pool pays that only while it grows.  Beyond
 * PARKED_MAX a finished coroutine is unmapped instead, so memory follows
 * the load down.
 *
 *     parked -> coro 4 -> coro 9 -> coro 2 -> NULL     (linked by next)
 */
static struct coro *parked;
static unsigned n_parked;

/* Parks self in the pool (or has it unmapped) and yields; returns only
 * when coro_spawn() hands it new work.  May yield. */
static void
coro_finish(struct coro *self)
{
    if (n_parked < PARKED_MAX) {
        self->next = parked;
        parked = self;
        n_parked++;
        TRACE("coro %u parked\n", self->id);
    } else {
        self->must_unmap = true;
        TRACE("coro %u finished, the pool is full\n", self->id);
    }
    coro_yield();
}

/* Every coroutine runs this from its first resume on, and never returns. */
static void
coro_main(void)
{
    struct coro *self = coro_current;

    for (;;) {
        self->body(self->arg);
        coro_finish(self);
    }
}

/* Readies a coroutine from the pool, or a new one, to run body(arg).
 * Returns 0, or -1 with errno set if a new one was needed and could not be
 * made.  Call it on the loop's stack only: the signal trick must not run
 * on a coroutine's stack, which was once an alternate signal stack
 * (valgrind refuses that; section 5). */
static int
coro_spawn(void (*body)(int), int arg)
{
    struct coro *c = parked;

    if (c != NULL) {
        parked = c->next;
        n_parked--;
    } else if ((c = coro_create()) == NULL) {
        return -1;
    }
    c->body = body;
    c->arg = arg;
    coro_ready(c);
    return 0;
}

/*
 * 3. Event loop
 * ---------------------------------------------------------------------
 * A coroutine whose read or write would block calls loop_wait(), which
 * yields.  The loop asks the kernel which sockets are ready (with
 * epoll_pwait or pselect), marks their coroutines ready, resumes them,
 * and repeats.
 *
 * A struct io is what the loop knows of one socket: whether it may be
 * read or written without blocking, which coroutine waits on it, and its
 * deadline.  It lives in the frame of the coroutine that owns the socket;
 * the listener's io belongs to the loop itself, and has no coroutine.
 */
/* What a coroutine waits for, and what the backend reports: the same
 * bits, so that io_ready() can match the one against the other. */
enum { WANT_READ = 1, WANT_WRITE = 2, PEER_CLOSED = 4, URGENT = 8 };

struct io {
    int fd;
    struct coro *coro;         /* the coroutine that uses fd; NULL: the loop */
    int waiting_for;           /* WANT_READ or WANT_WRITE while it waits */
    bool may_read;             /* input may be there: try before waiting */
    bool may_write;            /* the send buffer may have room */
    bool peer_closed;          /* the peer has shut down its side */
    bool urgent_came;          /* urgent data: a read may stop short */
    bool timed_out;            /* its deadline has passed */
    unsigned watched;          /* for the epoll backend: the events it
                                  watches; 0 while fd is not in its set */
    int64_t deadline_ms;       /* on the clock_ms() clock */
    struct deadline_list *deadline_list; /* holding its deadline, or NULL */
    struct io *earlier, *later; /* its neighbours there */
};

/* Nothing is known of a new socket's input yet (but see open_listener() in
 * section 5); it may be written, for its send buffer is empty. */
static void
io_init(struct io *io, int fd, struct coro *owner)
{
    memset(io, 0, sizeof *io);
    io->fd = fd;
    io->coro = owner;
    io->may_write = true;
}

/* The backend calls this for each socket it finds ready. */
static void
io_ready(struct io *io, int events)
{
    if (events & WANT_READ)
        io->may_read = true;
    if (events & WANT_WRITE)
        io->may_write = true;
    if (events & PEER_CLOSED)
        io->peer_closed = true;
    if (events & URGENT)
        io->urgent_came = true;
    if (io->coro != NULL && (io->waiting_for & events))
        coro_ready(io->coro);
}

/* Backend interface: each backend below provides exactly these.  The
 * comments { and }{ and } mark where the #if region opens, turns to the
 * other backend, and closes (a habit borrowed from Lua's sources). */
static void loop_init(const sigset_t *wait_mask); /* see catch_signals() */
static int  loop_accept(int listen_fd);   /* non-blocking fd, or -1, errno */
static int  loop_add(struct io *io);      /* -1 if it cannot watch io->fd */
static int  loop_watch(struct io *io, int want);  /* before waiting on it */
static void loop_forget(struct io *io);   /* call before close(io->fd) */
static int  loop_poll(int timeout_ms);    /* io_ready() each; returns count */

#if defined(USE_EPOLL)          /* { Linux: epoll(7) */
/*
 * epoll keeps the list of watched sockets in the kernel, and a list of
 * those with something to report, filled as packets arrive: epoll_wait(2)
 * takes only that one, so a wait costs the same with ten connections or
 * ten thousand.  A socket is watched edge-triggered (EPOLLET): each change
 * (input arrives, room to write opens) is reported once, and not again
 * while nothing new happens.  Because of that, io->may_read and
 * io->may_write remember it until a read or write uses it up.
 * A socket joins the set (EPOLL_CTL_ADD) only when a coroutine first
 * waits on it: a connection served from its first read and closed never
 * costs an epoll_ctl.  No edge is lost by adding late: an add of a socket
 * that is already ready reports it at the next wait (ep_insert() in the
 * kernel's fs/eventpoll.c).  Writability is asked for (EPOLL_CTL_MOD) only
 * when a write first has to wait: a new socket is writable at once, and
 * reporting that for every connection would cost an event each.
 * Closing a socket removes it from the set, so loop_forget() does nothing
 * (epoll(7): when its last descriptor is closed; this program never makes
 * a second one).
 * Linux only: epoll_create1, epoll_ctl, epoll_pwait, and accept4, which
 * makes the socket non-blocking in the same call.  A user may watch at
 * most /proc/sys/fs/epoll/max_user_watches sockets; past that, the add
 * fails, and so does the wait that asked for it: the connection closes.
 */
#include <sys/epoll.h>
#define BACKEND "epoll"
#define EPOLL_BATCH 256                /* events taken per epoll_pwait */

static int epoll_fd = -1;
static const sigset_t *epoll_wait_mask;

static void
loop_init(const sigset_t *wait_mask)
{
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0)
        die("epoll_create1");
    epoll_wait_mask = wait_mask;
}

static int
loop_accept(int listen_fd)
{
    return accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static int
loop_add(struct io *io)
{
    (void)io;                  /* loop_watch() adds it, if it must wait */
    return 0;
}

static int
loop_watch(struct io *io, int want)
{
    unsigned events = EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLET | (io->watched & EPOLLOUT) |
                      (want == WANT_WRITE ? EPOLLOUT : 0);
    struct epoll_event event;

    if (events == io->watched)
        return 0;
    memset(&event, 0, sizeof event);
    event.events = events;
    event.data.ptr = io;
    if (epoll_ctl(epoll_fd, io->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io->fd, &event) < 0)
        return -1;
    io->watched = events;
    return 0;
}

static void
loop_forget(struct io *io)
{
    (void)io;
}

/* A hang-up or error makes a read or write return at once, so it counts
 * as ready for both; EPOLLRDHUP also means the peer will send no more.
 * EPOLLPRI is TCP urgent data (tcp(7)): see conn_read(). */
static int
loop_poll(int timeout_ms)
{
    static struct epoll_event events[EPOLL_BATCH];
    int i, n = epoll_pwait(epoll_fd, events, EPOLL_BATCH, timeout_ms, epoll_wait_mask);

    if (n < 0 && errno != EINTR)
        broken("epoll_pwait");
    for (i = 0; i < n; i++) {
        uint32_t flags = events[i].events;

        io_ready(events[i].data.ptr,
                 (flags & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR) ? WANT_READ : 0) |
                 (flags & (EPOLLOUT | EPOLLHUP | EPOLLERR) ? WANT_WRITE : 0) |
                 (flags & (EPOLLRDHUP | EPOLLHUP | EPOLLERR) ? PEER_CLOSED : 0) |
                 (flags & EPOLLPRI ? URGENT : 0));
    }
    return n < 0 ? 0 : n;
}

#else                           /* }{ POSIX: select(2); fds < FD_SETSIZE only */
/*
 * select(2) is in every Unix.  Each call hands the kernel a bitmap of the
 * sockets of interest and gets back the ready ones, so its cost grows with
 * the highest descriptor, waiting or not: that is why epoll exists.  The
 * bitmap has FD_SETSIZE bits (1024 on Linux and macOS): FD_SET on a higher
 * descriptor writes past its end, so loop_add() refuses those and the
 * caller closes them.  Only calls that macOS and the BSDs have are used
 * here: accept(2) and fcntl(2), not accept4, which macOS lacks.
 */
#include <sys/select.h>
#define BACKEND "select"

static struct io *select_ios[FD_SETSIZE];     /* the io watching each fd */
static int select_max_fd = -1;
static const sigset_t *select_wait_mask;

static void
loop_init(const sigset_t *wait_mask)
{
    select_wait_mask = wait_mask;
}

static int
loop_accept(int listen_fd)
{
    int fd = accept(listen_fd, NULL, NULL);

    if (fd >= 0 && fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
        broken("fcntl O_NONBLOCK");
    return fd;
}

static int
loop_add(struct io *io)
{
    if (io->fd >= FD_SETSIZE) {
        errno = EMFILE;
        return -1;
    }
    select_ios[io->fd] = io;
    if (io->fd > select_max_fd)
        select_max_fd = io->fd;
    return 0;
}

static int
loop_watch(struct io *io, int want)
{
    (void)io, (void)want;      /* loop_poll() reads io->waiting_for */
    return 0;
}

static void
loop_forget(struct io *io)
{
    select_ios[io->fd] = NULL;
    while (select_max_fd >= 0 && select_ios[select_max_fd] == NULL)
        select_max_fd--;
}

/* Level-triggered: a socket is asked about only while a coroutine waits. */
static int
loop_poll(int timeout_ms)
{
    fd_set readable, writable;
    struct timespec timeout = { timeout_ms / 1000, timeout_ms % 1000 * 1000000L };
    int fd, n;

    FD_ZERO(&readable);
    FD_ZERO(&writable);
    for (fd = 0; fd <= select_max_fd; fd++) {
        if (select_ios[fd] && select_ios[fd]->waiting_for == WANT_READ)
            FD_SET(fd, &readable);
        if (select_ios[fd] && select_ios[fd]->waiting_for == WANT_WRITE)
            FD_SET(fd, &writable);
    }
    n = pselect(select_max_fd + 1, &readable, &writable, NULL,
                timeout_ms < 0 ? NULL : &timeout, select_wait_mask);
    if (n < 0 && errno != EINTR)
        broken("pselect");
    for (fd = 0; n > 0 && fd <= select_max_fd; fd++) {
        int events = (FD_ISSET(fd, &readable) ? WANT_READ : 0) |
                     (FD_ISSET(fd, &writable) ? WANT_WRITE : 0);
        if (events)
            io_ready(select_ios[fd], events);
    }
    return n < 0 ? 0 : n;
}

#endif                          /* } */

/*
 * Deadlines make a slow client harmless: when one passes, loop_wait()
 * returns -1 and the coroutine closes its connection.  Every deadline is
 * "now + one of three lengths": the idle timeout (-t), a lingering close
 * (LINGER_MS, section 4) or an accept pause (ACCEPT_PAUSE_MS, section 5).
 * Deadlines of one length are set in the order they fall due (the same
 * length added to a clock that only goes forward), so a list per length
 * stays sorted if each new one is appended: setting, clearing and
 * expiring a deadline cost the same with ten connections or ten thousand,
 * and the next deadline to fall due heads one of the lists.
 *
 *     idle_deadlines:    io (10:00:01) <-> io (10:00:04) <-> io (10:00:09)
 *     linger_deadlines:  io (10:00:02)
 *     pause_deadlines:   (none)
 */
struct deadline_list {
    int64_t length_ms;                 /* each one is set this far ahead */
    struct io *first, *last;           /* the first falls due first */
};
static struct deadline_list idle_deadlines = { DEFAULT_IDLE_TIMEOUT_S * 1000, NULL, NULL },
                            linger_deadlines = { LINGER_MS, NULL, NULL },
                            pause_deadlines = { ACCEPT_PAUSE_MS, NULL, NULL };
static struct deadline_list *const deadline_lists[] = {
    &idle_deadlines, &linger_deadlines, &pause_deadlines
};
#define N_DEADLINE_LISTS (sizeof deadline_lists / sizeof deadline_lists[0])

/* Milliseconds on a clock that only goes forward.  On Linux,
 * clock_gettime(2) is answered in user space, by code the kernel maps into
 * every process (the vDSO, vdso(7)), without a system call, where the
 * hardware clock the kernel reads allows it (the CPU's counter, TSC, does,
 * and kvm-clock in a VM; hpet does not): reading it per request is
 * cheaper than caching the time and keeping the cache up to date. */
static int64_t
clock_ms(void)
{
    struct timespec now;

    if (clock_gettime(CLOCK_MONOTONIC, &now) < 0)
        broken("clock_gettime");
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void
loop_clear_deadline(struct io *io)
{
    struct deadline_list *list = io->deadline_list;

    if (list != NULL) {
        if (io->earlier != NULL)
            io->earlier->later = io->later;
        else
            list->first = io->later;
        if (io->later != NULL)
            io->later->earlier = io->earlier;
        else
            list->last = io->earlier;
        io->deadline_list = NULL;
    }
    io->timed_out = false;
}

/* From now on, a wait on io fails once list->length_ms have passed. */
static void
loop_set_deadline(struct io *io, struct deadline_list *list)
{
    loop_clear_deadline(io);
    io->deadline_ms = clock_ms() + list->length_ms;
    io->deadline_list = list;
    io->earlier = list->last;
    io->later = NULL;
    if (list->last != NULL)
        list->last->later = io;
    else
        list->first = io;
    list->last = io;
}

/* The io whose deadline falls due first, or NULL if none is set. */
static struct io *
loop_next_deadline(void)
{
    struct io *next = NULL;
    size_t i;

    for (i = 0; i < N_DEADLINE_LISTS; i++) {
        struct io *first = deadline_lists[i]->first;

        if (first != NULL && (next == NULL || first->deadline_ms < next->deadline_ms))
            next = first;
    }
    return next;
}

/* Marks every io whose deadline has passed, and readies its coroutine. */
static void
loop_expire_deadlines(void)
{
    int64_t now = clock_ms();
    struct io *io;

    while ((io = loop_next_deadline()) != NULL && io->deadline_ms <= now) {
        loop_clear_deadline(io);
        io->timed_out = true;
        if (io->coro != NULL) {
            TRACE("coro %u deadline passed on fd %d\n", io->coro->id, io->fd);
            coro_ready(io->coro);
        }
    }
}

/*
 * Waits until io->fd is ready for want (WANT_READ or WANT_WRITE).
 * Returns 0, or -1 once the deadline has passed.  May yield.
 */
static int
loop_wait(struct io *io, int want)
{
    bool *ready = want == WANT_READ ? &io->may_read : &io->may_write;

    assert(io->coro == coro_current);
    while (!*ready && !io->timed_out) {
        TRACE("coro %u waits on fd %d for %s\n", io->coro->id, io->fd,
              want == WANT_READ ? "read" : "write");
        if (loop_watch(io, want) < 0)
            return -1;
        io->waiting_for = want;
        coro_yield();
        io->waiting_for = 0;
    }
    return io->timed_out ? -1 : 0;
}

/* Milliseconds left until deadline_ms, for a wait's timeout; rounded up,
 * since clock_ms() rounds down and waking a hair early is a wasted turn. */
static int
ms_until(int64_t deadline_ms)
{
    int64_t left = deadline_ms - clock_ms();

    return left < 0 ? 0 : left >= INT_MAX ? INT_MAX : (int)left + 1;
}

/*
 * One turn of the loop: run the coroutines that are ready, sleep until a
 * socket is ready or the next deadline passes (or only look, if some
 * coroutine is ready again), and mark what became ready.
 */
static void
loop_once(void)
{
    bool someone_ready = coro_run_ready();
    struct io *next_deadline = loop_next_deadline();
    int timeout_ms = -1, n_ready;

    if (someone_ready)
        timeout_ms = 0;                /* just look, then run them */
    else if (next_deadline != NULL)
        timeout_ms = ms_until(next_deadline->deadline_ms);
    n_ready = loop_poll(timeout_ms);
    TRACE("loop: %s reports %d ready\n", BACKEND, n_ready);
    loop_expire_deadlines();
}

/*
 * 4. The connection
 * ---------------------------------------------------------------------
 * serve_connection() is what everything above is for: one function,
 * written as if its reads and writes blocked, serving one connection from
 * accept to close.  Its locals survive every wait, because its coroutine
 * keeps its stack while the loop serves the others.
 *
 * Like the 2009 experiment it does not parse requests: any method and any
 * path get Hello, World.  It reads the request head (the request line and
 * the header lines, up to a blank line) one line at a time, only to notice
 * the few things a correct reply depends on (RFC 9112):
 *  - the version and Connection: HTTP/1.1 keeps the connection open for
 *    the next request unless the client sends "Connection: close"; 1.0
 *    closes after the reply unless the client sends "Connection:
 *    keep-alive", which the reply then repeats (section 9.3; ab -k looks
 *    for it).  A reply after which we close says "Connection: close".
 *  - where the head ends: input after the blank line is the next request
 *    (pipelining, section 9.3.2), answered in order; a head split across
 *    many reads is answered once.  Lines may end in CRLF or LF (2.2).
 *  - HEAD, answered with the same headers and no body (RFC 9110, 9.3.2).
 *  - a body (Content-Length above 0, or Transfer-Encoding: section 6.3).
 *    We never read bodies, so we close after the reply, rather than read
 *    the body as if it were the next request.
 *  - malformed input: a bad request line or header line gets 400, a head
 *    over HEAD_MAX_BYTES 431, an HTTP major version other than 1 gets 505.
 *    Each is answered and the connection closed.
 */
struct conn {
    struct io io;
    size_t start, end;         /* unread input is buf[start..end) */
    size_t head_left;          /* bytes the current head may still take */
    bool skipping_line;        /* dropping the rest of an overlong line */
    bool has_read;             /* false until conn_read() is first called */
    char buf[CONN_BUF_SIZE];
};

struct request {
    bool is_head;              /* HEAD: no body in the reply */
    bool is_http10;            /* HTTP/1.0: closes unless asked not to */
    bool wants_close;          /* Connection: close */
    bool wants_keep_alive;     /* Connection: keep-alive */
    bool has_body;             /* which we will not read */
};

static struct {
    unsigned long connections, requests, open, peak_open;
} totals;

/*
 * Reads up to size bytes.  Returns the count, 0 at end of input, or -1 on
 * an error or timeout.  May yield.
 *
 * First, a coroutine that could read at once still yields first, so a
 * client pipelining without pause cannot keep the others from their turn;
 * but not before a connection's first read, which starts its first turn.
 *
 * Second, a short read means the socket is empty: the next input brings a
 * new readiness event, so until then we wait instead of reading just to be
 * told EAGAIN.  That rule has two exceptions.  Once the peer has closed,
 * EOF stays readable but brings no new event.  And TCP urgent data (a byte
 * sent with MSG_OOB) puts a mark in the input where read stops short
 * though more has arrived (sockatmark(3)): epoll reports urgent data
 * (EPOLLPRI), and from then on short reads on that socket are not trusted;
 * we read on until EAGAIN.  (select needs no such care: it asks again, and
 * the rest is still readable.)
 */
static ssize_t
conn_read(struct conn *conn, char *buf, size_t size)
{
    struct io *io = &conn->io;

    if (io->may_read && conn->has_read)
        coro_let_others_run();
    conn->has_read = true;
    for (;;) {
        ssize_t n;

        if (!io->may_read && loop_wait(io, WANT_READ) < 0)
            return -1;
        n = read(io->fd, buf, size);
        if (n >= 0) {
            if ((size_t)n < size && !io->peer_closed && !io->urgent_came)
                io->may_read = false;
            return n;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            io->may_read = false;
        else if (errno != EINTR)
            return -1;
    }
}

/* Writes all len bytes.  Returns 0, or -1 on an error or timeout.  May yield. */
static int
conn_write(struct conn *conn, const char *data, size_t len)
{
    struct io *io = &conn->io;

    while (len > 0) {
        ssize_t n;

        if (!io->may_write && loop_wait(io, WANT_WRITE) < 0)
            return -1;
        n = write(io->fd, data, len);
        if (n >= 0) {
            data += n;
            len -= (size_t)n;
            io->may_write = len == 0;      /* short: the buffer is full */
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            io->may_write = false;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* Moves unread input to the front of buf and reads more after it.
 * Returns what conn_read() returns.  May yield. */
static ssize_t
conn_fill(struct conn *conn)
{
    ssize_t n;

    memmove(conn->buf, conn->buf + conn->start, conn->end - conn->start);
    conn->end -= conn->start;
    conn->start = 0;
    n = conn_read(conn, conn->buf + conn->end, sizeof conn->buf - conn->end);
    if (n > 0)
        conn->end += (size_t)n;
    return n;
}

enum line { LINE_GONE, LINE_WHOLE, LINE_CUT, LINE_TOO_MUCH };

/*
 * Finds the next line of a request head, reading as needed, and points
 * *line and *len at it, line end excluded.  Returns LINE_WHOLE; LINE_CUT
 * for the first CONN_BUF_SIZE bytes of a longer line; LINE_TOO_MUCH once
 * the head passes HEAD_MAX_BYTES; or LINE_GONE if the client closed,
 * failed or timed out.  May yield.  After a cut line, conn->skipping_line
 * stays set until the line's end has come: the next call drops the rest
 * of that line, buffer by buffer, and then finds the line after it.  So a
 * 5 KiB header line, with a 2 KiB buffer, gives LINE_CUT for its first 2
 * KiB; the next call drops the other 3 KiB, a buffer at a time as they
 * come, and returns the line after it.
 */
static enum line
conn_read_line(struct conn *conn, char **line, size_t *len)
{
    for (;;) {
        char *begin = conn->buf + conn->start;
        size_t avail = conn->end - conn->start;
        char *newline = memchr(begin, '\n', avail);
        size_t used = newline ? (size_t)(newline + 1 - begin) : avail;
        bool was_skipping = conn->skipping_line;

        if (used > conn->head_left)
            return LINE_TOO_MUCH;
        if (!newline && !was_skipping && avail < sizeof conn->buf) {
            if (conn_fill(conn) <= 0)   /* part of a line: read on */
                return LINE_GONE;
            continue;
        }
        /* Take the bytes: a whole line, a full buffer that is a line to
         * cut, or more of the rest of a cut line. */
        conn->start += used;
        conn->head_left -= used;
        conn->skipping_line = newline == NULL;
        if (was_skipping) {             /* that rest is dropped */
            if (!newline && conn_fill(conn) <= 0)
                return LINE_GONE;
            continue;                   /* its end came: the next line */
        }
        *line = begin;
        *len = newline ? used - 1 : used;
        if (newline && *len > 0 && begin[*len - 1] == '\r')
            (*len)--;
        return newline ? LINE_WHOLE : LINE_CUT;
    }
}

/* tchar, the characters of a method or a header name (RFC 9110, 5.6.2). */
static bool
is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool
all_tchars(const char *p, size_t len)
{
    while (len > 0 && is_tchar((unsigned char)*p))
        p++, len--;
    return len == 0;
}

/*
 * Checks "METHOD SP TARGET SP HTTP/x.y" (RFC 9112, section 3).  Returns
 * 200, noting the version; 400; or 505 for a major version other than 1.
 * A higher 1.x is answered as 1.1 (RFC 9110, section 2.5).
 */
static int
parse_request_line(const char *line, size_t len, struct request *req)
{
    const char *end = line + len, *method_end = memchr(line, ' ', len);
    const char *target, *target_end, *version;

    if (method_end == NULL || method_end == line || !all_tchars(line, (size_t)(method_end - line)))
        return 400;
    target = method_end + 1;
    for (target_end = target; target_end < end && *target_end > 0x20 && *target_end < 0x7f; target_end++)
        continue;
    if (target_end == target || target_end == end || *target_end != ' ')
        return 400;
    version = target_end + 1;
    if (end - version != 8 || memcmp(version, "HTTP/", 5) != 0 || version[5] < '0' ||
        version[5] > '9' || version[6] != '.' || version[7] < '0' || version[7] > '9')
        return 400;
    if (version[5] != '1')
        return 505;
    req->is_http10 = version[7] == '0';
    return 200;
}

/* Drops optional whitespace (spaces and tabs) from both ends of [*p, *end). */
static void
trim_ows(const char **p, const char **end)
{
    while (*p < *end && (**p == ' ' || **p == '\t'))
        (*p)++;
    while (*end > *p && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
        (*end)--;
}

static bool
names_match(const char *name, size_t len, const char *wanted)
{
    return len == strlen(wanted) && strncasecmp(name, wanted, len) == 0;
}

/* Notes "close" and "keep-alive" among the comma-separated options of a
 * Connection header (RFC 9110, 7.6.1); both are case-insensitive. */
static void
note_connection_options(const char *p, const char *end, struct request *req)
{
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *next = comma ? comma + 1 : end, *option_end = comma ? comma : end;

        trim_ows(&p, &option_end);
        if (names_match(p, (size_t)(option_end - p), "close"))
            req->wants_close = true;
        else if (names_match(p, (size_t)(option_end - p), "keep-alive"))
            req->wants_keep_alive = true;
        p = next;
    }
}

/* Notes a body if the Content-Length value is a number above 0.  Returns
 * 200, or 400 if it is not one number: not a number at all (RFC 9112,
 * 6.3), or a list such as "5, 5", which a recipient may reject (RFC 9110,
 * 8.6) and we do. */
static int
note_content_length(const char *p, const char *end, struct request *req)
{
    if (p == end)
        return 400;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return 400;
        if (*p != '0')
            req->has_body = true;
    }
    return 200;
}

/*
 * Checks one header line, "name: value" (RFC 9112, 5), and notes the three
 * headers the reply depends on.  A line cut short (is_cut) still has its
 * name: if it is Connection or Content-Length, whose values we must read
 * whole, that is 431.  Returns 200, 400 or 431.
 */
static int
parse_header(const char *line, size_t len, bool is_cut, struct request *req)
{
    const char *colon = memchr(line, ':', len), *value, *end = line + len, *p;
    size_t name_len;

    if (colon == NULL)
        return is_cut ? 431 : 400;
    name_len = (size_t)(colon - line);
    if (name_len == 0 || !all_tchars(line, name_len))
        return 400;         /* also "Name :", and a line folded (continued
                               from the one before), which 5.2 forbids */
    for (p = colon + 1; p < end; p++) {     /* CTLs but tab: RFC 9110, 5.5 */
        unsigned char c = (unsigned char)*p;

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 400;
    }
    value = colon + 1;
    trim_ows(&value, &end);
    if (names_match(line, name_len, "Transfer-Encoding")) {
        req->has_body = true;
    } else if (names_match(line, name_len, "Connection")) {
        if (is_cut)
            return 431;
        note_connection_options(value, end, req);
    } else if (names_match(line, name_len, "Content-Length")) {
        return is_cut ? 431 : note_content_length(value, end, req);
    }
    return 200;
}

/*
 * Reads one request head.  Returns the status to answer with (200, 400,
 * 414, 431 or 505), or 0 if the client closed, failed or timed out
 * before a whole head arrived.  May yield.
 */
static int
read_request(struct conn *conn, struct request *req)
{
    char *line;
    size_t len;
    enum line got;
    int status;

    memset(req, 0, sizeof *req);
    conn->head_left = HEAD_MAX_BYTES;
    do                          /* blank lines before a request: RFC 9112, 2.2 */
        got = conn_read_line(conn, &line, &len);
    while (got == LINE_WHOLE && len == 0);
    if (got == LINE_GONE || got == LINE_TOO_MUCH)
        return got == LINE_GONE ? 0 : 431;
    /* HEAD first: no reply to it has a body, an error's neither (RFC 9110,
     * 9.3.2), and a line cut at 2 KiB still has its method. */
    req->is_head = len >= 5 && memcmp(line, "HEAD ", 5) == 0;
    if (got == LINE_CUT)
        return 414;
    status = parse_request_line(line, len, req);
    while (status == 200) {
        got = conn_read_line(conn, &line, &len);
        if (got == LINE_GONE)
            return 0;
        if (got == LINE_TOO_MUCH)
            return 431;
        if (got == LINE_WHOLE && len == 0)
            break;              /* the blank line that ends the head */
        status = parse_header(line, len, got == LINE_CUT, req);
    }
    return status;
}

/* HTTP/1.1 keeps the connection unless told to close; 1.0 closes unless
 * told to keep it (RFC 9112, 9.3).  A body we will not read closes it. */
static bool
request_keeps_alive(const struct request *req)
{
    if (req->has_body || req->wants_close)
        return false;
    return !req->is_http10 || req->wants_keep_alive;
}

/* The Date header field (RFC 9110, 6.6.1) in its one format (5.6.7), e.g.
 * "Sun, 06 Nov 1994 08:49:37 GMT". */
static char http_date[sizeof "Sun, 06 Nov 1994 08:49:37 GMT"];

/*
 * Formats http_date anew when the second has changed.  The loop calls it
 * on its own stack: gmtime_r and strftime are called once a second, not
 * per request, and their deep frames never touch a coroutine's stack (an
 * idle connection keeps every stack page it has ever touched).
 */
static void
http_date_refresh(void)
{
    static time_t formatted;
    time_t now = time(NULL);
    struct tm tm;

    if (now == formatted)
        return;
    formatted = now;
    if (gmtime_r(&now, &tm) == NULL ||
        strftime(http_date, sizeof http_date, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
        die("formatting the date");
}

static const struct {
    int status;
    const char *status_line, *body;
} replies[] = {
    { 200, "HTTP/1.1 200 OK\r\n", "Hello, World!\n" },
    { 400, "HTTP/1.1 400 Bad Request\r\n", "Bad Request\n" },
    { 414, "HTTP/1.1 414 URI Too Long\r\n", "URI Too Long\n" },
    { 431, "HTTP/1.1 431 Request Header Fields Too Large\r\n",
      "Request Header Fields Too Large\n" },
    { 503, "HTTP/1.1 503 Service Unavailable\r\n", "Service Unavailable\n" },
    { 505, "HTTP/1.1 505 HTTP Version Not Supported\r\n", "HTTP Version Not Supported\n" },
};

#define REPLY_MAX_BYTES 320    /* format_reply()'s longest, and room to spare */

static size_t
append(char *out, size_t at, const char *text)
{
    size_t len = strlen(text);

    assert(at + len <= REPLY_MAX_BYTES);
    memcpy(out + at, text, len);
    return at + len;
}

static size_t
append_number(char *out, size_t at, size_t n)
{
    char digits[24], *p = digits + sizeof digits;

    *--p = '\0';
    do
        *--p = (char)('0' + n % 10);
    while ((n /= 10) > 0);
    return append(out, at, p);
}

/*
 * Formats the whole reply in out[REPLY_MAX_BYTES], with memcpy rather than
 * printf, which would take kilobytes of coroutine stack.  Returns its
 * length.  The space after "Content-Length:" matters: ab -k skips the one
 * byte after the colon (atoi(cl + 16) in Apache's support/ab.c, where cl
 * points at the 15-byte name with its colon), so without the space ab
 * would lose the first digit.
 */
static size_t
format_reply(char *out, int status, bool is_head, const char *connection)
{
    size_t i = 0, at, n_replies = sizeof replies / sizeof replies[0];

    while (i < n_replies && replies[i].status != status)
        i++;
    assert(i < n_replies);
    at = append(out, 0, replies[i].status_line);
    at = append(out, at, "Server: tinyhttpd\r\nDate: ");
    at = append(out, at, http_date);
    at = append(out, at, "\r\nContent-Type: text/plain\r\nContent-Length: ");
    at = append_number(out, at, strlen(replies[i].body));
    at = append(out, at, "\r\n");
    at = append(out, at, connection);
    at = append(out, at, "\r\n");
    return is_head ? at : append(out, at, replies[i].body);
}

/* Answers one request.  Returns 0, or -1 if the client is gone.  May yield. */
static int
send_reply(struct conn *conn, const struct request *req, int status, bool keep_alive)
{
    char reply[REPLY_MAX_BYTES];
    const char *connection = !keep_alive ? "Connection: close\r\n"
                           : req->is_http10 ? "Connection: keep-alive\r\n" : "";

    TRACE("coro %u replies %d on fd %d\n", coro_current->id, status, conn->io.fd);
    totals.requests++;
    return conn_write(conn, reply, format_reply(reply, status, req->is_head, connection));
}

/* Closes fd.  Only EBADF is a bug; any other failure (EINTR, EIO, or on
 * FreeBSD ECONNRESET from a peer that reset) still frees the descriptor. */
static void
close_socket(int fd)
{
    if (close(fd) < 0 && errno == EBADF)
        broken("close");
}

/*
 * Answers 503 and closes, for a connection we cannot serve (no memory for
 * a coroutine, or an fd the backend cannot watch).  Best effort: one write
 * without waiting (a new socket's send buffer is empty, so it takes the
 * reply), then a plain close, which may reset the connection and lose
 * the reply if the request has arrived meanwhile.
 */
static void
refuse_connection(int fd)
{
    char reply[REPLY_MAX_BYTES];
    size_t len = format_reply(reply, 503, false, "Connection: close\r\n");

    (void)write(fd, reply, len);       /* a client gone already is no matter */
    close_socket(fd);
}

/*
 * Closes the connection.  Closing a socket whose input we have not read
 * makes the kernel send a reset, which can destroy our reply before the
 * client reads it (RFC 9112, 9.6).  So when input may be left, we shut
 * down our sending side first and read and drop what still comes, for up
 * to LINGER_MS or LINGER_BYTES.  Otherwise just close: a lingering close
 * on every connection would cost calls a plain event loop never makes.
 * May yield.
 */
static void
conn_close(struct conn *conn, bool linger)
{
    struct io *io = &conn->io;

    if (linger && shutdown(io->fd, SHUT_WR) == 0) {
        size_t drained = 0;
        ssize_t n;

        TRACE("coro %u lingers on fd %d before closing\n", io->coro->id, io->fd);
        loop_set_deadline(io, &linger_deadlines);
        while (drained < LINGER_BYTES && (n = conn_read(conn, conn->buf, sizeof conn->buf)) > 0)
            drained += (size_t)n;
    }
    loop_clear_deadline(io);
    loop_forget(io);
    TRACE("coro %u done with fd %d\n", io->coro->id, io->fd);
    close_socket(io->fd);
    totals.open--;
}

/* After the last reply: may the client have sent input we have not read
 * (RFC 9112, 9.6)?  An error or a body leaves some; so do bytes in our
 * buffer, or a socket not known to be empty. */
static bool
unread_input_may_remain(const struct conn *conn, const struct request *req, int status)
{
    return status != 200 || req->has_body || conn->start < conn->end || conn->io.may_read;
}

/*
 * The body of each connection's coroutine: read a request, answer it,
 * and go on while the connection is kept alive.  Every call that can wait
 * yields inside; none of that shows here.  May yield.
 */
static void
serve_connection(int fd)
{
    struct conn conn;
    struct request req;
    bool linger = false;

    io_init(&conn.io, fd, coro_current);
    conn.io.may_read = DEFER_ACCEPT != 0;      /* its request is likely in: open_listener() */
    conn.start = conn.end = 0;
    conn.skipping_line = conn.has_read = false;
    if (loop_add(&conn.io) < 0) {
        TRACE("coro %u cannot watch fd %d: %s\n", coro_current->id, fd, strerror(errno));
        refuse_connection(fd);
        return;
    }
    TRACE("coro %u handed fd %d\n", coro_current->id, fd);
    totals.connections++;
    if (++totals.open > totals.peak_open)
        totals.peak_open = totals.open;
    for (;;) {
        int status;
        bool keep_alive;

        loop_set_deadline(&conn.io, &idle_deadlines);
        status = read_request(&conn, &req);
        if (status == 0)
            break;              /* closed, failed or timed out: no reply */
        keep_alive = status == 200 && request_keeps_alive(&req);
        if (send_reply(&conn, &req, status, keep_alive) < 0)
            break;
        if (!keep_alive) {
            linger = unread_input_may_remain(&conn, &req, status);
            break;
        }
    }
    conn_close(&conn, linger);
}

/*
 * 5. Listener, signals, totals
 * ---------------------------------------------------------------------
 * The listener needs no coroutine: accepting never has to wait, so the
 * loop itself accepts, on its own stack, whenever the listening socket is
 * readable, and hands each connection to a coroutine.  So coroutines are
 * made only on the loop's stack, and the signal trick never runs on a
 * stack that was itself once the alternate signal stack: POSIX allows
 * that, but some emulations of sigaltstack(2) do not (valgrind's refuses
 * it with EPERM).
 *
 * The backlog (listen(2)) is how many connections the kernel completes
 * and queues for us while we are busy.  When it is full, Linux drops a
 * new connection's SYN, and the client sends it again only after a
 * timeout: 3 s in 2009, doubling at each try (RFC 2988), so 3 s + 6 s,
 * where that benchmark's 9.2 s request came from with a backlog of 5.
 * Today the first timeout is 1 s (RFC 6298), and Linux 6.5 and later keep
 * it at 1 s for the first five tries before doubling (the sysctl
 * net.ipv4.tcp_syn_linear_timeouts, 4 by default): a SYN dropped once
 * connects after 1 s, twice after 2 s.  With deferred accept (see
 * open_listener()), a full queue also drops the request that would
 * complete a connection; the client sends it again, in 200 ms or more.  A
 * backlog of 128 cannot fill while at most 128 clients connect at once;
 * the README's backlog table counts both cases.
 */
static struct io listener;             /* coro NULL: served by the loop */

/*
 * Out of descriptors, accepting pauses for ACCEPT_PAUSE_MS: the listener
 * gets a deadline, as a connection does, and the loop does not accept
 * while it runs.  Its waiting_for is 0 meanwhile, so select is not asked
 * about a listener that stays readable, which would wake it at once, and
 * again, until the pause ends.  When the deadline passes the loop simply
 * tries again (serve_forever()): listener.may_read stayed true through the
 * pause, so the retry needs no new event.
 */
static bool
accept_paused(void)
{
    return listener.deadline_list != NULL;
}

/* Accepts every waiting connection and spawns a coroutine for each. */
static void
accept_connections(void)
{
    while (listener.may_read) {
        int fd = loop_accept(listener.fd);

        if (fd >= 0) {
            TRACE("loop: accepted fd %d\n", fd);
            if (coro_spawn(serve_connection, fd) < 0) {
                TRACE("loop: no coroutine for fd %d: %s\n", fd, strerror(errno));
                refuse_connection(fd);
            }
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            listener.may_read = false;
        } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors or memory.  The connection stays in the
             * backlog and the socket stays readable: retrying at once
             * would spin.  Pause instead (see accept_paused()); the
             * connections that close meanwhile free what accept needs. */
            TRACE("loop: accept: %s; pausing %d ms\n", strerror(errno), ACCEPT_PAUSE_MS);
            loop_set_deadline(&listener, &pause_deadlines);
            break;
        } else if (errno == EBADF || errno == EINVAL || errno == ENOTSOCK || errno == EFAULT) {
            broken("accept");
        }
        /* Anything else (ECONNABORTED, EINTR, EPROTO, or a network error
         * Linux passes on from the new connection) concerned that one
         * connection: go on with the next. */
    }
    /* Ask the backend about the listener only when we would act on it. */
    listener.waiting_for = accept_paused() ? 0 : WANT_READ;
}

/*
 * The backlog in force, or -1 where we cannot tell.  listen(2) may cap what
 * we ask for without a word: Linux at net.core.somaxconn.  There TCP_INFO
 * on a listener reads back the value the kernel keeps (tcpi_sacked, in
 * tcp_get_info() of its net/ipv4/tcp.c), which ss -ltn shows too.  Linux
 * queues one connection more than that: it deems the queue full only
 * when it holds more (sk_acceptq_is_full()).
 */
#if defined(__linux__)          /* { Linux: tcp(7) */
static int
listener_backlog(int fd)
{
    struct tcp_info info;
    socklen_t len = sizeof info;

    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_sacked) + sizeof info.tcpi_sacked)
        return -1;             /* cannot tell (qemu-user passes 4 bytes) */
    return (int)info.tcpi_sacked;
}
#else                           /* }{ elsewhere: cannot tell */
static int
listener_backlog(int fd)
{
    (void)fd;
    return -1;
}
#endif                          /* } */

/* Opens the listening socket; name ("127.0.0.1:8080") is for messages. */
static int
open_listener(const struct sockaddr *address, socklen_t len, int backlog, const char *name)
{
    int fd = socket(address->sa_family, SOCK_STREAM, 0), one = 1, defer_s = DEFER_ACCEPT_S;

    if (fd < 0)
        die("socket");
    /* Restart at once after Ctrl-C, despite old connections in TIME_WAIT
     * (closed, but kept by the kernel for 60 s on Linux, so that their
     * late packets cannot be taken for a new connection's).
     * Not SO_REUSEPORT: a second server must fail, not share the port. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("setsockopt SO_REUSEADDR");
    /* Each reply is one write.  Without TCP_NODELAY, Nagle's algorithm
     * (RFC 896) holds a pipelined reply until the client acknowledges the
     * one before.  Accepted sockets inherit it from the listener (checked
     * with getsockopt on Linux): no call per connection. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt TCP_NODELAY");
    /* Deferred accept (Linux, tcp(7)): the kernel completes a connection
     * but tells us of it only once the client's first data has come, so
     * its request is there when we accept it, and the coroutine reads it
     * without waiting first.  A connection completed by a SYN cookie, when
     * the kernel's queue is full, comes at once and empty: its first read
     * finds nothing, and it waits.  A client that connects and says nothing
     * is held in the kernel's queue of handshakes for DEFER_ACCEPT_S, then
     * handed to us anyway (the README's notes say what that costs).  nginx
     * has the same, off by default (listen ... deferred).  FreeBSD's accept
     * filters (accf_data(9)) do the like but need a kernel module: unused. */
    if (DEFER_ACCEPT != 0 && setsockopt(fd, IPPROTO_TCP, DEFER_ACCEPT, &defer_s, sizeof defer_s) < 0)
        die("setsockopt TCP_DEFER_ACCEPT");
    if (bind(fd, address, len) < 0)
        die("bind %s", name);
    if (listen(fd, backlog) < 0)
        die("listen %s", name);
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
        die("fcntl O_NONBLOCK");
    return fd;
}

/* Writes where we serve, "http://127.0.0.1:8080/" or "http://[::1]:8080/",
 * with the port the kernel chose if we asked for port 0. */
static void
listener_url(int fd, char *url, size_t size)
{
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&bound;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&bound;
    char host[INET6_ADDRSTRLEN];

    if (getsockname(fd, (struct sockaddr *)&bound, &len) < 0)
        die("getsockname");
    if (bound.ss_family == AF_INET6) {
        if (inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host) == NULL)
            die("inet_ntop");
        snprintf(url, size, "http://[%s]:%d/", host, ntohs(v6->sin6_port));
    } else {
        if (inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host) == NULL)
            die("inet_ntop");
        snprintf(url, size, "http://%s:%d/", host, ntohs(v4->sin_port));
    }
}

/*
 * Each connection takes a descriptor: raise the soft limit as far as the
 * system grants, which is the hard limit on Linux.  Not everywhere: macOS
 * reports an unlimited hard limit but refuses more than its
 * kern.maxfilesperproc (kern.maxfiles for root), whatever that is set
 * to.  So a refused raise is followed by a search, by halves, for the
 * largest limit granted: at most 64 calls, once, at start.  The search
 * relies on a refused setrlimit(2) changing nothing.
 */
static void
raise_fd_limit(void)
{
    struct rlimit limit;
    rlim_t granted, refused;

    if (getrlimit(RLIMIT_NOFILE, &limit) < 0)
        broken("getrlimit RLIMIT_NOFILE");
    granted = limit.rlim_cur;
    refused = limit.rlim_max;
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) == 0)
        return;
    while (refused - granted > 1) {
        limit.rlim_cur = granted + (refused - granted) / 2;
        if (setrlimit(RLIMIT_NOFILE, &limit) == 0)
            granted = limit.rlim_cur;
        else
            refused = limit.rlim_cur;
    }
}

static volatile sig_atomic_t stop_requested;

static void
on_stop_signal(int signo)
{
    (void)signo;
    stop_requested = 1;
}

/*
 * Ignores SIGPIPE: writing to a client that has gone is normal, and write
 * then fails with EPIPE.  SIGINT and SIGTERM set stop_requested; they stay
 * blocked except inside the backend's wait (epoll_pwait, pselect), which
 * unblocks them atomically, so one cannot slip in between the check of
 * stop_requested and the wait, and the handler never runs on a
 * coroutine's stack: no stack needs room for a signal frame on top of its
 * deepest call.  Fills *wait_mask with the mask for that wait.
 * A busy loop may never sleep in that wait: stop_signal_pending() is for
 * that case.
 */
static void
catch_signals(sigset_t *wait_mask)
{
    struct sigaction action;
    sigset_t stop_signals;

    memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    action.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &action, NULL) < 0)
        die("sigaction SIGPIPE");
    action.sa_handler = on_stop_signal;
    if (sigaction(SIGINT, &action, NULL) < 0 || sigaction(SIGTERM, &action, NULL) < 0)
        die("sigaction SIGINT, SIGTERM");
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stop_signals, wait_mask) < 0)
        die("sigprocmask");
    sigdelset(wait_mask, SIGINT);
    sigdelset(wait_mask, SIGTERM);
}

/*
 * True if SIGINT or SIGTERM is pending.  The wait does not always run the
 * handler (Linux 6.18, a test program raising SIGINT before each call):
 * a wait that finds sockets ready returns them and leaves the signal
 * pending, and so does epoll_pwait with a timeout of 0 (a coroutine is
 * ready again) that finds none; only a wait that finds none and may
 * sleep, or a pselect with a timeout of 0 that finds none, fails with
 * EINTR and runs the handler.  A server kept busy may never sleep, so the
 * loop also asks the kernel, with sigpending(2), but at most every
 * STOP_CHECK_MS: a call per turn would be a call per connection under ab.
 * sigpending rather than sigtimedwait: it is in every POSIX system (macOS
 * has no sigtimedwait), and a stop signal left pending and blocked does no
 * harm, for the server is about to exit.
 */
static bool
stop_signal_pending(void)
{
    static int64_t next_check_ms;
    int64_t now = clock_ms();
    sigset_t pending;

    if (now < next_check_ms)
        return false;
    next_check_ms = now + STOP_CHECK_MS;
    if (sigpending(&pending) < 0)
        broken("sigpending");
    return sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1;
}

/* Runs the loop until SIGINT or SIGTERM, then prints the totals. */
static void
serve_forever(void)
{
    while (!stop_requested && !stop_signal_pending()) {
        http_date_refresh();
        if (!accept_paused())
            accept_connections();
        loop_once();
    }
    printf("tinyhttpd: %lu connections, %lu requests, peak %lu concurrent\n",
           totals.connections, totals.requests, totals.peak_open);
}

/*
 * 6. main and the command line
 * ---------------------------------------------------------------------
 * main() reads the options, opens the listening socket (so a bad address
 * or a port in use fails before anything else), prints the one start-up
 * line that scripts wait for, and runs the loop until a signal stops it.
 */
struct options {
    struct sockaddr_storage address;
    socklen_t address_len;
    char name[INET6_ADDRSTRLEN + 8];   /* "127.0.0.1:8080", for messages */
    int backlog;
};

static void
usage(FILE *out, int status)
{
    fprintf(out,
            "usage: tinyhttpd [-a ADDRESS] [-p PORT] [-b BACKLOG] [-t SECONDS] [-v] [-h]\n"
            "  -a ADDRESS  numeric IPv4 or IPv6 address to listen on (default %s;\n"
            "              0.0.0.0 to be reached from other machines)\n"
            "  -p PORT     port, 0 for any free one (default %d)\n"
            "  -b BACKLOG  connections to ask the kernel to queue for accept (default %d)\n"
            "  -t SECONDS  time allowed for each request: the wait for it (keep-alive),\n"
            "              reading it, and sending the reply (default %d)\n"
            "  -v          trace coroutines and the loop on stderr\n"
            "  -h          show this help\n",
            DEFAULT_ADDRESS, DEFAULT_PORT, DEFAULT_BACKLOG, DEFAULT_IDLE_TIMEOUT_S);
    exit(status);
}

static long
number_or_usage(const char *text, long min, long max)
{
    char *end;
    long value;

    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "tinyhttpd: %s is not a number from %ld to %ld\n", text, min, max);
        usage(stderr, 2);
    }
    return value;
}

/* Fills opt->address from a numeric IPv4 or IPv6 address; false if neither. */
static bool
set_address(struct options *opt, const char *host, long port)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&opt->address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&opt->address;

    memset(&opt->address, 0, sizeof opt->address);
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        opt->address_len = sizeof *v4;
        snprintf(opt->name, sizeof opt->name, "%s:%ld", host, port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        opt->address_len = sizeof *v6;
        snprintf(opt->name, sizeof opt->name, "[%s]:%ld", host, port);
    } else {
        return false;
    }
    return true;
}

static void
parse_options(int argc, char **argv, struct options *opt)
{
    const char *host = DEFAULT_ADDRESS;
    long port = DEFAULT_PORT;
    int c;

    opt->backlog = DEFAULT_BACKLOG;
    while ((c = getopt(argc, argv, "a:p:b:t:vh")) != -1) {
        switch (c) {
        case 'a': host = optarg; break;
        case 'p': port = number_or_usage(optarg, 0, 65535); break;
        case 'b': opt->backlog = (int)number_or_usage(optarg, 1, 65535); break;
        case 't': idle_deadlines.length_ms = 1000 * number_or_usage(optarg, 1, 86400); break;
        case 'v': trace_enabled = true; break;
        case 'h': usage(stdout, 0); break;
        default: usage(stderr, 2);
        }
    }
    if (optind != argc) {
        fprintf(stderr, "tinyhttpd: unexpected argument %s\n", argv[optind]);
        usage(stderr, 2);
    }
    if (!set_address(opt, host, port)) {
        fprintf(stderr, "tinyhttpd: %s is not a numeric IPv4 or IPv6 address\n", host);
        usage(stderr, 2);
    }
}

int
main(int argc, char **argv)
{
    struct options opt;
    sigset_t wait_mask;
    char url[INET6_ADDRSTRLEN + 16];
    int listen_fd, backlog;

    parse_options(argc, argv, &opt);
    if (trace_enabled && setvbuf(stderr, trace_buffer, _IOLBF, sizeof trace_buffer) != 0)
        die("setvbuf stderr");
    listen_fd = open_listener((struct sockaddr *)&opt.address, opt.address_len,
                              opt.backlog, opt.name);
    listener_url(listen_fd, url, sizeof url);
    raise_fd_limit();
    catch_signals(&wait_mask);
    coro_init();
    loop_init(&wait_mask);
    io_init(&listener, listen_fd, NULL);
    if (loop_add(&listener) < 0 || loop_watch(&listener, WANT_READ) < 0)
        die("watching the listening socket");
    backlog = listener_backlog(listen_fd);      /* where it cannot tell: "asked" */
    printf("tinyhttpd: %s backend, serving %s (backlog %d%s)\n", BACKEND, url,
           backlog < 0 ? opt.backlog : backlog, backlog < 0 ? " asked" : "");
    if (fflush(stdout) == EOF)
        die("writing to stdout");
    serve_forever();
    return 0;
}
