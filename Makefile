# tinyhttpd: make, make run, make test, make bench, make check, make clean.
# Portable: GNU make (macOS ships 3.81) and BSD make alike, so no GNU
# conditionals; the one platform choice (epoll only on Linux) is a shell
# test inside a recipe.  Override CC and CFLAGS on the command line.

CFLAGS = -O2 -Wall -Wextra -pedantic
# No mark for x86's shadow stacks, which would stop the first switch
# between stacks (README, the note "Shadow stacks, exactly"), where the
# compiler takes the flag: it comes after CFLAGS, so it wins over a
# -fcf-protection there, as over the compiler's own default.
NO_SHSTK = `$(CC) -fcf-protection=none -c -x c -o /dev/null /dev/null 2>/dev/null && echo -fcf-protection=none`

all: tinyhttpd-select
	@if [ "`uname -s`" = Linux ]; then $(MAKE) tinyhttpd-epoll; fi

tinyhttpd-select: tinyhttpd.c
	$(CC) $(CFLAGS) $(NO_SHSTK) -DUSE_SELECT -o $@ tinyhttpd.c

tinyhttpd-epoll: tinyhttpd.c
	$(CC) $(CFLAGS) $(NO_SHSTK) -DUSE_EPOLL -o $@ tinyhttpd.c

run: all
	@if [ "`uname -s`" = Linux ]; then ./tinyhttpd-epoll; else ./tinyhttpd-select; fi

test: all
	./test.sh

bench: all
	./test.sh --bench

check: all
	./test.sh --check

clean:
	rm -f tinyhttpd-epoll tinyhttpd-select tinyhttpd-*-test

.PHONY: all run test bench check clean
