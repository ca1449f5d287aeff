# make test: what CI runs (as root). make deps: the Debian packages the tests need.
GO ?= go

.PHONY: test deps generate package
test: deps
	$(GO) test -count=1 ./...
	# The packages whose tests exercise concurrency (snapshot publish while workers
	# schedule, counters read while workers run, monitors added and removed while
	# probing) again under the race detector.
	$(GO) test -count=1 -race ./sched/ ./health/ ./dataplane/ ./control/

deps:
	@bash scripts/deps.sh

generate:
	$(GO) generate ./...

# make package: dist/xlb_VERSION_ARCH.deb and dist/xlb-VERSION-1.ARCH.rpm (nfpm as a library:
# tools/package): the binary, the systemd unit, /etc/xlb/xlb.yaml, man page, completions.
package:
	$(GO) run ./tools/package --out dist
