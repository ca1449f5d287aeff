// Package health is xlb's heartbeat prober: it tells which backends are alive. A Checker runs
// one probe bounded by a context, one file per kind: ICMP echo, TCP connect, HTTP or HTTPS GET,
// UDP request/reply, DNS query (with the miekg/dns library), SMTP banner/EHLO/QUIT, TLS
// handshake (optionally followed by the HTTP GET) and exec, a program run in its own process
// group that is killed as a whole at the timeout (keepalived's MISC_CHECK, with misc_dynamic's
// weights). A Monitor runs many checks, each on its own goroutine with its own interval,
// timeout, rise and fall, starting them staggered over the interval, and reports state
// transitions only (up after Rise consecutive successes, down after Fall consecutive failures;
// the first result settles an unknown state, as in Seesaw). Combine folds the states of
// several checks of one backend: up only when all are up. The Monitor keeps the last few
// results of every check for an API, passes an optional load figure (HTTP header X-Load) or
// weight (exec exit status) along with each result, and lets checks be added, replaced and
// removed at run time without disturbing the others. Every probe socket (and exec process) is
// created on the goroutine that calls Check, so a Monitor's Netns hook can run probes from
// inside another network namespace, and a Dialer (source address, SO_MARK, bound device,
// Control func) lets the caller steer a probe sent to a VIP through the load balancer's own
// forwarding path. The package knows nothing of the data path: control feeds its transitions
// into snapshots.
package health
