package httpapi

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// The server side of RFC 6455 framing, just what graphql-transport-ws
// needs: text messages (fragmented or not), close, ping and pong; no
// extensions. It reads straight from the connection and builds each frame
// in one buffer written with one call, so an idle connection holds no
// buffer at all.

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes of RFC 6455 that the framing layer itself sends.
const (
	closeNormal        = 1000
	closeGoingAway     = 1001
	closeProtocolError = 1002
	closeInvalidData   = 1007
	closeTooBig        = 1009
)

// wsError is a violation of the framing rules, closed with code.
type wsError struct {
	code   int
	reason string
}

func (e *wsError) Error() string { return fmt.Sprintf("websocket: %d %s", e.code, e.reason) }

// errPeerClosed: the peer sent a close frame (its code is in peerCloseError).
type peerCloseError struct {
	code   int
	reason string
}

func (e *peerCloseError) Error() string {
	return fmt.Sprintf("websocket: peer closed with %d %q", e.code, e.reason)
}

// frameReader reads frames from a connection served by a goroutine of its
// own (wsconn.go; the poller reads with wsDecoder). Its only state beyond
// the connection is a 14-byte header buffer and the message being
// assembled.
type frameReader struct {
	r   io.Reader
	asm msgAssembler
	hdr [14]byte
}

// readMessage returns the next data message (opText or opBinary) and its
// payload. Control frames in between are passed to control, which answers
// pings and reports closes.
func (fr *frameReader) readMessage(control func(op byte, payload []byte) error) (byte, []byte, error) {
	for {
		h, payload, err := fr.readFrame()
		if err != nil {
			return 0, nil, err
		}
		op, msg, done, err := fr.asm.add(h, payload, control)
		if err != nil || done {
			return op, msg, err
		}
	}
}

// readFrame reads one frame, reading the header in the steps that can show
// a violation (as wsDecoder sees them), and the payload unmasked.
func (fr *frameReader) readFrame() (frameHeader, []byte, error) {
	b := fr.hdr[:]
	if _, err := io.ReadFull(fr.r, b[:2]); err != nil {
		return frameHeader{}, nil, err
	}
	if _, _, err := parseHeader(b[:2], fr.asm.limit); err != nil {
		return frameHeader{}, nil, err
	}
	n := headerLen(b[1])
	if n > 6 {
		if _, err := io.ReadFull(fr.r, b[2:n-4]); err != nil {
			return frameHeader{}, nil, err
		}
		if _, _, err := parseHeader(b[:n-4], fr.asm.limit); err != nil {
			return frameHeader{}, nil, err
		}
	}
	if _, err := io.ReadFull(fr.r, b[n-4:n]); err != nil {
		return frameHeader{}, nil, err
	}
	h, _, err := parseHeader(b[:n], fr.asm.limit)
	if err != nil {
		return frameHeader{}, nil, err
	}
	payload := make([]byte, h.n)
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		return frameHeader{}, nil, err
	}
	unmask(payload, h.mask)
	return h, payload, nil
}

// frameHeader is a client frame's header.
type frameHeader struct {
	fin  bool
	op   byte
	n    int64 // payload length
	mask [4]byte
}

// headerLen is the length of a client frame header whose second byte is b1.
func headerLen(b1 byte) int {
	switch b1 & 0x7F {
	case 126:
		return 8
	case 127:
		return 14
	}
	return 6
}

// parseHeader parses the client frame header at the start of b and returns
// its length, 0 while b holds only part of it. A violation is reported as
// soon as the bytes that show it are there, before the rest arrives.
func parseHeader(b []byte, limit int64) (frameHeader, int, error) {
	var h frameHeader
	if len(b) < 2 {
		return h, 0, nil
	}
	h.fin, h.op = b[0]&0x80 != 0, b[0]&0x0F
	if b[0]&0x70 != 0 {
		return h, 0, &wsError{closeProtocolError, "reserved bits set"}
	}
	if b[1]&0x80 == 0 {
		return h, 0, &wsError{closeProtocolError, "client frame not masked"}
	}
	size := headerLen(b[1])
	n := int64(b[1] & 0x7F)
	switch {
	case size == 8 && len(b) >= 4:
		n = int64(binary.BigEndian.Uint16(b[2:4]))
	case size == 14 && len(b) >= 10:
		u := binary.BigEndian.Uint64(b[2:10])
		if u > 1<<62 {
			return h, 0, &wsError{closeTooBig, "frame length out of range"}
		}
		n = int64(u)
	case size > 6:
		return h, 0, nil
	}
	if h.op >= opClose && (n > 125 || !h.fin) {
		return h, 0, &wsError{closeProtocolError, "invalid control frame"}
	}
	if n > limit {
		return h, 0, &wsError{closeTooBig, fmt.Sprintf("message over %d bytes", limit)}
	}
	if len(b) < size {
		return h, 0, nil
	}
	h.n = n
	copy(h.mask[:], b[size-4:size])
	return h, size, nil
}

func unmask(p []byte, mask [4]byte) {
	for i := range p {
		p[i] ^= mask[i&3]
	}
}

// msgAssembler puts messages together from their frames; between messages
// it holds nothing.
type msgAssembler struct {
	limit int64
	op    byte
	msg   []byte
	inMsg bool
}

// add takes one frame and its unmasked payload, which it does not keep
// (the poller reads into a shared buffer). A control frame goes to control;
// done reports a complete data message, returned in msg, which may be
// payload itself.
func (a *msgAssembler) add(h frameHeader, payload []byte, control func(op byte, payload []byte) error) (op byte, msg []byte, done bool, err error) {
	switch h.op {
	case opClose, opPing, opPong:
		return 0, nil, false, control(h.op, payload)
	case opText, opBinary:
		if a.inMsg {
			return 0, nil, false, &wsError{closeProtocolError, "new message inside a fragmented one"}
		}
		if h.fin {
			return h.op, payload, true, checkMessage(h.op, payload)
		}
		a.op, a.msg, a.inMsg = h.op, append([]byte(nil), payload...), true
		return 0, nil, false, nil
	case opContinuation:
		if !a.inMsg {
			return 0, nil, false, &wsError{closeProtocolError, "continuation without a message"}
		}
		if int64(len(a.msg)+len(payload)) > a.limit {
			return 0, nil, false, &wsError{closeTooBig, fmt.Sprintf("message over %d bytes", a.limit)}
		}
		a.msg = append(a.msg, payload...)
		if !h.fin {
			return 0, nil, false, nil
		}
		op, msg = a.op, a.msg
		a.op, a.msg, a.inMsg = 0, nil, false
		return op, msg, true, checkMessage(op, msg)
	default:
		return 0, nil, false, &wsError{closeProtocolError, fmt.Sprintf("unknown opcode %d", h.op)}
	}
}

// decode handles the whole frames at the start of b, unmasking them in
// place: control frames go to control, complete messages to message (which
// must not keep msg: it may be b). It returns how many bytes it consumed
// and, if a partial frame follows, how many bytes that frame needs in all
// (at least 14 while its header is incomplete), so that the caller keeps
// only that partial frame between reads.
func (a *msgAssembler) decode(b []byte, control func(op byte, payload []byte) error, message func(op byte, msg []byte) error) (used, need int, err error) {
	for {
		rest := b[used:]
		h, size, err := parseHeader(rest, a.limit)
		if err != nil {
			return used, 0, err
		}
		if size == 0 {
			return used, 14, nil
		}
		if int64(len(rest)-size) < h.n {
			return used, size + int(h.n), nil
		}
		payload := rest[size : size+int(h.n)]
		unmask(payload, h.mask)
		used += size + int(h.n)
		op, msg, done, err := a.add(h, payload, control)
		if err != nil {
			return used, 0, err
		}
		if done {
			if err := message(op, msg); err != nil {
				return used, 0, err
			}
		}
	}
}

func checkMessage(op byte, msg []byte) error {
	if op == opText && !utf8.Valid(msg) {
		return &wsError{closeInvalidData, "text message is not UTF-8"}
	}
	return nil
}

// appendFrameHeader appends an unmasked server frame header for a payload
// of n bytes.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return b
}

// closePayload is a close frame's body: the code and a reason cut to fit
// the 125-byte control frame limit.
func closePayload(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	return append(b, reason...)
}

// parseClose reads a close frame's body.
func parseClose(p []byte) (int, string, error) {
	switch {
	case len(p) == 0:
		return 1005, "", nil // no status received
	case len(p) == 1:
		return 0, "", &wsError{closeProtocolError, "close frame of one byte"}
	}
	code := int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, "", &wsError{closeProtocolError, fmt.Sprintf("invalid close code %d", code)}
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", &wsError{closeInvalidData, "close reason is not UTF-8"}
	}
	return code, string(p[2:]), nil
}

func validCloseCode(c int) bool {
	switch {
	case c >= 3000 && c <= 4999:
		return true
	case c >= 1000 && c <= 1014:
		return c != 1004 && c != 1005 && c != 1006
	}
	return false
}

// websocketAccept is the Sec-WebSocket-Accept value for a key.
func websocketAccept(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

var errNotWebSocket = errors.New("not a WebSocket upgrade request")

// checkUpgrade validates a client's opening handshake (RFC 6455 4.2.1).
func checkUpgrade(r *http.Request) error {
	if r.Method != http.MethodGet {
		return fmt.Errorf("%w: method %s", errNotWebSocket, r.Method)
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		return fmt.Errorf("%w: missing Connection: Upgrade / Upgrade: websocket", errNotWebSocket)
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return fmt.Errorf("%w: Sec-WebSocket-Version must be 13", errNotWebSocket)
	}
	if k, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key")); err != nil || len(k) != 16 {
		return fmt.Errorf("%w: invalid Sec-WebSocket-Key", errNotWebSocket)
	}
	return nil
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// offeredSubprotocol reports whether the client offered p.
func offeredSubprotocol(r *http.Request, p string) bool {
	return headerHasToken(r.Header, "Sec-WebSocket-Protocol", p)
}
