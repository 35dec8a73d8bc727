package httpapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// clientFrame encodes a masked client frame.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	return b
}

func TestFrameReader(t *testing.T) {
	big := strings.Repeat("x", 70000)
	cases := []struct {
		name     string
		in       [][]byte
		want     string
		wantCode int // close code of the error, 0: none
		controls int
	}{
		{name: "text", in: [][]byte{clientFrame(true, opText, []byte(`{"type":"ping"}`))}, want: `{"type":"ping"}`},
		{name: "16-bit length", in: [][]byte{clientFrame(true, opText, []byte(big[:300]))}, want: big[:300]},
		{name: "64-bit length", in: [][]byte{clientFrame(true, opText, []byte(big))}, want: big},
		{name: "fragments with a ping between", in: [][]byte{
			clientFrame(false, opText, []byte("ab")), clientFrame(true, opPing, []byte("p")),
			clientFrame(false, opContinuation, []byte("cd")), clientFrame(true, opContinuation, []byte("ef")),
		}, want: "abcdef", controls: 1},
		{name: "unmasked", in: [][]byte{{0x81, 0x01, 'x'}}, wantCode: closeProtocolError},
		{name: "reserved bits", in: [][]byte{append([]byte{0xC1}, clientFrame(true, opText, []byte("x"))[1:]...)}, wantCode: closeProtocolError},
		{name: "too big", in: [][]byte{clientFrame(true, opText, []byte(big))}, wantCode: closeTooBig},
		{name: "fragments too big", in: [][]byte{clientFrame(false, opText, []byte(big[:60000])), clientFrame(true, opContinuation, []byte(big[:60000]))}, wantCode: closeTooBig},
		{name: "not UTF-8", in: [][]byte{clientFrame(true, opText, []byte{0xff, 0xfe})}, wantCode: closeInvalidData},
		{name: "continuation first", in: [][]byte{clientFrame(true, opContinuation, []byte("x"))}, wantCode: closeProtocolError},
		{name: "fragmented ping", in: [][]byte{clientFrame(false, opPing, nil)}, wantCode: closeProtocolError},
		{name: "unknown opcode", in: [][]byte{clientFrame(true, 0x3, nil)}, wantCode: closeProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			limit := int64(1 << 20)
			if strings.Contains(tc.name, "too big") {
				limit = 65536
			}
			fr := frameReader{r: bytes.NewReader(bytes.Join(tc.in, nil)), asm: msgAssembler{limit: limit}}
			controls := 0
			_, msg, err := fr.readMessage(func(op byte, p []byte) error { controls++; return nil })
			var we *wsError
			switch {
			case tc.wantCode != 0:
				if !errors.As(err, &we) || we.code != tc.wantCode {
					t.Fatalf("err %v, want close code %d", err, tc.wantCode)
				}
			case err != nil:
				t.Fatal(err)
			case string(msg) != tc.want || controls != tc.controls:
				t.Fatalf("got %d bytes and %d control frames, want %d and %d", len(msg), controls, len(tc.want), tc.controls)
			}
		})
	}
	// A connection cut mid-frame is an unexpected EOF, not a protocol error.
	f := clientFrame(true, opText, []byte("hello"))
	fr := frameReader{r: bytes.NewReader(f[:len(f)-2]), asm: msgAssembler{limit: 1 << 20}}
	if _, _, err := fr.readMessage(func(byte, []byte) error { return nil }); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut frame: %v", err)
	}
}

func TestClosePayload(t *testing.T) {
	code, reason, err := parseClose(closePayload(4408, "Connection initialisation timeout"))
	if err != nil || code != 4408 || reason != "Connection initialisation timeout" {
		t.Fatalf("round trip: %d %q %v", code, reason, err)
	}
	if p := closePayload(1000, strings.Repeat("é", 100)); len(p) > 125 {
		t.Fatalf("close payload of %d bytes: control frames hold 125", len(p))
	}
	for _, p := range [][]byte{{0x03}, {0x03, 0xED}, {0x03, 0xE8, 0xff}} { // one byte, code 1005, bad UTF-8
		if _, _, err := parseClose(p); err == nil {
			t.Errorf("parseClose(%v) accepted", p)
		}
	}
	if code, _, err := parseClose(nil); err != nil || code != 1005 {
		t.Errorf("empty close: %d %v", code, err)
	}
}

// decodeSplit feeds in to msgAssembler.decode n bytes at a time, keeping
// the unconsumed rest as the poller does, and returns the messages, the
// number of control frames and the first error.
func decodeSplit(in []byte, n int, limit int64) (msgs []string, controls int, err error) {
	a := msgAssembler{limit: limit}
	var buf []byte
	for len(in) > 0 && err == nil {
		k := min(n, len(in))
		buf = append(buf, in[:k]...)
		in = in[k:]
		var used int
		used, _, err = a.decode(buf, func(byte, []byte) error { controls++; return nil }, func(_ byte, m []byte) error {
			msgs = append(msgs, string(m))
			return nil
		})
		buf = buf[:copy(buf, buf[used:])]
	}
	return msgs, controls, err
}

// The poller's decoder agrees with the reader on every case, however the
// bytes are split.
func TestDecodeSplit(t *testing.T) {
	big := strings.Repeat("y", 70000)
	in := bytes.Join([][]byte{
		clientFrame(true, opText, []byte(`{"type":"ping"}`)),
		clientFrame(false, opText, []byte("ab")), clientFrame(true, opPing, []byte("p")),
		clientFrame(false, opContinuation, []byte("cd")), clientFrame(true, opContinuation, []byte("ef")),
		clientFrame(true, opText, []byte(big)),
		clientFrame(true, opText, []byte(big[:300])),
	}, nil)
	for _, n := range []int{1, 2, 3, 7, 13, 100, 4096, len(in)} {
		msgs, controls, err := decodeSplit(bytes.Clone(in), n, 1<<20)
		if err != nil || controls != 1 || len(msgs) != 4 || msgs[0] != `{"type":"ping"}` || msgs[1] != "abcdef" || msgs[2] != big || msgs[3] != big[:300] {
			t.Fatalf("split %d: %d messages, %d controls, %v", n, len(msgs), controls, err)
		}
	}
	for _, tc := range []struct {
		in   []byte
		code int
	}{
		{[]byte{0x81, 0x01, 'x'}, closeProtocolError},
		{clientFrame(true, opText, []byte{0xff}), closeInvalidData},
		{clientFrame(true, opText, []byte(big)), closeTooBig},
		{clientFrame(false, opPing, nil), closeProtocolError},
	} {
		for _, n := range []int{1, 5, len(tc.in)} {
			_, _, err := decodeSplit(bytes.Clone(tc.in), n, 65536)
			var we *wsError
			if !errors.As(err, &we) || we.code != tc.code {
				t.Fatalf("split %d of % x…: %v, want %d", n, tc.in[:2], err, tc.code)
			}
		}
	}
}
