package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// postTransport is gqlgen's POST transport except for how a successful
// response is written. gqlgen hands every response to json.Marshal, which
// validates and compacts the data gqlgen has just encoded, byte by byte: a
// second pass over every page (4% of a conversation list's CPU). A
// response with data and nothing else is written around those bytes as
// they are.
//
// An answer in application/graphql-response+json, or a body that cannot be
// read or decoded, is handed to gqlgen's transport; a document that fails
// validation is answered as gqlgen's transport does (TestPOSTAnswersAsGqlgen
// compares them).
type postTransport struct {
	transport.POST
}

func (t postTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	if !answersPlainJSON(r) {
		t.POST.Do(w, r, exec)
		return
	}
	start := graphql.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		r.Body = io.NopCloser(failedReader{err})
		t.POST.Do(w, r, exec)
		return
	}
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // as gqlgen's transports decode variables
	if dec.Decode(params) != nil {
		r.Body = io.NopCloser(bytes.NewReader(body)) // gqlgen's 400 and message
		t.POST.Do(w, r, exec)
		return
	}
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// The data is written unescaped (json.Marshal would turn < > & into
	// \u003c…): no browser may take it for HTML.
	h.Set("X-Content-Type-Options", "nosniff")
	ctx := r.Context()
	rc, errs := exec.CreateOperationContext(ctx, params)
	if errs != nil {
		// As gqlgen's transport answers in application/json: 422 for a
		// document that does not parse or validate, 200 otherwise.
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		writeResponse(w, exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs))
		return
	}
	responses, ctx := exec.DispatchOperation(ctx, rc)
	writeResponse(w, responses(ctx))
}

// answersPlainJSON reports whether gqlgen's POST transport would answer r
// in application/json (see its determineResponseContentType).
func answersPlainJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return true
	}
	for part := range strings.SplitSeq(accept, ",") {
		mediaType, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mediaType {
		case "*/*", "application/*", "application/json":
			return true
		case "application/graphql-response+json":
			return false
		}
	}
	return false
}

// writeResponse writes r as gqlgen's transports do, without re-encoding
// data that comes alone.
func writeResponse(w http.ResponseWriter, r *graphql.Response) {
	if r != nil && len(r.Errors) == 0 && len(r.Extensions) == 0 && len(r.Data) > 0 && r.Label == "" && r.Path == nil && r.HasNext == nil {
		// Three writes into the server's buffered writer: no copy of the page.
		_, _ = io.WriteString(w, `{"data":`)
		_, _ = w.Write(r.Data)
		_, _ = io.WriteString(w, "}")
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		// gqlgen's transport panics here, which ends as a 500 too.
		http.Error(w, "internal error encoding the response", http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(b)
}

type failedReader struct{ err error }

func (f failedReader) Read([]byte) (int, error) { return 0, f.err }
