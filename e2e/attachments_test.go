package e2e

// End-to-end tests of attachments: uploads through the GraphQL multipart
// request spec, sending them with a message, downloads, limits and file
// names.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/apptest"
)

// htFile is a file to upload. An empty ContentType sends the part without
// a Content-Type header.
type htFile struct {
	Name, ContentType string
	Data              []byte
}

const htUploadMutation = `mutation($c: ID!, $f: Upload!) { uploadAttachment(conversationId: $c, file: $f) { id filename contentType size url } }`

var htQuoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"")

// htUploadBody builds a GraphQL multipart request: operations, map, and the
// file as part "0".
func htUploadBody(t testing.TB, conv string, f htFile) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	ops, err := json.Marshal(map[string]any{"query": htUploadMutation, "variables": map[string]any{"c": conv, "f": nil}})
	if err != nil {
		t.Fatal(err)
	}
	if err := mw.WriteField("operations", string(ops)); err != nil {
		t.Fatal(err)
	}
	if err := mw.WriteField("map", `{"0": ["variables.f"]}`); err != nil {
		t.Fatal(err)
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="0"; filename="%s"`, htQuoteEscaper.Replace(f.Name)))
	if f.ContentType != "" {
		h.Set("Content-Type", f.ContentType)
	}
	pw, err := mw.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write(f.Data); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

// htMultipartFields posts a multipart/form-data request made of the given
// name, value pairs.
func htMultipartFields(t testing.TB, s *apptest.Server, token string, kv ...string) *htResp {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(kv); i += 2 {
		if err := mw.WriteField(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return htDoT(t, req, token)
}

// htUpload sends uploadAttachment as a multipart request.
func htUpload(t testing.TB, s *apptest.Server, token, conv string, f htFile) *htResp {
	t.Helper()
	ct, body := htUploadBody(t, conv, f)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	return htDoT(t, req, token)
}

func htUploadOK(t testing.TB, s *apptest.Server, u apptest.User, conv string, f htFile) htAttachment {
	t.Helper()
	var out struct{ UploadAttachment htAttachment }
	htOK(t, htUpload(t, s, u.Token, conv, f), &out)
	if out.UploadAttachment.ID == "" {
		t.Fatal("uploadAttachment returned no id")
	}
	return out.UploadAttachment
}

func htSendWithR(t testing.TB, s *apptest.Server, u apptest.User, conv, body string, attachmentIDs ...string) *htResp {
	t.Helper()
	return htPost(t, s, u.Token, htSendMutation, map[string]any{"in": map[string]any{
		"conversationId": conv, "body": body, "attachmentIds": attachmentIDs}})
}

func htSendWith(t testing.TB, s *apptest.Server, u apptest.User, conv, body string, attachmentIDs ...string) htMessage {
	t.Helper()
	var out struct{ SendMessage htMessage }
	htOK(t, htSendWithR(t, s, u, conv, body, attachmentIDs...), &out)
	return out.SendMessage
}

// htDownload GETs an attachment URL (relative to the server or absolute).
func htDownload(t testing.TB, s *apptest.Server, token, u string) (int, http.Header, []byte) {
	t.Helper()
	u = strings.TrimPrefix(u, s.URL)
	if !strings.HasPrefix(u, "/") {
		t.Fatalf("attachment url %q is neither absolute on this server nor a path", u)
	}
	return htFetch(t, s, token, u)
}

// htDirFiles lists every file under dir, hidden ones included.
func htDirFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var htPNG = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")

func TestAttachmentUploadAndDownload(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)

	text := []byte("hello, attachment\nsecond line\n")
	a := htUploadOK(t, s, alice, conv, htFile{Name: "hello.txt", ContentType: "text/plain", Data: text})
	if a.Filename != "hello.txt" || a.ContentType != "text/plain" || a.Size != len(text) || a.URL == "" || !strings.Contains(a.URL, a.ID) {
		t.Fatalf("upload returned %+v", a)
	}
	for _, u := range []apptest.User{alice, bob} {
		status, h, body := htDownload(t, s, u.Token, a.URL)
		if status != http.StatusOK || !bytes.Equal(body, text) {
			t.Fatalf("%s download: status %d, %q", u.Username, status, body)
		}
		if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "text/plain" {
			t.Fatalf("download Content-Type %q", h.Get("Content-Type"))
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("user content served without nosniff")
		}
	}
	// No token, or a bad one: 401, and not the bytes.
	for _, tok := range []string{"", "garbage"} {
		status, h, body := htDownload(t, s, tok, a.URL)
		if status != http.StatusUnauthorized || bytes.Contains(body, text) {
			t.Fatalf("download with token %q: status %d %q", tok, status, body)
		}
		if h.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
	if status, _, _ := htFetch(t, s, alice.Token, "/attachments/att_doesnotexist000000"); status != http.StatusNotFound {
		t.Fatalf("unknown attachment: %d", status)
	}

	// Uploaded HTML is never rendered as a page of this origin.
	html := htUploadOK(t, s, alice, conv, htFile{Name: "page.html", ContentType: "text/html", Data: []byte("<script>alert(1)</script>")})
	if status, h, _ := htDownload(t, s, bob.Token, html.URL); status != http.StatusOK ||
		(!strings.HasPrefix(h.Get("Content-Disposition"), "attachment") && !strings.Contains(h.Get("Content-Security-Policy"), "sandbox")) {
		t.Errorf("uploaded HTML served inline without a sandbox: %d %v", status, h)
	}

	// Binary data comes back byte for byte; with no Content-Type the type is sniffed.
	bin := make([]byte, 3000)
	for i := range bin {
		bin[i] = byte(i * 7)
	}
	b := htUploadOK(t, s, alice, conv, htFile{Name: "blob.bin", ContentType: "application/x-custom", Data: bin})
	if b.Size != len(bin) || b.ContentType != "application/x-custom" {
		t.Fatalf("binary upload: %+v", b)
	}
	if status, h, body := htDownload(t, s, bob.Token, b.URL); status != http.StatusOK || !bytes.Equal(body, bin) || h.Get("Content-Type") != "application/x-custom" {
		t.Fatalf("binary download: status %d, %d bytes, %q", status, len(body), h.Get("Content-Type"))
	}
	p := htUploadOK(t, s, alice, conv, htFile{Name: "pixel.png", Data: htPNG})
	if p.ContentType != "image/png" {
		t.Fatalf("sniffed content type %q, want image/png", p.ContentType)
	}
	if status, h, body := htDownload(t, s, alice.Token, p.URL); status != http.StatusOK || !bytes.Equal(body, htPNG) || h.Get("Content-Type") != "image/png" {
		t.Fatalf("png download: %d %q", status, h.Get("Content-Type"))
	}
	// An empty file is a file.
	e := htUploadOK(t, s, alice, conv, htFile{Name: "empty.txt", ContentType: "text/plain", Data: nil})
	if e.Size != 0 {
		t.Fatalf("empty upload size %d", e.Size)
	}
	if status, _, body := htDownload(t, s, alice.Token, e.URL); status != http.StatusOK || len(body) != 0 {
		t.Fatalf("empty download: %d %q", status, body)
	}

	// Upload needs a token and an existing conversation.
	dir := s.App.Config.AttachmentDir
	files := len(htDirFiles(t, dir))
	htErr(t, htUpload(t, s, "", conv, htFile{Name: "anon.txt", ContentType: "text/plain", Data: []byte("anon")}), "UNAUTHENTICATED")
	htErr(t, htUpload(t, s, alice.Token, "cnv_doesnotexist000000", htFile{Name: "x.txt", ContentType: "text/plain", Data: []byte("x")}), "NOT_FOUND")
	if n := len(htDirFiles(t, dir)); n != files {
		t.Fatalf("failed uploads left files: %d -> %d", files, n)
	}
}

func TestAttachmentSendRules(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	other := htCreateConv(t, s, alice, apptest.Ptr("other"), bob)
	up := func(u apptest.User, conv, name string) htAttachment {
		t.Helper()
		return htUploadOK(t, s, u, conv, htFile{Name: name, ContentType: "text/plain", Data: []byte("content of " + name)})
	}

	a1 := up(alice, conv, "a1.txt")
	m := htSendWith(t, s, alice, conv, "with a file", a1.ID)
	if len(m.Attachments) != 1 || m.Attachments[0] != a1 {
		t.Fatalf("message attachments %+v, want [%+v]", m.Attachments, a1)
	}
	// Bob sees it in the message list.
	var list struct {
		Conversation struct {
			Messages struct {
				Edges []struct{ Node htMessage }
			}
		}
	}
	htOK(t, htPost(t, s, bob.Token, `query($c: ID!) { conversation(id: $c) { messages { edges { node { `+htMessageFields+` } } } } }`,
		map[string]any{"c": conv}), &list)
	if edges := list.Conversation.Messages.Edges; len(edges) != 1 || len(edges[0].Node.Attachments) != 1 || edges[0].Node.Attachments[0].ID != a1.ID {
		t.Fatalf("bob's view: %+v", edges)
	}

	// A retry of the same send (same clientMessageId) is not an error.
	key := map[string]any{"in": map[string]any{"conversationId": conv, "body": "retry me", "clientMessageId": "att-retry", "attachmentIds": []string{up(alice, conv, "r.txt").ID}}}
	var first, retry struct{ SendMessage htMessage }
	htOK(t, htPost(t, s, alice.Token, htSendMutation, key), &first)
	htOK(t, htPost(t, s, alice.Token, htSendMutation, key), &retry)
	if retry.SendMessage.ID != first.SendMessage.ID || len(retry.SendMessage.Attachments) != 1 {
		t.Fatalf("retry with attachments: %+v vs %+v", retry.SendMessage, first.SendMessage)
	}

	total := htMsgTotal(t, s, alice, conv)
	bad := func(name string, u apptest.User, conv string, ids ...string) {
		t.Helper()
		r := htSendWithR(t, s, u, conv, "should not be stored: "+name, ids...)
		if len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
			t.Errorf("%s: want BAD_USER_INPUT, got %s", name, r.Raw)
		}
	}
	// Already attached.
	bad("reuse", alice, conv, a1.ID)
	// Another user's upload.
	b1 := up(bob, conv, "b1.txt")
	bad("bob's upload", alice, conv, b1.ID)
	// An upload to another conversation.
	o1 := up(alice, other, "o1.txt")
	bad("other conversation's upload", alice, conv, o1.ID)
	// Unknown, and a valid one mixed with an unknown one.
	bad("unknown", alice, conv, "att_doesnotexist000000")
	a2 := up(alice, conv, "a2.txt")
	bad("valid and unknown", alice, conv, a2.ID, "att_doesnotexist000000")
	bad("valid and reused", alice, conv, a2.ID, a1.ID)
	if n := htMsgTotal(t, s, alice, conv); n != total {
		t.Fatalf("rejected sends stored %d messages", n-total)
	}
	if n := htMsgTotal(t, s, alice, other); n != 0 {
		t.Fatalf("rejected sends stored messages in the other conversation: %d", n)
	}
	// Nothing was consumed by the failures: each upload still goes out with
	// the right message.
	if m := htSendWith(t, s, bob, conv, "bob's file", b1.ID); len(m.Attachments) != 1 || m.Attachments[0].ID != b1.ID {
		t.Fatalf("bob's send: %+v", m.Attachments)
	}
	if m := htSendWith(t, s, alice, other, "other's file", o1.ID); len(m.Attachments) != 1 || m.Attachments[0].ID != o1.ID {
		t.Fatalf("send in the other conversation: %+v", m.Attachments)
	}
	a3 := up(alice, conv, "a3.txt")
	m2 := htSendWith(t, s, alice, conv, "two files", a2.ID, a3.ID)
	var got []string
	for _, a := range m2.Attachments {
		got = append(got, a.ID)
	}
	if !slices.Equal(htSorted(got...), htSorted(a2.ID, a3.ID)) {
		t.Fatalf("two attachments: got %v", got)
	}
	// A message without attachments lists none.
	if m := htSend(t, s, alice, conv, "plain"); m.Attachments == nil || len(m.Attachments) != 0 {
		t.Fatalf("plain message attachments %+v, want []", m.Attachments)
	}
}

func TestAttachmentOfDeletedMessage(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	a := htUploadOK(t, s, alice, conv, htFile{Name: "secret.txt", ContentType: "text/plain", Data: []byte("deleted content")})
	m := htSendWith(t, s, alice, conv, "see attached", a.ID)
	if status, _, _ := htDownload(t, s, bob.Token, a.URL); status != http.StatusOK {
		t.Fatalf("download before delete: %d", status)
	}

	var del struct{ DeleteMessage htMessage }
	htOK(t, htPost(t, s, alice.Token, `mutation($m: ID!) { deleteMessage(id: $m) { `+htMessageFields+` } }`, map[string]any{"m": m.ID}), &del)
	if del.DeleteMessage.Attachments == nil || len(del.DeleteMessage.Attachments) != 0 {
		t.Fatalf("deleted message attachments %+v, want []", del.DeleteMessage.Attachments)
	}
	r := htPost(t, s, bob.Token, `query($c: ID!) { conversation(id: $c) { messages { edges { node { id body attachments { id filename } } } } } }`,
		map[string]any{"c": conv})
	var list struct {
		Conversation struct {
			Messages struct {
				Edges []struct{ Node htMessage }
			}
		}
	}
	htOK(t, r, &list)
	if edges := list.Conversation.Messages.Edges; len(edges) != 1 || edges[0].Node.Attachments == nil || len(edges[0].Node.Attachments) != 0 {
		t.Fatalf("tombstone in list: %s", r.Raw)
	}
	if strings.Contains(string(r.Raw), "secret.txt") {
		t.Fatalf("tombstone leaks the attachment: %s", r.Raw)
	}
	for _, u := range []apptest.User{alice, bob} {
		if status, _, body := htDownload(t, s, u.Token, a.URL); status != http.StatusNotFound || bytes.Contains(body, []byte("deleted content")) {
			t.Fatalf("%s downloads a deleted message's attachment: %d", u.Username, status)
		}
		var node struct{ Node *struct{ ID string } }
		htOK(t, htPost(t, s, u.Token, `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": a.ID}), &node)
		if node.Node != nil {
			t.Fatalf("%s resolves a deleted message's attachment through node", u.Username)
		}
	}
}

func TestAttachmentSizeLimit(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "MAX_UPLOAD_BYTES=1000")
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	dir := s.App.Config.AttachmentDir

	// One byte over: BAD_USER_INPUT saying so; nothing kept.
	r := htUpload(t, s, alice.Token, conv, htFile{Name: "big.txt", ContentType: "text/plain", Data: bytes.Repeat([]byte("x"), 1001)})
	htErr(t, r, "BAD_USER_INPUT")
	if !strings.Contains(r.Errors[0].Message, "1000") {
		t.Errorf("size error does not give the limit: %q", r.Errors[0].Message)
	}
	if files := htDirFiles(t, dir); len(files) != 0 {
		t.Fatalf("rejected upload left files in ATTACHMENT_DIR: %v", files)
	}
	// Far over (past the multipart transport's own limit): a clear 4xx error.
	r = htUpload(t, s, alice.Token, conv, htFile{Name: "huge.bin", ContentType: "application/x-custom", Data: bytes.Repeat([]byte("y"), 3<<20/2)})
	if len(r.Errors) == 0 || r.Errors[0].Message == "" {
		t.Fatalf("huge upload: status %d %.300s", r.Status, r.Raw)
	}
	if r.Errors[0].Code() != "BAD_USER_INPUT" || r.Status < 400 || r.Status > 499 {
		t.Errorf("huge upload: want a 4xx with extensions.code BAD_USER_INPUT, got status %d %.300s", r.Status, r.Raw)
	}
	if strings.Contains(string(r.Raw), `"uploadAttachment":{`) {
		t.Fatalf("huge upload stored: %.300s", r.Raw)
	}
	if files := htDirFiles(t, dir); len(files) != 0 {
		t.Fatalf("rejected upload left files in ATTACHMENT_DIR: %v", files)
	}
	// Nothing became sendable.
	var msgs struct {
		Conversation struct{ Messages struct{ TotalCount int } }
	}
	htOK(t, htPost(t, s, alice.Token, `query($c: ID!) { conversation(id: $c) { messages { totalCount } } }`, map[string]any{"c": conv}), &msgs)
	if msgs.Conversation.Messages.TotalCount != 0 {
		t.Fatalf("messages after failed uploads: %d", msgs.Conversation.Messages.TotalCount)
	}

	// Exactly at the limit: accepted, one file kept, named by nothing the client chose.
	data := bytes.Repeat([]byte("z"), 1000)
	a := htUploadOK(t, s, alice, conv, htFile{Name: "exact.txt", ContentType: "text/plain", Data: data})
	if a.Size != 1000 {
		t.Fatalf("size %d", a.Size)
	}
	files := htDirFiles(t, dir)
	if len(files) != 1 || strings.Contains(files[0], "exact") || strings.HasPrefix(files[0], ".") {
		t.Fatalf("ATTACHMENT_DIR after one upload: %v", files)
	}
	if status, _, body := htDownload(t, s, bob.Token, a.URL); status != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("download: %d, %d bytes", status, len(body))
	}
}

func TestAttachmentFilenames(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	dir := s.App.Config.AttachmentDir
	root := filepath.Dir(dir)

	for _, c := range []struct{ sent, want string }{
		{"../../etc/passwd", "passwd"},
		{`..\..\windows\evil.ini`, "evil.ini"},
		{"/absolute/path/file.txt", "file.txt"},
		{"dir/sub/../name.txt", "name.txt"},
		{"résumé 📄.pdf", "résumé 📄.pdf"},
		{`quote".txt`, `quote".txt`},
	} {
		a := htUploadOK(t, s, alice, conv, htFile{Name: c.sent, ContentType: "text/plain", Data: []byte("name test " + c.want)})
		if a.Filename != c.want {
			t.Errorf("filename %q stored as %q, want %q", c.sent, a.Filename, c.want)
		}
		status, h, body := htDownload(t, s, alice.Token, a.URL)
		if status != http.StatusOK || string(body) != "name test "+c.want {
			t.Errorf("%q: download %d %q", c.sent, status, body)
		}
		if _, params, err := mime.ParseMediaType(h.Get("Content-Disposition")); err != nil || params["filename"] != c.want {
			t.Errorf("%q: Content-Disposition %q", c.sent, h.Get("Content-Disposition"))
		}
	}
	// Files are kept inside ATTACHMENT_DIR under server-chosen names only.
	for _, f := range htDirFiles(t, root) {
		if strings.Contains(f, "passwd") || strings.Contains(f, "evil") || strings.Contains(f, "file.txt") {
			t.Errorf("upload written under a client-chosen name: %s", f)
		}
	}
	if n := len(htDirFiles(t, dir)); n != 6 {
		t.Errorf("ATTACHMENT_DIR holds %d files, want 6", n)
	}
}
