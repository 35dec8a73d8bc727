package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// parseSourceAddrs reads "127.0.0.1-127.0.0.8" (a range of the last byte)
// or a comma-separated list of addresses. Empty means the kernel chooses.
func parseSourceAddrs(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		loIP := net.ParseIP(lo).To4()
		if loIP == nil {
			return nil, fmt.Errorf("source address %q: not an IPv4 address", lo)
		}
		if !isRange {
			out = append(out, loIP.String())
			continue
		}
		hiIP := net.ParseIP(hi).To4()
		if hiIP == nil || loIP[0] != hiIP[0] || loIP[1] != hiIP[1] || loIP[2] != hiIP[2] || hiIP[3] < loIP[3] {
			return nil, fmt.Errorf("source range %q: want a.b.c.x-a.b.c.y with x ≤ y", part)
		}
		for b := int(loIP[3]); b <= int(hiIP[3]); b++ {
			out = append(out, net.IPv4(loIP[0], loIP[1], loIP[2], byte(b)).String())
		}
	}
	return out, nil
}

// httpClients holds one HTTP client per source address; next hands them out
// round-robin so connections spread over the addresses.
type httpClients struct {
	clients []*http.Client
	next    atomic.Uint64
}

func newHTTPClients(srcs []string, maxConnsPerHost int) *httpClients {
	if len(srcs) == 0 {
		srcs = []string{""}
	}
	hc := &httpClients{}
	for _, src := range srcs {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		tr := &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: maxConnsPerHost,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		hc.clients = append(hc.clients, &http.Client{Transport: tr, Timeout: 60 * time.Second})
	}
	return hc
}

// pick returns the client for index i (a socket number), or the next one
// round-robin when i < 0.
func (hc *httpClients) pick(i int) *http.Client {
	if i < 0 {
		i = int(hc.next.Add(1))
	}
	return hc.clients[i%len(hc.clients)]
}

// opError is a failed operation with the code it is counted under:
// "gql:<extensions.code>", "http:<status>", "ws:<close code>", "net",
// "timeout", "protocol".
type opError struct {
	Code string
	Err  error
}

func (e *opError) Error() string { return e.Code + ": " + e.Err.Error() }
func (e *opError) Unwrap() error { return e.Err }

// errCode is the code err is counted under.
func errCode(err error) string {
	var oe *opError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &oe):
		return oe.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "net"
}

type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code   string `json:"code"`
		Reason string `json:"reason"`
	} `json:"extensions"`
}

// gql posts one GraphQL operation to base+"/graphql" and decodes data into
// out (if not nil).
func gql(ctx context.Context, c *http.Client, base, token, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("new request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	// One pass over the body, straight into out: at thousands of
	// responses a second the load generator's own decoding competes with
	// the server for the same cores.
	var r struct {
		Data   any        `json:"data"`
		Errors []gqlError `json:"errors"`
	}
	if out != nil {
		r.Data = out // a non-nil pointer: decoded into, not replaced
	}
	jerr := json.Unmarshal(b, &r)
	if len(r.Errors) > 0 {
		e := r.Errors[0]
		code := e.Extensions.Code
		if code == "" {
			code = "UNKNOWN"
		}
		return &opError{Code: "gql:" + code, Err: errors.New(e.Message)}
	}
	if resp.StatusCode != http.StatusOK {
		return &opError{Code: "http:" + strconv.Itoa(resp.StatusCode), Err: fmt.Errorf("status %s: %.200s", resp.Status, b)}
	}
	if jerr != nil {
		return &opError{Code: "protocol", Err: fmt.Errorf("decode response: %w", jerr)}
	}
	return nil
}

// wsURL turns http://host:port into ws://host:port/graphql.
func wsURL(base string) string {
	if rest, ok := strings.CutPrefix(base, "https://"); ok {
		return "wss://" + rest + "/graphql"
	}
	return "ws://" + strings.TrimPrefix(base, "http://") + "/graphql"
}
