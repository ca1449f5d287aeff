# make test: what CI runs (as root). make deps: the Debian packages the tests need.
GO ?= go

.PHONY: test deps generate
test: deps
	$(GO) test -count=1 ./...

deps:
	@bash scripts/deps.sh

generate:
	$(GO) generate ./...
