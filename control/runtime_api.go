package control

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// registerRuntime serves the runtime changes and the listings:
//
//	POST   /api/v1/services                              add a service (body: the service, YAML or JSON)
//	PATCH  /api/v1/services/{service}                    change the fields the body writes
//	DELETE /api/v1/services/{service}
//	POST   /api/v1/services/{service}/backends           add a backend (body: the backend)
//	PATCH  /api/v1/services/{service}/backends/{backend} change the fields the body writes
//	DELETE /api/v1/services/{service}/backends/{backend}
//	POST   /api/v1/config/save                           the running configuration as YAML
//	GET    /api/v1/list                                  services, backends, counters, ActiveConn/InActConn
//	GET    /api/v1/conns?service=&client=&limit=         connection-table entries
//
// The changes answer with the service's backends (the deleted ones with {"result": "ok"});
// a bad body with 400 and the reasons, and nothing changes. Saving is a POST: the
// configuration holds secrets, so it is served only where changes are.
func registerRuntime(mux *http.ServeMux, c *Controller) {
	svc := APIPrefix + "/services"
	mux.HandleFunc("POST "+svc, func(w http.ResponseWriter, r *http.Request) {
		doc, ok := readDoc(w, r)
		if !ok {
			return
		}
		if err := c.AddService(doc); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]string{"result": "ok"})
	})
	mux.HandleFunc("PATCH "+svc+"/{service}", func(w http.ResponseWriter, r *http.Request) {
		doc, ok := readDoc(w, r)
		if !ok {
			return
		}
		answer(w, c, r.PathValue("service"), c.EditService(r.PathValue("service"), doc))
	})
	mux.HandleFunc("DELETE "+svc+"/{service}", func(w http.ResponseWriter, r *http.Request) {
		if err := c.DeleteService(r.PathValue("service")); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"service": r.PathValue("service"), "result": "ok"})
	})
	mux.HandleFunc("POST "+svc+"/{service}/backends", func(w http.ResponseWriter, r *http.Request) {
		doc, ok := readDoc(w, r)
		if !ok {
			return
		}
		answer(w, c, r.PathValue("service"), c.AddBackend(r.PathValue("service"), doc))
	})
	mux.HandleFunc("PATCH "+svc+"/{service}/backends/{backend}", func(w http.ResponseWriter, r *http.Request) {
		doc, ok := readDoc(w, r)
		if !ok {
			return
		}
		answer(w, c, r.PathValue("service"), c.EditBackend(r.PathValue("service"), r.PathValue("backend"), doc))
	})
	mux.HandleFunc("DELETE "+svc+"/{service}/backends/{backend}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, c, r.PathValue("service"), c.DeleteBackend(r.PathValue("service"), r.PathValue("backend")))
	})
	mux.HandleFunc("POST "+APIPrefix+"/config/save", func(w http.ResponseWriter, r *http.Request) {
		y, err := c.SaveYAML()
		if err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(y)
	})
	mux.HandleFunc("GET "+APIPrefix+"/list", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.List(r.Context()))
	})
	mux.HandleFunc("GET "+APIPrefix+"/conns", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for k := range q {
			if k != "service" && k != "client" && k != "limit" {
				writeErr(w, fmt.Errorf("%w: unknown parameter %q (known: service, client, limit)", config.ErrValue, k))
				return
			}
		}
		l, err := c.Conns(r.Context(), ConnsRequest{Service: q.Get("service"), Client: q.Get("client"), Limit: q.Get("limit")})
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, l)
	})
}

// readDoc reads a change's body (at most maxBody bytes).
func readDoc(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	doc, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	switch {
	case err != nil:
		writeErr(w, fmt.Errorf("%w: read body: %w", config.ErrValue, err))
		return nil, false
	case len(doc) > maxBody:
		writeErr(w, fmt.Errorf("%w: body larger than %d bytes", config.ErrValue, maxBody))
		return nil, false
	}
	return doc, true
}

// answer writes err, or the service's backends after a change.
func answer(w http.ResponseWriter, c *Controller, service string, err error) {
	if err != nil {
		writeErr(w, err)
		return
	}
	bs, err := c.Backends(service)
	if err != nil {
		writeErr(w, fmt.Errorf("service %q: %w", service, err))
		return
	}
	writeJSON(w, http.StatusOK, bs)
}

// AddService adds a service (doc: YAML or JSON, as in the configuration file).
func (c *Client) AddService(ctx context.Context, doc []byte) error {
	return c.doc(ctx, http.MethodPost, "/services", doc, nil)
}

// EditService changes the fields of a service that doc writes.
func (c *Client) EditService(ctx context.Context, service string, doc []byte) error {
	return c.doc(ctx, http.MethodPatch, "/services/"+url.PathEscape(service), doc, nil)
}

// DeleteService removes a service.
func (c *Client) DeleteService(ctx context.Context, service string) error {
	return c.do(ctx, http.MethodDelete, "/services/"+url.PathEscape(service), nil, nil)
}

// AddBackend adds a backend to a service.
func (c *Client) AddBackend(ctx context.Context, service string, doc []byte) error {
	return c.doc(ctx, http.MethodPost, "/services/"+url.PathEscape(service)+"/backends", doc, nil)
}

// EditBackend changes the fields of a backend that doc writes.
func (c *Client) EditBackend(ctx context.Context, service, backend string, doc []byte) error {
	return c.doc(ctx, http.MethodPatch, "/services/"+url.PathEscape(service)+"/backends/"+url.PathEscape(backend), doc, nil)
}

// DeleteBackend removes a backend of a service.
func (c *Client) DeleteBackend(ctx context.Context, service, backend string) error {
	return c.do(ctx, http.MethodDelete, "/services/"+url.PathEscape(service)+"/backends/"+url.PathEscape(backend), nil, nil)
}

// Save returns the running configuration as YAML.
func (c *Client) Save(ctx context.Context) ([]byte, error) {
	var raw rawBody
	err := c.doc(ctx, http.MethodPost, "/config/save", nil, &raw)
	return raw, err
}

// List returns the services, backends, counters and connection counts.
func (c *Client) List(ctx context.Context) (Listing, error) {
	var l Listing
	return l, c.do(ctx, http.MethodGet, "/list", nil, &l)
}

// Conns lists connection-table entries.
func (c *Client) Conns(ctx context.Context, req ConnsRequest) (dataplane.ConnListing, error) {
	q := url.Values{}
	for k, v := range map[string]string{"service": req.Service, "client": req.Client, "limit": req.Limit} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/conns"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var l dataplane.ConnListing
	return l, c.do(ctx, http.MethodGet, path, nil, &l)
}

// rawBody receives an answer that is not JSON; rawDoc is a body sent as is.
type (
	rawBody []byte
	rawDoc  []byte
)

// doc sends a YAML or JSON document.
func (c *Client) doc(ctx context.Context, method, path string, doc []byte, out any) error {
	if doc == nil {
		return c.do(ctx, method, path, nil, out)
	}
	return c.do(ctx, method, path, rawDoc(doc), out)
}

// docType is the content type of a change's body.
func docType(doc []byte) string {
	if t := strings.TrimSpace(string(doc)); strings.HasPrefix(t, "{") {
		return "application/json"
	}
	return "application/yaml"
}
