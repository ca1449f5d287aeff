// Package scaleout holds the end-to-end test of xlb's scale-out mode (issue 8): several
// `xlb run` hosts announce the VIPs by BGP to a real router (BIRD 2) in a network
// namespace, which spreads the client's flows over them by ECMP. Its tests need root and
// BIRD (Debian package bird2); they skip without them.
package scaleout
