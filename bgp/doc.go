// Package bgp announces xlb's virtual IPs to routers over BGP, so that several
// xlb hosts behind a router's ECMP share the traffic of the same VIPs (how
// Maglev, Katran and GLB are deployed). It wraps GoBGP (github.com/osrg/gobgp)
// as a library, and speaks no BGP of its own: a [Speaker] runs a GoBGP server
// with a local AS and router ID, peers with the configured neighbours, and
// announces or withdraws host routes (/32 and /128) with a configured next hop.
// [Speaker.Sync] makes the announced set exactly the one given, [Speaker.Peers]
// and [Speaker.Announced] report the session states and routes for the API and
// metrics, and [Speaker.Stop] ends the sessions cleanly (a Cease notification).
// What to announce and when (a service with an active backend, a drained host,
// a clean shutdown) is the caller's policy: see control's bgp section.
package bgp
