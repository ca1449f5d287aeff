// Package keepalived translates a keepalived.conf into an xlb configuration, for
// `xlb import keepalived`. Parse (or ParseFile) reads keepalived's grammar: statements of a
// keyword and arguments, blocks in braces (the "{" on the statement's line or the next),
// double-quoted strings, comments from '#' or '!' to the end of the line, $NAME=value
// parameters, and include statements whose glob is resolved against the including file's
// directory; a grammar error
// is a *SyntaxError with file:line. Translate maps global_defs, virtual_server(_group),
// real_server, the checkers (HTTP_GET, SSL_GET, TCP_CHECK, MISC_CHECK, DNS_CHECK, SMTP_CHECK,
// PING_CHECK), vrrp_instance, vrrp_sync_group and vrrp_script onto xlb's YAML schema and
// returns, with the YAML, a Note for every line it left out or translated only approximately
// (lb_algo mapped to the nearest scheduler, persistence to source-hash, ...), with the line's
// file:line and why.
package keepalived
