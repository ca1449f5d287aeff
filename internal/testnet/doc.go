// Package testnet holds the helpers only tests use on top of the lab topologies (package
// lab): New builds a topology for a test, skipping it without root and closing it in
// t.Cleanup; Output collects a process's output while it runs; HTTPConn is a long-lived
// HTTP/1.1 connection that reports which backend answered; Load is a request loop counted
// per phase, to measure what a failover costs while traffic flows. Nothing here is
// imported by the xlb binary.
package testnet
