// Package ha shares VIPs between xlb hosts with VRRP version 3 (RFC 5798), over IPv4 or IPv6:
// a Router advertises every advert_interval while it is master, and a backup that hears no
// master for Master_Down_Interval (3 * the master's interval + skew, skew = (256 - priority) *
// interval / 256) takes over at once, or after only the skew when the master resigns with
// priority 0 on a clean shutdown or Demote. Higher priority wins, ties go to the higher
// primary address, priority 255 marks the address owner, and preemption is configurable. On
// becoming master the Router calls Hooks.OnMaster (start forwarding the VIPs) and then sends
// gratuitous ARPs / unsolicited neighbour advertisements for each VIP; on becoming backup it
// calls Hooks.OnBackup (stop forwarding); Hooks.OnState hears every change. SetFault puts a
// router in the Fault state (keepalived's FAULT: a master resigns, nothing takes over) and
// SetPriority changes its priority at run time (tracked scripts and interfaces), and a
// SyncGroup makes several routers change state together (keepalived's vrrp_sync_group). A
// master that hears another master of lower
// precedence reports a split brain in its log and Status. The state machine is free of IO; the
// raw sockets (protocol 112 with the multicast group 224.0.0.18 / ff02::12 or unicast peers,
// and AF_PACKET for announcements) sit behind the Transport interface. Config is the `vrrp:`
// section of the xlb configuration:
//
//	vrrp:
//	  interface: eth0
//	  virtual_router_id: 51        # 1..255, the same on every router of the group
//	  priority: 150                # 1..254; 255 = address owner
//	  advert_interval: 1s          # 10ms..40.95s, steps of 10ms (default 1s)
//	  preempt: true                # default true
//	  preempt_delay: 0s            # no preemption for this long after start-up
//	  unicast_peers: [198.18.0.2]  # omit for multicast
//	  source_address: 198.18.0.1   # optional: default the interface's primary address
//	  vips: [198.19.0.10]          # one family per virtual router
//	  version: 3                   # optional; only 3
//	  garp_repeat: 3               # announcements per VIP on becoming master (default 3)
//	  garp_interval: 100ms         # between them (default 100ms)
package ha
