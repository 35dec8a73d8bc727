package httpapi

import (
	"net"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
)

// discardConn is a net.Conn whose writes vanish: it isolates the framing
// and envelope cost from the socket.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkNextFrame measures event encoding per subscriber once the
// payload is shared: the "next" envelope around it and the frame, with the
// write timeout armed as in production, into a socket that takes it all.
//
//	go test -run '^$' -bench NextFrame -benchmem ./internal/httpapi/
func BenchmarkNextFrame(b *testing.B) {
	c := &twsConn{wsState: wsState{t: &webSocket{writeTimeout: 10 * time.Second}}, nc: discardConn{}, wsem: make(chan struct{}, 1)}
	data := []byte(`{"messageEvents":{"type":"CREATED","cursor":"ZTpjbnZfZGM0ZGZsOHNrMmc0aTRsMzF1MjA6MTIz","message":{"id":"msg_dc4dfl8sk2g4i4l31u2g","body":"a message of a typical length, about sixty characters long","createdAt":"2026-11-27T01:47:10.123456Z","sender":{"id":"usr_dc4dfl8sk2g4i4l31u1g","displayName":"Alice"}}}}`)
	r := &graphql.Response{Data: data}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if !c.sendResponse("1", r) {
			b.Fatal("not written")
		}
	}
}
