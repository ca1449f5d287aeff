#!/usr/bin/env bash
# instrcount: the instructions a packet costs in the engine's batch loop (dataplane's
# Engine.batch, everything it calls included), counted by valgrind's callgrind on
# BenchmarkProcess. Unlike a time, the count does not move with the other work on the
# machine, so it tells a change of a few instructions apart on a shared host; at 1k live
# flows, where the loop's data stays in the caches and the time follows the instructions,
# it is the figure to take a lever's measure by (docs/bench/engine.md, round nine).
#
#   tools/instrcount/instrcount.sh METHOD FLOWS [TESTBIN]
#
# METHOD is dr, tunnel, nat or dr6; FLOWS 1k, 64k or 1024k; TESTBIN a `go test -c` binary of
# ./dataplane (default: built from the working tree). It runs the benchmark twice under
# callgrind, collecting only inside Engine.batch, for 1000 and 3000 timed batches, and prints
# the difference per packet (the warm-up's new flows cancel out). Needs valgrind
# (apt-get install valgrind); about 5 minutes at 1k flows.
set -euo pipefail
m=${1:?usage: instrcount.sh METHOD FLOWS [TESTBIN]}
fl=${2:?usage: instrcount.sh METHOD FLOWS [TESTBIN]}
bin=${3:-}
command -v valgrind >/dev/null || { echo "instrcount: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$bin" ]; then
	(cd "$root" && go test -c -o "$tmp/dp.test" ./dataplane)
	bin=$tmp/dp.test
fi
bin=$(realpath "$bin")
cd "$root/dataplane"
# cpu.rdtscp=off: valgrind 3.19 does not know RDTSCP, which the runtime's cputicks uses on
# some hosts (a SIGILL in lock2 under contention).
count() { # batches -> instructions collected inside Engine.batch
	GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind \
		--toggle-collect='github.com/xlb-dev/xlb/dataplane.(*Engine).batch' \
		--callgrind-out-file="$tmp/cg.$1" "$bin" -test.run '^$' \
		-test.bench "^BenchmarkProcess\$/^$m\$/^flows=$fl\$" -test.benchtime "$1x" \
		>"$tmp/log.$1" 2>&1 || { cat "$tmp/log.$1" >&2; exit 1; }
	grep -q "^BenchmarkProcess/$m/flows=$fl" "$tmp/log.$1" || { echo "instrcount: no benchmark BenchmarkProcess/$m/flows=$fl" >&2; exit 1; }
	sed -n 's/^summary: //p' "$tmp/cg.$1"
}
a=$(count 1000)
b=$(count 3000)
echo "BenchmarkProcess/$m/flows=$fl: $(( (b - a) / (2000 * 64) )) instructions/packet in Engine.batch (callgrind, 3000 - 1000 batches of 64)"
