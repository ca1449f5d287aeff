package xlb

import (
	"context"
	"fmt"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane"
)

// Conns implements control.ConnSource when the data path does (xlb ctl list, xlb ctl conns).
func (r *relay) Conns(ctx context.Context, q dataplane.ConnQuery) (dataplane.ConnListing, error) {
	if cs, ok := r.get().(control.ConnSource); ok {
		return cs.Conns(ctx, q)
	}
	return dataplane.ConnListing{}, fmt.Errorf("connections: %w: the data path keeps no connection tables", control.ErrNotFound)
}
