# make test: what CI runs (as root). make deps: the Debian packages the tests need.
GO ?= go

.PHONY: test deps generate
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
