# tinyhttpd: make, make run, make test, make bench, make check, make clean.
# Portable: GNU make (macOS ships 3.81) and BSD make alike, so no GNU
# conditionals; the one platform choice (epoll only on Linux) is a shell
# test inside a recipe.  Override CC and CFLAGS on the command line.

CFLAGS = -O2 -Wall -Wextra -pedantic

all: tinyhttpd-select
	@if [ "`uname -s`" = Linux ]; then $(MAKE) tinyhttpd-epoll; fi

tinyhttpd-select: tinyhttpd.c
	$(CC) $(CFLAGS) -DUSE_SELECT -o $@ tinyhttpd.c

tinyhttpd-epoll: tinyhttpd.c
	$(CC) $(CFLAGS) -DUSE_EPOLL -o $@ tinyhttpd.c

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
