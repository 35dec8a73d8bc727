package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
)

// guardTransport answers with BAD_USER_INPUT when a transport panics while
// it parses a request, before it has written anything. gqlgen's multipart
// transport does so on valid-looking input: operations without "variables"
// (or null) and a map entry pointing at variables.f assign into a nil map.
// The executor recovers resolver panics itself, so a panic that reaches
// Do comes from decoding what the client sent. Without the guard gqlgen
// answers 500 and logs a stack trace per request. A panic after the
// response began is left to gqlgen.
func guardTransport(log *slog.Logger, t graphql.Transport) graphql.Transport {
	return guardedTransport{Transport: t, log: log}
}

type guardedTransport struct {
	graphql.Transport
	log *slog.Logger
}

func (g guardedTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	tw := &touchWriter{ResponseWriter: w}
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if tw.touched {
			panic(v)
		}
		g.log.WarnContext(r.Context(), "malformed request broke the transport", "panic", fmt.Sprint(v))
		writeGraphQLError(w, http.StatusBadRequest, "BAD_USER_INPUT",
			"malformed request: operations, map and files do not fit together (see the GraphQL multipart request spec)")
	}()
	g.Transport.Do(tw, r, exec)
}

// touchWriter records whether the response has begun.
type touchWriter struct {
	http.ResponseWriter
	touched bool
}

func (t *touchWriter) WriteHeader(code int) {
	t.touched = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *touchWriter) Write(b []byte) (int, error) {
	t.touched = true
	return t.ResponseWriter.Write(b)
}

func (t *touchWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
