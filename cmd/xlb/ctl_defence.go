package main

import (
	"context"
	"fmt"
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
	if err := nargs(1, "acl SERVICE"); err != nil {
		return err
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

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
