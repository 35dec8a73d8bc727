package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// codeTransportErrors gives extensions.code to the errors gqlgen's
// transports write by themselves (a mutation over GET, an unsupported
// content type, a malformed multipart request), which bypass the error
// presenter. Those bodies are written in one Write starting with
// {"errors":, and executor responses always carry codes already, so only
// error responses are ever parsed. Streams (WebSocket, SSE) pass untouched.
func codeTransportErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" || strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			next.ServeHTTP(w, r)
			return
		}
		cw := &codingWriter{ResponseWriter: w}
		next.ServeHTTP(cw, r)
		if !cw.wrote && cw.status != 0 {
			w.WriteHeader(cw.status)
		}
	})
}

type codingWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (c *codingWriter) WriteHeader(status int) {
	if c.wrote {
		return
	}
	if c.status == 0 {
		c.status = status
	}
}

func (c *codingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *codingWriter) Write(b []byte) (int, error) {
	if c.wrote {
		return c.ResponseWriter.Write(b)
	}
	c.wrote = true
	status := c.status
	if status == 0 {
		status = http.StatusOK
	}
	if bytes.HasPrefix(b, []byte(`{"errors":`)) {
		if fixed, st, ok := addCodes(b, status); ok {
			c.ResponseWriter.WriteHeader(st)
			if _, err := c.ResponseWriter.Write(fixed); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	c.ResponseWriter.WriteHeader(status)
	return c.ResponseWriter.Write(b)
}

// addCodes sets BAD_USER_INPUT on errors that have no code, and turns a
// 200 into the 4xx the request deserves.
func addCodes(body []byte, status int) ([]byte, int, bool) {
	var resp map[string]any
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, 0, false
	}
	errs, _ := resp["errors"].([]any)
	changed := false
	tooLarge := false
	for _, e := range errs {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		ext, _ := m["extensions"].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
			m["extensions"] = ext
		}
		if _, has := ext["code"]; !has {
			ext["code"] = "BAD_USER_INPUT"
			changed = true
			if msg, _ := m["message"].(string); strings.Contains(msg, "too large") {
				tooLarge = true
			}
		}
	}
	if !changed {
		return nil, 0, false
	}
	if status == http.StatusOK {
		status = http.StatusBadRequest
		if tooLarge {
			status = http.StatusRequestEntityTooLarge
		}
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return nil, 0, false
	}
	return append(out, '\n'), status, true
}
