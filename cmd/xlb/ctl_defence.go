package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/xlb-dev/xlb/control"
)

// ctlClient builds the API client: the unix socket unless api names a URL (http or https).
func ctlClient(api, socket, token, tokenFile, ca, cert, key string) (*control.Client, error) {
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if api == "" {
		return &control.Client{Socket: socket}, nil
	}
	if !strings.Contains(api, "://") {
		api = "http://" + api
	}
	cl := &control.Client{Base: api, Token: token}
	if strings.HasPrefix(api, "https://") || ca != "" || cert != "" {
		cfg, err := control.ClientTLS(ca, cert, key)
		if err != nil {
			return nil, err
		}
		cl.TLS = cfg
	}
	return cl, nil
}

// ctlDefence runs `xlb ctl drops` and `xlb ctl acl SERVICE`.
func ctlDefence(ctx context.Context, cl *control.Client, a []string, nargs func(int, string) error,
	out func(any, func(*tabwriter.Writer)) error) error {
	if a[0] == "drops" {
		if err := nargs(0, "drops"); err != nil {
			return err
		}
		d, err := cl.Drops(ctx)
		if err != nil {
			return err
		}
		return out(d, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "SERVICE\tACL\tRATE\tSOURCE RATE")
			for _, name := range sortedKeys(d.Services) {
				s := d.Services[name]
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", name, s.ACL, s.Rate, s.SourceRate)
			}
			fmt.Fprintln(tw, "\nINTERFACE\tXDP REASON\tPACKETS")
			for _, ifname := range sortedKeys(d.XDP) {
				for _, r := range sortedKeys(d.XDP[ifname]) {
					fmt.Fprintf(tw, "%s\t%s\t%d\n", ifname, r, d.XDP[ifname][r])
				}
			}
		})
	}
	if len(a) < 2 {
		return fmt.Errorf("%w: xlb ctl acl SERVICE [allow=P,... deny=P,...]", errUsage)
	}
	if len(a) > 2 {
		return setACL(ctx, cl, a[1], a[2:], out)
	}
	hits, err := cl.ACL(ctx, a[1])
	if err != nil {
		return err
	}
	return out(hits, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "PREFIX\tACTION\tPACKETS")
		for _, h := range hits {
			action := "allow"
			switch {
			case h.Default:
				action = "deny (not in the allow list)"
			case h.Deny:
				action = "deny"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\n", h.Prefix, action, h.Packets)
		}
	})
}

// setACL parses allow=P,... and deny=P,... and replaces the service's ACL.
func setACL(ctx context.Context, cl *control.Client, service string, args []string, out func(any, func(*tabwriter.Writer)) error) error {
	var allow, deny []netip.Prefix
	seen := map[string]bool{}
	for _, arg := range args {
		key, list, ok := strings.Cut(arg, "=")
		if !ok || (key != "allow" && key != "deny") || seen[key] {
			return fmt.Errorf("%w: %q: want allow=P,... or deny=P,... (each once)", errUsage, arg)
		}
		seen[key] = true
		for _, s := range strings.Split(list, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			p, err := parsePrefix(s)
			if err != nil {
				return fmt.Errorf("%w: %s: %w", errUsage, key, err)
			}
			if key == "allow" {
				allow = append(allow, p)
			} else {
				deny = append(deny, p)
			}
		}
	}
	if err := cl.SetACL(ctx, service, allow, deny); err != nil {
		return err
	}
	res := map[string]any{"result": "ok", "service": service, "allow": len(allow), "deny": len(deny)}
	return out(res, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "ok: %s acl: %d allow, %d deny\n", service, len(allow), len(deny))
	})
}

// parsePrefix takes an address (a host prefix) or a prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set (want %s)", s, p.Masked())
	}
	return p, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
