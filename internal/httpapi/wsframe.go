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

// frameReader reads frames from one connection. Its only state beyond the
// connection is a 14-byte header buffer and the message being assembled.
type frameReader struct {
	r     io.Reader
	limit int64
	hdr   [14]byte
}

// readMessage returns the next data message (opText or opBinary) and its
// payload. Control frames in between are passed to control, which answers
// pings and reports closes.
func (fr *frameReader) readMessage(control func(op byte, payload []byte) error) (byte, []byte, error) {
	var (
		msgOp byte
		msg   []byte
		inMsg bool
	)
	for {
		fin, op, payload, err := fr.readFrame()
		if err != nil {
			return 0, nil, err
		}
		switch op {
		case opClose, opPing, opPong:
			if err := control(op, payload); err != nil {
				return 0, nil, err
			}
			continue
		case opText, opBinary:
			if inMsg {
				return 0, nil, &wsError{closeProtocolError, "new message inside a fragmented one"}
			}
			msgOp, msg, inMsg = op, payload, true
		case opContinuation:
			if !inMsg {
				return 0, nil, &wsError{closeProtocolError, "continuation without a message"}
			}
			if int64(len(msg)+len(payload)) > fr.limit {
				return 0, nil, &wsError{closeTooBig, fmt.Sprintf("message over %d bytes", fr.limit)}
			}
			msg = append(msg, payload...)
		default:
			return 0, nil, &wsError{closeProtocolError, fmt.Sprintf("unknown opcode %d", op)}
		}
		if fin {
			if msgOp == opText && !utf8.Valid(msg) {
				return 0, nil, &wsError{closeInvalidData, "text message is not UTF-8"}
			}
			return msgOp, msg, nil
		}
	}
}

func (fr *frameReader) readFrame() (fin bool, op byte, payload []byte, err error) {
	h := fr.hdr[:]
	if _, err := io.ReadFull(fr.r, h[:2]); err != nil {
		return false, 0, nil, err
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0F
	if h[0]&0x70 != 0 {
		return false, 0, nil, &wsError{closeProtocolError, "reserved bits set"}
	}
	if h[1]&0x80 == 0 {
		return false, 0, nil, &wsError{closeProtocolError, "client frame not masked"}
	}
	n := int64(h[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(fr.r, h[2:4]); err != nil {
			return false, 0, nil, err
		}
		n = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(fr.r, h[2:10]); err != nil {
			return false, 0, nil, err
		}
		u := binary.BigEndian.Uint64(h[2:10])
		if u > 1<<62 {
			return false, 0, nil, &wsError{closeTooBig, "frame length out of range"}
		}
		n = int64(u)
	}
	if op >= opClose && (n > 125 || !fin) {
		return false, 0, nil, &wsError{closeProtocolError, "invalid control frame"}
	}
	if n > fr.limit {
		return false, 0, nil, &wsError{closeTooBig, fmt.Sprintf("message over %d bytes", fr.limit)}
	}
	var mask [4]byte
	if _, err := io.ReadFull(fr.r, h[10:14]); err != nil {
		return false, 0, nil, err
	}
	copy(mask[:], h[10:14])
	payload = make([]byte, n)
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		return false, 0, nil, err
	}
	for i := range payload {
		payload[i] ^= mask[i&3]
	}
	return fin, op, payload, nil
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
